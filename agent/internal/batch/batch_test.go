package batch

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

type sink struct {
	batches [][][]byte
	ckpts   [][]ring.Checkpoint
}

func (s *sink) Append(_ agentv1.Priority, ev [][]byte, ck []ring.Checkpoint) (uint64, error) {
	s.batches = append(s.batches, ev)
	s.ckpts = append(s.ckpts, ck)
	return uint64(len(s.batches)), nil
}

func TestBatcher(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Unix(100, 0))
	s := &sink{}
	b := New(s, Options{Lane: agentv1.Priority_PRIORITY_BULK, MaxEvents: 3, MaxBytes: 10, MaxDelay: time.Second, Clock: clk})
	b.Add([]byte("a"), &ring.Checkpoint{Ino: 1, Offset: 2})
	b.Add([]byte("b"), &ring.Checkpoint{Ino: 1, Offset: 4})
	if len(s.batches) != 0 {
		t.Fatalf("got %d batches before limits, want 0", len(s.batches))
	}
	b.Add([]byte("c"), nil)
	if len(s.batches) != 1 || len(s.batches[0]) != 3 {
		t.Fatalf("at max_events: got %v, want one batch of 3", s.batches)
	}
	if len(s.ckpts[0]) != 1 || s.ckpts[0][0].Offset != 4 {
		t.Fatalf("got checkpoints %v, want offset 4", s.ckpts[0])
	}
	b.Add([]byte("12345678"), nil)
	b.Add([]byte("123"), nil) // would exceed max_bytes: previous batch closes first
	if len(s.batches) != 2 || string(s.batches[1][0]) != "12345678" {
		t.Fatalf("at max_bytes: got %q, want second batch [12345678]", s.batches)
	}
	b.FlushIfDue()
	if len(s.batches) != 2 {
		t.Fatalf("before max_delay: got %d batches, want 2", len(s.batches))
	}
	clk.Advance(time.Second)
	b.FlushIfDue()
	if len(s.batches) != 3 {
		t.Fatalf("after max_delay: got %d batches, want 3", len(s.batches))
	}
	imm := New(s, Options{Lane: agentv1.Priority_PRIORITY_SECURITY})
	imm.Add([]byte("alert"), nil)
	if len(s.batches) != 4 {
		t.Fatalf("security lane: got %d batches, want 4 (flushed at once)", len(s.batches))
	}
}

// A batch falls due just after (settle) the clock's next multiple of
// max_delay, never later than max_delay after its first event; events added
// within settle of a tick (the collectors' reads) are written at once.
func TestBatchDueOnClockMultiple(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		first, due time.Duration // after a whole second
	}{
		{300 * ms, 500*ms + settle},
		{0, settle},
		{settle - ms, settle},
		{settle, 250*ms + settle},
		{249 * ms, 250*ms + settle},
		{999 * ms, time.Second + settle},
	}
	for _, tt := range tests {
		base := time.Unix(100, 0)
		clk := clockwork.NewFakeClockAt(base.Add(tt.first))
		s := &sink{}
		b := New(s, Options{Lane: agentv1.Priority_PRIORITY_SECURITY, MaxEvents: 100, MaxBytes: 1 << 20, MaxDelay: 250 * time.Millisecond, Clock: clk})
		b.Add([]byte("a"), nil)
		if d, _ := b.due(); d != tt.due-tt.first {
			t.Errorf("first event at +%s: due in %s, want %s", tt.first, d, tt.due-tt.first)
		}
		clk.Advance(base.Add(tt.due - time.Nanosecond).Sub(clk.Now()))
		b.FlushIfDue()
		if len(s.batches) != 0 {
			t.Errorf("first event at +%s: flushed before +%s", tt.first, tt.due)
		}
		clk.Advance(base.Add(tt.due).Sub(clk.Now()))
		b.FlushIfDue()
		if len(s.batches) != 1 {
			t.Errorf("first event at +%s: got %d batches at +%s, want 1", tt.first, len(s.batches), tt.due)
		}
	}
}
