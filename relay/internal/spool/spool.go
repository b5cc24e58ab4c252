// Package spool is the relay's durable, bounded batch store on Badger.
//
// Appends from every agent connection go through one committer goroutine
// that writes everything queued in one transaction, whose commit fsyncs
// (SyncWrites=true): many agents share one fsync, and no Append returns
// Spooled before its batch is on disk. Per-commit sync rather than
// SyncWrites=false plus DB.Sync: in Badger v4.9.6 DB.Sync covers only the
// active memtable's WAL, so a memtable rotated between the commit and the
// Sync would leave its WAL unsynced until flushed (lost on power failure).
//
// Payloads go to segment files first (segment.go), fdatasynced, then their
// index entries to Badger in that group's transaction; the free space of the
// filesystem is checked before either (disk.go).
package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Result is the outcome of an Append.
type Result int

const (
	// Spooled means the batch is durable.
	Spooled Result = iota + 1
	// Duplicate means (agent_id, seq) was spooled or delivered before.
	Duplicate
	// Full means the batch was not taken: the spool is at max_bytes or its
	// filesystem at min_free_bytes.
	Full
)

func (r Result) String() string {
	switch r {
	case Spooled:
		return "spooled"
	case Duplicate:
		return "duplicate"
	case Full:
		return "full"
	}
	return "unknown"
}

// Options configure a Spool.
type Options struct {
	Dir      string // Badger directory; segments and the reserve file go in it too
	MaxBytes int64  // bound on the segment files (batches) on disk
	// MinFreeBytes is the free space the spool leaves on its filesystem:
	// batches that would leave less are refused (SPOOL_FULL). Default 96 MiB.
	MinFreeBytes int64
	// DiskCheckInterval is how often free space is checked when no batch
	// comes (every commit checks it too); default 1s.
	DiskCheckInterval time.Duration
	DedupTTL          time.Duration // how long (agent_id, seq) markers live; default 7 days
	GCInterval        time.Duration // value-log GC period; default 5 minutes
	Logger            *slog.Logger
	Registerer        prometheus.Registerer // nil: metrics are not exported
	Clock             clockwork.Clock       // nil: the real clock
}

// Stats is a snapshot of the spool's accounting.
type Stats struct {
	Batches  int64
	Bytes    int64 // payload bytes of the batches held
	MaxBytes int64
	Full     bool
	// FullReason says why it refuses: "max_bytes", "disk" or "" (not full).
	FullReason   string
	Receipts     int64
	DiskBytes    int64 // what the spool's directory takes on disk (all files)
	FsFreeBytes  int64 // free space of the spool's filesystem
	FsSizeBytes  int64
	MinFreeBytes int64
}

// Spool is the durable batch store. Open it, Run it, Close it.
type Spool struct {
	opts    Options
	db      *badger.DB
	segs    *segments
	ballast *ballast
	// indexFloor is the free space below which the index is not written
	// (ErrDiskFull) and the reserve file is released.
	indexFloor int64
	opened     time.Time
	log        *slog.Logger
	m          *metrics

	reqs    chan *appendReq
	stopped chan struct{} // closed when the committer ends
	newData chan struct{} // pulsed after every commit that spooled something
	tidyNow chan struct{} // pulsed when a delivery may have drained the active segment

	mu       sync.Mutex
	batches  int64
	bytes    int64
	receipts int64
	fullMax  bool // refusing: segments at max_bytes
	fullDisk bool // refusing: filesystem at min_free_bytes
	space    fsSpace
	disk     int64 // diskUsage of Dir at the last check
	backlog  map[string]*Backlog
	nextSeq  uint64 // committer only, after open

	ballastMu sync.Mutex // checkDisk (committer) and guardIndex (any writer)

	closeOnce sync.Once
	closeErr  error
}

type appendReq struct {
	b    *agentv1.EventBatch
	data []byte
	done chan appendResp
}

type appendResp struct {
	res Result
	err error
}

