// Package ds18b20 reads Maxim DS18B20 temperature sensors through the Linux
// 1-Wire sysfs interface (the w1-gpio and w1-therm kernel modules):
// /sys/bus/w1/devices/28-*/w1_slave.
//
// Reading w1_slave makes the kernel start a conversion and return the
// scratchpad, twice, like this:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
//
// The package checks the kernel's verdict ("NO" is chiperr.ErrCRC) and the
// scratchpad's CRC itself, converts the raw temperature (datasheet table 1,
// masking the bits that are undefined at the configured resolution), and
// reports the power-on reset value +85 °C (0x0550, datasheet table 4 note)
// as chiperr.ErrPowerOn: it means the chip browned out or did not convert.
// An all-zero scratchpad (what the kernel reads when the sensor is gone but
// still listed) and a missing device directory are chiperr.ErrNotFound.
//
// A read blocks for the conversion time (750 ms at 12 bits) in the kernel
// and cannot be cancelled midway.
package ds18b20
