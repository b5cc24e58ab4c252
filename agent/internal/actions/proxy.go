package actions

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
)

// ProxyFile is the name of the proxy override in the data dir.
const ProxyFile = "proxy.json"

// ProxyOverride is proxy.json: set by the set_proxy action, removed by
// clear_proxy. When present it takes the place of the config's proxy.
type ProxyOverride struct {
	URL       string    `json:"url"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ReadProxyOverride returns the override in dataDir; ok is false without one.
func ReadProxyOverride(dataDir string) (p ProxyOverride, ok bool, err error) {
	path := filepath.Join(dataDir, ProxyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ProxyOverride{}, false, nil
	}
	if err != nil {
		return ProxyOverride{}, false, fmt.Errorf("read proxy override %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return ProxyOverride{}, false, fmt.Errorf("decode proxy override %s: %w", path, err)
	}
	return p, true, nil
}

func (e *Executor) setProxy(url string) Result {
	path := filepath.Join(e.deps.DataDir, ProxyFile)
	if url == "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail("clear proxy: %v", err)
		}
	} else {
		b, _ := json.Marshal(ProxyOverride{URL: url, UpdatedAt: e.deps.Clock.Now().UTC()})
		if err := atomicfile.Write(path, b, 0o600); err != nil {
			return fail("set proxy: %v", err)
		}
	}
	if e.deps.ProxyChanged != nil {
		e.deps.ProxyChanged(url)
	}
	return Result{OK: true}
}
