package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sensorgate/sensorgate/buffer"
	"github.com/sensorgate/sensorgate/ingest"
)

const bufferUsage = `usage: sensorgate buffer <command> (--data DIR | --file PATH) [flags]

Inspect or compact the outbox file of a stopped gateway.

commands:
  stats     depth, bytes and oldest record age per lane; file size and free pages
  peek      print the first records of a lane, decoded, one JSON object per line
  compact   rewrite the file without its free pages (offline compaction)

Run "sensorgate buffer <command> --help" for the command's flags.
`

// cmdBuffer implements "sensorgate buffer stats|peek|compact". It returns
// the exit code: 0 ok, 1 failure, 2 usage error.
func cmdBuffer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, bufferUsage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, bufferUsage)
		return 0
	case "stats", "peek", "compact":
	default:
		fmt.Fprintf(stderr, "sensorgate buffer: unknown command %q\n\n%s", cmd, bufferUsage)
		return 2
	}

	fs := flag.NewFlagSet("sensorgate buffer "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "the gateway's data directory (holds outbox.db)")
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
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: sensorgate buffer %s (--data DIR | --file PATH) [flags]\n\nflags:\n", cmd)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sensorgate buffer %s: %s\n", cmd, fmt.Sprintf(format, a...))
		fs.Usage()
		return 2
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	var path string
	switch {
	case *data != "" && *file != "":
		return usage("give --data or --file, not both")
	case *data != "":
		path = filepath.Join(*data, "outbox.db")
	case *file != "":
		path = *file
	default:
		return usage("--data DIR or --file PATH is required")
	}
	fail := func(err error) int {
		msg := err.Error()
		if errors.Is(err, buffer.ErrLocked) {
			msg += " (the file is locked: is the gateway running? stop it first)"
		}
		fmt.Fprintf(stderr, "sensorgate buffer %s: %s\n", cmd, msg)
		return 1
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}

	switch cmd {
	case "stats":
		if *format != "text" && *format != "json" {
			return usage("--format must be text or json")
		}
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
		if *n < 0 {
			return usage("-n must be >= 0")
		}
		lanes := []buffer.Lane{buffer.LaneAlerts, buffer.LaneSummaries, buffer.LaneRaw, buffer.LaneDead}
		if *lane != "" {
			l, err := buffer.ParseLane(*lane)
			if err != nil {
				return usage("%v", err)
			}
			lanes = []buffer.Lane{l}
		}
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
