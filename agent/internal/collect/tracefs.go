package collect

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// EnsureTracefs mounts tracefs at /sys/kernel/tracing when neither it nor
// debugfs's tracing directory is there: tracepoint programs are attached by
// the ids tracefs lists. systemd hosts mount it already.
func EnsureTracefs() error {
	for _, d := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(d); err == nil {
			return nil
		}
	}
	if err := os.MkdirAll("/sys/kernel/tracing", 0o755); err != nil {
		return fmt.Errorf("mount tracefs: %w", err)
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("mount tracefs on /sys/kernel/tracing: %w", err)
	}
	return nil
}

// MonotonicToWall turns a CLOCK_MONOTONIC instant in ns (as the kernel
// stamps tasks) into wall-clock time, given the wall clock now.
func MonotonicToWall(now time.Time, ns uint64) time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return now
	}
	return now.Add(-time.Duration(ts.Nano() - int64(ns)))
}
