package collect

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestExeCache(t *testing.T) {
	proc := t.TempDir()
	dir := filepath.Join(proc, "42")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "exe")
	if err := os.Symlink("/usr/bin/first", link); err != nil {
		t.Fatal(err)
	}
	clk := clockwork.NewFakeClockAt(time.Unix(1000, 0))
	c := &ExeCache{Proc: proc, Clock: clk}
	if got := c.Exe(42); got != "/usr/bin/first" {
		t.Fatalf("got %q, want /usr/bin/first", got)
	}
	// The process execs something else: within the TTL the cache answers.
	os.Remove(link)
	os.Symlink("/usr/bin/second", link)
	if got := c.Exe(42); got != "/usr/bin/first" {
		t.Errorf("within the TTL: got %q, want the cached /usr/bin/first", got)
	}
	clk.Advance(exeTTL)
	if got := c.Exe(42); got != "/usr/bin/second" {
		t.Errorf("after the TTL: got %q, want /usr/bin/second", got)
	}
	if got := c.Exe(7); got != "" {
		t.Errorf("missing pid: got %q, want empty", got)
	}
}
