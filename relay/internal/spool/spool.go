// Package spool is the relay's durable, bounded batch store on Badger.
//
// Appends from every agent connection go through one committer goroutine
// that writes everything queued in one transaction, whose commit fsyncs
// (SyncWrites=true): many agents share one fsync, and no Append returns
// Spooled before its batch is on disk. Per-commit sync rather than
// SyncWrites=false plus DB.Sync: in Badger v4.9.6 DB.Sync covers only the
// active memtable's WAL, so a memtable rotated between the commit and the
// Sync would leave its WAL unsynced until flushed (lost on power failure).
package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
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
	// Full means the batch was not taken: the spool is at max_bytes.
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
	Dir        string        // Badger directory
	MaxBytes   int64         // bound on spooled batch bytes
	DedupTTL   time.Duration // how long (agent_id, seq) markers live; default 7 days
	GCInterval time.Duration // value-log GC period; default 5 minutes
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not exported
	Now        func() time.Time      // clock; default time.Now
}

// Stats is a snapshot of the spool's accounting.
type Stats struct {
	Batches  int64
	Bytes    int64
	MaxBytes int64
	Full     bool
	Receipts int64
}

// Spool is the durable batch store. Open it, Run it, Close it.
type Spool struct {
	opts Options
	db   *badger.DB
	log  *slog.Logger
	m    *metrics

	reqs    chan *appendReq
	stopped chan struct{} // closed when the committer ends
	newData chan struct{} // pulsed after every commit that spooled something

	mu       sync.Mutex
	batches  int64
	bytes    int64
	receipts int64
	full     bool
	nextSeq  uint64 // committer only, after open

	tiersMu sync.RWMutex
	tiers   map[string]string // group id -> policy tier (policy.go)

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

// badgerOptions are tuned for a small appliance: a few tens of MB of RAM.
func badgerOptions(dir string, log *slog.Logger) badger.Options {
	o := badger.DefaultOptions(dir)
	o.SyncWrites = true // one commit per group, so one fsync per group
	o.MemTableSize = 16 << 20
	o.NumMemtables = 2
	o.NumLevelZeroTables = 2
	o.NumLevelZeroTablesStall = 4
	o.BlockCacheSize = 8 << 20
	o.IndexCacheSize = 8 << 20
	o.ValueLogFileSize = 64 << 20
	o.ValueThreshold = 1 << 10
	o.NumCompactors = 2
	o.Logger = badgerLogger{log.With("component", "badger")}
	return o
}

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
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 30
	}
	dir := filepath.Clean(opts.Dir)
	db, err := badger.Open(badgerOptions(dir, opts.Logger))
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	s := &Spool{
		opts:    opts,
		db:      db,
		log:     opts.Logger,
		reqs:    make(chan *appendReq, 1024),
		stopped: make(chan struct{}),
		newData: make(chan struct{}, 1),
		nextSeq: 1,
	}
	if err := s.restore(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	if err := s.loadTiers(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	s.m = newMetrics(opts.Registerer, s)
	s.full = s.bytes >= opts.MaxBytes
	if s.full {
		s.m.full.Set(1)
	}
	s.log.Info("spool open", "dir", dir, "batches", s.batches, "bytes", s.bytes, "receipts", s.receipts)
	return s, nil
}

func (s *Spool) restore() error {
	return s.db.View(func(txn *badger.Txn) error {
		if err := scanKeys(txn, kindBatch, func(k []byte) error {
			_, seq, size, err := parseBatchKey(k)
			if err != nil {
				return err
			}
			s.batches++
			s.bytes += int64(size)
			if seq >= s.nextSeq {
				s.nextSeq = seq + 1
			}
			return nil
		}); err != nil {
			return err
		}
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
	return Stats{Batches: s.batches, Bytes: s.bytes, MaxBytes: s.opts.MaxBytes, Full: s.full, Receipts: s.receipts}
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

// Run runs the group committer and value-log GC until ctx ends.
func (s *Spool) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.gcLoop(ctx)
	}()
	defer wg.Wait()
	defer close(s.stopped)
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

type dedupID struct {
	agent string
	seq   uint64
}

// commit writes one group in one transaction (split only if Badger says it
// is too big), syncs once and answers every waiter.
func (s *Spool) commit(group []*appendReq) {
	start := time.Now()
	results := make([]Result, len(group))
	var entries []*badger.Entry
	seen := make(map[dedupID]bool, len(group))
	s.mu.Lock()
	room := s.opts.MaxBytes - s.bytes
	empty := s.bytes == 0
	seq := s.nextSeq
	s.mu.Unlock()
	var addBytes, addBatches int64
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
			// An empty spool takes one batch of any size: a batch larger than
			// max_bytes would otherwise be refused forever and wedge its agent.
			if addBytes+int64(len(r.data)) > room && !(empty && addBytes == 0) {
				results[i] = Full
				continue
			}
			seen[id] = true
			prio := uint8(r.b.GetPriority())
			if prio == 0 || prio > uint8(agentv1.Priority_PRIORITY_FILE) {
				prio = uint8(agentv1.Priority_PRIORITY_BULK)
			}
			entries = append(entries,
				badger.NewEntry(batchKey(prio, seq, len(r.data)), r.data),
				badger.NewEntry(dk, nil).WithTTL(s.opts.DedupTTL))
			seq++
			addBytes += int64(len(r.data))
			addBatches++
			results[i] = Spooled
		}
		return nil
	})
	if err == nil && len(entries) > 0 {
		err = s.write(entries)
	}
	if err != nil {
		err = fmt.Errorf("spool commit: %w", err)
		s.log.Error("spool commit failed", "batches", len(group), "err", err)
		for _, r := range group {
			r.done <- appendResp{err: err}
		}
		return
	}
	var full, dups int
	for _, r := range results {
		switch r {
		case Full:
			full++
		case Duplicate:
			dups++
		}
	}
	s.mu.Lock()
	s.nextSeq = seq
	s.bytes += addBytes
	s.batches += addBatches
	nowFull := full > 0
	if !nowFull && s.bytes >= s.opts.MaxBytes {
		nowFull = true
	}
	changed := nowFull != s.full
	s.full = nowFull
	bytes := s.bytes
	s.mu.Unlock()
	s.m.duplicates.Add(float64(dups))
	s.m.rejectedFull.Add(float64(full))
	if changed {
		s.fullChanged(nowFull, bytes)
	}
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

func (s *Spool) fullChanged(full bool, bytes int64) {
	if full {
		s.m.full.Set(1)
		s.log.Warn("spool full: refusing batches with SPOOL_FULL", "bytes", bytes, "max_bytes", s.opts.MaxBytes)
	} else {
		s.m.full.Set(0)
		s.log.Info("spool has room again", "bytes", bytes, "max_bytes", s.opts.MaxBytes)
	}
}

// write commits entries in order in as few transactions as Badger allows,
// each durable when its commit returns. Entries are applied in order, so a
// crash between two split transactions leaves a prefix applied.
func (s *Spool) write(entries []*badger.Entry) error {
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
	})
	return s.closeErr
}