// badgerOptions are tuned for a small appliance: a few MB of RAM, and files
// scaled to max_bytes. Badger holds only the index (payloads are in
// segments), so everything stays in the LSM tree (ValueThreshold) and the
// value log holds nothing but its header.
func badgerOptions(dir string, mt int64, log *slog.Logger) badger.Options {
	o := badger.DefaultOptions(dir)
	o.SyncWrites = true // one commit per group, so one fsync per group
	o.MemTableSize = mt
	o.BaseTableSize = mt
	o.BaseLevelSize = 4 * mt
	o.NumMemtables = 2
	o.NumLevelZeroTables = 2
	o.NumLevelZeroTablesStall = 4
	o.BlockCacheSize = 4 << 20
	o.IndexCacheSize = 2 << 20
	o.ValueLogFileSize = 1 << 20
	o.ValueThreshold = min(mt*15/100, 1<<20) // Badger's largest: its batch size, at most 1 MiB
	o.NumCompactors = 2
	o.Logger = badgerLogger{log.With("component", "badger")}
	return o
}

// memtableSize scales Badger's memtable (and so its WAL file, mmapped at
// twice this size) to max_bytes and the filesystem: 1 MiB to 8 MiB, and at
// most a quarter of min_free_bytes, so that the index's own floor (two
// memtables) stays below the free space the spool leaves anyway.
func memtableSize(maxBytes, fsSize, minFree int64) int64 {
	b := maxBytes
	if fsSize > 0 {
		b = min(b, fsSize)
	}
	mt := min(max(b/64, 1<<20), 8<<20)
	return max(min(mt, minFree/4), 1<<20)
}

// segmentSize scales segment files to the spool's bound (and to its
// filesystem): 1 MiB to 64 MiB, about a sixteenth of the bound, so at most
// one segment of delivered batches waits for its last undelivered one.
func segmentSize(maxBytes, fsSize int64) int64 {
	b := maxBytes
	if fsSize > 0 {
		b = min(b, fsSize)
	}
	return min(max(b/16, 1<<20), 64<<20)
}

// DefaultMinFreeBytes is spool.min_free_bytes when not set.
const DefaultMinFreeBytes = 96 << 20

