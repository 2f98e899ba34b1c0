package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"periph.io/x/conn/v3/i2c"

	"github.com/sensorgate/sensorgate/drivers"
	"github.com/sensorgate/sensorgate/drivers/ds18b20"
)

// probeOpenI2C opens a bus for cmdProbe; tests replace it with a fake.
type probeOpenFunc func(bus string) (i2c.BusCloser, error)

// cmdProbe is `sensorgate probe`: scan an I²C bus (and the 1-Wire sysfs
// directory) and name the chips found.
func cmdProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runProbe(ctx, args, stdout, stderr, nil)
}

func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer, open probeOpenFunc) int {
	fs := newFlagSet("probe", "sensorgate probe [--bus /dev/i2c-1] [--w1 DIR] [--list]",
		`Initialise the board's drivers (periph host.Init), scan an I²C bus and name
the chips found, by address and, where the chip has one, by its id register
(BME280/BMP280, SHT3x, SHT4x, SCD4x, ADS1115/ADS1015); list DS18B20s on the
1-Wire bus. Probing only reads; it does not reset or reconfigure chips.
--list prints what periph found on this machine (drivers, I²C buses) and
does not scan.`, stderr)
	bus := fs.String("bus", drivers.DefaultI2CBus, "I²C bus to scan (/dev/i2c-1, 1 or I2C1)")
	w1 := fs.String("w1", drivers.DefaultW1Dir, "1-Wire sysfs devices directory to list DS18B20s from (empty: skip)")
	list := fs.Bool("list", false, "list periph's drivers and the I²C buses, then exit")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	st, err := drivers.HostInit()
	if err != nil {
		return failure(fs, err)
	}
	fmt.Fprintf(stdout, "periph host.Init: ok, %d drivers loaded: %s\n", len(st.Loaded), strings.Join(st.Loaded, ", "))
	if *list {
		for _, f := range st.Failed {
			fmt.Fprintf(stdout, "  failed: %s\n", f)
		}
		fmt.Fprintf(stdout, "  skipped: %d drivers (not this hardware)\n", len(st.Skipped))
		fmt.Fprintf(stdout, "I2C buses: %s\n", strings.Join(drivers.I2CBuses(), ", "))
		return 0
	}
	if open == nil {
		op, err := drivers.NewHostOpener()
		if err != nil {
			return failure(fs, err)
		}
		open = func(bus string) (i2c.BusCloser, error) {
			b, err := op.OpenI2C(bus)
			if err != nil {
				return nil, i2cOpenError(bus, drivers.I2CBuses(), err)
			}
			return b, nil
		}
	}
	code := 0
	if *bus != "" {
		b, err := open(*bus)
		if err != nil {
			code = failure(fs, err)
		} else {
			found, err := drivers.Probe(ctx, b, drivers.ProbeOptions{})
			b.Close()
			fmt.Fprintf(stdout, "I2C bus %s: %d devices\n", *bus, len(found))
			for _, f := range found {
				line := fmt.Sprintf("  %#02x  %s", f.Addr, orUnknown(f.Chip))
				if f.Detail != "" {
					line += " (" + f.Detail + ")"
				}
				if f.Type != "" {
					line += fmt.Sprintf("  -> type: %s, device: {bus: %s, address: %#02x}", f.Type, *bus, f.Addr)
				}
				fmt.Fprintln(stdout, line)
			}
			if err != nil {
				code = failure(fs, err)
			}
		}
	}
	if *w1 != "" {
		ids, err := ds18b20.Discover(*w1)
		if err != nil {
			return failure(fs, err)
		}
		fmt.Fprintf(stdout, "1-Wire %s: %d DS18B20\n", *w1, len(ids))
		for _, id := range ids {
			fmt.Fprintf(stdout, "  %s  -> type: ds18b20, device: {serial: %s}\n", id, id)
		}
	}
	return code
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// i2cOpenError says which bus was tried and what this machine has, in
// place of periph's "i2creg: no bus found; did you forget to call Init()?"
// (Init did run: there is no bus).
func i2cOpenError(bus string, buses []string, err error) error {
	if len(buses) == 0 {
		return fmt.Errorf("I2C bus %s: this machine has no I2C bus (on a Raspberry Pi, enable I2C with raspi-config and reboot; --bus \"\" skips the I2C scan)", bus)
	}
	return fmt.Errorf("I2C bus %s: cannot open it (%v); this machine has: %s (pass one with --bus)", bus, err, strings.Join(buses, ", "))
}
