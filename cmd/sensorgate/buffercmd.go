package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
)

const bufferUsage = `Usage: sensorgate buffer <command> (--data DIR | --file PATH) [flags]

Inspect or compact the outbox file of a stopped gateway.

Commands:
  stats     depth, bytes and oldest record age per lane; file size and free pages
  peek      print the first records of a lane, decoded, one JSON object per line
  compact   rewrite the file without its free pages (offline compaction)

Run 'sensorgate buffer <command> --help' for the command's flags.
`

var bufferAbout = map[string]string{
	"stats":   "Print depth, bytes and oldest record age per lane, the file size and its free pages.",
	"peek":    "Print the first records of every lane (or of --lane), decoded, one JSON object per line on stdout.\nAn empty outbox prints nothing on stdout and says so on stderr.",
	"compact": "Rewrite the outbox file without its free pages (offline compaction).",
}

// cmdBuffer implements "sensorgate buffer stats|peek|compact". It returns
// the exit code: 0 ok, 1 failure, 2 usage error.
func cmdBuffer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "sensorgate buffer: no command given (stats, peek or compact)\nRun 'sensorgate buffer --help' for usage.\n")
		return 2
	}
	cmd, args := args[0], args[1:]
	switch {
	case isHelp(cmd) || cmd == "help":
		fmt.Fprint(stdout, bufferUsage)
		return 0
	case cmd == "stats", cmd == "peek", cmd == "compact":
	default:
		fmt.Fprintf(stderr, "sensorgate buffer: unknown command %q (want stats, peek or compact)\nRun 'sensorgate buffer --help' for usage.\n", cmd)
		return 2
	}

	fs := newFlagSet("buffer "+cmd, "sensorgate buffer "+cmd+" (--data DIR | --file PATH) [flags]", bufferAbout[cmd], stderr)
	data := fs.String("data", "", "the gateway's data directory, gateway.data_dir (holds outbox.db)")
	file := fs.String("file", "", "the outbox file (instead of --data)")
	var n *int
	var lane, format *string
	switch cmd {
	case "stats":
		format = fs.String("format", "text", "output format: text or json")
	case "peek":
		n = fs.Int("n", 10, "number of records to print")
		lane = fs.String("lane", "", "lane to print (alerts, summaries, raw, dead); default: every lane in priority order")
	}
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	var path string
	switch {
	case *data != "" && *file != "":
		return usageError(fs, "give --data or --file, not both")
	case *data != "":
		path = filepath.Join(*data, "outbox.db")
	case *file != "":
		path = *file
	default:
		return usageError(fs, "--data DIR or --file PATH is required")
	}
	switch {
	case format != nil && *format != "text" && *format != "json":
		return usageError(fs, "--format must be text or json")
	case n != nil && *n < 0:
		return usageError(fs, "-n must be >= 0")
	}
	lanes := []buffer.Lane{buffer.LaneAlerts, buffer.LaneSummaries, buffer.LaneRaw, buffer.LaneDead}
	if lane != nil && *lane != "" {
		l, err := buffer.ParseLane(*lane)
		if err != nil {
			return usageError(fs, "--lane: %v", err)
		}
		lanes = []buffer.Lane{l}
	}
	fail := func(err error) int {
		if errors.Is(err, buffer.ErrLocked) {
			// A gateway without a lock file (an older build) holds it.
			err = fmt.Errorf("outbox %s is locked by another process (a running sensorgate?): stop it first", path)
		}
		return failure(fs, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	// Before the outbox: the lock file says who holds it at once, where
	// the outbox's own lock would wait for its timeout.
	if err := checkDataDir(filepath.Dir(path)); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(path); errors.Is(err, iofs.ErrNotExist) {
		if *data != "" {
			return fail(fmt.Errorf("no outbox in %s: --data expects the gateway's data dir (gateway.data_dir, the directory that holds outbox.db)", *data))
		}
		return fail(fmt.Errorf("no outbox file %s: --file expects the outbox file itself (gateway.data_dir/outbox.db, or buffer.path)", path))
	}

	switch cmd {
	case "stats":
		info, err := buffer.Inspect(path)
		if err != nil {
			return fail(err)
		}
		if *format == "json" {
			return writeJSON(stdout, stderr, bufferStatsJSON(info, time.Now()))
		}
		printBufferStats(stdout, info, time.Now())
		return 0

	case "peek":
		left := *n
		enc := json.NewEncoder(stdout)
		for _, l := range lanes {
			if left == 0 {
				break
			}
			recs, err := buffer.Peek(path, l, left)
			if err != nil {
				return fail(err)
			}
			left -= len(recs)
			for _, r := range recs {
				if err := enc.Encode(peekJSON(r)); err != nil {
					return fail(err)
				}
			}
		}
		if left == *n && *n > 0 {
			// stdout stays JSON lines; the note is for the reader.
			what := "the outbox " + path + " is empty"
			if len(lanes) == 1 {
				what = "lane " + lanes[0].String() + " of the outbox " + path + " is empty"
			}
			fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), what)
		}
		return 0

	case "compact":
		before, after, err := buffer.CompactFile(path)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "compacted %s: %d -> %d bytes\n", path, before, after)
		return 0
	}
	return 2
}