// Open opens (or creates) the spool and restores its accounting with a
// key-only scan. It starts no goroutine: Run does.
func Open(opts Options) (*Spool, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DedupTTL <= 0 {
		opts.DedupTTL = 7 * 24 * time.Hour
	}
	if opts.GCInterval <= 0 {
		opts.GCInterval = 5 * time.Minute
	}
	if opts.DiskCheckInterval <= 0 {
		opts.DiskCheckInterval = time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 30
	}
	if opts.MinFreeBytes <= 0 {
		opts.MinFreeBytes = DefaultMinFreeBytes
	}
	dir := filepath.Clean(opts.Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	space, err := statFS(dir)
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	mt := memtableSize(opts.MaxBytes, space.size, opts.MinFreeBytes)
	s := &Spool{
		opts:       opts,
		log:        opts.Logger,
		indexFloor: 2 * mt,
		ballast:    newBallast(filepath.Join(dir, "reserve"), 4*mt),
		opened:     opts.Clock.Now(),
		backlog:    map[string]*Backlog{},
		reqs:       make(chan *appendReq, 1024),
		stopped:    make(chan struct{}),
		newData:    make(chan struct{}, 1),
		tidyNow:    make(chan struct{}, 1),
		nextSeq:    1,
	}
	if space.free < s.indexFloor && s.ballast.present {
		if err := s.ballast.release(); err != nil {
			return nil, fmt.Errorf("open spool %s: %w", dir, err)
		}
		s.log.Warn("spool filesystem nearly full at start: released the spool's reserve file so the index can open",
			"dir", dir, "free_bytes", space.free, "reserve_bytes", s.ballast.size)
		if space, err = statFS(dir); err != nil {
			return nil, fmt.Errorf("open spool %s: %w", dir, err)
		}
	}
	if space.free < s.indexFloor {
		return nil, fmt.Errorf("open spool %s: %d bytes free on its filesystem, its index needs %d to open safely: free space on that filesystem (docs/operations.md, \"Spool full\"): %w",
			dir, space.free, s.indexFloor, ErrDiskFull)
	}
	s.space = space
	s.segs, err = openSegments(filepath.Join(dir, "segments"), segmentSize(opts.MaxBytes, space.size))
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	s.db, err = badger.Open(badgerOptions(dir, mt, opts.Logger))
	if err != nil {
		s.segs.close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	fail := func(err error) (*Spool, error) {
		s.db.Close()
		s.segs.close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	if err := s.restore(); err != nil {
		return fail(err)
	}
	if err := s.segs.prune(); err != nil {
		return fail(err)
	}
	s.m = newMetrics(opts.Registerer, s)
	space = s.refreshSpace(true)
	s.setFull(s.segs.diskBytes() >= opts.MaxBytes, space.free < opts.MinFreeBytes)
	st := s.Stats()
	s.log.Info("spool open", "dir", dir, "batches", st.Batches, "bytes", st.Bytes, "receipts", st.Receipts,
		"disk_bytes", st.DiskBytes, "fs_free_bytes", st.FsFreeBytes, "max_bytes", opts.MaxBytes, "min_free_bytes", opts.MinFreeBytes)
	return s, nil
}

func (s *Spool) restore() error {
	var dangling [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{kindBatch}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			_, seq, size, err := parseBatchKey(item.Key())
			if err != nil {
				return err
			}
			if seq >= s.nextSeq {
				s.nextSeq = seq + 1
			}
			if item.UserMeta() == metaSegment {
				var p segPtr
				if err := item.Value(func(v []byte) (err error) { p, err = decodeSegPtr(v); return err }); err != nil {
					return err
				}
				if !s.segs.ref(p) {
					dangling = append(dangling, item.KeyCopy(nil), agentSeqKey(kindDedup, p.agent, p.agentSeq))
					continue
				}
				s.addBacklog(p.agent, 1, int64(size))
			}
			s.batches++
			s.bytes += int64(size)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(dangling) > 0 {
		// A segment file is gone (deleted by hand, or a damaged disk): those
		// batches cannot be sent. Forget them and their dedup markers, so the
		// agents' resends (they keep batches until delivered) are taken again.
		s.log.Error("spool index points to missing segment files: forgetting those batches so that agents resend them",
			"batches", len(dangling)/2)
		entries := make([]*badger.Entry, len(dangling))
		for i, k := range dangling {
			entries[i] = deleteEntry(k)
		}
		if err := s.write(entries); err != nil {
			return err
		}
	}
	return s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, kindReceipt, func([]byte) error { s.receipts++; return nil })
	})
}

// scanKeys calls fn for every key of one kind, without reading values.
func scanKeys(txn *badger.Txn, kind byte, fn func(k []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte{kind}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := fn(it.Item().Key()); err != nil {
			return err
		}
	}
	return nil
}

// Stats returns the current accounting.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Batches: s.batches, Bytes: s.bytes, MaxBytes: s.opts.MaxBytes, Full: s.fullMax || s.fullDisk, FullReason: s.fullReasonLocked(),
		Receipts: s.receipts, DiskBytes: s.disk, FsFreeBytes: s.space.free, FsSizeBytes: s.space.size, MinFreeBytes: s.opts.MinFreeBytes,
	}
}

func (s *Spool) fullReasonLocked() string {
	switch {
	case s.fullDisk:
		return "disk"
	case s.fullMax:
		return "max_bytes"
	}
	return ""
}

// NewData is pulsed (capacity 1) after a commit spools batches.
func (s *Spool) NewData() <-chan struct{} { return s.newData }

// Append makes b durable, or says why not. It returns only after the batch
// is fsynced (Spooled), or known (Duplicate), or refused (Full).
func (s *Spool) Append(ctx context.Context, b *agentv1.EventBatch) (Result, error) {
	wait, err := s.Submit(ctx, b)
	if err != nil {
		return 0, err
	}
	return wait(ctx)
}

