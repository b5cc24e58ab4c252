package collect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// PrepareTracing readies the host for a collector's tracepoint programs:
// no memlock limit on older kernels, and tracefs mounted.
func PrepareTracing() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("memlock: %w", err)
	}
	return EnsureTracefs()
}

// KernelLost reads a collector's counter of records the kernel dropped
// (a one-entry array map); 0 when m is nil or unreadable.
func KernelLost(m *ebpf.Map) uint64 {
	var v uint64
	if m != nil {
		if err := m.Lookup(uint32(0), &v); err != nil {
			return 0
		}
	}
	return v
}

// idleWait bounds an idle reader's wait: it re-arms and looks again this
// often even if no record woke it.
const idleWait = 5 * time.Second

// ReadRecords hands every ring-buffer record to handle until ctx ends (it
// then hands what is still in the ring and returns nil) or the ring buffer
// fails.
//
// The programs do not wake the reader per record (bpf/wakeup.h). An idle
// reader arms them (armed, the programs' reader_armed map): the next record
// wakes it. A busy reader then reads on ticks of every, aligned to the clock,
// with a ring a quarter full waking it early; after a tick that brought
// nothing it goes idle again. A busy host so costs one wake-up per tick
// instead of one per record. every <= 0 reads each record at once.
func ReadRecords(ctx context.Context, rd *ringbuf.Reader, armed *ebpf.Map, every time.Duration, handle func(raw []byte)) error {
	stop := context.AfterFunc(ctx, func() { rd.Flush() })
	defer stop()
	var rec ringbuf.Record
	idle := true
	for {
		if idle || every <= 0 {
			if err := armed.Put(uint32(0), uint32(1)); err != nil {
				return fmt.Errorf("arm ring buffer reader: %w", err)
			}
			// A record written before the arming woke nobody.
			if rd.AvailableBytes() > 0 {
				rd.SetDeadline(time.Unix(1, 0))
			} else {
				rd.SetDeadline(time.Now().Add(idleWait))
			}
		} else {
			rd.SetDeadline(NextTick(time.Now(), every))
		}
		got := 0
		for {
			err := rd.ReadInto(&rec)
			if err == nil {
				handle(rec.RawSample)
				got++
				if idle || every <= 0 {
					break // woken: read on ticks from now on, or re-arm
				}
				continue
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // the tick: the ring is drained
			}
			if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		idle = got == 0
	}
}

// NextTick is the first multiple of every after now. Ticks are aligned to
// the clock, not to each collector's start, so every collector drains in
// the same instant: one wake-up of the process, not one per collector.
func NextTick(now time.Time, every time.Duration) time.Time {
	return now.Truncate(every).Add(every)
}

// SleepUntil waits until t or until ctx ends; false when ctx ended.
func SleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
