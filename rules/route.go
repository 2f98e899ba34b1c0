package rules

// Routes: the cache of what happens to the readings of one sensor and
// metric, built on first use and bounded by Config.MaxRoutes, so that the
// path of a reading costs one map lookup before the door.

import (
	"maps"
	"strings"

	"github.com/sensorgate/sensorgate/rules/internal/state"
	"github.com/sensorgate/sensorgate/rules/window"
)

type routeKey struct {
	sensor, metric string
	from           int // index of the first stage to apply
}

// route is what happens to readings of one sensor and metric entering the
// pipeline at stage `from`: the stages that match, then (under the names
// the stages gave it) the alerts and windows.
type route struct {
	key    routeKey
	used   int64 // wall clock (last tick) when it was last used
	steps  []step
	sensor string // after renames
	metric string
	alerts []*alertState
	wins   []*window.Key
	rng    *Range // the door's range for the sensor and metric (from 0 only)
	state.Flags
}

// routeFor returns the route of sensor/metric entering at stage from,
// creating it on first use; nil (counted in Stats.Overflow) when the
// engine already holds MaxRoutes routes.
func (e *Engine) routeFor(sensor, metric string, from int) *route {
	if rt, ok := e.routes[routeKey{sensor, metric, from}]; ok {
		rt.used = e.lastTick
		return rt
	}
	if len(e.routes) >= e.cfg.MaxRoutes {
		e.overflow.Add(1)
		return nil
	}
	return e.newRoute(strings.Clone(sensor), strings.Clone(metric), from)
}

func match(pattern, name string) bool {
	if pattern == "*" {
		return true
	}
	ok, _ := pathMatch(pattern, name)
	return ok
}

func (e *Engine) newRoute(sensor, metric string, from int) *route {
	rt := &route{}
	origSensor, origMetric := sensor, metric
	var meta map[string]string
	if e.meta != nil {
		meta = e.meta(sensor)
	}
	for _, st := range e.chain.stages[from:] {
		if !match(st.cfg.Sensor, sensor) || !match(st.cfg.Metric, metric) {
			continue
		}
		if s, ok := e.chain.newStep(st, sensor, metric, meta); ok {
			rt.steps = append(rt.steps, s)
		}
		switch st.cfg.Type {
		case StageRename:
			s := rt.steps[len(rt.steps)-1]
			if s.outS != sensor && e.meta != nil {
				if m := e.meta(s.outS); m != nil {
					meta = m
				}
			}
			sensor, metric = s.outS, s.out
		case StageTag:
			m := maps.Clone(meta)
			if m == nil {
				m = map[string]string{}
			}
			maps.Copy(m, st.cfg.Tags)
			meta = m
		}
	}
	rt.sensor, rt.metric = sensor, metric
	rt.alerts = e.alerts.attach(sensor, metric, meta)
	for _, w := range e.windows {
		if c := w.Config(); !match(c.Sensor, sensor) || !match(c.Metric, metric) {
			continue
		}
		ksensor, group := sensor, ""
		kmeta := meta
		if gb := w.Config().GroupBy; gb != "" {
			v, ok := meta[gb]
			if !ok {
				continue
			}
			ksensor, group = "", gb+"="+v
			kmeta = map[string]string{gb: v}
		}
		k := e.win.Key(w, ksensor, group, metric, kmeta)
		rt.wins = append(rt.wins, k)
	}
	if from == 0 {
		rt.rng = e.door.rangeFor(origSensor, origMetric)
	}
	rt.key = routeKey{origSensor, origMetric, from}
	rt.used = e.lastTick
	e.routes[rt.key] = rt
	e.nroutes.Add(1)
	return rt
}

// sweep forgets the routes not used since before (wall clock) whose
// windows are all closed (and past retention) and whose alerts are clear,
// and then the window keys, alert and derive states no route leads to.
// The per-route stage state (deadband, rate, dedup) goes with the route.
func (e *Engine) sweep(before int64) {
	for key, rt := range e.routes {
		if rt.used >= before || !routeIdle(rt) {
			continue
		}
		delete(e.routes, key)
		e.nroutes.Add(-1)
		for _, k := range rt.wins {
			k.Release()
		}
		for _, a := range rt.alerts {
			e.alerts.release(a)
		}
		e.chain.release(rt.steps)
		e.chain.routeCk.Drop(rt)
	}
	e.win.Sweep()
}

func routeIdle(rt *route) bool {
	for _, k := range rt.wins {
		if !k.Idle() {
			return false
		}
	}
	for _, a := range rt.alerts {
		if a.Active {
			return false
		}
	}
	return true
}
