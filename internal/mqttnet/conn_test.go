package mqttnet

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the reads that reach the connection.
type countingConn struct {
	net.Conn
	reads atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// readSpaced sends chunks small writes spaced gap apart and reads them all
// back through a Conn that waits wait; it checks the bytes and
// returns how many reads reached the socket.
func readSpaced(t *testing.T, chunks int, gap, wait time.Duration) int64 {
	t.Helper()
	client, server := tcpPair(t)
	cc := &countingConn{Conn: client}
	conn := NewConn(cc, wait, false)
	var want bytes.Buffer
	for i := range chunks {
		want.Write(bytes.Repeat([]byte{byte(i)}, 40))
	}
	go func() {
		b := want.Bytes()
		for i := range chunks {
			server.Write(b[i*40 : (i+1)*40])
			time.Sleep(gap)
		}
	}()
	got := make([]byte, want.Len())
	// Read in MQTT-like pieces: a byte, then the rest, as paho does.
	for off := 0; off < len(got); {
		n := 1
		if off%40 != 0 {
			n = 40 - off%40
		}
		if _, err := io.ReadFull(conn, got[off:off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes read through the coalescing connection differ from those written")
	}
	return cc.reads.Load()
}

// TestReadWaitGathersSmallWrites checks what the wait is for: small
// messages trickling in are read many per system call instead of one each.
// The two counts come from one run and are compared as a ratio.
func TestReadWaitGathersSmallWrites(t *testing.T) {
	const chunks = 60
	eager := readSpaced(t, chunks, time.Millisecond, 0)
	patient := readSpaced(t, chunks, time.Millisecond, 15*time.Millisecond)
	t.Logf("socket reads for %d spaced writes: %d without waiting, %d with a 15ms wait", chunks, eager, patient)
	if patient*3 > eager {
		t.Fatalf("waiting after small reads should cut socket reads at least threefold: %d without, %d with", eager, patient)
	}
}

// TestReadLargePacket reads a packet larger than the buffer and
// a connection that ends mid-stream.
func TestReadLargePacket(t *testing.T) {
	client, server := tcpPair(t)
	conn := NewConn(client, time.Millisecond, false)
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*readBufferSize/16+7)
	go func() {
		server.Write(big)
		server.Close()
	}()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("large packet corrupted")
	}
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the peer closed: n=%d err=%v, want 0, EOF", n, err)
	}
}

// countingWriter counts the writes that reach the connection.
type countingWriter struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// Many small packets written at once (the PUBACKs of a burst of QoS 1
// messages) go out in far fewer system calls, in order and unchanged, and
// Close sends what is still queued.
func TestWritesCoalesceAndCloseFlushes(t *testing.T) {
	client, server := tcpPair(t)
	cw := &countingWriter{Conn: client}
	conn := NewConn(cw, 0, false)
	const packets = 2000
	var want bytes.Buffer
	for i := range packets {
		p := []byte{0x40, 0x02, byte(i >> 8), byte(i)} // a PUBACK
		want.Write(p)
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer got %d bytes, want the %d written, in order", len(b), want.Len())
	}
	t.Logf("%d packets in %d writes", packets, cw.writes.Load())
	if w := cw.writes.Load(); w*10 > packets {
		t.Fatalf("%d packets took %d writes: not coalesced", packets, w)
	}
	if _, err := conn.Write([]byte{1}); err == nil {
		t.Fatal("write after Close succeeded")
	}
}

// A broken connection is reported by the next Write.
func TestWriteReportsBrokenConnection(t *testing.T) {
	client, server := tcpPair(t)
	conn := NewConn(client, 0, false)
	server.Close()
	client.Close() // the flusher's next write fails
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := conn.Write([]byte("x")); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes keep succeeding on a closed connection")
		}
		time.Sleep(time.Millisecond)
	}
	conn.Abort()
}

// A peer that sends one message and waits for its acknowledgement before
// the next (a broker's QoS 1 in-flight window of 1) gains nothing from
// waiting: every wait would cost a full readWait per message. The Conn
// must notice and read eagerly, trying a wait again only now and then.
func TestReadWaitBacksOffForAWindowBoundPeer(t *testing.T) {
	client, server := tcpPair(t)
	conn := NewConn(client, 20*time.Millisecond, true)
	const messages = 300
	go func() {
		ack := make([]byte, 1)
		for i := range messages {
			if _, err := server.Write([]byte{byte(i)}); err != nil {
				return
			}
			if _, err := io.ReadFull(server, ack); err != nil {
				return
			}
		}
	}()
	b := make([]byte, 1)
	for i := range messages {
		if _, err := io.ReadFull(conn, b); err != nil || b[0] != byte(i) {
			t.Fatalf("message %d: got %v, %v", i, b, err)
		}
		if _, err := conn.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d lock-step messages, %d reads waited", messages, conn.waits)
	if conn.waits*10 > messages {
		t.Fatalf("%d of %d reads waited for a peer that waits for us", conn.waits, messages)
	}
}

// A cut connection's reader gets ErrCut, not the closed-connection error
// paho keeps quiet about; an aborted one gets the ordinary error.
func TestCutIsReportedToTheReader(t *testing.T) {
	for _, cut := range []bool{true, false} {
		client, server := tcpPair(t)
		defer server.Close()
		c := NewConn(client, 0, true)
		errc := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 16))
			errc <- err
		}()
		if cut {
			c.Cut()
		} else {
			c.Abort()
		}
		err := <-errc
		if got := errors.Is(err, ErrCut); got != cut {
			t.Errorf("cut=%v: Read error %v", cut, err)
		}
	}
}
