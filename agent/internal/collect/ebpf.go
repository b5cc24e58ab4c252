package collect

import (
	"context"
	"errors"
	"fmt"

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

// ReadRecords hands every ring-buffer record to handle until ctx ends (it
// then closes rd and returns nil) or the ring buffer fails.
func ReadRecords(ctx context.Context, rd *ringbuf.Reader, handle func(raw []byte)) error {
	stop := context.AfterFunc(ctx, func() { rd.Close() })
	defer stop()
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		handle(rec.RawSample)
	}
}
