package mqttsub

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sensorgate/sensorgate/ingest"
)

// StatePrefix is the prefix of the state keys of the receipts of a source
// with this client id: "src/mqtt/<client_id>/", followed in each key by
// the packet id (2 bytes, big-endian); the value is the 8-byte hash of the
// message's topic and payload.
func StatePrefix(clientID string) []byte {
	return []byte("src/mqtt/" + clientID + "/")
}

// loadSeen fills the table of committed messages from the state the
// receipts of earlier runs left. Keys of another length or values that are
// not 8 bytes are not ours (another client id that starts like this one,
// or a later encoding) and are skipped.
func (s *Subscriber) loadSeen(state func([]byte, func(k, v []byte) error) error) error {
	n := 0
	err := state(s.keyPrefix, func(k, v []byte) error {
		if len(k) != len(s.keyPrefix)+2 || len(v) != 8 {
			return nil
		}
		if h := binary.BigEndian.Uint64(v); h != 0 {
			s.seen.put(binary.BigEndian.Uint16(k[len(s.keyPrefix):]), h)
			n++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mqttsub: load the committed messages of %s: %w", s.cfg.ClientID, err)
	}
	s.log.Info("mqttsub: committed messages loaded", "client_id", s.cfg.ClientID, "entries", n)
	return nil
}

// settleLogAfter is how long a wait for receipts goes unmentioned.
const settleLogAfter = 5 * time.Second

// waitSettled waits, before a connection with a persistent session, until
// every receipt handed out has been settled by the engine (its commit
// cadence bounds that), or ctx ends (false).
func (s *Subscriber) waitSettled(ctx context.Context) bool {
	if *s.cfg.CleanSession || s.pending.Load() == 0 {
		return true
	}
	start := time.Now()
	every := settleLogAfter
	if s.settleLogEvery > 0 {
		every = s.settleLogEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for s.pending.Load() > 0 {
		select {
		case <-s.settled:
		case <-tick.C:
			s.log.Warn("mqttsub: waiting for the engine to commit messages before connecting again",
				"broker", s.cfg.Broker, "pending", s.pending.Load(), "waited", time.Since(start).Round(time.Second))
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// The acknowledgements of one connection, in the order the messages
// arrived (MQTT 3.1.1 §4.6: a client acknowledges in receive order). Every
// QoS 1/2 message takes a slot when Run handles it; a slot becomes done
// when its readings were handed on (not durable), when the engine reports
// the commit of its receipt (durable), or at once (nothing to commit: a
// bad payload, a recognised redelivery). flush pops done slots from the
// head and acknowledges them; a failed slot stops the flushing for good,
// since nothing after it may be acknowledged before it.
type ackQueue struct {
	s    *Subscriber
	wake chan struct{} // tells the acker goroutine to flush
	kick chan struct{} // tells Run to cut the connection (a failed commit)
	dead atomic.Bool   // its connection is gone: a failure kicks nobody

	mu   sync.Mutex
	ring []*ackSlot // slots in receive order from head; reused
	head int
	n    int

	// flushMu makes one flusher at a time, so that acknowledgements leave
	// in order although Run and the acker goroutine both flush; want is a
	// flush asked for while another was running (see flush).
	flushMu sync.Mutex
	want    atomic.Bool
	batch   []ackItem // owned by the holder of flushMu
}

type ackItem struct {
	msg     mqtt.Message
	durable bool
}

type slotState uint8

const (
	slotFree    slotState = iota
	slotWaiting           // handed on, waiting (for the hand-off or the commit)
	slotDone              // may be acknowledged in its turn
	slotFailed            // never acknowledged, nor anything after it
)

// An ackSlot is one message's place in the queue. Its receipt is what the
// last reading of a durable message carries; the slot is reused once it
// was popped, so a receipt costs no allocation after the first messages.
type ackSlot struct {
	q       *ackQueue
	msg     mqtt.Message
	state   slotState
	durable bool // a receipt is out (counted in Subscriber.pending)
	id      uint16
	hash    uint64
	rc      ingest.Receipt
	key     []byte // keyPrefix + the packet id
	val     [8]byte
}

func newAckQueue(s *Subscriber, wake, kick chan struct{}) *ackQueue {
	return &ackQueue{s: s, wake: wake, kick: kick, ring: make([]*ackSlot, 64)}
}

// push gives m the next place in the queue.
func (q *ackQueue) push(m mqtt.Message) *ackSlot {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == len(q.ring) {
		// Slots that are still out keep their pointers: only the ring grows.
		ring := make([]*ackSlot, 2*len(q.ring))
		for i := 0; i < q.n; i++ {
			ring[i] = q.ring[(q.head+i)%len(q.ring)]
		}
		q.ring, q.head = ring, 0
	}
	i := (q.head + q.n) % len(q.ring)
	sl := q.ring[i]
	if sl == nil {
		sl = &ackSlot{q: q, key: make([]byte, len(q.s.keyPrefix)+2)}
		copy(sl.key, q.s.keyPrefix)
		sl.rc.Done = sl.settle // once per slot: the one allocation of a receipt
		q.ring[i] = sl
	}
	sl.msg, sl.state, sl.durable = m, slotWaiting, false
	q.n++
	return sl
}

// receipt arms sl for a durable message whose (topic, payload) hashes to h:
// the engine writes Key/Value with the commit, and its Done settles sl.
func (q *ackQueue) receipt(sl *ackSlot, h uint64) *ingest.Receipt {
	q.mu.Lock()
	sl.durable, sl.id, sl.hash = true, sl.msg.MessageID(), h
	binary.BigEndian.PutUint16(sl.key[len(sl.key)-2:], sl.id)
	binary.BigEndian.PutUint64(sl.val[:], h)
	sl.rc.Key, sl.rc.Value = sl.key, sl.val[:]
	q.mu.Unlock()
	q.s.pending.Add(1)
	return &sl.rc
}

// done marks a slot whose message needs no commit (or whose readings were
// handed on) and flushes on the caller's goroutine.
func (q *ackQueue) done(sl *ackSlot) {
	q.mu.Lock()
	if sl.state == slotWaiting {
		sl.state = slotDone
	}
	q.mu.Unlock()
	q.flush()
}

// abandon marks a slot whose readings could not all be handed on (Run was
// stopped): it is never acknowledged, nor anything after it.
func (q *ackQueue) abandon(sl *ackSlot) {
	q.mu.Lock()
	if sl.state == slotWaiting {
		sl.state = slotFailed
	}
	q.mu.Unlock()
	if sl.durable {
		// Its receipt never reached the engine: nobody else will settle it.
		q.s.unpend()
	}
}

// settle is the receipt's Done. It may be called on any goroutine, also
// after Run returned; it never blocks and never acknowledges itself (paho's
// Ack can wait for the network): the acker goroutine does.
func (sl *ackSlot) settle(err error) {
	q := sl.q
	s := q.s
	q.mu.Lock()
	if sl.state != slotWaiting || !sl.durable {
		q.mu.Unlock()
		return // a second Done: the contract says once, do no harm
	}
	if err == nil {
		// Before the slot counts as settled: Run waits for the settled
		// receipts before it reconnects, and the redelivery it then gets
		// must find this entry.
		s.seen.put(sl.id, sl.hash)
		sl.state = slotDone
	} else {
		sl.state = slotFailed
	}
	q.mu.Unlock()
	s.unpend()
	if err != nil {
		s.ackFailures.Add(1)
		if s.ackFailLog.Allow() {
			s.log.Error("mqttsub: the engine could not commit a message; reconnecting so that the broker delivers it again",
				"broker", s.cfg.Broker, "packet_id", sl.id, "err", err, "failures", s.ackFailures.Load())
		}
		if !q.dead.Load() {
			select {
			case q.kick <- struct{}{}:
			default:
			}
		}
		return
	}
	q.want.Store(true)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// flush acknowledges the done slots at the head, in order. Whoever finds
// another flush running leaves its request in want, which the running one
// sees before it stops.
func (q *ackQueue) flush() {
	q.want.Store(true)
	for q.want.Load() {
		if !q.flushMu.TryLock() {
			return
		}
		q.want.Store(false)
		for {
			q.batch = q.pop(q.batch[:0])
			if len(q.batch) == 0 {
				break
			}
			var durable uint64
			for i, it := range q.batch {
				it.msg.Ack()
				if it.durable {
					durable++
				}
				q.batch[i] = ackItem{}
			}
			q.s.durableAcked.Add(durable)
		}
		q.flushMu.Unlock()
	}
}

// pop takes up to 256 done slots from the head (fewer calls of Ack under
// the lock would not make them cheaper; the bound keeps the batch small).
func (q *ackQueue) pop(batch []ackItem) []ackItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n > 0 && len(batch) < 256 {
		sl := q.ring[q.head]
		if sl.state != slotDone {
			break // waiting, or failed: nothing after it goes either
		}
		batch = append(batch, ackItem{msg: sl.msg, durable: sl.durable})
		sl.msg, sl.state, sl.durable = nil, slotFree, false
		sl.rc.Key, sl.rc.Value = nil, nil
		q.head = (q.head + 1) % len(q.ring)
		q.n--
	}
	return batch
}

// unpend counts one receipt less and wakes a Run waiting for none.
func (s *Subscriber) unpend() {
	if s.pending.Add(-1) == 0 {
		select {
		case s.settled <- struct{}{}:
		default:
		}
	}
}

// seenTable maps packet ids to the hash of the (topic, payload) of the
// last durable message committed under that id: the messages a broker may
// deliver again because their PUBACK did not reach it. 64k ids × 8 bytes
// (512 KiB), allocated only by a source with durable QoS 1/2 subscriptions;
// 0 means no entry (hashOf never returns 0).
type seenTable struct {
	mu sync.Mutex
	h  []uint64
}

func (t *seenTable) put(id uint16, h uint64) {
	t.mu.Lock()
	if t.h == nil {
		t.h = make([]uint64, 1<<16)
	}
	t.h[id] = h
	t.mu.Unlock()
}

func (t *seenTable) has(id uint16, h uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.h != nil && t.h[id] == h
}

// forget drops id's entry: a first delivery (DUP=0) under id shows that the
// broker had our PUBACK for the message committed under it before.
func (t *seenTable) forget(id uint16) {
	t.mu.Lock()
	if t.h != nil {
		t.h[id] = 0
	}
	t.mu.Unlock()
}

// hashOf is FNV-1a (64 bits) over the topic, a 0 byte (never part of an
// MQTT topic) and the payload: stable across processes, since the table
// is persisted, and allocation-free.
func hashOf(topic string, payload []byte) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(topic); i++ {
		h = (h ^ uint64(topic[i])) * prime
	}
	h *= prime // the 0 separator
	for _, b := range payload {
		h = (h ^ uint64(b)) * prime
	}
	if h == 0 {
		h = 1
	}
	return h
}

// finishMessage hands on the rest of a durable message whose first
// readings the pipeline already has, when Run is told to stop in the
// middle of it: the pipeline keeps running until the sources have
// returned, so this only waits for room, for at most drainMax (a pipeline
// that stopped taking readings leaves the message split: documented).
func (s *Subscriber) finishMessage(out chan<- ingest.Reading, rest []ingest.Reading) bool {
	t := time.NewTimer(drainMax)
	defer t.Stop()
	for i := range rest {
		select {
		case out <- rest[i]:
		case <-t.C:
			return false
		}
	}
	return true
}

// clearHeld drops the receipt and the More marks from buf, which is reused.
func clearHeld(buf []ingest.Reading) {
	for i := range buf {
		buf[i].Receipt, buf[i].More = nil, false
	}
}

// codeIDInUse is the MQTT 5 reason "packet identifier in use", which mochi
// also sends to MQTT 3.1.1 clients in a SUBACK (see onConnect).
const codeIDInUse = 0x91

// drainQueued hands on the messages queued when Run was told to stop, and
// no more, for a durable source on a persistent session: nothing left
// unacknowledged is lost, the broker delivers it again at the next
// connect, and a stop under steady input takes milliseconds instead of
// drain's drainMax (the queue never stays quiet while the broker sends).
func (s *Subscriber) drainQueued(ctx context.Context, queue chan item, out chan<- ingest.Reading, buf []ingest.Reading, acks *ackQueue) {
	for range len(queue) {
		var ok bool
		if buf, ok = s.handle(ctx, <-queue, buf[:0], out, acks); !ok {
			return
		}
	}
}
