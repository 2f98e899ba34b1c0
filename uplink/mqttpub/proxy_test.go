package mqttpub

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/uplink"
	"github.com/sensorgate/sensorgate/uplink/internal/uplinktest"
)

// proxyChildEnv carries the broker address to the re-executed test binary.
const proxyChildEnv = "SENSORGATE_TEST_PROXY_BROKER"

// The uplink dials through the SOCKS5 proxy in ALL_PROXY, like the MQTT
// sources. golang.org/x/net/proxy reads the environment once per process,
// so the uplink runs in a re-executed test binary with ALL_PROXY set.
func TestMQTTThroughSocksProxy(t *testing.T) {
	if addr := os.Getenv(proxyChildEnv); addr != "" {
		proxyChild(t, addr)
		return
	}
	rx := &received{}
	b := startMochi(t, "", rx)
	px := startSocks5(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMQTTThroughSocksProxy$", "-test.count=1")
	cmd.Env = append(os.Environ(), proxyChildEnv+"="+b.Addr(), "ALL_PROXY=socks5://"+px.addr, "all_proxy=",
		"NO_PROXY=", "no_proxy=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if px.conns.Load() == 0 {
		t.Error("the uplink did not go through the proxy")
	}
	if ids := rx.ids(t); len(ids) != 1 {
		t.Errorf("broker received %v", ids)
	}
}

func proxyChild(t *testing.T, addr string) {
	ob := uplinktest.NewOutbox()
	ob.Append(context.Background(), buffer.LaneAlerts, uplinktest.AlertRecord(t, 1))
	u, err := newUplink(mqttCfg(addr), ob, uplink.Options{Gateway: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	stop := uplinktest.Run(t, u)
	uplinktest.WaitFor(t, "delivery through the proxy", func() bool { return ob.Count(buffer.LaneAlerts) == 0 })
	stop()
}

// socks5 is the smallest SOCKS5 proxy (RFC 1928: no authentication,
// CONNECT only) that counts the connections it relays.
type socks5 struct {
	addr  string
	conns atomic.Int64
}

func startSocks5(t *testing.T) *socks5 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &socks5{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *socks5) serve(c net.Conn) {
	defer c.Close()
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != 5 {
		return
	}
	if _, err := io.CopyN(io.Discard, c, int64(hdr[1])); err != nil {
		return
	}
	c.Write([]byte{5, 0}) // no authentication
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil || req[1] != 1 {
		return
	}
	var host string
	switch req[3] {
	case 1:
		ip := make(net.IP, 4)
		io.ReadFull(c, ip)
		host = ip.String()
	case 3:
		var n [1]byte
		io.ReadFull(c, n[:])
		name := make([]byte, n[0])
		io.ReadFull(c, name)
		host = string(name)
	default:
		return
	}
	var port [2]byte
	if _, err := io.ReadFull(c, port[:]); err != nil {
		return
	}
	up, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))))
	if err != nil {
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer up.Close()
	p.conns.Add(1)
	c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
}
