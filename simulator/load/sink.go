package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// loadSink is one connection of a load run.
type loadSink interface {
	// publish sends or buffers one message; payload may be reused as soon
	// as it returns. An error means the connection is lost.
	publish(ctx context.Context, topic string, payload []byte) error
	// flush pushes buffered messages out (before the publisher sleeps).
	flush() error
	// close waits for the messages in flight and disconnects; idempotent.
	close()
}

// pahoSink publishes through paho (any QoS, any broker URL paho supports).
type pahoSink struct {
	client mqtt.Client
	qos    byte
	tokens chan mqtt.Token
	errs   *atomic.Uint64
	wg     sync.WaitGroup
	once   sync.Once
}

func dialPaho(cfg *Config, id string, sent, errs *atomic.Uint64) (*pahoSink, error) {
	o := mqtt.NewClientOptions().AddBroker(cfg.Broker).SetClientID(id).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).SetOrderMatters(false)
	if cfg.Username != "" {
		o.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		err := tok.Error()
		if err == nil {
			err = errors.New("timeout")
		}
		return nil, fmt.Errorf("load: connect %s: %w", cfg.Broker, err)
	}
	k := &pahoSink{client: c, qos: cfg.QoS, tokens: make(chan mqtt.Token, cfg.Inflight), errs: errs}
	// Tokens are waited on by a second goroutine, which bounds the number of
	// messages in flight for QoS 1 and 2.
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		for tok := range k.tokens {
			tok.Wait()
			if tok.Error() != nil {
				errs.Add(1)
			} else {
				sent.Add(1)
			}
		}
	}()
	return k, nil
}

// errLost is returned when a paho connection is gone (auto-reconnect is
// off: a load run does not hide a broker outage).
var errLost = errors.New("load: connection lost")

func (k *pahoSink) publish(ctx context.Context, topic string, payload []byte) error {
	if !k.client.IsConnectionOpen() {
		k.errs.Add(1)
		return errLost
	}
	tok := k.client.Publish(topic, k.qos, false, bytes.Clone(payload)) // paho keeps the slice
	// The message is on its way and already in the truth: its token must
	// be waited for, so that a stop (SIGINT) counts it as sent or failed.
	// A select with ctx.Done() beside the send could drop it at random.
	select {
	case k.tokens <- tok:
		return nil
	default:
	}
	select {
	case k.tokens <- tok:
		return nil
	case <-ctx.Done():
		// Cancelled while every slot is in flight: wait for this one
		// anyway (the waiter goroutine frees a slot as tokens complete).
		k.tokens <- tok
		return ctx.Err()
	}
}

func (k *pahoSink) flush() error { return nil }

func (k *pahoSink) close() {
	k.once.Do(func() {
		close(k.tokens)
		k.wg.Wait()
		k.client.Disconnect(500)
	})
}

// rawScheme reports whether the broker URL is plain TCP, which the raw
// publisher speaks.
func rawScheme(broker string) bool {
	u, err := url.Parse(broker)
	return err == nil && (u.Scheme == "tcp" || u.Scheme == "mqtt") && u.Host != ""
}

// rawSink is a minimal MQTT 3.1.1 QoS 0 publisher (OASIS MQTT 3.1.1 §3.1
// CONNECT, §3.2 CONNACK, §3.3 PUBLISH, §3.14 DISCONNECT): packets go into a
// buffer that is written out when full and whenever the publisher is about
// to sleep, so at 20,000 msg/s a connection makes a few hundred writes a
// second instead of one per message. Keep-alive is off, so the broker sends
// nothing after the CONNACK.
type rawSink struct {
	conn    net.Conn
	w       *bufio.Writer
	hdr     []byte
	pending uint64
	sent    *atomic.Uint64
	errs    *atomic.Uint64
	err     error
	n       int // messages since the write deadline was refreshed
	stop    func() bool
	once    sync.Once
}

// writeTimeout bounds a write to a broker that stopped reading.
const writeTimeout = 30 * time.Second

func dialRaw(ctx context.Context, broker, id, user, pass string, sent, errs *atomic.Uint64) (*rawSink, error) {
	u, err := url.Parse(broker)
	if err != nil {
		return nil, fmt.Errorf("load: broker %q: %w", broker, err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "1883")
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("load: connect %s: %w", broker, err)
	}
	k := &rawSink{conn: conn, w: bufio.NewWriterSize(conn, 64<<10), sent: sent, errs: errs}
	// CONNECT: protocol "MQTT" level 4, clean session, keep-alive 0.
	flags := byte(0x02)
	var body []byte
	body = appendString(body, "MQTT")
	body = append(body, 4, 0, 0, 0) // level, flags (set below), keep-alive 0
	body = appendString(body, id)
	if user != "" {
		flags |= 0x80
		body = appendString(body, user)
		if pass != "" {
			flags |= 0x40
			body = appendString(body, pass)
		}
	}
	body[7] = flags
	pkt := appendLength(append([]byte(nil), 0x10), len(body))
	pkt = append(pkt, body...)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var ack [4]byte
	if _, err := conn.Write(pkt); err == nil {
		_, err = io.ReadFull(conn, ack[:])
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("load: connect %s: %w", broker, err)
	}
	if ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0 {
		conn.Close()
		return nil, fmt.Errorf("load: connect %s: refused (CONNACK % x)", broker, ack)
	}
	conn.SetDeadline(time.Now().Add(writeTimeout))
	// On cancellation a write blocked on a stalled broker gets 5 s more.
	k.stop = context.AfterFunc(ctx, func() { conn.SetWriteDeadline(time.Now().Add(5 * time.Second)) })
	return k, nil
}

func appendString(b []byte, s string) []byte {
	return append(append(b, byte(len(s)>>8), byte(len(s))), s...)
}

// appendLength appends an MQTT remaining length (§2.2.3).
func appendLength(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func (k *rawSink) fail(err error) error {
	if k.err == nil {
		k.err = err
	}
	k.errs.Add(k.pending)
	k.pending = 0
	return k.err
}

func (k *rawSink) publish(_ context.Context, topic string, payload []byte) error {
	if k.err != nil {
		k.errs.Add(1)
		return k.err
	}
	if k.n++; k.n >= 1024 {
		k.n = 0
		k.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	k.hdr = appendLength(append(k.hdr[:0], 0x30), 2+len(topic)+len(payload))
	k.hdr = appendString(k.hdr, topic)
	k.pending++
	if _, err := k.w.Write(k.hdr); err != nil {
		return k.fail(err)
	}
	if _, err := k.w.Write(payload); err != nil {
		return k.fail(err)
	}
	return nil
}

func (k *rawSink) flush() error {
	if k.err != nil {
		return k.err
	}
	if k.w.Buffered() > 0 {
		k.n = 0
		k.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := k.w.Flush(); err != nil {
			return k.fail(err)
		}
	}
	k.sent.Add(k.pending)
	k.pending = 0
	return nil
}

// close flushes, sends DISCONNECT and waits (up to 10 s) for the broker to
// close the connection, which it does after processing everything before
// the DISCONNECT: when close returns, the broker has every message.
func (k *rawSink) close() {
	k.once.Do(func() {
		k.stop()
		if k.flush() == nil {
			k.conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := k.conn.Write([]byte{0xE0, 0x00}); err == nil {
				io.Copy(io.Discard, k.conn)
			}
		}
		k.conn.Close()
	})
}
