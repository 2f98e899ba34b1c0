// Package drivers turns chips wired to the gateway (I²C, SPI, 1-Wire, GPIO)
// into an [ingest.Source]: the [Poller]. The chips themselves live in one
// package each, periph-devices style (accept a bus interface, return a
// concrete type, never own the bus), and each implements [chip.Sensor], so
// the Poller only builds chips and schedules them:
//
//	drivers/chip     the interface (Sense, Halt, String) and the value type every chip returns
//	drivers/bme280   BME280 / BMP280 (temperature, pressure, humidity), via periph's bmxx80
//	drivers/ds18b20  DS18B20 through the Linux 1-Wire sysfs interface
//	drivers/ads1115  ADS1115 / ADS1015 ADC channels, via periph's ads1x15
//	drivers/sht3x    SHT3x (own driver, CRC-8)
//	drivers/sht4x    SHT4x (own driver, CRC-8)
//	drivers/scd4x    SCD40/41 CO₂ (own driver: periodic measurement, data ready, CRC-8)
//	drivers/pulse    GPIO pulse counter (water, gas and energy meters)
//	drivers/chiperr  the error values the chips share (ErrCRC, ErrPowerOn, ...)
//
// # Basics
//
// A sensor entry of the config names a type and a `device:` block
// ([DeviceConfig]):
//
//	sensors:
//	  - id: room-1
//	    type: bme280             # bme280 bmp280 ds18b20 ads1115 ads1015 sht3x sht4x scd4x pulse
//	    device: {bus: /dev/i2c-1, address: 0x76, interval: 30s, jitter: 2s}
//	  - id: tank-level
//	    type: ads1115
//	    device: {address: 0x48, channel: 0, full_scale: 4.096, scale: 25, offset: -10, metric: level, unit: cm}
//	  - id: shunt                # differential input AIN0 - AIN1
//	    type: ads1115
//	    device: {channel: 0, negative: 1, full_scale: 0.256, scale: 100, metric: current, unit: A}
//	  - id: freezer
//	    type: ds18b20
//	    device: {serial: 28-0316a2799aff}   # bus: /sys/bus/w1/devices
//	  - id: water
//	    type: pulse
//	    device: {pin: GPIO17, edge: falling, debounce: 20ms, per_pulse: 0.001, unit: m3}
//
// Defaults: bus /dev/i2c-1 (1-Wire: /sys/bus/w1/devices), the chip's usual
// address (bme280 0x76, sht3x/sht4x 0x44, scd4x 0x62, ads1x15 0x48),
// interval 10s, jitter 0, timeout 2s (ds18b20 3s, scd4x 7s), max_backoff
// 5m; ADC full_scale 4.096 V, scale 1, metric "voltage", unit "V"; pulse
// edge rising, pull up, per_pulse 1, unit "pulses".
//
// Readings: temperature (°C), humidity (%RH), pressure (hPa), co2 (ppm);
// an ADC channel gives its metric as volts × scale + offset; a pulse
// counter gives count (pulses × per_pulse since start, in unit) and rate
// (unit/s since the previous read). Time = Arrival = when the read
// completed. Values are converted from periph's physic types.
//
// The [Opener] opens buses and pins: [HostOpener] for the real machine
// (periph's host.Init and registries), fakes in tests. Buses are opened
// once, shared by the chips on them, and closed when Run returns.
//
// # Failures
//
// Each sensor runs in its own goroutine (owned by Run): read, wait the
// interval ± jitter (against a nominal schedule, so it does not drift), read
// again. A failed open or read is counted by reason ([SensorStats],
// Reason*), logged when a sensor starts failing and when it recovers, and
// retried after an exponential backoff (internal/backoff: the interval, at
// most 1s, doubling up to max_backoff, each delay drawn from [d/2, d]). A bus error closes the chip, so the next
// attempt initialises it again (a chip that lost power comes back
// configured); a CRC error, a power-on value or a not-ready chip keeps it
// open. One broken chip never stops the others.
//
// # Caveats
//
// The read timeout cancels the waits inside a driver (conversion times,
// data-ready polling) but not a bus transfer stuck in the kernel: periph's
// bmxx80 and ads1x15 sleep without a context, and reading a DS18B20's
// w1_slave blocks for its conversion (750 ms). Linux's I²C adapters time
// out such transfers themselves (typically within a second).
package drivers
