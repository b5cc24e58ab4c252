package filemod

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/collect/collecttest"
	"github.com/gatehouse/gatehouse/agent/internal/ecs"
)

func TestWriteRenameDelete(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fanotify needs root (CAP_SYS_ADMIN): skipped")
	}
	for _, drainEvery := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run(fmt.Sprintf("drain every %s", drainEvery), func(t *testing.T) { writeRenameDelete(t, drainEvery) })
	}
}

func writeRenameDelete(t *testing.T, drainEvery time.Duration) {
	dir := t.TempDir()
	sink := &collecttest.MemSink{}
	c := New(Options{Source: ecs.Source{Hostname: "h", AgentID: "a", Version: "test"}, Sink: sink, Paths: []string{dir}, DrainEvery: drainEvery})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-done:
		cancel()
		t.Skipf("fanotify unavailable: %v", err)
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	if err := os.WriteFile(a, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	want := []struct{ action, path, old string }{
		{"file-created", a, ""},
		{"file-modified", a, ""},
		{"file-renamed", b, a},
		{"file-deleted", b, ""},
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(sink.Events()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	evs := sink.Events()
	if len(evs) != len(want) {
		t.Fatalf("got %d events, want %d: %v", len(evs), len(want), evs)
	}
	for i, w := range want {
		ev := evs[i]
		if got := collecttest.Get(ev, "event.action"); got != w.action {
			t.Errorf("event %d action: got %v, want %s", i, got, w.action)
		}
		if got := collecttest.Get(ev, "file.path"); got != w.path {
			t.Errorf("event %d path: got %v, want %s", i, got, w.path)
		}
		if w.old != "" {
			if got := collecttest.Get(ev, "gatehouse.old_file.path"); got != w.old {
				t.Errorf("event %d old path: got %v, want %s", i, got, w.old)
			}
		}
		if got := collecttest.Get(ev, "process.pid"); got != float64(os.Getpid()) {
			t.Errorf("event %d process.pid: got %v, want %d", i, got, os.Getpid())
		}
	}
}

func FuzzDecodeEvents(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeEvents(b)
	})
}
