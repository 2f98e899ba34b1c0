package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func collect[T any](ps []T, f func(T) float64) []float64 {
	out := make([]float64, 0, len(ps))
	for _, p := range ps {
		out = append(out, f(p))
	}
	return out
}

// ceilings returns the broker-alone max runs of one QoS and in-flight
// window (q.brokerKey()).
func ceilings(res *results, q mode) []*brokerPoint {
	var out []*brokerPoint
	for _, b := range res.Broker {
		if b.Mode == q.brokerKey() && b.Load.Target == 0 {
			out = append(out, b)
		}
	}
	return out
}

func mb(kb float64) string { return fmt.Sprintf("%.1f", kb/1024) }

// report prints the markdown for BENCHMARKS.md: the machine, the command,
// the broker-alone ceilings, the gateway points (medians over repeats) and
// the targets with their verdicts.
func report(w io.Writer, res *results, modes []mode, rates []rateSpec) {
	m := res.Machine
	fmt.Fprintf(w, "### End-to-end through mosquitto (`%s`)\n\n", res.Command)
	fmt.Fprintf(w, "Machine: %d CPUs, %s, %s, %s, Linux %s. Run %s to %s (UTC); load average at start %s, at end %s.\n",
		m.CPUs, m.Model, m.Go, m.Mosquitto, m.Kernel, res.Started.Format("2006-01-02 15:04"), res.Finished.Format("15:04"), m.LoadStart, m.LoadEnd)
	genv := ""
	if res.Settings.GatewayEnv != "" {
		genv = ", gateway environment " + res.Settings.GatewayEnv
	}
	if res.Settings.SourceQueue > 0 {
		genv += fmt.Sprintf(", sources.mqtt[0].queue_size %d", res.Settings.SourceQueue)
	}
	if res.Settings.ReadingsQueue > 0 {
		genv += fmt.Sprintf(", gateway.queue_size %d", res.Settings.ReadingsQueue)
	}
	if len(res.Broker) == 0 && len(res.Gateway) == 0 && len(res.Startup) > 0 {
		// --startup-only: no matrix ran.
		fmt.Fprintf(w, "Settings: JSON payloads of 2 readings (temperature, humidity) per message, mosquitto max_queued_messages %d%s.\n", res.Settings.MaxQueued, genv)
		reportStartup(w, res)
		reportTail(w, res)
		return
	}
	fmt.Fprintf(w, "Settings: %d sensors, %s per point, %d repeat(s) (medians shown), %s tumbling windows, JSON payloads of 2 readings (temperature, humidity) per message, mosquitto max_queued_messages %d%s.\n\n",
		res.Settings.Sensors, res.Settings.Duration, res.Settings.Repeat, res.Settings.Window, res.Settings.MaxQueued, genv)

	fmt.Fprintln(w, "Broker alone (simulate -> mosquitto -> bare paho subscriber), publishing as fast as the load generator can:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| QoS (@ max_inflight_messages) | runs | published msg/s | delivered msg/s (ceiling) | delivered / published | broker CPU-s per M msgs |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	ceil := map[mode]float64{}
	for _, q := range modes {
		k := q.brokerKey()
		if _, done := ceil[k]; done {
			continue
		}
		bs := ceilings(res, k)
		if len(bs) == 0 {
			continue
		}
		ceil[k] = median(collect(bs, func(b *brokerPoint) float64 { return b.DeliveredPS }))
		fmt.Fprintf(w, "| %s | %d | %.0f | %.0f | %.4f | %.2f |\n", k, len(bs),
			median(collect(bs, func(b *brokerPoint) float64 { return b.Load.Rate })), ceil[k],
			median(collect(bs, func(b *brokerPoint) float64 { return float64(b.Delivered) / math.Max(1, float64(b.Load.Sent)) })),
			median(collect(bs, func(b *brokerPoint) float64 { return b.BrokerCPU / math.Max(1e-9, float64(b.Delivered)/1e6) })))
	}
	var ref []*brokerPoint
	for _, b := range res.Broker {
		if b.Load.Target > 0 {
			ref = append(ref, b)
		}
	}
	if len(ref) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Broker alone at the fixed rates (reference):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| QoS | rate | repeat | published msg/s | delivered | lost |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
		for _, b := range ref {
			fmt.Fprintf(w, "| %s | %.0f | %d | %.0f | %d | %d |\n", b.Mode, b.Load.Target, b.Repeat, b.Load.Rate, b.Delivered, b.Lost)
		}
	}

	if res.Settings.UplinkDown {
		reportUplinkDown(w, res)
		return
	}
	reportGateway(w, res, modes, rates, ceil)
	reportStartup(w, res)
	reportTail(w, res)
}

