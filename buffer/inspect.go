package buffer

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"go.etcd.io/bbolt"
)

// FileInfo describes a closed outbox file (see Inspect).
type FileInfo struct {
	Path      string
	Epoch     string
	FileSize  int64
	PageSize  int
	FreePages int
	Lanes     []FileLane // indexed by Lane
}

// FileLane describes one lane of a closed outbox file.
type FileLane struct {
	Lane  Lane
	Name  string
	Depth int64
	Bytes int64
	// FirstSeq and LastSeq bound the stored records (0 if none); NextSeq
	// is the seq the next record will get.
	FirstSeq, LastSeq, NextSeq uint64
	// Oldest is when the oldest stored record was committed (zero if none).
	Oldest time.Time
}

// openReadOnly checks and opens a closed outbox file for reading.
func openReadOnly(path string) (*bbolt.DB, [numLanes]laneScan, error) {
	cfg := Config{}
	cfg.Defaults()
	scan, err := scanFile(path, &cfg)
	if err != nil {
		return nil, scan, err
	}
	opts := boltOptions(&cfg, true)
	opts.PreLoadFreelist = true
	db, err := openBolt(path, opts)
	return db, scan, err
}

// Inspect reads the state of the outbox file at path, which must not be
// open by a running gateway (bbolt locks it).
func Inspect(path string) (FileInfo, error) {
	fi := FileInfo{Path: path, Lanes: make([]FileLane, numLanes)}
	db, scan, err := openReadOnly(path)
	if err != nil {
		return fi, fmt.Errorf("buffer: inspect %s: %w", path, err)
	}
	defer db.Close()
	fi.FreePages = db.Stats().FreePageN
	fi.PageSize = db.Info().PageSize
	if st, err := os.Stat(path); err == nil {
		fi.FileSize = st.Size()
	}
	err = db.View(func(tx *bbolt.Tx) error {
		if m := tx.Bucket(metaBucket); m != nil {
			fi.Epoch = string(m.Get(epochKey))
		}
		for _, l := range Lanes {
			fl := &fi.Lanes[l]
			fl.Lane, fl.Name = l, l.String()
			fl.Depth, fl.Bytes = scan[l].count, scan[l].bytes
			b := tx.Bucket(laneBuckets[l])
			if b == nil {
				continue
			}
			fl.NextSeq = b.Sequence() + 1
			c := b.Cursor()
			if k, v := c.First(); k != nil {
				fl.FirstSeq = binary.BigEndian.Uint64(k)
				fl.Oldest = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
			}
			if k, _ := c.Last(); k != nil {
				fl.LastSeq = binary.BigEndian.Uint64(k)
			}
		}
		return nil
	})
	if err != nil {
		return fi, fmt.Errorf("buffer: inspect %s: %w", path, err)
	}
	return fi, nil
}

// Peek returns the first n records of lane in the closed outbox file at
// path, oldest first.
func Peek(path string, lane Lane, n int) ([]Record, error) {
	if err := checkLane(lane); err != nil {
		return nil, err
	}
	db, _, err := openReadOnly(path)
	if err != nil {
		return nil, fmt.Errorf("buffer: peek %s: %w", path, err)
	}
	defer db.Close()
	var out []Record
	err = db.View(func(tx *bbolt.Tx) error {
		var epoch string
		if m := tx.Bucket(metaBucket); m != nil {
			epoch = string(m.Get(epochKey))
		}
		out, err = readLane(tx, epoch, lane, 0, n)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("buffer: peek %s: %w", path, err)
	}
	return out, nil
}
