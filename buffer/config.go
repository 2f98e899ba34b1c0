package buffer

import (
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/sensorgate/sensorgate/ingest"
)

// Policy is what a lane does when its cap (or the outbox's total cap) is hit.
type Policy string

// The policies.
const (
	// PolicyDropOldest deletes the lane's oldest records until the new ones
	// fit. Each deleted record is counted (reason "cap" or "total_cap").
	PolicyDropOldest Policy = "drop_oldest"
	// PolicyReject refuses new records with ErrFull: backpressure to the
	// pipeline. Each refused record is counted (reason "full").
	PolicyReject Policy = "reject"
	// PolicyRollUp merges the lane's oldest records into fewer, coarser ones
	// with Options.RollUp (summaries lane only), so coverage is kept at a lower
	// resolution. Records merged away are counted (reason "rolled_up").
	PolicyRollUp Policy = "rollup"
)

// Config configures an Outbox; it is the `buffer:` section of the
// gateway's YAML file.
type Config struct {
	// Path is the bbolt file. Empty means "<gateway data_dir>/outbox.db":
	// the command fills it in before calling Open.
	Path string `yaml:"path"`
	// CommitDelay is the group commit's longest wait to fill a batch: the
	// first record of a batch waits at most this long for others to join
	// it. Default 50ms.
	CommitDelay time.Duration `yaml:"commit_delay"`
	// AppendDelay is the same wait for a batch that holds records of an
	// Append call, whose caller is blocked until the commit. Default 0:
	// such a batch is committed as soon as the committer is free, so the
	// Appends that arrive during one commit share the next (under load the
	// batches grow with the fsync time, which is long on SD cards).
	AppendDelay time.Duration `yaml:"append_delay"`
	// CommitMax is the most records one transaction takes; a batch that
	// reaches it is committed at once. Default 2000.
	CommitMax int `yaml:"commit_max"`
	// QueueMax is the most records Enqueue keeps pending (accepted, not yet
	// committed); beyond it Enqueue blocks. Default 2*CommitMax: one batch
	// fills while the previous one commits. It bounds the memory the
	// pending records take.
	QueueMax int `yaml:"queue_max"`
	// MaxBytes caps the stored bytes of all lanes together (payload plus
	// 16 bytes of key and header per record). Default 256 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxFileSize caps the bbolt file (bbolt's Options.MaxSize): near it
	// the drop_oldest lanes make room (reason "disk_full"), at it appends
	// fail like on a full disk. Default 1 GiB (512 MiB on 32-bit ARM, whose
	// processes can map 2 GiB at most; more than 1 GiB is refused there).
	MaxFileSize int64 `yaml:"max_file_size"`
	// CompactMinSize: the outbox compacts itself (gives disk space back)
	// when the file is larger than this and its live records use less than
	// a quarter of it. Default 64 MiB; -1 disables online compaction.
	CompactMinSize int64 `yaml:"compact_min_size"`
	// MaintainEvery is how often the outbox applies max_age and checks
	// whether to compact, besides on every commit. Default 10s.
	MaintainEvery time.Duration `yaml:"maintain_every"`
	// Lanes holds the per-lane caps, ages and policies.
	Lanes LanesConfig `yaml:"lanes"`
}

// Options are the outbox's runtime inputs, which the YAML file cannot
// hold. Keeping them out of Config leaves Config a plain value: two
// configs compare with ==, so a reload can tell whether the outbox
// settings changed without a hand-kept field list.
type Options struct {
	// Logger receives the outbox's events (quarantined files, failed
	// commits, maintenance); nil discards them.
	Logger *slog.Logger
	// RollUp merges payloads of the summaries lane (oldest first) into
	// fewer, coarser ones; Open requires it when a lane has PolicyRollUp.
	// Set by the command (the buffer does not know what a summary is). It
	// must return fewer payloads than it was given to make room.
	RollUp func(payloads [][]byte) ([][]byte, error)
	// Now is the clock for record times and max_age; nil means time.Now.
	Now func() time.Time
	// MinTime: a record stored before it was stored by a clock that had
	// never been set (a board without a real-time clock boots in 1970), so
	// its age is unknown and max_age never deletes it (nor what is behind
	// it in its lane): the first NTP step would otherwise make every such
	// record decades old. Zero means DefaultMinTime.
	MinTime time.Time
}