// reportGateway prints the gateway tables and the targets.
func reportGateway(w io.Writer, res *results, modes []mode, rates []rateSpec, ceil map[mode]float64) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Through the gateway (simulate -> mosquitto -> sensorgate -> summaries -> mosquitto -> collector); loss = readings sent (truth file) - readings counted in the summaries upstream; CPU and RSS are the gateway process's (/proc/PID/stat utime+stime from load start until drained, VmHWM):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | rate | runs | achieved msg/s | % of ceiling | readings sent | loss (median / worst) | CPU-s per M readings | CPU-s per M msgs | gateway/broker CPU | drain s | peak RSS MB | RSS drained MB (anon + file) | idle RSS MB (anon + file) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	type row struct {
		q    mode
		r    rateSpec
		pts  []*gatewayPoint
		ach  float64
		loss float64
		wst  uint64
	}
	var rows []row
	for _, q := range modes {
		for _, r := range rates {
			var pts []*gatewayPoint
			for _, g := range res.Gateway {
				if g.Mode == q && g.RateArg == r.arg {
					pts = append(pts, g)
				}
			}
			if len(pts) == 0 {
				fmt.Fprintf(w, "| %s | %s | 0 | skipped or failed (see below) | | | | | | | | | | |\n", q, r.arg)
				continue
			}
			rw := row{q: q, r: r, pts: pts}
			rw.ach = median(collect(pts, func(g *gatewayPoint) float64 { return g.Load.Rate }))
			rw.loss = median(collect(pts, func(g *gatewayPoint) float64 { return float64(g.Loss) }))
			for _, g := range pts {
				rw.wst = max(rw.wst, g.Loss)
			}
			rows = append(rows, rw)
			pct := fmt.Sprintf("%.0f%%", 100*median(collect(pts, func(g *gatewayPoint) float64 { return g.OfCeiling })))
			worstPct := 0.0
			for _, g := range pts {
				worstPct = math.Max(worstPct, g.LossPct)
			}
			lossCell := fmt.Sprintf("%.0f / %d", rw.loss, rw.wst)
			if rw.wst > 0 {
				lossCell += fmt.Sprintf(" (%.3f%%)", worstPct)
			}
			fmt.Fprintf(w, "| %s | %s | %d | %.0f | %s | %.0f | %s | %.2f | %.2f | %.2f | %.1f | %s | %s | %s |\n",
				q, r.arg, len(pts), rw.ach, pct,
				median(collect(pts, func(g *gatewayPoint) float64 { return float64(g.Load.Readings) })),
				lossCell,
				median(collect(pts, func(g *gatewayPoint) float64 { return g.CPUPerMR })),
				median(collect(pts, func(g *gatewayPoint) float64 { return g.CPUPerMM })),
				median(collect(pts, func(g *gatewayPoint) float64 { return g.CPU / math.Max(1e-9, g.BrokerCPU) })),
				median(collect(pts, func(g *gatewayPoint) float64 { return g.DrainSecs })),
				mb(median(collect(pts, func(g *gatewayPoint) float64 { return float64(g.PeakRSSKB) }))),
				fmt.Sprintf("%s (%s + %s)", mb(median(collect(pts, func(g *gatewayPoint) float64 { return float64(g.EndRSSKB) }))),
					mb(median(collect(pts, func(g *gatewayPoint) float64 { return float64(g.EndAnonKB) }))),
					mb(median(collect(pts, func(g *gatewayPoint) float64 { return float64(g.EndFileKB) })))),
				fmt.Sprintf("%s (%s + %s)", mb(median(collect(pts, func(g *gatewayPoint) float64 { return float64(g.IdleRSSKB) }))),
					mb(median(collect(pts, func(g *gatewayPoint) float64 { return float64(g.IdleAnonKB) }))),
					mb(median(collect(pts, func(g *gatewayPoint) float64 { return float64(g.IdleFileKB) })))))
		}
	}

	reportDurability(w, res, modes, rates)

	// Where the loss happened, for every point that lost something.
	var lossy []*gatewayPoint
	for _, g := range res.Gateway {
		if g.Loss > 0 || g.Compare.Excess > 0 || g.Notes != "" {
			lossy = append(lossy, g)
		}
	}
	if len(lossy) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Points with loss or check failures (received = MQTT messages the gateway's source got; broker dropped = mosquitto's $SYS publish/messages/dropped; dropped = the source's QoS 0 hand-off drops; late = readings the windows dropped as late; undelivered = left in the outbox at stop):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| mode | rate | rep | sent msgs | received | broker dropped | dropped | decode errors | late | loss | undelivered | notes |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, g := range lossy {
			fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s |\n", g.Mode, g.RateArg, g.Repeat,
				g.Load.Sent, g.Received, g.BrokerDrops, g.Dropped, g.DecodeErrs, g.Late, g.Loss, g.Undelivered, strings.TrimSuffix(g.Notes, "; "))
		}
	}

	// The end-to-end targets (docs/design.md, issue 13), under a heading
	// only when a point measured one.
	out := w
	var tw strings.Builder
	w = &tw
	if c, ok := ceil[mode{}]; ok && c > 0 {
		// Every QoS 0 run is one sample: its input rate as a fraction of
		// the ceiling of its own repeat, with or without loss. Zero loss
		// holds up to the highest lossless fraction below the lowest lossy
		// one.
		lowestLossy, best := math.Inf(1), 0.0
		for _, g := range res.Gateway {
			if g.Mode == (mode{}) && g.Repeat > 0 && g.Loss > 0 {
				lowestLossy = math.Min(lowestLossy, g.OfCeiling)
			}
		}
		for _, g := range res.Gateway {
			if g.Mode == (mode{}) && g.Repeat > 0 && g.Loss == 0 && g.OfCeiling < lowestLossy {
				best = math.Max(best, g.OfCeiling)
			}
		}
		lossy := "no QoS 0 run lost anything"
		if !math.IsInf(lowestLossy, 1) {
			lossy = fmt.Sprintf("the first loss at %.0f%%", 100*lowestLossy)
		}
		v := verdict(best >= 0.95)
		if best < 0.95 && math.IsInf(lowestLossy, 1) {
			v = "**not shown** (no run at 95% or more)"
		}
		fmt.Fprintf(w, "- Zero loss up to >= 95%% of the broker-alone ceiling at QoS 0 (each run against the ceiling of its own repeat; median ceiling %.0f msg/s): zero loss up to %.0f%%, %s: %s\n",
			c, 100*best, lossy, v)
	}
	for _, q := range modes {
		for _, rw := range rows {
			if rw.q != q || rw.r.rate != 20000 {
				continue
			}
			cpu := median(collect(rw.pts, func(g *gatewayPoint) float64 { return g.CPUPerMR }))
			cpuM := median(collect(rw.pts, func(g *gatewayPoint) float64 { return g.CPUPerMM }))
			rss := median(collect(rw.pts, func(g *gatewayPoint) float64 { return float64(g.PeakRSSKB) }))
			idle := median(collect(rw.pts, func(g *gatewayPoint) float64 { return float64(g.IdleRSSKB) }))
			fmt.Fprintf(w, "- QoS %s, 20k msg/s: %.2f CPU-s per million readings (%.2f per million messages; target <= 4): %s\n", q, cpu, cpuM, verdict(cpu <= 4))
			fmt.Fprintf(w, "- QoS %s, 20k msg/s, %d sensors: peak RSS %s MB (target < 15): %s; idle RSS %s MB (target < 10): %s\n",
				q, res.Settings.Sensors, mb(rss), verdict(rss < 15*1024), mb(idle), verdict(idle < 10*1024))
		}
	}
	durabilityTargets(w, res, modes)
	if tw.Len() > 0 {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "Targets (docs/design.md and issue 13, end to end):")
		fmt.Fprintln(out)
		fmt.Fprint(out, tw.String())
	}
}

