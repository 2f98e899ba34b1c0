package mqttsub

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/ingest/decode"
	"github.com/sensorgate/sensorgate/test/mqtttest"
)

// BenchmarkSubscriberEndToEnd measures one JSON message through an
// in-process mochi broker, paho, the hand-off queue, the decoder and out,
// at QoS 0, QoS 1 acknowledged at hand-off (durable: false) and QoS 1
// durable, whose receipts the reader completes 64 at a time as an engine
// committing in batches would (broker CPU included: both run in this
// process). Reported: ns and allocations per message (two readings each),
// and messages dropped by the subscriber.
func BenchmarkSubscriberEndToEnd(b *testing.B) {
	for _, bc := range []struct {
		name    string
		qos     byte
		durable bool
	}{{"qos0", 0, false}, {"qos1", 1, false}, {"qos1-durable", 1, true}} {
		qos := bc.qos
		b.Run(bc.name, func(b *testing.B) {
			srv := mqtttest.StartBroker(b, mqtttest.BrokerOptions{})
			addr := srv.Addr()
			s, err := New(Config{Broker: "tcp://" + addr, QueueSize: 4096, Subscriptions: []Subscription{
				{Topic: "bench/+/t", QoS: qos, Durable: &bc.durable, JSON: decode.JSONMapping{SensorTopicSegment: intp(1), TimeField: "ts", TimeFormat: decode.TimeUnixMS}},
			}}, Options{Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			out := make(chan ingest.Reading, 4096)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx, out) }()
			defer func() { cancel(); <-done }()
			mqtttest.WaitFor(b, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "subscription")
			payloads := make([][]byte, 100)
			topics := make([]string, 100)
			for i := range payloads {
				payloads[i] = []byte(fmt.Sprintf(`{"ts":%d,"temperature":%d.5,"humidity":40}`, 1714564800000+int64(i), i))
				topics[i] = fmt.Sprintf("bench/s%03d/t", i)
			}
			// Closed loop: at most 1000 messages outstanding, so that the
			// broker never has to drop (mochi drops QoS 0 and 1 messages
			// when a client's write queue is full).
			var received atomic.Int64
			readerDone := make(chan struct{})
			go func() {
				defer close(readerDone)
				var receipts []*ingest.Receipt
				for n := 0; n < 2*b.N; n++ {
					select {
					case r := <-out:
						if r.Receipt != nil {
							if receipts = append(receipts, r.Receipt); len(receipts) == 64 {
								for _, rc := range receipts {
									rc.Committed(nil)
								}
								receipts = receipts[:0]
							}
						}
						if n%2 == 1 {
							received.Add(1)
						}
					case <-time.After(10 * time.Second):
						return
					}
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				for int64(i)-received.Load() >= 1000 {
					runtime.Gosched()
				}
				if err := srv.Publish(topics[i%100], payloads[i%100], false, qos); err != nil {
					b.Fatal(err)
				}
			}
			<-readerDone
			n := received.Load()
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(st.Dropped), "dropped")
			if n != int64(b.N) {
				b.Fatalf("%d of %d messages delivered (broker dropped %d)", n, b.N, srv.Server().Info.Clone().MessagesDropped)
			}
		})
	}
}

// BenchmarkSubscriberMosquitto feeds b.N JSON messages (1000 sensors, two
// metrics each) from mosquitto_pub through Debian's mosquitto to the
// subscriber and reports this process's CPU time per message (user+system,
// getrusage), the metric behind "CPU-seconds per million readings", and
// the rate. The durable variants complete receipts as an engine with a
// zero-latency commit would (when inflight receipts wait or out runs
// dry), with mosquitto's default in-flight window and with a raised one:
// the ceiling of held acks, commit cost not included.
func BenchmarkSubscriberMosquitto(b *testing.B) {
	pubBin := mqtttest.NeedTool(b, "mosquitto_pub", mqtttest.MosquittoClientsInstall)
	for _, bc := range []struct {
		name     string
		qos      byte
		durable  bool
		inflight int
	}{{"qos0", 0, false, 20}, {"qos1", 1, false, 20}, {"qos1-durable-inflight20", 1, true, 20}, {"qos1-durable-inflight1000", 1, true, 1000}} {
		qos := bc.qos
		b.Run(bc.name, func(b *testing.B) {
			m := mqtttest.StartMosquitto(b, mqtttest.MosquittoConfig{Conf: fmt.Sprintf("allow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages %d", bc.inflight)})
			addr := m.Addr()
			s, err := New(Config{Broker: "tcp://" + addr, QueueSize: 4096, InFlight: bc.inflight, Subscriptions: []Subscription{
				{Topic: "bench/t", QoS: qos, Durable: &bc.durable, JSON: decode.JSONMapping{SensorField: "id", TimeField: "ts", TimeFormat: decode.TimeUnixMS}},
			}}, Options{Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			out := make(chan ingest.Reading, 4096)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx, out) }()
			defer func() { cancel(); <-done }()
			var lines bytes.Buffer
			for i := range b.N {
				fmt.Fprintf(&lines, `{"id":"s%04d","ts":%d,"temperature":%d.25,"humidity":%d}`+"\n", i%1000, 1714564800000+int64(i), i%50, i%100)
			}
			mqtttest.WaitFor(b, waitLimit, func() bool { return s.Stats().Subscribed > 0 }, "the SUBACK")
			var received atomic.Int64
			readerDone := make(chan struct{})
			go func() {
				defer close(readerDone)
				var receipts []*ingest.Receipt
				commit := func() {
					for _, rc := range receipts {
						rc.Committed(nil)
					}
					receipts = receipts[:0]
				}
				for n := 0; n < 2*b.N; n++ {
					var r ingest.Reading
					select {
					case r = <-out:
					default:
						commit() // out ran dry: the engine's timer would commit now
						select {
						case r = <-out:
						case <-time.After(5 * time.Second):
							return
						}
					}
					if r.Receipt != nil {
						if receipts = append(receipts, r.Receipt); len(receipts) >= bc.inflight {
							commit()
						}
					}
					if n%2 == 1 {
						received.Add(1)
					}
				}
			}()
			cpu0 := cpuTime()
			t0 := time.Now()
			b.ResetTimer()
			_, port, _ := net.SplitHostPort(addr)
			// mosquitto_pub -l drops what is still queued when stdin ends,
			// so stdin stays open until everything was delivered.
			cmd := exec.Command(pubBin, "-h", "127.0.0.1", "-p", port, "-t", "bench/t", "-q", fmt.Sprint(qos), "-l")
			stdin, err := cmd.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			if _, err := stdin.Write(lines.Bytes()); err != nil {
				b.Fatal(err)
			}
			<-readerDone
			stdin.Close()
			cmd.Wait()
			b.StopTimer()
			cpu := cpuTime() - cpu0
			n := received.Load()
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/msg")
			b.ReportMetric(float64(n)/time.Since(t0).Seconds(), "msg/s")
			b.ReportMetric(float64(n), "delivered")
			b.ReportMetric(float64(s.Stats().Dropped), "dropped")
			// QoS 0 may be dropped by mosquitto itself under overload (not
			// our drop point, so not an error here); QoS 1 must arrive.
			if qos > 0 && n != int64(b.N) {
				b.Errorf("%d of %d delivered; stats %+v", n, b.N, s.Stats())
			}
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
