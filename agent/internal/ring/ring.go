// Package ring is the agent's disk buffer: every batch the collectors make
// waits here until the cloud has stored it.
//
// Design: one file per batch in one directory, named "<seq>-<lane>.b" while
// pending and renamed to "<seq>-<lane>.s" once a relay has spooled it. A
// batch is written once (checksummed) and deleted when delivered or
// dropped, so deletions in any order cost one unlink and the bytes on disk
// are exactly the live bytes: the global bound is exact and needs no
// compaction. A torn file fails its checksum and is removed on open.
//
// Durability: a batch that carries log checkpoints is fsynced (file and
// directory) before Append returns, so log lines are neither lost nor sent
// twice across a power cut. Other batches (security events, host stats)
// are written back: a process crash loses nothing (the page cache holds
// them), and a batch that no relay has spooled within SyncAfter is fsynced
// then. A relay's spooled copy is durable, so while the agent is connected
// almost no batch is fsynced at all; a power cut loses at most SyncAfter of
// events no relay had. An fsync blocks a thread for milliseconds, and while
// one does the Go runtime's sysmon polls every 20 µs: per-batch fsyncs were
// most of the connected agent's CPU time.
//
// Sequence numbers are leased in blocks: the file "seq" holds a number no
// seq has reached; it is moved forward (atomically, durably) before the
// lease runs out, so a restart never reuses a seq even if every batch was
// delivered and deleted.
//
// Each entry carries the log checkpoints its batch advances. The ring keeps
// the furthest checkpoint per file in memory, and writes it to
// "checkpoint.json" before it deletes an entry that carries one, so a
// checkpoint is always durable somewhere: in a live entry or in that file.
//
// Everything else (indexes, spooled times) lives in memory: a few dozen
// bytes per batch.
package ring

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	"google.golang.org/protobuf/proto"
)

// State is where a batch is on its way.
type State int

const (
	// Pending batches have not been acknowledged by a relay.
	Pending State = iota
	// Spooled batches are durable on a relay but not yet in the cloud.
	Spooled
)

const (
	seqFile      = "seq"
	ckptFile     = "checkpoint.json"
	leaseStep    = 4096
	numLanes     = 4 // index by agentv1.Priority
	lowestLane   = agentv1.Priority_PRIORITY_FILE
	highestLane  = agentv1.Priority_PRIORITY_SECURITY
	pendingExt   = ".b"
	spooledExt   = ".s"
	compactRatio = 2
)

var (
	// ErrTooLarge means a batch is bigger than the whole ring.
	ErrTooLarge = errors.New("batch larger than ring")
	// ErrNoRoom means the ring is full of higher-priority batches; the new
	// batch was dropped (and counted).
	ErrNoRoom = errors.New("ring full of higher-priority batches")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("ring closed")
)

// Options configures a Ring.
type Options struct {
	MaxBytes int64
	AgentID  string
	// SyncAfter is how long a batch without log checkpoints may stay
	// written but not fsynced while no relay has spooled it (on a multiple
	// of SyncAfter of the clock); 0 fsyncs every batch in Append.
	SyncAfter time.Duration
	Clock     clockwork.Clock
	Logger    *slog.Logger
}

// Entry describes one buffered batch.
type Entry struct {
	Seq       uint64
	Lane      agentv1.Priority
	Size      int64
	State     State
	SpooledAt time.Time
}

type entry struct {
	Entry
	hasCkpt bool
	removed bool
}

// Stats is a snapshot of the ring's counters.
type Stats struct {
	Batches         int    `json:"batches"`
	Bytes           int64  `json:"bytes"`
	MaxBytes        int64  `json:"max_bytes"`
	DroppedBatches  uint64 `json:"dropped_batches"`
	DroppedBytes    uint64 `json:"dropped_bytes"`
	RejectedBatches uint64 `json:"rejected_batches"`
	CorruptBatches  uint64 `json:"corrupt_batches"`
	NextSeq         uint64 `json:"next_seq"`
	Pending         int    `json:"pending"`
	Spooled         int    `json:"spooled"`
	DeliveredTotal  uint64 `json:"delivered_total"`
}

