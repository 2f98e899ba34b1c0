package test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	ppk "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
	"github.com/sensorgate/sensorgate/uplink"
)

// uplBenchRecords is the backlog size of the drain benchmarks
// (UPL_BENCH_RECORDS overrides the default of 1,000,000).
func uplBenchRecords() int {
	if v, err := strconv.Atoi(os.Getenv("UPL_BENCH_RECORDS")); err == nil && v > 0 {
		return v
	}
	return 1_000_000
}

// uplBacklog opens an outbox in dir holding n summaries and returns it
// with one sample payload.
func uplBacklog(b *testing.B, dir string, n int) (*buffer.Outbox, []byte) {
	ob, err := buffer.Open(filepath.Join(dir, "outbox.db"), buffer.Config{MaxBytes: 4 << 30, MaxFileSize: 8 << 30, CompactMinSize: -1}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var sample []byte
	const chunk = 10000
	payloads := make([][]byte, 0, chunk)
	for i := 0; i < n; i += chunk {
		payloads = payloads[:0]
		for j := i; j < min(i+chunk, n); j++ {
			p, err := ingest.AppendSummary(nil, &ingest.Summary{ID: ingest.SummaryID("w", "sensor-"+strconv.Itoa(j%1000), "", "temperature", int64(j), int64(j+1)),
				Window: "w", Sensor: "sensor-" + strconv.Itoa(j%1000), Metric: "temperature", Unit: "Cel",
				Start: 1700000000e9 + int64(j)*1e10, End: 1700000000e9 + int64(j+1)*1e10,
				Count: 10, Sum: 215.5, Min: 20.5, Max: 22.5, Mean: 21.55, Stddev: 0.6})
			if err != nil {
				b.Fatal(err)
			}
			payloads = append(payloads, p)
			sample = p
		}
		if err := ob.Append(context.Background(), buffer.LaneSummaries, payloads...); err != nil {
			b.Fatal(err)
		}
	}
	return ob, sample
}

// uplDrain runs u until the outbox has acknowledged n records and returns
// the time it took.
func uplDrain(b *testing.B, u *uplink.Uplink, n int) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- u.Run(ctx) }()
	for u.Stats().Acked < uint64(n) {
		time.Sleep(time.Millisecond)
		if time.Since(start) > 30*time.Minute {
			b.Fatalf("drain stuck: %+v", u.Stats())
		}
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return elapsed
}

