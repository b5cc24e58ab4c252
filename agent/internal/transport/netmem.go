package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
)

const (
	netMemFile     = "transport.json"
	netMemMaxNets  = 64
	netKeyUnknown  = "?"
	netMemFileMode = 0o600
)

// netRecord is what worked on one network.
type netRecord struct {
	Transport string    `json:"transport"` // quic | tcp | tcp+proxy
	UpdatedAt time.Time `json:"updated_at"`
}

// netMemory remembers per network (relay address + the local address the
// kernel picks to reach it) which transport worked, in
// <data_dir>/transport.json, so the next connect starts with it.
type netMemory struct {
	path string
	mu   sync.Mutex
	nets map[string]netRecord
}

func loadNetMemory(dataDir string) (*netMemory, error) {
	m := &netMemory{path: filepath.Join(dataDir, netMemFile), nets: map[string]netRecord{}}
	b, err := os.ReadFile(m.path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", m.path, err)
	}
	var f struct {
		Networks map[string]netRecord `json:"networks"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		// A damaged hint file only costs one race: start afresh.
		return m, nil
	}
	if f.Networks != nil {
		m.nets = f.Networks
	}
	return m, nil
}

func (m *netMemory) get(key string) (netRecord, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.nets[key]
	return r, ok
}

// set records what worked; it writes the file only when it changed.
func (m *netMemory) set(key, transport string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.nets[key]; ok && r.Transport == transport {
		return nil
	}
	m.nets[key] = netRecord{Transport: transport, UpdatedAt: now.UTC()}
	for len(m.nets) > netMemMaxNets {
		oldest := ""
		for k, r := range m.nets {
			if oldest == "" || r.UpdatedAt.Before(m.nets[oldest].UpdatedAt) {
				oldest = k
			}
		}
		delete(m.nets, oldest)
	}
	b, err := json.MarshalIndent(struct {
		Networks map[string]netRecord `json:"networks"`
	}{m.nets}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(m.path, append(b, '\n'), netMemFileMode); err != nil {
		return fmt.Errorf("write %s: %w", m.path, err)
	}
	return nil
}

// networkKey names the network a relay is reached from: the relay address
// and the local source address the kernel routes it from (no packet is
// sent: connecting a UDP socket only picks the route).
func networkKey(addr string) string {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return addr + " from " + netKeyUnknown
	}
	defer c.Close()
	return addr + " from " + c.LocalAddr().(*net.UDPAddr).IP.String()
}
