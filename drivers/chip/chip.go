package chip

import (
	"context"

	"periph.io/x/conn/v3/physic"
)

// Value is one measured quantity of one Sense.
type Value struct {
	Metric, Unit string
	V            float64
}

// Sensor is a chip that can be read: every driver under drivers/ returns a
// concrete type that implements it.
type Sensor interface {
	// Sense takes one measurement and appends its values to dst.
	Sense(ctx context.Context, dst []Value) ([]Value, error)
	// Halt puts the chip to rest (stops a periodic measurement, disables
	// edge detection); it does not close the bus.
	Halt() error
	String() string
}

// Runner is implemented by a Sensor that must run between reads to observe
// its input (the pulse counter). Run blocks until ctx is done.
type Runner interface {
	Run(ctx context.Context) error
}

// Metric names and units of the chips whose quantities are fixed.
const (
	MetricTemp  = "temperature"
	MetricHum   = "humidity"
	MetricPress = "pressure"
	MetricCO2   = "co2"
	MetricCount = "count"
	MetricRate  = "rate"

	UnitCelsius = "°C"
	UnitHPa     = "hPa"
	UnitPercent = "%RH"
	UnitPPM     = "ppm"
)

// Temperature is t in °C.
func Temperature(t physic.Temperature) Value {
	return Value{MetricTemp, UnitCelsius, float64(t-physic.ZeroCelsius) / float64(physic.Kelvin)}
}

// Humidity is h in %RH.
func Humidity(h physic.RelativeHumidity) Value {
	return Value{MetricHum, UnitPercent, float64(h) / float64(physic.PercentRH)}
}

// Pressure is p in hPa.
func Pressure(p physic.Pressure) Value {
	return Value{MetricPress, UnitHPa, float64(p) / float64(100*physic.Pascal)}
}

// Volts is v in volts.
func Volts(v physic.ElectricPotential) float64 { return float64(v) / float64(physic.Volt) }
