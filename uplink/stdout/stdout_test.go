package stdout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/test/leak"
	"github.com/sensorgate/sensorgate/uplink"
	"github.com/sensorgate/sensorgate/uplink/internal/uplinktest"
)

// newUplink is uplink.New with this package's transport writing to w.
func newUplink(cfg uplink.Config, ob uplink.Outbox, opts uplink.Options, w io.Writer) (*uplink.Uplink, error) {
	return uplink.New(cfg, ob, New(w), opts)
}

// idleOutbox closes idle[l] the first time a Read of lane l finds nothing:
// the uplink serving l then goes to wait for a commit.
type idleOutbox struct {
	*buffer.Outbox
	once sync.Map
	idle map[buffer.Lane]chan struct{}
}

func (o *idleOutbox) Read(l buffer.Lane, after uint64, max int) ([]buffer.Record, error) {
	recs, err := o.Outbox.Read(l, after, max)
	if err == nil && len(recs) == 0 {
		if _, done := o.once.LoadOrStore(l, true); !done {
			close(o.idle[l])
		}
	}
	return recs, err
}

func TestStdoutPriorityAndBadRecords(t *testing.T) {
	leak.Check(t)
	{
		ob := uplinktest.NewOutbox()
		ctx := context.Background()
		for i := 0; i < 5; i++ {
			ob.Append(ctx, buffer.LaneRaw, uplinktest.ReadingsRecord(t, 2))
			ob.Append(ctx, buffer.LaneSummaries, uplinktest.SummaryRecord(t, i))
		}
		ob.Append(ctx, buffer.LaneSummaries, []byte("Sgarbage"))
		ob.Append(ctx, buffer.LaneAlerts, uplinktest.AlertRecord(t, 1))
		var out uplinktest.SyncBuffer
		u, err := newUplink(uplink.Config{Type: "stdout"}, ob, uplink.Options{Gateway: "gw-1"}, &out)
		if err != nil {
			t.Fatal(err)
		}
		stop := uplinktest.Run(t, u)
		uplinktest.WaitFor(t, "11 lines", func() bool { return len(uplinktest.Lines(out.String())) == 11 })
		uplinktest.WaitFor(t, "acks", func() bool {
			return ob.Count(buffer.LaneRaw)+ob.Count(buffer.LaneSummaries)+ob.Count(buffer.LaneAlerts) == 0
		})
		// A record appended while running is picked up via the subscription.
		ob.Append(ctx, buffer.LaneAlerts, uplinktest.AlertRecord(t, 2))
		uplinktest.WaitFor(t, "12th line", func() bool { return len(uplinktest.Lines(out.String())) == 12 })
		stop()
		ls := uplinktest.Lines(out.String())
		var kinds []string
		for _, l := range ls {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			kinds = append(kinds, m["kind"].(string))
		}
		want := "alert summary summary summary summary summary readings readings readings readings readings alert"
		if got := strings.Join(kinds, " "); got != want {
			t.Errorf("order:\n got %s\nwant %s", got, want)
		}
		st := u.Stats()
		if st.BadRecords != 1 || st.Acked != 12 || st.Sent != 12 {
			t.Errorf("stats: %+v", st)
		}
		if st.DeadLettered != 1 || ob.Count(buffer.LaneDead) != 1 {
			t.Errorf("dead lane: %+v, %d", st, ob.Count(buffer.LaneDead))
		}
	}
}

// Two stdout uplinks on one real outbox, each on its own lane, polling only
// once an hour: records appended while both are idle must reach both at
// once, so each must be woken by the commit itself (one shared channel
// would wake only one of them).
func TestEveryUplinkIsWokenByACommit(t *testing.T) {
	leak.Check(t)
	ob, err := buffer.Open(buffer.Config{Path: filepath.Join(t.TempDir(), "outbox.db"), CommitDelay: time.Millisecond}, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	idle := &idleOutbox{Outbox: ob, idle: map[buffer.Lane]chan struct{}{
		buffer.LaneAlerts: make(chan struct{}), buffer.LaneSummaries: make(chan struct{}),
	}}
	var outs [2]uplinktest.SyncBuffer
	var ups [2]*uplink.Uplink
	for i, lane := range []string{"alerts", "summaries"} {
		c := uplink.Config{Name: lane, Type: uplink.TypeStdout, Lanes: []string{lane}, PollInterval: time.Hour}
		c.Defaults()
		u, err := newUplink(c, idle, uplink.Options{Gateway: "gw-1"}, &outs[i])
		if err != nil {
			t.Fatal(err)
		}
		ups[i] = u
		uplinktest.Run(t, u)
	}
	// Both have found their lane empty (and subscribed before that), so
	// they are on their way to the idle wait before anything is stored.
	for _, ch := range idle.idle {
		<-ch
	}
	for round := 1; round <= 3; round++ {
		if err := ob.Append(context.Background(), buffer.LaneAlerts, uplinktest.AlertRecord(t, round)); err != nil {
			t.Fatal(err)
		}
		if err := ob.Append(context.Background(), buffer.LaneSummaries, uplinktest.SummaryRecord(t, round)); err != nil {
			t.Fatal(err)
		}
		uplinktest.WaitFor(t, fmt.Sprintf("round %d delivered by both uplinks", round), func() bool {
			return ups[0].Stats().Acked == uint64(round) && ups[1].Stats().Acked == uint64(round)
		})
	}
}