type laneStatsJSON struct {
	Lane      string  `json:"lane"`
	Depth     int64   `json:"depth"`
	Bytes     int64   `json:"bytes"`
	FirstSeq  uint64  `json:"first_seq"`
	LastSeq   uint64  `json:"last_seq"`
	NextSeq   uint64  `json:"next_seq"`
	Oldest    string  `json:"oldest,omitempty"`
	OldestAge float64 `json:"oldest_age_seconds"`
}

type fileStatsJSON struct {
	Path      string          `json:"path"`
	Epoch     string          `json:"epoch"`
	FileSize  int64           `json:"file_size"`
	PageSize  int             `json:"page_size"`
	FreePages int             `json:"free_pages"`
	Lanes     []laneStatsJSON `json:"lanes"`
}

func bufferStatsJSON(info buffer.FileInfo, now time.Time) fileStatsJSON {
	out := fileStatsJSON{Path: info.Path, Epoch: info.Epoch, FileSize: info.FileSize, PageSize: info.PageSize, FreePages: info.FreePages}
	for _, l := range info.Lanes {
		j := laneStatsJSON{Lane: l.Name, Depth: l.Depth, Bytes: l.Bytes, FirstSeq: l.FirstSeq, LastSeq: l.LastSeq, NextSeq: l.NextSeq}
		if !l.Oldest.IsZero() {
			j.Oldest = l.Oldest.Format(time.RFC3339Nano)
			j.OldestAge = now.Sub(l.Oldest).Seconds()
		}
		out.Lanes = append(out.Lanes, j)
	}
	return out
}

func printBufferStats(w io.Writer, info buffer.FileInfo, now time.Time) {
	fmt.Fprintf(w, "file:       %s\nepoch:      %s\nsize:       %d bytes\nfree pages: %d (%d bytes of %d-byte pages)\n\n",
		info.Path, info.Epoch, info.FileSize, info.FreePages, info.FreePages*info.PageSize, info.PageSize)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LANE\tDEPTH\tBYTES\tFIRST SEQ\tLAST SEQ\tOLDEST AGE")
	for _, l := range info.Lanes {
		age := "-"
		if !l.Oldest.IsZero() {
			age = now.Sub(l.Oldest).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", l.Name, l.Depth, l.Bytes, l.FirstSeq, l.LastSeq, age)
	}
	tw.Flush()
}

type peekRecordJSON struct {
	Lane   string `json:"lane"`
	Seq    uint64 `json:"seq"`
	ID     string `json:"id"`
	Stored string `json:"stored"`
	Kind   string `json:"kind,omitempty"`
	Record any    `json:"record,omitempty"`
	Error  string `json:"error,omitempty"`
	Raw    string `json:"payload_hex,omitempty"`
}

func peekJSON(r buffer.Record) peekRecordJSON {
	out := peekRecordJSON{
		Lane:   r.Lane.String(),
		Seq:    r.Seq,
		ID:     r.ID,
		Stored: time.Unix(0, r.Stored).UTC().Format(time.RFC3339Nano),
	}
	rec, err := ingest.DecodeRecord(r.Payload)
	if err != nil {
		out.Error = err.Error()
		out.Raw = hex.EncodeToString(r.Payload)
		return out
	}
	out.Kind = rec.Kind.String()
	switch rec.Kind {
	case ingest.KindSummary:
		out.Record = rec.Summary
	case ingest.KindAlert:
		out.Record = rec.Alert
	case ingest.KindReadings:
		out.Record = rec.Readings
	}
	return out
}

func writeJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintln(stderr, "sensorgate buffer:", strings.TrimSpace(err.Error()))
		return 1
	}
	return 0
}
