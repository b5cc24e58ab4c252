package spool

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

const agentA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startSpool opens a spool in dir and runs it until the test ends.
func startSpool(t *testing.T, dir string, maxBytes int64) *Spool {
	t.Helper()
	s, err := Open(Options{Dir: dir, MaxBytes: maxBytes, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSpool(s)
	t.Cleanup(func() { stop(); s.Close() })
	return s
}

func runSpool(s *Spool) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func batch(agent string, seq uint64, prio agentv1.Priority, payload string) *agentv1.EventBatch {
	return &agentv1.EventBatch{AgentId: agent, Seq: seq, Priority: prio, Events: [][]byte{[]byte(payload)}}
}

func mustAppend(t *testing.T, s *Spool, b *agentv1.EventBatch, want Result) {
	t.Helper()
	got, err := s.Append(context.Background(), b)
	if err != nil {
		t.Fatalf("append seq %d: %v", b.Seq, err)
	}
	if got != want {
		t.Fatalf("append seq %d: got %v, want %v", b.Seq, got, want)
	}
}

func seqsOf(items []Item) []uint64 {
	var out []uint64
	for _, it := range items {
		out = append(out, it.Batch.Seq)
	}
	return out
}

func TestDurableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSpool(s)
	for i := uint64(1); i <= 10; i++ {
		mustAppend(t, s, batch(agentA, i, agentv1.Priority_PRIORITY_BULK, `{"n":1}`), Spooled)
	}
	want := s.Stats()
	stop()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	s2 := startSpool(t, dir, 1<<20)
	if got := s2.Stats(); got.Batches != want.Batches || got.Bytes != want.Bytes || got.Receipts != want.Receipts || got.Full != want.Full {
		t.Fatalf("stats after reopen: got %+v, want %+v", got, want)
	}
	items, err := s2.Peek(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(items); got != 10 {
		t.Fatalf("got %d batches after reopen, want 10", got)
	}
	mustAppend(t, s2, batch(agentA, 3, agentv1.Priority_PRIORITY_BULK, `{"n":1}`), Duplicate)
}

func TestDedup(t *testing.T) {
	s := startSpool(t, t.TempDir(), 1<<20)
	mustAppend(t, s, batch(agentA, 1, agentv1.Priority_PRIORITY_BULK, "x"), Spooled)
	mustAppend(t, s, batch(agentA, 1, agentv1.Priority_PRIORITY_BULK, "x"), Duplicate)
	mustAppend(t, s, batch("other", 1, agentv1.Priority_PRIORITY_BULK, "x"), Spooled)
	// Still a duplicate after delivery.
	items, _ := s.Peek(1 << 20)
	if _, err := s.Complete(items); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, batch(agentA, 1, agentv1.Priority_PRIORITY_BULK, "x"), Duplicate)
	// Concurrent identical appends: exactly one is spooled.
	var wg sync.WaitGroup
	results := make([]Result, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = s.Append(context.Background(), batch(agentA, 99, agentv1.Priority_PRIORITY_BULK, "y"))
		}()
	}
	wg.Wait()
	spooled := 0
	for _, r := range results {
		if r == Spooled {
			spooled++
		}
	}
	if spooled != 1 {
		t.Fatalf("concurrent duplicates: got %d spooled, want 1 (%v)", spooled, results)
	}
}

func TestFull(t *testing.T) {
	one := proto.Size(batch(agentA, 1, agentv1.Priority_PRIORITY_BULK, string(make([]byte, 100))))
	s := startSpool(t, t.TempDir(), int64(3*one+one/2))
	for i := uint64(1); i <= 3; i++ {
		mustAppend(t, s, batch(agentA, i, agentv1.Priority_PRIORITY_BULK, string(make([]byte, 100))), Spooled)
	}
	mustAppend(t, s, batch(agentA, 4, agentv1.Priority_PRIORITY_BULK, string(make([]byte, 100))), Full)
	if st := s.Stats(); !st.Full {
		t.Fatalf("stats: got full=false, want true (%+v)", st)
	}
	items, _ := s.Peek(1)
	if got := len(items); got != 1 {
		t.Fatalf("peek(1): got %d items, want 1", got)
	}
	if _, err := s.Complete(items); err != nil {
		t.Fatal(err)
	}
	// max_bytes bounds the segment files: a delivered batch's space comes
	// back when the last batch of its segment is delivered.
	if st := s.Stats(); !st.Full || st.FullReason != "max_bytes" {
		t.Fatalf("after a partial drain: got full=%v reason %q, want true, max_bytes (%+v)", st.Full, st.FullReason, st)
	}
	mustAppend(t, s, batch(agentA, 4, agentv1.Priority_PRIORITY_BULK, string(make([]byte, 100))), Full)
	items, _ = s.Peek(1 << 20)
	if _, err := s.Complete(items); err != nil {
		t.Fatal(err)
	}
	// The committer deletes the drained segment (it may be appending to it).
	for st := s.Stats(); st.Full; st = s.Stats() {
		time.Sleep(10 * time.Millisecond)
	}
	mustAppend(t, s, batch(agentA, 4, agentv1.Priority_PRIORITY_BULK, string(make([]byte, 100))), Spooled)
}