// BenchmarkUplinkDrainMQTT drains a backlog of records from a real outbox
// to a local mosquitto (QoS 1, one record per message, 64 in flight) and,
// in the same run, measures the broker-only ceiling: a bare paho client
// publishing the same number of messages of the same size with the same
// window straight to the broker.
//
//	UPL_BENCH_RECORDS=1000000 go test ./test -run '^$' -bench BenchmarkUplinkDrainMQTT -benchtime 1x
func BenchmarkUplinkDrainMQTT(b *testing.B) {
	n := uplBenchRecords()
	mq := uplStartMosquitto(b, "")
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ob, _ := uplBacklog(b, b.TempDir(), n)
		cfg := uplink.Config{Name: "bench", Type: "mqtt", URL: "tcp://" + mq.Addr(), MaxInflight: uplBenchInflight(), DisableStatus: true,
			BatchSize: uplBenchBatch()}
		u, err := uplink.New(cfg, ob, uplink.Options{Gateway: "gw-1"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		elapsed := uplDrain(b, u, n)
		b.StopTimer()
		ob.Close()
		// The broker-only ceiling with payloads of the same size.
		payload := bytes.Repeat([]byte{'x'}, int(u.Stats().Bytes/u.Stats().Messages))
		ceiling := uplBareMQTT(b, mq.Addr(), int(u.Stats().Messages), uplBenchInflight(), payload)
		b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
		b.ReportMetric(float64(u.Stats().Messages)/ceiling.Seconds(), "ceiling-msgs/s")
		b.ReportMetric(float64(u.Stats().Messages)/elapsed.Seconds(), "msgs/s")
		b.ReportMetric(100*ceiling.Seconds()/elapsed.Seconds(), "%-of-ceiling")
		b.StartTimer()
	}
}

// uplBareMQTT is the broker-only ceiling: a minimal MQTT client that
// writes n QoS 1 PUBLISH packets through a buffered writer, with at most
// window unacknowledged, and returns how long it took until the last
// PUBACK. No outbox, no encoding, no paho: only what the broker must do.
func uplBareMQTT(b *testing.B, addr string, n, window int, payload []byte) time.Duration {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cp := ppk.NewControlPacket(ppk.Connect).(*ppk.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion, cp.CleanSession, cp.ClientIdentifier, cp.Keepalive = "MQTT", 4, true, "upl-bare", 60
	if err := cp.Write(conn); err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	if ack, err := ppk.ReadPacket(r); err != nil || ack.(*ppk.ConnackPacket).ReturnCode != 0 {
		b.Fatalf("bare connect: %v %v", ack, err)
	}
	sem := make(chan struct{}, window)
	acked := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if _, err := ppk.ReadPacket(r); err != nil {
				acked <- err
				return
			}
			<-sem
		}
		acked <- nil
	}()
	w := bufio.NewWriterSize(conn, 64<<10)
	pub := ppk.NewControlPacket(ppk.Publish).(*ppk.PublishPacket)
	pub.Qos, pub.TopicName, pub.Payload = 1, "bench/bare", payload
	start := time.Now()
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		default:
			w.Flush() // window full: push out what is buffered, then wait
			sem <- struct{}{}
		}
		pub.MessageID = uint16(i%65535 + 1)
		if err := pub.Write(w); err != nil {
			b.Fatal(err)
		}
		if w.Buffered() > 32<<10 {
			w.Flush()
		}
	}
	w.Flush()
	if err := <-acked; err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkUplinkDrainHTTP drains a backlog to a local HTTP server (JSON
// batches of 500 records) and, in the same run, measures the server-only
// ceiling: a bare client posting the same number of batches of the same
// size.
//
//	UPL_BENCH_RECORDS=1000000 go test ./test -run '^$' -bench BenchmarkUplinkDrainHTTP -benchtime 1x
func BenchmarkUplinkDrainHTTP(b *testing.B) {
	n := uplBenchRecords()
	var bodyBytes atomic.Int64
	var reqs atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, _ := io.Copy(io.Discard, r.Body)
		bodyBytes.Add(m)
		reqs.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	const batch = 500
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ob, _ := uplBacklog(b, b.TempDir(), n)
		u, err := uplink.New(uplink.Config{Name: "bench", Type: "http", URL: srv.URL, BatchSize: batch, BatchBytes: 4 << 20},
			ob, uplink.Options{Gateway: "gw-1"})
		if err != nil {
			b.Fatal(err)
		}
		bodyBytes.Store(0)
		reqs.Store(0)
		b.StartTimer()
		elapsed := uplDrain(b, u, n)
		b.StopTimer()
		ob.Close()
		avg := int(bodyBytes.Load() / max(reqs.Load(), 1))
		body := bytes.Repeat([]byte{'x'}, avg)
		nreq := int(reqs.Load())
		start := time.Now()
		for j := 0; j < nreq; j++ {
			resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		ceiling := time.Since(start)
		b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
		b.ReportMetric(float64(n)/ceiling.Seconds(), "ceiling-records/s")
		b.ReportMetric(100*ceiling.Seconds()/elapsed.Seconds(), "%-of-ceiling")
		b.StartTimer()
	}
}

// uplBenchBatch is the MQTT batch size of the drain benchmark
// (UPL_BENCH_BATCH; default 1, one record per message).
func uplBenchBatch() int {
	if v, err := strconv.Atoi(os.Getenv("UPL_BENCH_BATCH")); err == nil && v > 0 {
		return v
	}
	return 1
}

// uplBenchInflight is the MQTT window of the drain benchmark
// (UPL_BENCH_INFLIGHT overrides the uplink's default of 64).
func uplBenchInflight() int {
	if v, err := strconv.Atoi(os.Getenv("UPL_BENCH_INFLIGHT")); err == nil && v > 0 {
		return v
	}
	return uplink.DefaultMaxInflight
}
