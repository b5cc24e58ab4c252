package collect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
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

// ReadRecords hands every record of the ring buffer events to handle until
// ctx ends (it then hands what is still in the ring and returns nil) or the
// ring buffer fails.
//
// The programs do not wake the reader per record (bpf/wakeup.h). An idle
// reader arms them (armed, the programs' reader_armed map): the next record
// wakes it. A busy reader then reads on ticks of every, aligned to the
// clock, with a ring a quarter full waking it early; after a tick that
// brought nothing it goes idle again. A busy host so costs one wake-up per
// tick instead of one per record. every <= 0 reads each record at once.
//
// The waits park in the Go netpoller, not in a blocking epoll_wait: while
// a thread blocks in a system call the runtime's sysmon cannot sleep and
// polls every 20 µs, which alone cost more than the collectors' own work.
func ReadRecords(ctx context.Context, events, armed *ebpf.Map, every time.Duration, handle func(raw []byte)) error {
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		return fmt.Errorf("ring buffer: %w", err)
	}
	defer rd.Close()
	w, err := newReadableWaiter(events)
	if err != nil {
		return err
	}
	defer w.close()
	stop := context.AfterFunc(ctx, w.interrupt)
	defer stop()
	var rec ringbuf.Record
	idle := true
	for {
		if ctx.Err() != nil {
			_, err := drain(rd, &rec, handle)
			return err
		}
		var deadline time.Time
		if idle || every <= 0 {
			if err := armed.Put(uint32(0), uint32(1)); err != nil {
				return fmt.Errorf("arm ring buffer reader: %w", err)
			}
			deadline = time.Now().Add(idleWait)
		} else {
			deadline = NextTick(time.Now(), every)
		}
		woke, err := w.wait(deadline, func() bool { return rd.AvailableBytes() > 0 })
		if err != nil {
			return err
		}
		if woke && idle && every > 0 && rd.AvailableBytes() < rd.BufferSize()/4 {
			idle = false // read on the next tick, with what comes until then
			continue
		}
		n, err := drain(rd, &rec, handle)
		if err != nil {
			return err
		}
		idle = n == 0
	}
}

// drain hands every record now in the ring to handle, without waiting.
func drain(rd *ringbuf.Reader, rec *ringbuf.Record, handle func(raw []byte)) (int, error) {
	rd.SetDeadline(time.Unix(1, 0)) // in the past: epoll_wait does not block
	n := 0
	for {
		err := rd.ReadInto(rec)
		switch {
		case err == nil:
			handle(rec.RawSample)
			n++
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ringbuf.ErrFlushed), errors.Is(err, ringbuf.ErrClosed):
			return n, nil
		default:
			return n, fmt.Errorf("read ring buffer: %w", err)
		}
	}
}

// readableWaiter waits for a ring buffer's fd to turn readable in the Go
// netpoller, through a duplicate of the map's fd.
type readableWaiter struct {
	f   *os.File
	raw syscall.RawConn

	mu      sync.Mutex
	stopped bool
}

func newReadableWaiter(m *ebpf.Map) (*readableWaiter, error) {
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup ring buffer fd: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ring buffer fd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ringbuf")
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("ring buffer fd is not pollable: %w", err)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ring buffer fd: %w", err)
	}
	return &readableWaiter{f: f, raw: raw}, nil
}

// wait parks until ready() holds (after a wake-up of the fd) or until
// deadline; woke is false at the deadline or after interrupt.
func (w *readableWaiter) wait(deadline time.Time, ready func() bool) (woke bool, err error) {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return false, nil
	}
	err = w.f.SetReadDeadline(deadline)
	w.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("ring buffer fd: %w", err)
	}
	err = w.raw.Read(func(uintptr) bool { return ready() })
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("wait for ring buffer: %w", err)
	}
	return true, nil
}

// interrupt ends the current wait and every later one.
func (w *readableWaiter) interrupt() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.f.SetReadDeadline(time.Unix(1, 0))
}

func (w *readableWaiter) close() { w.f.Close() }

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
