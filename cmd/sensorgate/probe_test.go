package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"
)

type probeBus struct{ *i2ctest.Playback }

func (probeBus) Close() error { return nil }

func TestCmdProbe(t *testing.T) {
	// A bus with a BME280 at 0x76 (chip id 0x60, BME280 datasheet §5.4.1);
	// nothing else answers.
	var ops []i2ctest.IO
	pb := &i2ctest.Playback{DontPanic: true}
	open := func(bus string) (i2c.BusCloser, error) {
		if bus != "/dev/i2c-7" {
			return nil, errors.New("no such bus")
		}
		return probeBus{pb}, nil
	}
	ops = append(ops, i2ctest.IO{Addr: 0x76, R: []byte{0}}, i2ctest.IO{Addr: 0x76, W: []byte{0xD0}, R: []byte{0x60}})
	pb.Ops = ops
	// The playback only knows 0x76: every other address fails its scan
	// read, like a NACK; the scan must not stop on those.
	w1 := t.TempDir()
	if err := os.MkdirAll(filepath.Join(w1, "28-0316a2799aff"), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	scan := &probeScanBus{pb: pb}
	code := runProbe(context.Background(), []string{"--bus", "/dev/i2c-7", "--w1", w1}, &stdout, &stderr, func(bus string) (i2c.BusCloser, error) {
		if _, err := open(bus); err != nil {
			return nil, err
		}
		return scan, nil
	})
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, &stdout, &stderr)
	}
	out := stdout.String()
	for _, want := range []string{
		"periph host.Init: ok",
		"I2C bus /dev/i2c-7: 1 devices",
		"0x76  BME280 (chip id 0x60)  -> type: bme280, device: {bus: /dev/i2c-7, address: 0x76}",
		"1-Wire " + w1 + ": 1 DS18B20",
		"28-0316a2799aff  -> type: ds18b20",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := runProbe(context.Background(), []string{"--bus", "/dev/i2c-8", "--w1", ""}, &stdout, &stderr, open); code != 1 {
		t.Fatalf("missing bus: exit %d", code)
	}
	stdout.Reset()
	if code := cmdProbe(context.Background(), []string{"--list"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "I2C buses:") {
		t.Fatalf("--list: exit %d\n%s", code, &stdout)
	}
	if code := cmdProbe(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	if code := cmdProbe(context.Background(), []string{"--nope"}, &stdout, &stderr); code != 2 {
		t.Fatalf("bad flag: exit %d", code)
	}
}

// probeScanBus answers only for the addresses in its playback: the scan's
// reads to others NACK without consuming playback ops.
type probeScanBus struct{ pb *i2ctest.Playback }

func (b *probeScanBus) Tx(addr uint16, w, r []byte) error {
	if addr != 0x76 {
		return errors.New("nack")
	}
	return b.pb.Tx(addr, w, r)
}
func (b *probeScanBus) String() string                    { return "probe-scan" }
func (b *probeScanBus) SetSpeed(f physic.Frequency) error { return nil }
func (b *probeScanBus) Close() error                      { return nil }
