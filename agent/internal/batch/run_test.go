package batch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

type lockedSink struct {
	mu sync.Mutex
	n  int
}

func (s *lockedSink) Append(_ agentv1.Priority, ev [][]byte, _ []ring.Checkpoint) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n += len(ev)
	return 1, nil
}

func (s *lockedSink) events() int { s.mu.Lock(); defer s.mu.Unlock(); return s.n }

// Run sleeps while no batch is open and flushes each batch once it is due,
// also batches opened after a long idle time.
func TestRunFlushesDueBatches(t *testing.T) {
	s := &lockedSink{}
	b := New(s, Options{Lane: agentv1.Priority_PRIORITY_SECURITY, MaxEvents: 100, MaxDelay: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	for round := 1; round <= 3; round++ {
		if err := b.Add([]byte(`{"n":1}`), nil); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for s.events() < round {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: got %d events flushed, want %d", round, s.events(), round)
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.Add([]byte(`{"n":1}`), nil)
	cancel()
	<-done
	if got := s.events(); got != 4 {
		t.Fatalf("after stop: got %d events flushed, want 4 (final flush)", got)
	}
}