// Submit queues b for the committer and returns a function that waits for
// its result. Batches submitted one after another from one goroutine reach
// the committer in that order, so a lane can pipeline appends and still
// get results in its own order.
func (s *Spool) Submit(ctx context.Context, b *agentv1.EventBatch) (wait func(context.Context) (Result, error), err error) {
	data, err := proto.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("marshal batch %d: %w", b.GetSeq(), err)
	}
	r := &appendReq{b: b, data: data, done: make(chan appendResp, 1)}
	select {
	case s.reqs <- r:
	case <-s.stopped:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Once queued the committer always answers; the answer stays honest
	// even when ctx ends (a later resend gets Duplicate).
	return func(ctx context.Context) (Result, error) {
		select {
		case resp := <-r.done:
			return resp.res, resp.err
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, nil
}

// Run runs the group committer, the free-space watch and value-log GC
// until ctx ends.
func (s *Spool) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.gcLoop(ctx)
	}()
	defer wg.Wait()
	defer close(s.stopped)
	tick := time.NewTicker(s.opts.DiskCheckInterval)
	defer tick.Stop()
	group := make([]*appendReq, 0, 256)
	for {
		select {
		case <-ctx.Done():
			// Answer whatever is still queued.
			for {
				select {
				case r := <-s.reqs:
					r.done <- appendResp{err: ErrClosed}
				default:
					return nil
				}
			}
		case <-tick.C:
			s.housekeep(true)
			continue
		case <-s.tidyNow:
			s.housekeep(false)
			continue
		case r := <-s.reqs:
			group = append(group[:0], r)
		}
		size := len(group[0].data)
	drain:
		for len(group) < cap(group) && size < 8<<20 {
			select {
			case r := <-s.reqs:
				group = append(group, r)
				size += len(r.data)
			default:
				break drain
			}
		}
		s.commit(group)
	}
}

// housekeep deletes the active segment once drained (in the committer, so
// that it never races an append) and re-reads the free space.
func (s *Spool) housekeep(walk bool) {
	freed, err := s.segs.tidy()
	if err != nil {
		s.log.Warn("delete drained segment", "err", err)
	}
	space := s.refreshSpace(walk)
	s.mu.Lock()
	byMax := s.fullMax
	s.mu.Unlock()
	if freed > 0 {
		byMax = s.segs.diskBytes() >= s.opts.MaxBytes
	}
	s.setFull(byMax, space.free < s.opts.MinFreeBytes)
}

type dedupID struct {
	agent string
	seq   uint64
}

