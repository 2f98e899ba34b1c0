// Package buffer is sensorgate's durable outbox: a bbolt file that keeps
// every record the pipeline hands it until an uplink confirms delivery, or
// until a declared, counted policy drops it.
//
// # Basics
//
// Records live in lanes ([Lane]): alerts, summaries, raw, and dead (records
// an uplink refused for good). Lanes are delivered by priority (alerts
// first, see [Outbox.ReadByPriority]) and each is FIFO. Every record gets a
// seq, strictly increasing within its lane and never reused in one file
// (seqs continue after a reopen, even when the lane was empty), and a
// stable id "<epoch>-<lane>-<seq>" where epoch is random per file, so
// upstream can de-duplicate re-deliveries.
//
// [Open] takes the file's path from Config.Path. Producers call [Outbox.Enqueue] (returns once queued; blocks when
// Config.QueueMax records are pending: backpressure) or [Outbox.Append]
// (returns once the records are committed and fsynced). Both copy the
// payload. One committer goroutine group-commits what all producers queued:
// a batch waits at most Config.CommitDelay (default 50ms) to fill, and is
// committed at once when it reaches Config.CommitMax records (default
// 2000). A batch that holds an Append's records, whose caller is blocked,
// waits Config.AppendDelay instead (default 0: as soon as the committer is
// free; the Appends that arrive during one commit share the next).
// [Outbox.Flush] commits what is queued and waits for it. After each
// commit the outbox logs, at Debug, one line per lane it added to:
//
//	msg="outbox commit" lane=summaries last_seq=1234 records=56
//
// (a crash test parses it: every record up to last_seq was durable when
// the line was written).
//
// Uplinks read with [Outbox.Read] (oldest first, Seq > after), wait on a
// channel of their own from [Outbox.Subscribe] (a coalesced signal after
// each commit that added records), and delete what upstream confirmed with
// [Outbox.Ack]. Reading
// does not remove anything: a crash between delivery and Ack means a
// re-delivery with the same id (at least once). [Outbox.Drained] waits,
// woken by commits and acks, until nothing is left to deliver: a clean stop
// gives the uplinks a grace period that ends as soon as they caught up.
//
// # Defaults, chosen for SD cards
//
// One fsync per record is what wears SD cards out and what makes them
// slow (an fsync costs 5 to 50 ms there). With the defaults (CommitDelay
// 50ms, CommitMax 2000, QueueMax 4000), Enqueue producers cause at most 20
// fsyncs a second under light load and one per 2000 records under heavy
// load. A commit costs about one fsync whatever its size, so the durable
// rate is about CommitMax per fsync time: 40,000 records/s with a 50 ms
// fsync, 100,000 to 400,000 on this machine's disk (see the benchmarks).
// Measured here, a 100-byte record costs about 155 bytes written to disk
// with 2000 records per commit (170 with 1000, 145 with 5000), against
// about 35 KB when every record is its own transaction (a commit rewrites
// at least the lane's last leaf page, the branch pages above it and a meta
// page, and the file system journals the fsync). Larger batches save
// little more write volume and cost memory: pending records take up to
// QueueMax records' worth (about 1 MB of 250-byte summaries).
//
// # Caps and policies
//
// Stored bytes (payload plus 16 per record) are capped in total
// (Config.MaxBytes) and optionally per lane (LaneConfig.MaxBytes), and each
// lane may have a maximum age (LaneConfig.MaxAge; applied at every commit
// and every Config.MaintainEvery). When a cap is hit the lane's policy
// applies:
//
//   - drop_oldest deletes the lane's oldest records (reason "cap", or
//     "total_cap" when the total cap evicted them);
//   - reject refuses new records with [ErrFull] (reason "full"), checked
//     when they are enqueued, so the pipeline feels it at once;
//   - rollup (summaries lane only) merges the oldest records with
//     Options.RollUp, set by the command to the rules package's summary
//     merge, so coverage is kept at a coarser resolution (reason
//     "rolled_up" counts the records merged away). The oldest
//     LaneConfig.RollUpBatch records are merged at a time; a batch that
//     does not shrink (one window of many sensors has nothing adjacent to
//     merge) is doubled up to 16384 records. If the hook fails, panics or
//     still shrinks nothing, the lane falls back to drop_oldest.
//
// The total cap evicts from lanes of equal or lower priority than the
// incoming records, lowest first, each by its own policy; a lane with the
// reject policy is never evicted, and when nothing may be evicted the
// incoming record gets ErrFull. Alerts are therefore never evicted to make
// room for summaries or raw readings. Every record leaving without an Ack
// is counted by lane and reason in [Outbox.Stats] ([DropReasons]).
//
// # Faults
//
// Open checks the file before bbolt maps it: both meta pages, the file
// size against the page count, and a walk of every reachable page (ids in
// bounds, no page reached twice, known page types, elements inside their
// page, keys in order within each page and within the range its parent
// gives it), then reads every record. bbolt itself trusts all of that and
// would loop, overflow its stack or fault on such damage, none of which a
// recover can catch. A lane sequence found behind the lane's stored seqs
// is repaired (and logged) rather than trusted, so ids are never reused.
// Only damage (those checks' findings, a recovered fault, bbolt's
// ErrInvalid, ErrVersionMismatch, ErrChecksum) quarantines: the file is
// renamed "outbox.db.corrupt-<UTC time>", logged at Error, counted
// (Stats.Quarantined) and a fresh outbox is started: the gateway never
// crash-loops on its own buffer. Any other failure is returned, naming
// its cause, with the file left as it is, for the supervisor's restart to
// retry: ENOMEM from the map (seen with a 408 MB backlog), EIO, EROFS,
// EACCES, ENOSPC, EAGAIN, a lock held by another process ([ErrLocked]).
// A path that is not a regular file (FIFO, socket, device, directory) is
// refused ([ErrRefused]) unopened, as opening a FIFO blocks; a symlink to
// a regular file is followed (a quarantine renames the link). So is a
// valid bbolt file whose root has keys but no "meta" or "lane.*" bucket,
// another program's; one with no keys at all (the outbox died before its
// first transaction) is taken like an empty or missing file. [Check]
// (which adds bbolt's tx.Check), [Inspect], [Peek] and [CompactFile] run
// the same checks. The page checks read bbolt's on-disk format (version
// 2) by hand, in internal/boltcheck, pinned to the bbolt version it was
// checked against: a test fails when go.mod moves bbolt's minor version.
//
// A full disk (or Config.MaxFileSize) makes commits fail cleanly: Append
// returns an error wrapping [ErrFull] and [ErrDiskFull], enqueued records
// of the failed batch are counted as dropped (reason "disk_full"). Before
// that happens, when the file comes within 1/16 of MaxFileSize or the disk
// within 32 MiB of full, lanes with the drop_oldest policy delete two bytes
// of their oldest records per byte added (also "disk_full"), lowest
// priority first and never a lane of higher priority than the records
// added; as a last resort a failed commit triggers one such deletion and
// one retry. Appends succeed again as soon as acks or those deletions free
// pages.
//
// # bbolt settings
//
// Keys are big-endian seqs and only ever grow, so lane buckets use
// FillPercent 1.0 (pages are filled completely instead of split at half).
// The freelist is not written to disk (NoFreelistSync, with the hash-map
// freelist): commits write less, and Open rebuilds it by walking the file,
// which the corruption checks do anyway. MaxSize is Config.MaxFileSize,
// default 1 GiB (512 MiB on 32-bit ARM). db.Batch is not used: the
// committer owns batching, so producers learn of durability only after
// their batch's fsync.
//
// Deleting records frees pages but never shrinks the file. When the file is
// larger than Config.CompactMinSize (64 MiB) and its records use less than
// a quarter of it, maintenance compacts it: it copies the live data into
// "outbox.db.compact", syncs it and renames it over the file. Commits,
// reads and acks wait meanwhile (records enqueued meanwhile stay in the
// pending queue and go into the new file), so nothing appended during a
// compaction is lost; a crash during one leaves the old file intact (the
// temporary file is removed at the next Open). `sensorgate buffer compact`
// does the same offline ([CompactFile]).
//
// # One file, one transaction
//
// [Outbox.Commit] writes a [Checkpoint] in one synced write transaction:
// records for the lanes and changes to the "state" bucket, where the
// pipeline keeps what must survive a stop (open windows, stage and alert
// state, the sources' records of committed inputs). A window's state leaves
// exactly when its summary enters the outbox: both commit or neither does.
// Records enqueued before the call are committed first, so lane order
// holds. [Outbox.LoadState] reads the state back at start. The state is
// opaque bytes here; compaction copies it with the lanes, and a file moved
// aside as corrupt takes it along.
//
// [Outbox.Update] is the lower-level form: a function inside one write
// transaction with a put function for records. It must leave the outbox's
// own buckets ("meta", "lane.*", "state") alone.
//
// Stats' WriteTxs and BytesWritten count every write transaction and the
// pages bbolt wrote for it, so flash wear can be watched per reading.
//
// # Caveats
//
//   - Rolled-up records are appended at the lane's tail with new seqs, so
//     they leave after records that were younger than their inputs; an
//     uplink that already delivered an input (but had not acked it) makes
//     upstream see that window twice, once fine and once coarse.
//   - A record evicted by a cap or max age while an uplink is delivering it
//     may still reach upstream; its later Ack is ignored.
//   - Compaction blocks commits, reads and Stats for its duration (it only
//     copies live data, at most a quarter of the file).
//   - Stats' oldest ages and file size come from a read transaction;
//     counters are atomics, cheap to scrape.
//   - [Config] is the YAML section and a plain comparable value; the
//     runtime inputs (logger, roll-up hook, clock) are [Options], passed to
//     [Open] with it.
package buffer