// Ring is safe for concurrent use.
type Ring struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	closed    bool
	entries   map[uint64]*entry
	lanes     [numLanes][]*entry // sorted by seq; removed entries compacted lazily
	removedN  [numLanes]int
	bytes     int64
	nextSeq   uint64
	lease     uint64
	ckpt      map[FileID]Checkpoint
	ckptDirty bool
	changed   chan struct{}
	st        Stats
	// unsynced are batches written back, not yet fsynced; syncTimer runs
	// syncUnsynced while there are any.
	unsynced  []*entry
	syncTimer *time.Timer
}

// Open opens (creating) the ring in dir, removing torn entries.
func Open(dir string, opts Options) (*Ring, error) {
	if opts.MaxBytes <= 0 {
		return nil, fmt.Errorf("open ring %s: max bytes %d", dir, opts.MaxBytes)
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open ring %s: %w", dir, err)
	}
	r := &Ring{
		dir:     dir,
		opts:    opts,
		log:     opts.Logger,
		entries: make(map[uint64]*entry),
		ckpt:    make(map[FileID]Checkpoint),
		changed: make(chan struct{}),
		nextSeq: 1,
	}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("open ring %s: %w", dir, err)
	}
	return r, nil
}

func (r *Ring) load() error {
	if b, err := os.ReadFile(filepath.Join(r.dir, seqFile)); err == nil {
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return fmt.Errorf("seq lease: %w", err)
		}
		r.nextSeq = max(r.nextSeq, n)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("seq lease: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(r.dir, ckptFile)); err == nil {
		var cs []Checkpoint
		if err := json.Unmarshal(b, &cs); err != nil {
			r.log.Warn("ring checkpoint file unreadable, ignoring it", "path", filepath.Join(r.dir, ckptFile), "err", err)
		}
		for _, c := range cs {
			r.mergeCkpt(c)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	// Entries ahead of the file make it dirty again below.
	r.ckptDirty = false
	des, err := os.ReadDir(r.dir)
	if err != nil {
		return err
	}
	now := r.opts.Clock.Now()
	for _, de := range des {
		name := de.Name()
		seq, lane, state, ok := parseName(name)
		if !ok {
			if strings.HasPrefix(name, ".") { // leftover atomicfile temp
				os.Remove(filepath.Join(r.dir, name))
			}
			continue
		}
		path := filepath.Join(r.dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		flane, ckpts, _, err := decodeEntry(b)
		if err == nil && flane != lane {
			err = fmt.Errorf("%w: lane %d in file, %d in name", ErrCorrupt, flane, lane)
		}
		if err != nil {
			r.log.Warn("removing torn ring entry", "path", path, "err", err)
			r.st.CorruptBatches++
			if err := os.Remove(path); err != nil {
				return err
			}
			continue
		}
		for _, c := range ckpts {
			r.mergeCkpt(c)
		}
		e := &entry{Entry: Entry{Seq: seq, Lane: lane, Size: int64(len(b)), State: state}, hasCkpt: len(ckpts) > 0}
		if state == Spooled {
			// The spooled time is not persisted: count from now.
			e.SpooledAt = now
		}
		r.entries[seq] = e
		r.lanes[lane] = append(r.lanes[lane], e)
		r.bytes += e.Size
		r.nextSeq = max(r.nextSeq, seq+1)
	}
	for l := range r.lanes {
		sort.Slice(r.lanes[l], func(i, j int) bool { return r.lanes[l][i].Seq < r.lanes[l][j].Seq })
	}
	return r.extendLease()
}

func parseName(name string) (seq uint64, lane agentv1.Priority, state State, ok bool) {
	ext := filepath.Ext(name)
	switch ext {
	case pendingExt:
		state = Pending
	case spooledExt:
		state = Spooled
	default:
		return 0, 0, 0, false
	}
	s, l, found := strings.Cut(strings.TrimSuffix(name, ext), "-")
	if !found {
		return 0, 0, 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, 0, 0, false
	}
	ln, err := strconv.Atoi(l)
	if err != nil || ln < int(highestLane) || ln > int(lowestLane) {
		return 0, 0, 0, false
	}
	return seq, agentv1.Priority(ln), state, true
}

func (r *Ring) path(e *entry) string {
	ext := pendingExt
	if e.State == Spooled {
		ext = spooledExt
	}
	return filepath.Join(r.dir, fmt.Sprintf("%020d-%d%s", e.Seq, e.Lane, ext))
}

// extendLease makes sure the persisted lease is ahead of nextSeq.
func (r *Ring) extendLease() error {
	if r.nextSeq < r.lease {
		return nil
	}
	lease := r.nextSeq + leaseStep
	if err := atomicfile.Write(filepath.Join(r.dir, seqFile), []byte(strconv.FormatUint(lease, 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("seq lease: %w", err)
	}
	r.lease = lease
	return nil
}

func (r *Ring) mergeCkpt(c Checkpoint) {
	old, ok := r.ckpt[c.ID()]
	if !ok || c.After(old) {
		r.ckpt[c.ID()] = c
		r.ckptDirty = true
	}
}

// Append stores a new batch of events in lane with the log checkpoints it
// advances, durably, and returns its seq. To make room it drops the oldest
// batches of the lowest-priority lane first, never a batch of higher
// priority than the new one (then the new batch is dropped: ErrNoRoom).
func (r *Ring) Append(lane agentv1.Priority, events [][]byte, ckpts []Checkpoint) (uint64, error) {
	if lane < highestLane || lane > lowestLane {
		return 0, fmt.Errorf("append to ring: lane %v", lane)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, ErrClosed
	}
	seq := r.nextSeq
	batch, err := proto.Marshal(&agentv1.EventBatch{
		AgentId:       r.opts.AgentID,
		Seq:           seq,
		Priority:      lane,
		CreatedUnixMs: r.opts.Clock.Now().UnixMilli(),
		Events:        events,
	})
	if err != nil {
		return 0, fmt.Errorf("append to ring: %w", err)
	}
	b := encodeEntry(lane, ckpts, batch)
	size := int64(len(b))
	if size > r.opts.MaxBytes || len(b) > maxEntryLen {
		return 0, fmt.Errorf("append to ring: %w: %d bytes, max %d", ErrTooLarge, size, min(r.opts.MaxBytes, maxEntryLen))
	}
	if err := r.makeRoom(lane, size); err != nil {
		return 0, err
	}
	if err := r.extendLease(); err != nil {
		return 0, fmt.Errorf("append to ring: %w", err)
	}
	e := &entry{Entry: Entry{Seq: seq, Lane: lane, Size: size, State: Pending}, hasCkpt: len(ckpts) > 0}
	durable := e.hasCkpt || r.opts.SyncAfter <= 0
	if err := writeEntry(r.path(e), b, durable); err != nil {
		return 0, fmt.Errorf("append to ring: %w", err)
	}
	if !durable {
		r.unsynced = append(r.unsynced, e)
		if r.syncTimer == nil {
			now := r.opts.Clock.Now()
			// On a tick at least SyncAfter away: with the batches' own
			// ticks, a batch is never synced in the instant after its write.
			d := r.opts.SyncAfter
			r.syncTimer = time.AfterFunc(now.Add(d).Truncate(d).Add(d).Sub(now), r.syncUnsynced)
		}
	}
	r.nextSeq++
	r.entries[seq] = e
	r.lanes[lane] = append(r.lanes[lane], e)
	r.bytes += size
	for _, c := range ckpts {
		r.mergeCkpt(c)
	}
	close(r.changed)
	r.changed = make(chan struct{})
	return seq, nil
}

// syncUnsynced fsyncs the written-back batches no relay has spooled.
func (r *Ring) syncUnsynced() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.syncTimer = nil
	if _, err := r.syncLocked(); err != nil {
		r.log.Error("sync ring entries", "err", err)
	}
}

// syncLocked fsyncs every unsynced batch still pending, then the directory.
// It returns how many batches it fsynced. Called with r.mu held.
func (r *Ring) syncLocked() (int, error) {
	n := 0
	var firstErr error
	for _, e := range r.unsynced {
		if e.removed || e.State != Pending {
			continue
		}
		if err := syncFile(r.path(e)); err != nil && !errors.Is(err, os.ErrNotExist) && firstErr == nil {
			firstErr = err
		}
		n++
	}
	clear(r.unsynced)
	r.unsynced = r.unsynced[:0]
	if n > 0 {
		if err := syncFile(r.dir); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return n, firstErr
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// writeEntry creates path with b; durable fsyncs the file and the directory.
func writeEntry(path string, b []byte, durable bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if !durable {
		return f.Close()
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// makeRoom drops batches until size more bytes fit. Called with r.mu held.
func (r *Ring) makeRoom(lane agentv1.Priority, size int64) error {
	for r.bytes+size > r.opts.MaxBytes {
		var victim *entry
		for l := lowestLane; l >= lane && victim == nil; l-- {
			victim = r.oldest(l)
		}
		if victim == nil {
			r.st.DroppedBatches++
			r.st.DroppedBytes += uint64(size)
			r.log.Warn("ring full of higher-priority batches, dropping new batch", "lane", lane.String(), "bytes", size)
			return fmt.Errorf("append to ring: %w", ErrNoRoom)
		}
		r.st.DroppedBatches++
		r.st.DroppedBytes += uint64(victim.Size)
		r.log.Warn("ring full, dropping oldest batch", "seq", victim.Seq, "lane", victim.Lane.String(), "bytes", victim.Size,
			"dropped_batches", r.st.DroppedBatches, "dropped_bytes", r.st.DroppedBytes)
		if err := r.remove([]*entry{victim}); err != nil {
			return fmt.Errorf("append to ring: drop seq %d: %w", victim.Seq, err)
		}
	}
	return nil
}

func (r *Ring) oldest(lane agentv1.Priority) *entry {
	for _, e := range r.lanes[lane] {
		if !e.removed {
			return e
		}
	}
	return nil
}

// remove deletes entries' files, first making the checkpoints they carry
// durable. Called with r.mu held.
func (r *Ring) remove(es []*entry) error {
	for _, e := range es {
		if e.hasCkpt && r.ckptDirty {
			if err := r.saveCkpt(); err != nil {
				return err
			}
			break
		}
	}
	for _, e := range es {
		if err := os.Remove(r.path(e)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		e.removed = true
		delete(r.entries, e.Seq)
		r.bytes -= e.Size
		r.removedN[e.Lane]++
		if r.removedN[e.Lane]*compactRatio > len(r.lanes[e.Lane]) {
			r.compact(e.Lane)
		}
	}
	return nil
}

func (r *Ring) compact(lane agentv1.Priority) {
	kept := r.lanes[lane][:0]
	for _, e := range r.lanes[lane] {
		if !e.removed {
			kept = append(kept, e)
		}
	}
	clear(r.lanes[lane][len(kept):])
	r.lanes[lane] = kept
	r.removedN[lane] = 0
}

func (r *Ring) saveCkpt() error {
	cs := make([]Checkpoint, 0, len(r.ckpt))
	for _, c := range r.ckpt {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Path < cs[j].Path })
	b, err := json.Marshal(cs)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(r.dir, ckptFile), b, 0o600); err != nil {
		return err
	}
	r.ckptDirty = false
	return nil
}

// Checkpoints returns the furthest checkpoint of every file the ring knows.
func (r *Ring) Checkpoints() []Checkpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := make([]Checkpoint, 0, len(r.ckpt))
	for _, c := range r.ckpt {
		cs = append(cs, c)
	}
	return cs
}

// ForgetCheckpoints drops checkpoints of files that are gone for good.
func (r *Ring) ForgetCheckpoints(ids []FileID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if _, ok := r.ckpt[id]; ok {
			delete(r.ckpt, id)
			r.ckptDirty = true
		}
	}
}

// Read returns the serialized agentv1.EventBatch of seq.
func (r *Ring) Read(seq uint64) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[seq]
	if !ok {
		return nil, fmt.Errorf("read ring seq %d: %w", seq, os.ErrNotExist)
	}
	path := r.path(e)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read ring seq %d: %w", seq, err)
	}
	_, _, batch, err := decodeEntry(b)
	if err != nil {
		r.st.CorruptBatches++
		r.log.Error("dropping corrupt ring entry", "path", path, "err", err)
		_ = r.remove([]*entry{e})
		return nil, fmt.Errorf("read ring seq %d: %w", seq, err)
	}
	return batch, nil
}

// Next returns the oldest batch of lane with seq > after that should be
// sent: pending, or spooled longer than redeliverAfter ago. skip excludes
// batches already in flight.
func (r *Ring) Next(lane agentv1.Priority, after uint64, redeliverAfter time.Duration, skip func(uint64) bool) (Entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if lane < 0 || int(lane) >= numLanes {
		return Entry{}, false
	}
	es := r.lanes[lane]
	i := sort.Search(len(es), func(i int) bool { return es[i].Seq > after })
	now := r.opts.Clock.Now()
	for ; i < len(es); i++ {
		e := es[i]
		if e.removed || (skip != nil && skip(e.Seq)) {
			continue
		}
		if e.State == Pending || now.Sub(e.SpooledAt) >= redeliverAfter {
			return e.Entry, true
		}
	}
	return Entry{}, false
}

// Changed returns a channel closed at the next Append.
func (r *Ring) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// MarkSpooled records that a relay holds seq durably. Unknown seqs (already
// delivered or dropped) are ignored.
func (r *Ring) MarkSpooled(seq uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[seq]
	if !ok {
		return nil
	}
	now := r.opts.Clock.Now()
	if e.State == Spooled {
		e.SpooledAt = now
		return nil
	}
	old := r.path(e)
	e.State = Spooled
	e.SpooledAt = now
	// No directory sync: after a crash either name is correct enough (a
	// pending batch is resent and the relay answers DUPLICATE).
	if err := os.Rename(old, r.path(e)); err != nil {
		e.State = Pending
		return fmt.Errorf("mark seq %d spooled: %w", seq, err)
	}
	return nil
}

// Deliver forgets batches the cloud has stored and returns how many it knew.
func (r *Ring) Deliver(seqs []uint64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var es []*entry
	for _, s := range seqs {
		if e, ok := r.entries[s]; ok {
			es = append(es, e)
		}
	}
	if err := r.remove(es); err != nil {
		return 0, fmt.Errorf("deliver: %w", err)
	}
	r.st.DeliveredTotal += uint64(len(es))
	return len(es), nil
}

// Reject drops a batch the relay refused as malformed; it is counted.
func (r *Ring) Reject(seq uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[seq]
	if !ok {
		return nil
	}
	if err := r.remove([]*entry{e}); err != nil {
		return fmt.Errorf("reject seq %d: %w", seq, err)
	}
	r.st.RejectedBatches++
	return nil
}

// Stats returns the ring's counters.
func (r *Ring) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.Batches = len(r.entries)
	st.Bytes = r.bytes
	st.MaxBytes = r.opts.MaxBytes
	st.NextSeq = r.nextSeq
	for _, e := range r.entries {
		if e.State == Pending {
			st.Pending++
		} else {
			st.Spooled++
		}
	}
	return st
}

// Close persists the checkpoints and makes later calls fail. Idempotent.
func (r *Ring) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.syncTimer != nil {
		r.syncTimer.Stop()
		r.syncTimer = nil
	}
	if _, err := r.syncLocked(); err != nil {
		return fmt.Errorf("close ring %s: %w", r.dir, err)
	}
	if r.ckptDirty {
		if err := r.saveCkpt(); err != nil {
			return fmt.Errorf("close ring %s: %w", r.dir, err)
		}
	}
	return nil
}