// reportTail prints what was skipped or failed and the profile.
func reportTail(w io.Writer, res *results) {
	if len(res.Skipped) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Skipped:")
		for _, s := range res.Skipped {
			fmt.Fprintln(w, "-", s)
		}
	}
	if len(res.Failures) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Failures:")
		for _, s := range res.Failures {
			fmt.Fprintln(w, "-", s)
		}
	}
	if res.Breakdown != "" {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Where the gateway's CPU goes (profiled point, cumulative share of the CPU samples per goroutine):")
		fmt.Fprintln(w)
		fmt.Fprint(w, res.Breakdown)
	}
	if res.Profile != "" {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "```")
		fmt.Fprint(w, res.Profile)
		fmt.Fprintln(w, "```")
	}
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// reportUplinkDown prints the --uplink-down table: memory while the
// summaries pile up in the outbox.
func reportUplinkDown(w io.Writer, res *results) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Uplink down (the uplink points at a closed port; every summary stays in the outbox; no loss check):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | rate | rep | achieved msg/s | CPU-s per M readings | idle RSS MB | peak RSS MB | RSS drained MB (anon + file) | outbox records | outbox bytes | outbox file MB | outbox drops |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, g := range res.Gateway {
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | %.2f | %s | %s | %s (%s + %s) | %d | %d | %.1f | %d |\n", g.Mode, g.RateArg, g.Repeat,
			g.Load.Rate, g.CPUPerMR, mb(float64(g.IdleRSSKB)), mb(float64(g.PeakRSSKB)), mb(float64(g.EndRSSKB)),
			mb(float64(g.EndAnonKB)), mb(float64(g.EndFileKB)), g.OutboxDepth, g.OutboxBytes, float64(g.OutboxFile)/(1<<20), g.OutboxDrops)
	}
	if len(res.Failures) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Failures:")
		for _, s := range res.Failures {
			fmt.Fprintln(w, "-", s)
		}
	}
}
