package test

import (
	"encoding/json"
	"io"
	"net"
	"sync"
	"testing"

	ppk "github.com/eclipse/paho.mqtt.golang/packets"
)

// uplProxy is a loopback TCP proxy in front of the broker. hold() makes
// new connections wait before they reach the broker; blackhole() stops
// moving bytes in both directions on every connection without closing
// anything (no RST, no FIN: what a dead cellular link looks like), and
// release() lets everything through again, nothing lost.
type uplProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	held   bool // new connections wait
	black  bool // no bytes move
	// blackAcks stops only the broker-to-client direction: publishes
	// reach the broker, its PUBACKs do not come back.
	blackAcks bool
	conns     []net.Conn
	wg        sync.WaitGroup
	closed    bool
	nconn     int
	// tap: what went over the wire, parsed as MQTT. For every
	// (connection, message id) the n-th PUBACK answers the n-th PUBLISH;
	// the two directions are parsed by separate goroutines, so either can
	// be seen first.
	tapMu  sync.Mutex
	pubs   map[[2]int][]string // record ids published, in order
	acks   map[[2]int]int      // PUBACKs seen
	pubPos map[string][][3]int // record id -> (conn, mid, index in pubs)
}

func uplStartProxy(t testing.TB, target string) *uplProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &uplProxy{ln: ln, target: target, pubs: map[[2]int][]string{}, acks: map[[2]int]int{}, pubPos: map[string][][3]int{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *uplProxy) addr() string { return p.ln.Addr().String() }

func (p *uplProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// wait blocks while cond holds and the proxy is open; false if closed.
func (p *uplProxy) wait(cond func() bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for cond() && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}

func (p *uplProxy) serve(c net.Conn) {
	defer p.wg.Done()
	p.track(c)
	if !p.wait(func() bool { return p.held || p.black }) {
		c.Close()
		return
	}
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.track(u)
	p.mu.Lock()
	p.nconn++
	id := p.nconn
	p.mu.Unlock()
	upR, upW := io.Pipe()
	downR, downW := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); p.pipe(u, c, upW, func() bool { return p.black }) }()
	go func() { defer wg.Done(); p.pipe(c, u, downW, func() bool { return p.black || p.blackAcks }) }()
	go func() { defer wg.Done(); p.tap(id, upR, true) }()
	go func() { defer wg.Done(); p.tap(id, downR, false) }()
	wg.Wait()
}

// tap parses one direction of a connection and records which records
// were published under which message id, and which were PUBACKed.
func (p *uplProxy) tap(conn int, r *io.PipeReader, up bool) {
	defer io.Copy(io.Discard, r)
	for {
		pk, err := ppk.ReadPacket(r)
		if err != nil {
			return
		}
		p.tapMu.Lock()
		switch m := pk.(type) {
		case *ppk.PublishPacket:
			if up {
				var e struct {
					ID string `json:"record_id"`
				}
				json.Unmarshal(m.Payload, &e)
				k := [2]int{conn, int(m.MessageID)}
				p.pubPos[e.ID] = append(p.pubPos[e.ID], [3]int{conn, int(m.MessageID), len(p.pubs[k])})
				p.pubs[k] = append(p.pubs[k], e.ID)
			}
		case *ppk.PubackPacket:
			if !up {
				p.acks[[2]int{conn, int(m.MessageID)}]++
			}
		}
		p.tapMu.Unlock()
	}
}

// published returns the ids of every record that went to the broker.
func (p *uplProxy) published() []string {
	p.tapMu.Lock()
	defer p.tapMu.Unlock()
	ids := make([]string, 0, len(p.pubPos))
	for id := range p.pubPos {
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

func (p *uplProxy) wasPublished(id string) bool {
	p.tapMu.Lock()
	defer p.tapMu.Unlock()
	return len(p.pubPos[id]) > 0
}

// wasPubacked reports whether the broker's PUBACK for a message carrying
// id went through the proxy to the uplink.
func (p *uplProxy) wasPubacked(id string) bool {
	p.tapMu.Lock()
	defer p.tapMu.Unlock()
	for _, pos := range p.pubPos[id] {
		if p.acks[[2]int{pos[0], pos[1]}] > pos[2] {
			return true
		}
	}
	return false
}

func (p *uplProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	closed := p.closed
	p.mu.Unlock()
	if closed {
		c.Close()
	}
}

// pipe copies src to dst (and to the tap); while dark it holds what it
// read and stops reading.
func (p *uplProxy) pipe(dst, src net.Conn, tap *io.PipeWriter, dark func() bool) {
	defer tap.Close()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait(dark) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			tap.Write(buf[:n])
		}
		if err != nil {
			return
		}
		// While black-holed, stop reading too, so the sender's socket
		// buffers fill up like on a dead link.
		if !p.wait(dark) {
			return
		}
	}
}

func (p *uplProxy) set(held, black bool) {
	p.mu.Lock()
	p.held, p.black, p.blackAcks = held, black, false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// cut closes every open connection at once; bytes held by a black hole
// are lost, as on a link that dies with packets in flight.
func (p *uplProxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// dropAcks holds everything the broker sends back (PUBACKs).
func (p *uplProxy) dropAcks() {
	p.mu.Lock()
	p.blackAcks = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *uplProxy) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.cond.Broadcast()
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
