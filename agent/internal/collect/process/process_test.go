package process

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/collect"
	"github.com/gatehouse/gatehouse/agent/internal/collect/collecttest"
	"github.com/gatehouse/gatehouse/agent/internal/ecs"
)

func requireEBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("eBPF collector tests need root: skipped")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("kernel has no BTF (/sys/kernel/btf/vmlinux): skipped")
	}
}

// start runs a collector until the test ends and waits for it to attach.
func start(t *testing.T, opts Options) (*Collector, *collecttest.MemSink) {
	t.Helper()
	sink := &collecttest.MemSink{}
	opts.Sink = sink
	opts.Source = ecs.Source{Hostname: "h", AgentID: "a", Version: "test"}
	c := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	case err := <-done:
		cancel()
		t.Skipf("process collector cannot run here: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("collector not attached after 30s")
	}
	return c, sink
}

func waitFor(t *testing.T, sink *collecttest.MemSink, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range sink.Events() {
			if match(ev) {
				return ev
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s event within 20s", what)
	return nil
}

func num(v any) uint64 {
	f, _ := v.(float64)
	return uint64(f)
}

// copyExe copies /bin/sleep so the test knows its path and hash.
func copyExe(t *testing.T) (string, string) {
	t.Helper()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "gh-sleep")
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return dst, hex.EncodeToString(sum[:])
}

func TestProcessCreationAndTermination(t *testing.T) {
	requireEBPF(t)
	exe, sum := copyExe(t)
	for _, tier := range []collect.Tier{collect.TierWorkstation, collect.TierServer} {
		t.Run(string(tier), func(t *testing.T) {
			c, sink := start(t, Options{Tier: tier})
			cmd := exec.Command(exe, "29", "1")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := uint64(cmd.Process.Pid)
			ev := waitFor(t, sink, "creation", func(m map[string]any) bool {
				return collecttest.Get(m, "event.action") == "process-created" && num(collecttest.Get(m, "process.pid")) == pid
			})
			cmd.Process.Kill()
			cmd.Wait()
			checks := []struct {
				path string
				want any
			}{
				{"process.parent.pid", float64(os.Getpid())},
				{"process.executable", exe},
				{"process.name", "gh-sleep"},
				{"process.command_line", exe + " 29 1"},
				{"process.hash.sha256", sum},
				{"user.id", "0"},
				{"user.name", "root"},
				{"event.category", []any{"process"}},
				{"event.type", []any{"start"}},
				{"event.code", "1"},
			}
			for _, ch := range checks {
				if got := collecttest.Get(ev, ch.path); fmt.Sprint(got) != fmt.Sprint(ch.want) {
					t.Errorf("%s: got %v, want %v", ch.path, got, ch.want)
				}
			}
			if got := fmt.Sprint(collecttest.Get(ev, "process.args")); got != fmt.Sprint([]any{exe, "29", "1"}) {
				t.Errorf("process.args: got %s", got)
			}
			isEnd := func(m map[string]any) bool {
				return collecttest.Get(m, "event.action") == "process-terminated" && num(collecttest.Get(m, "process.pid")) == pid
			}
			if tier == collect.TierWorkstation {
				end := waitFor(t, sink, "termination", isEnd)
				if got := collecttest.Get(end, "process.exit_code"); got != float64(128+9) {
					t.Errorf("exit_code: got %v, want 137", got)
				}
				if got := collecttest.Get(end, "process.executable"); got != exe {
					t.Errorf("termination executable: got %v, want %s", got, exe)
				}
				return
			}
			// Server tier: a later process's creation proves the kernel
			// had the chance to report the termination, and it did not.
			marker := exec.Command(exe, "0")
			if err := marker.Run(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, sink, "marker creation", func(m map[string]any) bool {
				return num(collecttest.Get(m, "process.pid")) == uint64(marker.Process.Pid)
			})
			for _, ev := range sink.Events() {
				if isEnd(ev) {
					t.Errorf("server tier reported a termination: %v", ev)
				}
			}
			_ = c
		})
	}
}

func TestSetTierAtRuntime(t *testing.T) {
	requireEBPF(t)
	exe, _ := copyExe(t)
	c, sink := start(t, Options{Tier: collect.TierServer})
	if err := c.SetTier(collect.TierWorkstation); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "0")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, sink, "termination after tier switch", func(m map[string]any) bool {
		return collecttest.Get(m, "event.action") == "process-terminated" && num(collecttest.Get(m, "process.pid")) == uint64(cmd.Process.Pid)
	})
}

func TestHashExcluded(t *testing.T) {
	tests := []struct {
		patterns []string
		path     string
		want     bool
	}{
		{[]string{"/usr/lib/"}, "/usr/lib/x/y", true},
		{[]string{"/usr/lib/"}, "/usr/bin/x", false},
		{[]string{"/opt/*/bin/*"}, "/opt/a/bin/b", true},
		{[]string{"/bin/ls"}, "/bin/ls", true},
		{nil, "/bin/ls", false},
	}
	for _, tt := range tests {
		if got := Excluded(tt.patterns, tt.path); got != tt.want {
			t.Errorf("Excluded(%v, %s): got %v, want %v", tt.patterns, tt.path, got, tt.want)
		}
	}
}

func TestHashCache(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("abc"), 0o644)
	h := newHasher(nil, 0)
	for i := 0; i < 2; i++ {
		got, err := h.hash(p, p)
		if err != nil {
			t.Fatal(err)
		}
		if want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
			t.Errorf("hash: got %s, want %s", got, want)
		}
	}
	if h.hits != 1 {
		t.Errorf("cache hits: got %d, want 1", h.hits)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(make([]byte, recordSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err == nil && r.Type != typeExec && r.Type != typeExit {
			t.Errorf("accepted type %d", r.Type)
		}
	})
}

func TestQuoteArgs(t *testing.T) {
	if got, want := QuoteArgs([]string{"/bin/x", "a b", "", "c"}), `/bin/x "a b" "" c`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// A process that is gone before the collector's drain tick is still
// reported whole: argv comes from the kernel, the path and hash from the
// exec'd file.
func TestShortLivedProcessDrainedOnTick(t *testing.T) {
	requireEBPF(t)
	exe, sum := copyExe(t)
	_, sink := start(t, Options{Tier: collect.TierWorkstation, DrainEvery: 500 * time.Millisecond})
	cmd := exec.Command(exe, "0", "0.0")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := uint64(cmd.Process.Pid)
	ev := waitFor(t, sink, "creation", func(m map[string]any) bool {
		return collecttest.Get(m, "event.action") == "process-created" && num(collecttest.Get(m, "process.pid")) == pid
	})
	for _, ch := range []struct {
		path string
		want any
	}{
		{"process.executable", exe},
		{"process.command_line", exe + " 0 0.0"},
		{"process.args", []any{exe, "0", "0.0"}},
		{"process.hash.sha256", sum},
	} {
		if got := collecttest.Get(ev, ch.path); fmt.Sprint(got) != fmt.Sprint(ch.want) {
			t.Errorf("%s: got %v, want %v", ch.path, got, ch.want)
		}
	}
	waitFor(t, sink, "termination", func(m map[string]any) bool {
		return collecttest.Get(m, "event.action") == "process-terminated" && num(collecttest.Get(m, "process.pid")) == pid
	})
}
