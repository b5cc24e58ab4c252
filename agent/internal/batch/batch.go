// Package batch groups events into EventBatches for one lane of the ring:
// a batch is closed at max_events, max_bytes or max_delay after its first
// event, whichever comes first. The log checkpoints of the events travel
// with the batch into the ring in the same write.
package batch

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Appender is where batches go (the ring).
type Appender interface {
	Append(lane agentv1.Priority, events [][]byte, ckpts []ring.Checkpoint) (uint64, error)
}

// Options configures a Batcher. MaxDelay 0 flushes every event at once.
type Options struct {
	Lane      agentv1.Priority
	MaxEvents int
	MaxBytes  int
	MaxDelay  time.Duration
	Clock     clockwork.Clock
	Logger    *slog.Logger
}

// Batcher is safe for concurrent use by several collectors.
type Batcher struct {
	out  Appender
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	events [][]byte
	bytes  int
	ckpts  map[ring.FileID]ring.Checkpoint
	first  time.Time

	started chan struct{} // pulsed when a batch opens: Run arms its timer
}

// New returns a Batcher writing to out; it starts nothing.
func New(out Appender, opts Options) *Batcher {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = 500
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 20
	}
	return &Batcher{out: out, opts: opts, log: opts.Logger, ckpts: map[ring.FileID]ring.Checkpoint{}, started: make(chan struct{}, 1)}
}

// Add queues one event, with the checkpoint it advances (may be nil), and
// flushes when the batch is full. The event must not be modified afterwards.
func (b *Batcher) Add(ev []byte, ck *ring.Checkpoint) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.events) > 0 && b.bytes+len(ev) > b.opts.MaxBytes {
		if err := b.flushLocked(); err != nil {
			return err
		}
	}
	if len(b.events) == 0 {
		b.first = b.opts.Clock.Now()
		select {
		case b.started <- struct{}{}:
		default:
		}
	}
	b.events = append(b.events, ev)
	b.bytes += len(ev)
	if ck != nil {
		if old, ok := b.ckpts[ck.ID()]; !ok || ck.After(old) {
			b.ckpts[ck.ID()] = *ck
		}
	}
	if len(b.events) >= b.opts.MaxEvents || b.bytes >= b.opts.MaxBytes || b.opts.MaxDelay <= 0 {
		return b.flushLocked()
	}
	return nil
}

// Flush writes the open batch, if any.
func (b *Batcher) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

// FlushIfDue writes the open batch if its first event is max_delay old.
func (b *Batcher) FlushIfDue() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.events) == 0 || b.opts.Clock.Now().Before(b.dueAt()) {
		return nil
	}
	return b.flushLocked()
}

// dueAt is when the open batch is written: at most max_delay after its
// first event, settle after a multiple of max_delay of the clock. The
// collectors read the kernel on those multiples (collect.NextTick), so a
// batch is written just after the read that filled it, and batches of
// every lane fall due together: one wake-up of the agent, not one each.
// Called with b.mu held.
func (b *Batcher) dueAt() time.Time {
	if b.opts.MaxDelay <= 0 {
		return b.first
	}
	d := b.opts.MaxDelay
	return b.first.Add(-settle).Truncate(d).Add(d + settle)
}

// settle is how long after a tick a batch is written: the collectors'
// reads on that tick are in it.
const settle = 5 * time.Millisecond

func (b *Batcher) flushLocked() error {
	if len(b.events) == 0 {
		return nil
	}
	var cks []ring.Checkpoint
	for _, c := range b.ckpts {
		cks = append(cks, c)
	}
	events := b.events
	b.events, b.bytes = nil, 0
	clear(b.ckpts)
	if _, err := b.out.Append(b.opts.Lane, events, cks); err != nil {
		// The ring counted and logged a drop for lack of room; anything else
		// is a disk problem the owner must hear about.
		return fmt.Errorf("flush %s batch of %d events: %w", b.opts.Lane, len(events), err)
	}
	return nil
}

// Run flushes batches when they are due until ctx ends, then flushes the
// rest. It sleeps while no batch is open: an idle agent does not wake up.
func (b *Batcher) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := b.Flush(); err != nil {
				b.log.Error("final flush", "err", err)
			}
			return nil
		case <-b.started:
		case <-timer.C:
			if err := b.FlushIfDue(); err != nil {
				b.log.Error("batch flush failed", "err", err)
			}
		}
		if d, open := b.due(); open {
			timer.Reset(d)
		}
	}
}

// due is how long until the open batch is due; open is false without one.
func (b *Batcher) due() (d time.Duration, open bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.events) == 0 {
		return 0, false
	}
	return max(0, b.dueAt().Sub(b.opts.Clock.Now())), true
}
