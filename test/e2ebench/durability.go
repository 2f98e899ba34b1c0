package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Flash wear of one point, per reading the source took in; NaN where the
// binary or the kernel did not report it.
func (g *gatewayPoint) ioPerReading() float64 {
	if g.IOWritten < 0 || g.Ingested == 0 {
		return math.NaN()
	}
	return float64(g.IOWritten) / float64(g.Ingested)
}

func (g *gatewayPoint) outboxPerReading() float64 {
	if g.BytesWritten < 0 || g.Ingested == 0 {
		return math.NaN()
	}
	return float64(g.BytesWritten) / float64(g.Ingested)
}

func perSecond(n int64, secs float64) float64 {
	if n < 0 || secs <= 0 {
		return math.NaN()
	}
	return float64(n) / secs
}

func (g *gatewayPoint) txsPerSec() float64 { return perSecond(g.WriteTxs, g.MeasureSecs) }

func (g *gatewayPoint) checkpointsPerSec() float64 { return perSecond(g.Checkpoints, g.MeasureSecs) }

// medianOK is the median of the values that are not NaN (NaN when none is).
func medianOK(xs []float64) float64 {
	var ok []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			ok = append(ok, x)
		}
	}
	return median(ok)
}

func cell(v float64, format string) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf(format, v)
}

// wearLine is the stderr summary of a point's writes.
func wearLine(g *gatewayPoint) string {
	return fmt.Sprintf("wrote %s B/reading (%s), outbox %s B/reading, %s write txs/s, durable acks %d",
		cell(g.ioPerReading(), "%.0f"), g.IOField, cell(g.outboxPerReading(), "%.0f"), cell(g.txsPerSec(), "%.1f"), g.DurableAcks)
}

// ioFields names the /proc/PID/io fields the points used.
func ioFields(pts []*gatewayPoint) string {
	seen := map[string]bool{}
	var out []string
	for _, g := range pts {
		if g.IOField != "" && !seen[g.IOField] {
			seen[g.IOField] = true
			out = append(out, g.IOField)
		}
	}
	if len(out) == 0 {
		return "n/a"
	}
	return strings.Join(out, ", ")
}

// reportDurability prints the flash-wear table: per mode and rate, what the
// gateway wrote per reading and how often it committed.
func reportDurability(w io.Writer, res *results, modes []mode, rates []rateSpec) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Durability and flash wear, from load start until drained (messages of 2 readings; bytes written = the gateway process's /proc/PID/io %s, wchar counts every write(2), sockets included, and is used only where write_bytes is 0; outbox bytes = the pages bbolt wrote, WriteTxs its write transactions; durable acks = messages acknowledged after their commit, n/a: the binary does not count them; windows are flushed at stop %s):\n",
		ioFields(res.Gateway), yesNo(res.Caps.FlushOnStop, "by run --flush-on-stop", "by SIGTERM (this binary has no --flush-on-stop)"))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | rate | runs | achieved msg/s | loss (median / worst) | durable acks | bytes written per reading | outbox bytes per reading | outbox write txs/s | checkpoints/s |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, q := range modes {
		for _, r := range rates {
			var pts []*gatewayPoint
			for _, g := range res.Gateway {
				if g.Mode == q && g.RateArg == r.arg {
					pts = append(pts, g)
				}
			}
			if len(pts) == 0 {
				continue
			}
			var worst uint64
			for _, g := range pts {
				worst = max(worst, g.Loss)
			}
			acks := cell(medianOK(collect(pts, func(g *gatewayPoint) float64 {
				if g.DurableAcks < 0 {
					return math.NaN()
				}
				return float64(g.DurableAcks)
			})), "%.0f")
			if q.Durable && acks == "0" {
				acks += " (none after a commit: not durable)"
			}
			if q.InFlight > 0 && !res.Caps.InFlightKey {
				acks += " (gateway inflight not set: unknown key)"
			}
			fmt.Fprintf(w, "| %s | %s | %d | %.0f | %.0f / %d | %s | %s | %s | %s | %s |\n", q, r.arg, len(pts),
				median(collect(pts, func(g *gatewayPoint) float64 { return g.Load.Rate })),
				median(collect(pts, func(g *gatewayPoint) float64 { return float64(g.Loss) })), worst, acks,
				cell(medianOK(collect(pts, (*gatewayPoint).ioPerReading)), "%.0f"),
				cell(medianOK(collect(pts, (*gatewayPoint).outboxPerReading)), "%.0f"),
				cell(medianOK(collect(pts, (*gatewayPoint).txsPerSec)), "%.1f"),
				cell(medianOK(collect(pts, (*gatewayPoint).checkpointsPerSec)), "%.1f"))
		}
	}
}