// commit writes one group: payloads to a segment (one fdatasync), then
// their index entries in one transaction (split only if Badger says it is
// too big, one more fsync), and answers every waiter. Batches that would
// pass max_bytes or leave less than min_free_bytes on the filesystem are
// refused (Full).
func (s *Spool) commit(group []*appendReq) {
	start := time.Now()
	space := s.refreshSpace(false)
	results := make([]Result, len(group))
	var recs []segRecord
	var prios []uint8
	seen := make(map[dedupID]bool, len(group))
	s.mu.Lock()
	room := s.opts.MaxBytes - s.segs.diskBytes()
	empty := s.batches == 0
	seq := s.nextSeq
	s.mu.Unlock()
	diskRoom := space.free - s.opts.MinFreeBytes
	var addBytes int64
	var refusedMax, refusedDisk int
	err := s.db.View(func(txn *badger.Txn) error {
		for i, r := range group {
			id := dedupID{r.b.GetAgentId(), r.b.GetSeq()}
			dk := agentSeqKey(kindDedup, id.agent, id.seq)
			if seen[id] {
				results[i] = Duplicate
				continue
			}
			_, err := txn.Get(dk)
			switch {
			case err == nil:
				results[i] = Duplicate
				continue
			case !errors.Is(err, badger.ErrKeyNotFound):
				return err
			}
			need := addBytes + recordHeader + int64(len(r.data))
			if need > diskRoom {
				results[i] = Full
				refusedDisk++
				continue
			}
			// An empty spool takes one batch of any size: a batch larger than
			// max_bytes would otherwise be refused forever and wedge its agent.
			if need > room && !(empty && len(recs) == 0) {
				results[i] = Full
				refusedMax++
				continue
			}
			seen[id] = true
			prio := uint8(r.b.GetPriority())
			if prio == 0 || prio > uint8(agentv1.Priority_PRIORITY_FILE) {
				prio = uint8(agentv1.Priority_PRIORITY_BULK)
			}
			recs = append(recs, segRecord{data: r.data, agent: id.agent, agentSeq: id.seq})
			prios = append(prios, prio)
			addBytes = need
			results[i] = Spooled
		}
		return nil
	})
	var addBatches, addPayload int64
	if err == nil && len(recs) > 0 {
		var ptrs []segPtr
		ptrs, err = s.segs.append(recs, s.opts.Clock.Now().UnixNano())
		if err == nil {
			entries := make([]*badger.Entry, 0, 2*len(recs))
			for i, p := range ptrs {
				entries = append(entries,
					badger.NewEntry(batchKey(prios[i], seq, p.size), p.encode()).WithMeta(metaSegment),
					badger.NewEntry(agentSeqKey(kindDedup, p.agent, p.agentSeq), nil).WithTTL(s.opts.DedupTTL))
				seq++
			}
			if err = s.write(entries); err == nil {
				s.segs.added(ptrs[0].seg, int64(len(ptrs)))
				s.mu.Lock()
				for _, p := range ptrs {
					s.addBacklog(p.agent, 1, int64(p.size))
					addPayload += int64(p.size)
				}
				s.mu.Unlock()
				addBatches = int64(len(ptrs))
			}
		}
		if err != nil && isNoSpace(err) {
			// The disk filled between the check and the write (another
			// program): refuse, never fail, so agents keep and retry.
			s.log.Warn("spool filesystem full while writing: refusing batches with SPOOL_FULL", "err", err)
			for i := range results {
				if results[i] == Spooled {
					results[i] = Full
					refusedDisk++
				}
			}
			err = nil
		}
	}
	if err != nil {
		err = fmt.Errorf("spool commit: %w", err)
		s.log.Error("spool commit failed", "batches", len(group), "err", err)
		for _, r := range group {
			r.done <- appendResp{err: err}
		}
		return
	}
	s.mu.Lock()
	if addBatches > 0 {
		s.nextSeq = seq
	}
	s.bytes += addPayload
	s.batches += addBatches
	s.mu.Unlock()
	s.setFull(refusedMax > 0 || s.segs.diskBytes() >= s.opts.MaxBytes, refusedDisk > 0 || space.free-addBytes < s.opts.MinFreeBytes)
	s.m.rejectedFull.Add(float64(refusedMax + refusedDisk))
	if addBatches > 0 {
		s.m.commitSize.Observe(float64(addBatches))
		s.m.syncSeconds.Observe(time.Since(start).Seconds())
		select {
		case s.newData <- struct{}{}:
		default:
		}
	}
	for i, r := range group {
		r.done <- appendResp{res: results[i]}
	}
}

// setFull records whether the spool refuses batches, logging changes.
func (s *Spool) setFull(byMax, byDisk bool) {
	s.mu.Lock()
	was := s.fullMax || s.fullDisk
	wasReason := s.fullReasonLocked()
	s.fullMax, s.fullDisk = byMax, byDisk
	now := s.fullMax || s.fullDisk
	reason := s.fullReasonLocked()
	bytes, free := s.bytes, s.space.free
	s.mu.Unlock()
	if now {
		s.m.full.Set(1)
	} else {
		s.m.full.Set(0)
	}
	switch {
	case now && (!was || reason != wasReason):
		if reason == "disk" {
			s.log.Warn("spool full: its filesystem is at spool.min_free_bytes; refusing batches with SPOOL_FULL (agents keep them) until space is freed",
				"fs_free_bytes", free, "min_free_bytes", s.opts.MinFreeBytes, "dir", s.opts.Dir)
		} else {
			s.log.Warn("spool full: refusing batches with SPOOL_FULL (agents keep them) until the cloud takes some",
				"bytes", bytes, "disk_bytes", s.segs.diskBytes(), "max_bytes", s.opts.MaxBytes)
		}
	case !now && was:
		s.log.Info("spool has room again", "bytes", bytes, "max_bytes", s.opts.MaxBytes, "fs_free_bytes", free)
	}
}

