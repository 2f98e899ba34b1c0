package mqttsub

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// ackProxy sits between the subscriber and a real broker (mochi or
// mosquitto): it forwards the bytes both ways and reads the client's side
// of the MQTT stream, so that a test sees the packet id of every PUBACK and
// PUBREC the subscriber sends, in the order it sent them, and can swallow
// them (the broker never gets them) and cut the connections: what a
// connection lost right after the acks were written looks like.
type ackProxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu        sync.Mutex
	acks      []uint16 // every PUBACK/PUBREC seen, forwarded or not
	swallow   bool
	swallowed int
	conns     []net.Conn
}

func startAckProxy(t testing.TB, target string) *ackProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ackProxy{t: t, ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// URL is what the subscriber connects to.
func (p *ackProxy) URL() string { return "tcp://" + p.ln.Addr().String() }

// Swallow makes the proxy drop the client's PUBACKs and PUBRECs (true)
// until Cut.
func (p *ackProxy) Swallow() {
	p.mu.Lock()
	p.swallow = true
	p.mu.Unlock()
}

// Acks returns the packet ids acknowledged so far, in order.
func (p *ackProxy) Acks() []uint16 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint16(nil), p.acks...)
}

// Swallowed is how many acknowledgements never reached the broker.
func (p *ackProxy) Swallowed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.swallowed
}

// Cut closes every connection (both sides) and stops swallowing, so that
// the next connection is forwarded faithfully.
func (p *ackProxy) Cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.swallow = nil, false
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (p *ackProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			io.Copy(c, up)
			c.Close()
			up.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.clientToBroker(c, up)
			c.Close()
			up.Close()
		}()
	}
}

// clientToBroker copies packet by packet (MQTT fixed header: type byte,
// remaining length as a variable-length integer).
func (p *ackProxy) clientToBroker(c, up net.Conn) {
	r := bufio.NewReader(c)
	for {
		pk, err := readPacket(r)
		if err != nil {
			return
		}
		typ := pk.b[0] >> 4
		if (typ == 4 || typ == 5) && len(pk.b)-pk.body >= 2 { // PUBACK, PUBREC
			id := binary.BigEndian.Uint16(pk.b[pk.body:])
			p.mu.Lock()
			p.acks = append(p.acks, id)
			drop := p.swallow
			if drop {
				p.swallowed++
			}
			p.mu.Unlock()
			if drop {
				continue
			}
		}
		if _, err := up.Write(pk.b); err != nil {
			return
		}
	}
}

type rawPacket struct {
	b    []byte // the whole packet
	body int    // where the variable header starts
}

func readPacket(r *bufio.Reader) (rawPacket, error) {
	first, err := r.ReadByte()
	if err != nil {
		return rawPacket{}, err
	}
	b := []byte{first}
	n, shift := 0, 0
	for {
		d, err := r.ReadByte()
		if err != nil {
			return rawPacket{}, err
		}
		b = append(b, d)
		n |= int(d&0x7f) << shift
		if d&0x80 == 0 {
			break
		}
		if shift += 7; shift > 21 {
			return rawPacket{}, errors.New("bad remaining length")
		}
	}
	body := len(b)
	b = append(b, make([]byte, n)...)
	if _, err := io.ReadFull(r, b[body:]); err != nil {
		return rawPacket{}, err
	}
	return rawPacket{b: b, body: body}, nil
}