// bestLossless is the highest achieved rate of a mode's points that lost
// nothing and passed the check (0 when none did).
func bestLossless(res *results, q mode) float64 {
	best := 0.0
	for _, g := range res.Gateway {
		if g.Mode == q && g.Repeat > 0 && g.Loss == 0 && g.Compare.Excess == 0 && g.Compare.ValueMismatch == 0 {
			best = math.Max(best, g.Load.Rate)
		}
	}
	return best
}

// wasDurable reports whether any point of q acknowledged a message after
// its commit.
func wasDurable(res *results, q mode) bool {
	for _, g := range res.Gateway {
		if g.Mode == q && g.DurableAcks > 0 {
			return true
		}
	}
	return false
}

// durabilityTargets checks issue 13's targets: durable QoS 1 at >= 90 % of
// the non-durable zero-loss rate with a raised in-flight window, and under
// 512 bytes written per durable reading at 100 and at 20k msg/s.
func durabilityTargets(w io.Writer, res *results, modes []mode) {
	for _, q := range modes {
		if q.Durable && !wasDurable(res, q) {
			fmt.Fprintf(w, "- QoS %s: **not shown** (no message was acknowledged after a commit: this binary is not durable)\n", q)
		}
	}
	for _, q := range modes {
		if !q.Durable || q.InFlight == 0 || !wasDurable(res, q) {
			continue
		}
		plain := mode{QoS: q.QoS, InFlight: q.InFlight}
		d, p := bestLossless(res, q), bestLossless(res, plain)
		if p == 0 {
			continue
		}
		fmt.Fprintf(w, "- QoS %s at >= 90%% of the zero-loss rate of QoS %s: %.0f vs %.0f msg/s (%.0f%%): %s\n",
			q, plain, d, p, 100*d/p, verdict(d >= 0.9*p))
	}
	for _, q := range modes {
		if !q.Durable || !wasDurable(res, q) {
			continue
		}
		for _, rate := range []float64{100, 20000} {
			var pts []*gatewayPoint
			for _, g := range res.Gateway {
				if g.Mode == q && g.Load.Target == rate {
					pts = append(pts, g)
				}
			}
			if len(pts) == 0 {
				continue
			}
			src, v := "/proc "+ioFields(pts), medianOK(collect(pts, (*gatewayPoint).ioPerReading))
			if ioFields(pts) != "write_bytes" {
				// wchar counts socket writes too: the outbox's own count
				// is closer to what the flash sees.
				src, v = "outbox BytesWritten", medianOK(collect(pts, (*gatewayPoint).outboxPerReading))
			}
			if math.IsNaN(v) {
				continue
			}
			fmt.Fprintf(w, "- QoS %s, %.0f msg/s: %.0f bytes written per reading (%s; target < 512): %s\n", q, rate, v, src, verdict(v < 512))
		}
	}
}

// reportStartup prints the --startup table.
func reportStartup(w io.Writer, res *results) {
	if len(res.Startup) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Start-up (QoS 1 durable, %d sensors, %s tumbling windows so that every reading stays in an open window; each fill publishes %d readings in messages of 2 at %.0f msg/s and waits until the gateway took them in and its writes settled; the restart is timed from exec until /healthz first answers and until the source counts the first new reading, a probe published every 50 ms; committed readings = what the gateway took in over every fill so far, held in its windows only if they survive a stop; open windows at first reading = what the restart restored plus the probe's window, 1 when nothing was restored):\n\n",
		res.Settings.Sensors, startupWindow, res.Settings.Startup, res.Settings.StartupRate)
	fmt.Fprintln(w, "| stopped by | committed readings | data dir MB | stop s | s to /healthz | s to first reading | open windows at first reading | window keys | redelivered |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, p := range res.Startup {
		stop := fmt.Sprintf("%.2f", p.StopSecs)
		if !p.StopOK {
			stop += " (not clean)"
		}
		fmt.Fprintf(w, "| %s | %d | %.2f | %s | %.2f | %.2f | %d | %d | %d |\n", p.Stop, p.Committed, float64(p.DataBytes)/(1<<20),
			stop, p.HealthSecs, p.FirstSecs, p.OpenWindows, p.Keys, p.Redelivered)
	}
	fmt.Fprintln(w)
	for _, p := range res.Startup {
		fmt.Fprintf(w, "- start-up with %d committed readings (after %s): %.2f s to /healthz, %.2f s to first reading; outbox file(s) %.2f MB\n",
			p.Committed, p.Stop, p.HealthSecs, p.FirstSecs, float64(p.DataBytes)/(1<<20))
	}
}
