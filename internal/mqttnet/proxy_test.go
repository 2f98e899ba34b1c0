package mqttnet

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// socks5 is a minimal SOCKS5 proxy (no authentication, CONNECT only)
// that records the targets it was asked for.
func socks5(t *testing.T) (addr string, targets <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan string, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				target, err := socksHandshake(c)
				if err != nil {
					return
				}
				ch <- target
				up, err := net.Dial("tcp", target)
				if err != nil {
					c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) //nolint:errcheck // refused
					return
				}
				defer up.Close()
				if _, err := c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
					return
				}
				go io.Copy(up, c) //nolint:errcheck // test relay
				io.Copy(c, up)    //nolint:errcheck // test relay
			}()
		}
	}()
	return l.Addr().String(), ch
}

// socksHandshake reads the greeting and a CONNECT request (RFC 1928) and
// returns the requested host:port.
func socksHandshake(c net.Conn) (string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return "", err
	}
	if _, err := io.ReadFull(c, make([]byte, hdr[1])); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte{5, 0}); err != nil { // no authentication
		return "", err
	}
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return "", err
	}
	var host string
	switch req[3] {
	case 1:
		ip := make([]byte, 4)
		if _, err := io.ReadFull(c, ip); err != nil {
			return "", err
		}
		host = net.IP(ip).String()
	case 3:
		var n [1]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return "", err
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(c, name); err != nil {
			return "", err
		}
		host = string(name)
	default:
		return "", io.ErrUnexpectedEOF
	}
	var port [2]byte
	if _, err := io.ReadFull(c, port[:]); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))), nil
}

const proxyChildEnv = "MQTTNET_TEST_PROXY_TARGET"

// TestDialThroughProxy checks that a TCP dial goes through the proxy
// named by ALL_PROXY (the uplink's own dialer used to ignore it). The
// proxy variables are read once per process, so the dial runs in a child
// process of the test binary with the environment set.
func TestDialThroughProxy(t *testing.T) {
	if target := os.Getenv(proxyChildEnv); target != "" {
		c, err := Dial(context.Background(), &url.URL{Scheme: "tcp", Host: target}, DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c)
		return
	}
	echo, _ := echoServer(t, nil)
	proxyAddr, targets := socks5(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestDialThroughProxy$", "-test.count=1")
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.EqualFold(k, "all_proxy") && !strings.EqualFold(k, "no_proxy") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "ALL_PROXY=socks5://"+proxyAddr, proxyChildEnv+"="+echo)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dial through the proxy: %v\n%s", err, out)
	}
	select {
	case got := <-targets:
		if got != echo {
			t.Errorf("proxy asked for %s, want %s", got, echo)
		}
	default:
		t.Fatal("the dial did not go through the proxy")
	}
}
