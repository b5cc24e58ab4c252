package collect

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// exeTTL is how long an ExeCache trusts what it read. A pid reused within
// it would be given its predecessor's executable; the kernel hands pids
// out in increasing order, so reuse within two seconds takes a wrap of
// the whole pid space.
const exeTTL = 2 * time.Second

const maxExeCache = 1024

// ExeCache reads /proc/<pid>/exe once per process and TTL: the flows and
// file events of one busy process cost one readlink, not one each.
type ExeCache struct {
	Proc  string          // default /proc
	Clock clockwork.Clock // default the real clock

	mu sync.Mutex
	m  map[uint32]exeRead
}

type exeRead struct {
	exe string
	at  time.Time
}

// Exe returns the executable of pid, or "" when the process is gone.
func (c *ExeCache) Exe(pid uint32) string {
	now := time.Now()
	if c.Clock != nil {
		now = c.Clock.Now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[pid]; ok && now.Sub(r.at) < exeTTL {
		return r.exe
	}
	proc := c.Proc
	if proc == "" {
		proc = "/proc"
	}
	exe, err := os.Readlink(filepath.Join(proc, strconv.FormatUint(uint64(pid), 10), "exe"))
	if err != nil {
		exe = "" // gone, a kernel thread, or not ours to see: not cached
	}
	if c.m == nil || len(c.m) >= maxExeCache {
		c.m = make(map[uint32]exeRead) // small and bounded: cleared, not grown
	}
	if exe != "" {
		c.m[pid] = exeRead{exe: exe, at: now}
	}
	return exe
}
