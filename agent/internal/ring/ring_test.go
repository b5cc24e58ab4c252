package ring

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	"google.golang.org/protobuf/proto"
)

const (
	sec  = agentv1.Priority_PRIORITY_SECURITY
	bulk = agentv1.Priority_PRIORITY_BULK
	file = agentv1.Priority_PRIORITY_FILE
)

func open(t *testing.T, dir string, max int64, clk *clockwork.FakeClock) *Ring {
	t.Helper()
	r, err := Open(dir, Options{MaxBytes: max, AgentID: "agent-1", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func appendN(t *testing.T, r *Ring, lane agentv1.Priority, n int, size int) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := 0; i < n; i++ {
		seq, err := r.Append(lane, [][]byte{make([]byte, size)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

func TestAppendAckDeliver(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Unix(1000, 0))
	r := open(t, t.TempDir(), 1<<20, clk)
	s1, _ := r.Append(bulk, [][]byte{[]byte(`{"a":1}`)}, nil)
	s2, _ := r.Append(sec, [][]byte{[]byte(`{"b":2}`)}, nil)
	s3, _ := r.Append(bulk, [][]byte{[]byte(`{"c":3}`)}, nil)
	if s1 != 1 || s2 != 2 || s3 != 3 {
		t.Fatalf("got seqs %d %d %d, want 1 2 3", s1, s2, s3)
	}
	b, err := r.Read(s3)
	if err != nil {
		t.Fatal(err)
	}
	var eb agentv1.EventBatch
	if err := proto.Unmarshal(b, &eb); err != nil {
		t.Fatal(err)
	}
	if eb.Seq != 3 || eb.AgentId != "agent-1" || eb.Priority != bulk || string(eb.Events[0]) != `{"c":3}` {
		t.Fatalf("got batch %v, want seq 3 of agent-1 in bulk", &eb)
	}
	// Oldest first within a lane, skipping in-flight ones.
	if e, ok := r.Next(bulk, 0, time.Minute, nil); !ok || e.Seq != 1 {
		t.Fatalf("got next %v %v, want seq 1", e, ok)
	}
	if e, ok := r.Next(bulk, 0, time.Minute, func(s uint64) bool { return s == 1 }); !ok || e.Seq != 3 {
		t.Fatalf("got next %v %v, want seq 3", e, ok)
	}
	if err := r.MarkSpooled(1); err != nil {
		t.Fatal(err)
	}
	if e, ok := r.Next(bulk, 0, time.Minute, nil); !ok || e.Seq != 3 {
		t.Fatalf("after spooled: got next %v %v, want seq 3", e, ok)
	}
	clk.Advance(time.Minute)
	if e, ok := r.Next(bulk, 0, time.Minute, nil); !ok || e.Seq != 1 {
		t.Fatalf("after redeliver_after: got next %v %v, want seq 1", e, ok)
	}
	if n, err := r.Deliver([]uint64{1, 2, 99}); err != nil || n != 2 {
		t.Fatalf("deliver: got %d %v, want 2 nil", n, err)
	}
	st := r.Stats()
	if st.Batches != 1 || st.DeliveredTotal != 2 || st.Pending != 1 || st.NextSeq != 4 {
		t.Fatalf("got stats %+v, want 1 batch, 2 delivered, 1 pending, next 4", st)
	}
	if err := r.Reject(3); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Batches != 0 || st.Bytes != 0 || st.RejectedBatches != 1 {
		t.Fatalf("got stats %+v, want empty with 1 rejected", st)
	}
}

func TestGlobalBoundDropsLowestPriorityOldestFirst(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Unix(1000, 0))
	r := open(t, t.TempDir(), 1<<20, clk)
	const size = 100 << 10 // ~100 KiB per batch, ~10 fit
	secs := appendN(t, r, sec, 3, size)
	files := appendN(t, r, file, 2, size)
	bulks := appendN(t, r, bulk, 4, size)
	if st := r.Stats(); st.DroppedBatches != 0 {
		t.Fatalf("got %d dropped before full, want 0", st.DroppedBatches)
	}
	// Four more security batches: the file lane goes first, then the oldest bulk.
	appendN(t, r, sec, 4, size)
	st := r.Stats()
	if st.DroppedBatches != 3 || st.Bytes > st.MaxBytes {
		t.Fatalf("got %d dropped, %d/%d bytes, want 3 dropped within bound", st.DroppedBatches, st.Bytes, st.MaxBytes)
	}
	for _, s := range files {
		if _, err := r.Read(s); err == nil {
			t.Errorf("file seq %d: still there, want dropped", s)
		}
	}
	if _, err := r.Read(bulks[0]); err == nil {
		t.Errorf("oldest bulk seq %d: still there, want dropped", bulks[0])
	}
	for _, s := range append(secs, bulks[1:]...) {
		if _, err := r.Read(s); err != nil {
			t.Errorf("seq %d: %v, want kept", s, err)
		}
	}
	// A bulk batch never pushes out security batches: once bulk is gone it is dropped itself.
	for i := 0; i < 10; i++ {
		r.Append(sec, [][]byte{make([]byte, size)}, nil)
	}
	if _, err := r.Append(bulk, [][]byte{make([]byte, size)}, nil); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("bulk into a ring full of security: got %v, want ErrNoRoom", err)
	}
	if _, err := r.Append(sec, [][]byte{make([]byte, 2<<20)}, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("batch larger than ring: got %v, want ErrTooLarge", err)
	}
	if st := r.Stats(); st.DroppedBytes == 0 || st.Bytes > st.MaxBytes {
		t.Fatalf("got stats %+v, want dropped bytes counted and bound kept", st)
	}
}

func TestSeqNeverReusedAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	clk := clockwork.NewFakeClockAt(time.Unix(1000, 0))
	r := open(t, dir, 1<<20, clk)
	seqs := appendN(t, r, bulk, 3, 10)
	if _, err := r.Deliver(seqs); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r2 := open(t, dir, 1<<20, clk)
	s, err := r2.Append(bulk, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s <= seqs[2] {
		t.Fatalf("after reopen: got seq %d, want > %d", s, seqs[2])
	}
	// Crash without Close (kill -9): the lease file alone must prevent reuse.
	r3 := open(t, dir, 1<<20, clk)
	s3, _ := r3.Append(bulk, nil, nil)
	if s3 <= s {
		t.Fatalf("after crash: got seq %d, want > %d", s3, s)
	}
}

func TestTornTailAndStateSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	clk := clockwork.NewFakeClockAt(time.Unix(1000, 0))
	r := open(t, dir, 1<<20, clk)
	ck := []Checkpoint{{Dev: 1, Ino: 2, Offset: 100, Path: "/var/log/a.log"}}
	appendN(t, r, bulk, 2, 50)
	s3, _ := r.Append(bulk, [][]byte{[]byte("x")}, ck)
	if err := r.MarkSpooled(1); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash mid-write of seq 4: a torn file.
	b, _ := os.ReadFile(filepath.Join(dir, "00000000000000000003-2.b"))
	torn := filepath.Join(dir, "00000000000000000004-2.b")
	if err := os.WriteFile(torn, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	r2 := open(t, dir, 1<<20, clk)
	st := r2.Stats()
	if st.Batches != 3 || st.CorruptBatches != 1 || st.Spooled != 1 || st.Pending != 2 {
		t.Fatalf("got stats %+v, want 3 batches (1 spooled), 1 corrupt", st)
	}
	if _, err := os.Stat(torn); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("torn file: got %v, want removed", err)
	}
	if st.NextSeq <= 4 {
		t.Fatalf("got next seq %d, want > 4", st.NextSeq)
	}
	cks := r2.Checkpoints()
	if len(cks) != 1 || cks[0].Offset != 100 {
		t.Fatalf("got checkpoints %v, want offset 100", cks)
	}
	// Delivering the entry carrying the checkpoint keeps the checkpoint durable.
	if _, err := r2.Deliver([]uint64{s3}); err != nil {
		t.Fatal(err)
	}
	r3 := open(t, dir, 1<<20, clk)
	if cks := r3.Checkpoints(); len(cks) != 1 || cks[0].Offset != 100 {
		t.Fatalf("after delivery and crash: got checkpoints %v, want offset 100", cks)
	}
}

func TestCheckpointMergeFurthest(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Unix(1000, 0))
	r := open(t, t.TempDir(), 1<<20, clk)
	for _, c := range []Checkpoint{
		{Dev: 1, Ino: 1, Offset: 500},
		{Dev: 1, Ino: 1, Offset: 300},        // older: ignored
		{Dev: 1, Ino: 1, Gen: 1, Offset: 10}, // after a truncation: wins
		{Dev: 1, Ino: 2, Offset: 7},
	} {
		if _, err := r.Append(bulk, nil, []Checkpoint{c}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[FileID]Checkpoint{}
	for _, c := range r.Checkpoints() {
		got[c.ID()] = c
	}
	if c := got[FileID{1, 1}]; c.Gen != 1 || c.Offset != 10 {
		t.Errorf("file 1: got %+v, want gen 1 offset 10", c)
	}
	if c := got[FileID{1, 2}]; c.Offset != 7 {
		t.Errorf("file 2: got %+v, want offset 7", c)
	}
}

func TestEntryRoundTrip(t *testing.T) {
	ck := []Checkpoint{{Dev: 3, Ino: 4, Gen: 1, Offset: 99, Path: "/x"}}
	b := encodeEntry(bulk, ck, []byte("batch"))
	lane, got, batch, err := decodeEntry(b)
	if err != nil || lane != bulk || len(got) != 1 || got[0] != ck[0] || string(batch) != "batch" {
		t.Fatalf("got %v %v %q %v, want bulk %v batch", lane, got, batch, err, ck)
	}
	b[len(b)-1] ^= 1
	if _, _, _, err := decodeEntry(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flipped bit: got %v, want ErrCorrupt", err)
	}
}

// FuzzDecodeEntry feeds arbitrary bytes to the ring entry decoder (entries
// come from disk, which a crash or a bad sector can damage).
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(sec, nil, []byte("x")))
	f.Add(encodeEntry(bulk, []Checkpoint{{Dev: 1, Ino: 2, Offset: 3, Path: "/a"}}, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		lane, ck, batch, err := decodeEntry(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes.
		if got := encodeEntry(lane, ck, batch); string(got) != string(b) {
			t.Fatalf("re-encode differs")
		}
	})
}

// Batches with log checkpoints are fsynced in Append; others wait for the
// sync pass, which skips what a relay spooled or the ring dropped.
func TestWriteBackSyncsOnlyUnspooledBatches(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(dir, Options{MaxBytes: 1 << 20, AgentID: "agent-1", SyncAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a := appendN(t, r, sec, 1, 10)[0]
	if _, err := r.Append(bulk, [][]byte{[]byte("line")}, []Checkpoint{{Dev: 1, Ino: 2, Offset: 5, Path: "/var/log/x"}}); err != nil {
		t.Fatal(err)
	}
	c := appendN(t, r, sec, 1, 10)[0]
	if err := r.MarkSpooled(c); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	var queued []uint64
	for _, e := range r.unsynced {
		queued = append(queued, e.Seq)
	}
	n, err := r.syncLocked()
	r.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if len(queued) != 2 || queued[0] != a || queued[1] != c {
		t.Errorf("written back: got seqs %v, want [%d %d] (the checkpointed batch is fsynced at once)", queued, a, c)
	}
	if n != 1 {
		t.Errorf("sync pass fsynced %d batches, want 1 (the spooled one is durable on its relay)", n)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(dir, Options{MaxBytes: 1 << 20, AgentID: "agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if st := r2.Stats(); st.Batches != 3 || st.CorruptBatches != 0 {
		t.Errorf("after reopen: got %d batches (%d corrupt), want 3 (0)", st.Batches, st.CorruptBatches)
	}
}

func TestWriteBackSyncRunsAfterDelay(t *testing.T) {
	r, err := Open(t.TempDir(), Options{MaxBytes: 1 << 20, AgentID: "agent-1", SyncAfter: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	appendN(t, r, sec, 3, 10)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		left, armed := len(r.unsynced), r.syncTimer != nil
		r.mu.Unlock()
		if left == 0 && !armed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %d batches still unsynced (timer armed %v), want 0", left, armed)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