// DefaultMinTime is Options.MinTime's default (the ingest clock's).
var DefaultMinTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func (o *Options) minTime() int64 {
	if o.MinTime.IsZero() {
		return DefaultMinTime.UnixNano()
	}
	return o.MinTime.UnixNano()
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// LanesConfig holds one LaneConfig per lane.
type LanesConfig struct {
	Alerts    LaneConfig `yaml:"alerts"`
	Summaries LaneConfig `yaml:"summaries"`
	Raw       LaneConfig `yaml:"raw"`
	Dead      LaneConfig `yaml:"dead"`
}

// LaneConfig is the cap and policy of one lane.
type LaneConfig struct {
	// MaxBytes caps the lane's stored bytes; 0 means only the total cap
	// applies.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxAge drops records older than this (reason "max_age"); 0 keeps
	// them until acked or evicted by a cap.
	MaxAge time.Duration `yaml:"max_age"`
	// Policy applies when a cap is hit; see the Policy constants.
	Policy Policy `yaml:"policy"`
	// RollUpBatch is how many of the oldest records one roll-up merges to
	// begin with (doubled, up to 16384, while a batch does not shrink).
	// Default 1024.
	RollUpBatch int `yaml:"rollup_batch"`
}

// Lane returns the configuration of lane l.
func (c *LanesConfig) Lane(l Lane) *LaneConfig {
	switch l {
	case LaneAlerts:
		return &c.Alerts
	case LaneSummaries:
		return &c.Summaries
	case LaneRaw:
		return &c.Raw
	case LaneDead:
		return &c.Dead
	}
	return nil
}

// Default values.
const (
	DefaultCommitDelay = 50 * time.Millisecond
	DefaultCommitMax   = 2000
	DefaultMaxBytes    = 256 << 20
	DefaultMaxFileSize = 1 << 30
	// DefaultMaxFileSize32 is the default on 32-bit platforms (ARMv6/v7),
	// where the whole file must be mapped into a 2 GiB address space that
	// also holds the program.
	DefaultMaxFileSize32 = 512 << 20
	// MaxFileSize32 is the largest MaxFileSize allowed on 32-bit platforms:
	// bbolt maps files over 1 GiB in 1 GiB steps, which cannot succeed there.
	MaxFileSize32         = 1 << 30
	DefaultCompactMinSize = 64 << 20
	DefaultMaintainEvery  = 10 * time.Second
	DefaultRollUpBatch    = 1024
	// DefaultDeadMaxBytes caps the dead-letter lane.
	DefaultDeadMaxBytes = 16 << 20
	// DefaultDeadMaxAge is the dead-letter lane's max age.
	DefaultDeadMaxAge = 7 * 24 * time.Hour
)

// Defaults fills the zero fields of c with the defaults (Path stays as
// it is). Every lane's policy defaults to drop_oldest; the dead lane gets
// a 16 MiB cap and a 7-day max age.
func (c *Config) Defaults() {
	if c.CommitDelay == 0 {
		c.CommitDelay = DefaultCommitDelay
	}
	if c.CommitMax == 0 {
		c.CommitMax = DefaultCommitMax
	}
	if c.QueueMax == 0 {
		c.QueueMax = 2 * c.CommitMax
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxFileSize == 0 {
		c.MaxFileSize = DefaultMaxFileSize
		if strconv.IntSize == 32 {
			c.MaxFileSize = DefaultMaxFileSize32
		}
	}
	if c.CompactMinSize == 0 {
		c.CompactMinSize = DefaultCompactMinSize
	}
	if c.MaintainEvery == 0 {
		c.MaintainEvery = DefaultMaintainEvery
	}
	for _, l := range Lanes {
		lc := c.Lanes.Lane(l)
		if lc.Policy == "" {
			lc.Policy = PolicyDropOldest
		}
		if lc.RollUpBatch == 0 {
			lc.RollUpBatch = DefaultRollUpBatch
		}
	}
	if c.Lanes.Dead.MaxBytes == 0 {
		c.Lanes.Dead.MaxBytes = DefaultDeadMaxBytes
	}
	if c.Lanes.Dead.MaxAge == 0 {
		c.Lanes.Dead.MaxAge = DefaultDeadMaxAge
	}
}

// Validate checks c after Defaults. Paths are relative to the section.
func (c Config) Validate() error {
	var errs []error
	if c.CommitDelay < 0 {
		errs = append(errs, ingest.FieldErrorf("commit_delay", "must be >= 0"))
	}
	if c.AppendDelay < 0 {
		errs = append(errs, ingest.FieldErrorf("append_delay", "must be >= 0"))
	}
	if c.CommitMax <= 0 {
		errs = append(errs, ingest.FieldErrorf("commit_max", "must be > 0"))
	}
	if c.QueueMax <= 0 {
		errs = append(errs, ingest.FieldErrorf("queue_max", "must be > 0"))
	}
	if c.MaxBytes <= 0 {
		errs = append(errs, ingest.FieldErrorf("max_bytes", "must be > 0"))
	}
	if c.MaxFileSize <= 0 {
		errs = append(errs, ingest.FieldErrorf("max_file_size", "must be > 0"))
	} else if c.MaxFileSize < 1<<20 {
		errs = append(errs, ingest.FieldErrorf("max_file_size", "must be at least 1 MiB"))
	} else if strconv.IntSize == 32 && c.MaxFileSize > MaxFileSize32 {
		errs = append(errs, ingest.FieldErrorf("max_file_size", "must be at most 1 GiB on a 32-bit system"))
	}
	if c.MaintainEvery <= 0 {
		errs = append(errs, ingest.FieldErrorf("maintain_every", "must be > 0"))
	}
	for _, l := range Lanes {
		lc := c.Lanes.Lane(l)
		p := "lanes." + l.String() + "."
		if lc.MaxBytes < 0 {
			errs = append(errs, ingest.FieldErrorf(p+"max_bytes", "must be >= 0"))
		}
		if lc.MaxAge < 0 {
			errs = append(errs, ingest.FieldErrorf(p+"max_age", "must be >= 0"))
		}
		if lc.RollUpBatch < 2 {
			errs = append(errs, ingest.FieldErrorf(p+"rollup_batch", "must be >= 2"))
		}
		switch lc.Policy {
		case PolicyDropOldest, PolicyReject:
		case PolicyRollUp:
			if l != LaneSummaries {
				errs = append(errs, ingest.FieldErrorf(p+"policy", "rollup is only valid on the summaries lane"))
			}
		default:
			errs = append(errs, ingest.FieldErrorf(p+"policy", "unknown policy %q (want drop_oldest, reject or rollup)", lc.Policy))
		}
	}
	return errors.Join(errs...)
}