// refreshSpace reads the filesystem's free space and keeps the reserve file
// (it releases it when the disk is nearly full, re-creates it once there is
// room); with walk it also measures the spool's own use of the disk.
func (s *Spool) refreshSpace(walk bool) fsSpace {
	space, err := statFS(s.opts.Dir)
	if err != nil {
		s.log.Warn("check spool free space", "err", err)
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.space
	}
	s.ballastMu.Lock()
	switch {
	case s.ballast.present && space.free < s.indexFloor:
		if err := s.ballast.release(); err != nil {
			s.log.Error("spool filesystem nearly full", "err", err)
		} else {
			s.log.Warn("spool filesystem nearly full (something else filled it): released the spool's reserve file so that its index can still be written; free space on it",
				"fs_free_bytes", space.free, "reserve_bytes", s.ballast.size, "dir", s.opts.Dir)
			space, _ = statFS(s.opts.Dir)
		}
	case !s.ballast.present && space.free >= s.opts.MinFreeBytes+s.ballast.size:
		if err := s.ballast.create(); err != nil {
			s.log.Warn("spool reserve file", "err", err)
		} else {
			space.free -= s.ballast.size
		}
	}
	s.ballastMu.Unlock()
	var disk int64
	if walk {
		disk = diskUsage(s.opts.Dir)
	}
	s.mu.Lock()
	s.space = space
	if walk {
		s.disk = disk
	}
	s.mu.Unlock()
	return space
}

// guardIndex refuses to write the index when its filesystem is (nearly)
// full: Badger writes through mmap, where running out of space is SIGBUS.
func (s *Spool) guardIndex() error {
	space, err := statFS(s.opts.Dir)
	if err != nil {
		return err
	}
	if space.free >= s.indexFloor {
		return nil
	}
	s.ballastMu.Lock()
	defer s.ballastMu.Unlock()
	if s.ballast.present {
		if err := s.ballast.release(); err != nil {
			return err
		}
		s.log.Warn("spool filesystem nearly full (something else filled it): released the spool's reserve file so that its index can still be written; free space on it",
			"fs_free_bytes", space.free, "reserve_bytes", s.ballast.size, "dir", s.opts.Dir)
		return nil
	}
	return fmt.Errorf("%w: %d bytes free on the filesystem of %s, the index needs %d: free space on it", ErrDiskFull, space.free, s.opts.Dir, s.indexFloor)
}

// write commits entries in order in as few transactions as Badger allows,
// each durable when its commit returns. Entries are applied in order, so a
// crash between two split transactions leaves a prefix applied.
func (s *Spool) write(entries []*badger.Entry) error {
	if err := s.guardIndex(); err != nil {
		return err
	}
	for len(entries) > 0 {
		txn := s.db.NewTransaction(true)
		n := 0
		for _, e := range entries {
			var err error
			if e.Value == nil && e.UserMeta == deleteMark {
				err = txn.Delete(e.Key)
			} else {
				err = txn.SetEntry(e)
			}
			if errors.Is(err, badger.ErrTxnTooBig) && n > 0 {
				break
			}
			if err != nil {
				txn.Discard()
				return err
			}
			n++
		}
		if err := txn.Commit(); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

// deleteMark tags entries that write() turns into deletes.
const deleteMark = 0xde

func deleteEntry(k []byte) *badger.Entry {
	e := badger.NewEntry(k, nil)
	e.UserMeta = deleteMark
	return e
}

func (s *Spool) gcLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// GC rewrites what is live before it frees anything: not on a
		// nearly full disk. (Since segments, only spools written before
		// them have payloads in the value log.)
		if space, err := statFS(s.opts.Dir); err != nil || space.free < s.opts.MinFreeBytes {
			continue
		}
		for n := 0; n < 16 && ctx.Err() == nil; n++ {
			if err := s.db.RunValueLogGC(0.5); err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					s.log.Warn("value log GC", "err", err)
				}
				break
			}
		}
	}
}

// Close closes the database. Call it after Run has returned. Idempotent.
func (s *Spool) Close() error {
	s.closeOnce.Do(func() {
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close spool: %w", err)
		}
		s.segs.close()
	})
	return s.closeErr
}