// A batch larger than the whole spool is taken when the spool is empty, so
// an agent with one big batch is held back, never wedged.
func TestBatchLargerThanSpoolTakenWhenEmpty(t *testing.T) {
	big := string(make([]byte, 1000))
	s := startSpool(t, t.TempDir(), 200)
	mustAppend(t, s, batch(agentA, 1, agentv1.Priority_PRIORITY_BULK, big), Spooled)
	mustAppend(t, s, batch(agentA, 2, agentv1.Priority_PRIORITY_BULK, big), Full)
	items, _ := s.Peek(1)
	if _, err := s.Complete(items); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, batch(agentA, 2, agentv1.Priority_PRIORITY_BULK, big), Spooled)
}

func TestOrderPriorityThenOldest(t *testing.T) {
	s := startSpool(t, t.TempDir(), 1<<20)
	in := []struct {
		seq  uint64
		prio agentv1.Priority
	}{
		{1, agentv1.Priority_PRIORITY_FILE},
		{2, agentv1.Priority_PRIORITY_BULK},
		{3, agentv1.Priority_PRIORITY_SECURITY},
		{4, agentv1.Priority_PRIORITY_BULK},
		{5, agentv1.Priority_PRIORITY_SECURITY},
		{6, agentv1.Priority_PRIORITY_UNSPECIFIED}, // treated as bulk
	}
	for _, b := range in {
		mustAppend(t, s, batch(agentA, b.seq, b.prio, "e"), Spooled)
	}
	items, err := s.Peek(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	got, want := fmt.Sprint(seqsOf(items)), fmt.Sprint([]uint64{3, 5, 2, 4, 6, 1})
	if got != want {
		t.Fatalf("upload order: got %s, want %s", got, want)
	}
}

func TestReceipts(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSpool(s)
	for i := uint64(1); i <= 4; i++ {
		mustAppend(t, s, batch(agentA, i, agentv1.Priority_PRIORITY_BULK, "e"), Spooled)
	}
	mustAppend(t, s, batch("b", 1, agentv1.Priority_PRIORITY_BULK, "e"), Spooled)
	items, _ := s.Peek(1 << 20)
	got, err := s.Complete(items[:3])
	if err != nil {
		t.Fatal(err)
	}
	if g, w := fmt.Sprint(got[agentA]), "[1 2 3]"; g != w {
		t.Fatalf("new receipts: got %s, want %s", g, w)
	}
	if st := s.Stats(); st.Batches != 2 || st.Receipts != 3 {
		t.Fatalf("stats: got %+v, want 2 batches and 3 receipts", st)
	}
	stop()
	s.Close()
	s = startSpool(t, dir, 1<<20)
	pending, err := s.PendingReceipts(agentA)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := fmt.Sprint(pending), "[1 2 3]"; g != w {
		t.Fatalf("pending after reopen: got %s, want %s", g, w)
	}
	if err := s.AckReceipts(agentA, []uint64{1, 3, 77}); err != nil {
		t.Fatal(err)
	}
	pending, _ = s.PendingReceipts(agentA)
	if g, w := fmt.Sprint(pending), "[2]"; g != w {
		t.Fatalf("pending after ack: got %s, want %s", g, w)
	}
	if g := s.Stats().Receipts; g != 1 {
		t.Fatalf("receipts count: got %d, want 1", g)
	}
}

func TestGroupCommitManyWriters(t *testing.T) {
	s := startSpool(t, t.TempDir(), 1<<30)
	const writers, per = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agent := fmt.Sprintf("agent-%02d", w)
			for i := uint64(1); i <= per; i++ {
				r, err := s.Append(context.Background(), batch(agent, i, agentv1.Priority_PRIORITY_BULK, `{"k":"v"}`))
				if err != nil || r != Spooled {
					errs <- fmt.Errorf("%s seq %d: %v %v", agent, i, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := s.Stats().Batches; got != writers*per {
		t.Fatalf("got %d batches, want %d", got, writers*per)
	}
}
