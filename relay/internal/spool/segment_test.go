package spool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "segments", "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitFor polls cond until it holds; the test's own timeout bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Delivered batches give their space back: segments are deleted as their
// last batch goes, and a drained spool holds no segment at all.
func TestDrainDeletesSegments(t *testing.T) {
	dir := t.TempDir()
	s := startSpool(t, dir, 16<<20) // 1 MiB segments
	payload := strings.Repeat("x", 64<<10)
	for i := uint64(1); i <= 40; i++ {
		mustAppend(t, s, batch(agentA, i, agentv1.Priority_PRIORITY_BULK, payload), Spooled)
	}
	if n := len(segFiles(t, dir)); n < 2 {
		t.Fatalf("got %d segment files for 2.5 MiB of batches, want several", n)
	}
	before := s.segs.diskBytes()
	items, err := s.Peek(3 << 19) // more than the first segment

	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Complete(items); err != nil {
		t.Fatal(err)
	}
	if after := s.segs.diskBytes(); after >= before {
		t.Fatalf("segment bytes after delivering the first segment's batches: got %d, want < %d", after, before)
	}
	for {
		items, err := s.Peek(4 << 20)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) == 0 {
			break
		}
		if _, err := s.Complete(items); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "no segment file left", func() bool { return len(segFiles(t, dir)) == 0 })
	if got := s.segs.diskBytes(); got != 0 {
		t.Fatalf("segment bytes after a full drain: got %d, want 0", got)
	}
	// And it takes batches again, in a new segment.
	mustAppend(t, s, batch(agentA, 41, agentv1.Priority_PRIORITY_BULK, "y"), Spooled)
}

// A batch that would leave less than min_free_bytes on the filesystem is
// refused, with the disk as the reason.
func TestRefusesBelowMinFreeBytes(t *testing.T) {
	dir := t.TempDir()
	space, err := statFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 30, MinFreeBytes: space.free + 1<<30, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSpool(s)
	t.Cleanup(func() { stop(); s.Close() })
	mustAppend(t, s, batch(agentA, 1, agentv1.Priority_PRIORITY_BULK, "x"), Full)
	st := s.Stats()
	if !st.Full || st.FullReason != "disk" {
		t.Fatalf("stats: got full=%v reason %q, want true, disk", st.Full, st.FullReason)
	}
	if st.FsFreeBytes <= 0 || st.FsSizeBytes < st.FsFreeBytes {
		t.Fatalf("filesystem: got free %d size %d", st.FsFreeBytes, st.FsSizeBytes)
	}
}

// Segment files nobody references (a crash between the segment write and
// the index commit) are deleted at open; an index entry whose segment is
// gone is forgotten with its dedup marker, so the agent's resend is taken.
func TestOpenPrunesAndForgetsDangling(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MaxBytes: 64 << 20, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSpool(s)
	mustAppend(t, s, batch(agentA, 1, agentv1.Priority_PRIORITY_BULK, "one"), Spooled)
	stop()
	s.Close()
	segs := segFiles(t, dir)
	if len(segs) != 1 {
		t.Fatalf("got %d segments, want 1", len(segs))
	}
	orphan := filepath.Join(dir, "segments", segName(999))
	if err := os.WriteFile(orphan, []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(segs[0]); err != nil {
		t.Fatal(err)
	}
	s2 := startSpool(t, dir, 64<<20)
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("orphan segment still there after open: %v", err)
	}
	if st := s2.Stats(); st.Batches != 0 {
		t.Fatalf("batches after losing their segment: got %d, want 0", st.Batches)
	}
	mustAppend(t, s2, batch(agentA, 1, agentv1.Priority_PRIORITY_BULK, "one"), Spooled)
	items, err := s2.Peek(1 << 20)
	if err != nil || len(items) != 1 {
		t.Fatalf("peek: got %d items, %v; want 1", len(items), err)
	}
}

// A spool written before segments (payloads in Badger) opens, counts and
// drains its batches.
func TestLegacyBatchesDrain(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badgerOptions(dir, 1<<20, quiet()))
	if err != nil {
		t.Fatal(err)
	}
	old := batch(agentA, 7, agentv1.Priority_PRIORITY_BULK, "from before")
	data, err := proto.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(batchKey(uint8(agentv1.Priority_PRIORITY_BULK), 1, len(data)), data); err != nil {
			return err
		}
		return txn.Set(agentSeqKey(kindDedup, agentA, 7), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := startSpool(t, dir, 64<<20)
	if st := s.Stats(); st.Batches != 1 || st.Bytes != int64(len(data)) {
		t.Fatalf("stats of a legacy spool: got %d batches, %d bytes; want 1, %d", st.Batches, st.Bytes, len(data))
	}
	mustAppend(t, s, batch(agentA, 8, agentv1.Priority_PRIORITY_BULK, "new"), Spooled)
	items, err := s.Peek(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(items); len(got) != 2 || got[0] != 7 || got[1] != 8 {
		t.Fatalf("peek: got seqs %v, want [7 8]", got)
	}
	if !proto.Equal(items[0].Batch, old) {
		t.Fatalf("legacy batch: got %v, want %v", items[0].Batch, old)
	}
	if _, err := s.Complete(items); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Batches != 0 || st.Bytes != 0 {
		t.Fatalf("after drain: got %d batches, %d bytes", st.Batches, st.Bytes)
	}
}

// Per-agent backlog and the oldest batch's age, across a reopen.
func TestBacklogAndOldestAge(t *testing.T) {
	dir := t.TempDir()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	open := func() (*Spool, func()) {
		s, err := Open(Options{Dir: dir, MaxBytes: 64 << 20, Logger: quiet(), Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		stop := runSpool(s)
		return s, func() { stop(); s.Close() }
	}
	s, closeS := open()
	if age, err := s.OldestAge(); err != nil || age != 0 {
		t.Fatalf("empty spool: got age %v, %v; want 0", age, err)
	}
	mustAppend(t, s, batch(agentA, 1, agentv1.Priority_PRIORITY_BULK, "aaaa"), Spooled)
	clock.Advance(time.Minute)
	mustAppend(t, s, batch("b", 1, agentv1.Priority_PRIORITY_SECURITY, "b"), Spooled)
	mustAppend(t, s, batch(agentA, 2, agentv1.Priority_PRIORITY_FILE, "aaaa"), Spooled)
	clock.Advance(time.Minute)
	closeS()

	s, closeS = open()
	defer closeS()
	if age, err := s.OldestAge(); err != nil || age != 2*time.Minute {
		t.Fatalf("oldest age: got %v, %v; want 2m (the bulk batch, behind a newer security one)", age, err)
	}
	top, n := s.BacklogTop(1)
	one := proto.Size(batch(agentA, 1, agentv1.Priority_PRIORITY_BULK, "aaaa"))
	if n != 2 || len(top) != 1 || top[0].AgentID != agentA || top[0].Batches != 2 || top[0].Bytes != int64(2*one) {
		t.Fatalf("backlog: got %+v of %d agents, want %s with 2 batches, %d bytes, of 2", top, n, agentA, 2*one)
	}
	items, err := s.Peek(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Complete(items[:2]); err != nil { // security, then the old bulk one
		t.Fatal(err)
	}
	if age, err := s.OldestAge(); err != nil || age != time.Minute {
		t.Fatalf("oldest age after delivering the oldest: got %v, %v; want 1m", age, err)
	}
	if top, n := s.BacklogTop(5); n != 1 || top[0].Batches != 1 {
		t.Fatalf("backlog after delivery: got %+v of %d agents", top, n)
	}
}
