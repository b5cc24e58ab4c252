// Package hoststats samples host and agent CPU and memory from /proc and
// turns each sample into an ECS "host.stats" event.
package hoststats

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/agent/internal/ecs"
	"github.com/gatehouse/gatehouse/agent/internal/ring"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	"github.com/prometheus/procfs"
)

// Sink takes events (the bulk batcher).
type Sink interface {
	Add(ev []byte, ck *ring.Checkpoint) error
}

// Sampler computes CPU percentages between successive samples.
type Sampler struct {
	fs procfs.FS

	mu        sync.Mutex
	at        time.Time
	hostBusy  float64
	hostTotal float64
	selfCPU   float64
	last      *agentv1.HostStats
}

// NewSampler opens /proc (procfs.DefaultMountPoint).
func NewSampler() (*Sampler, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, fmt.Errorf("open /proc: %w", err)
	}
	return &Sampler{fs: fs}, nil
}

// Sample reads /proc; CPU percentages cover the time since the previous
// sample (0 on the first).
func (s *Sampler) Sample(now time.Time) (*agentv1.HostStats, error) {
	st, err := s.fs.Stat()
	if err != nil {
		return nil, fmt.Errorf("read /proc/stat: %w", err)
	}
	mi, err := s.fs.Meminfo()
	if err != nil {
		return nil, fmt.Errorf("read /proc/meminfo: %w", err)
	}
	self, err := s.fs.Self()
	if err != nil {
		return nil, fmt.Errorf("read /proc/self: %w", err)
	}
	ps, err := self.Stat()
	if err != nil {
		return nil, fmt.Errorf("read /proc/self/stat: %w", err)
	}
	c := st.CPUTotal
	idle := c.Idle + c.Iowait
	total := c.User + c.Nice + c.System + c.Idle + c.Iowait + c.IRQ + c.SoftIRQ + c.Steal
	busy := total - idle
	selfCPU := ps.CPUTime()

	s.mu.Lock()
	defer s.mu.Unlock()
	out := &agentv1.HostStats{AgentRssBytes: uint64(ps.ResidentMemory())}
	if mi.MemTotalBytes != nil {
		out.HostMemTotalBytes = *mi.MemTotalBytes
		if mi.MemAvailableBytes != nil && *mi.MemAvailableBytes <= *mi.MemTotalBytes {
			out.HostMemUsedBytes = *mi.MemTotalBytes - *mi.MemAvailableBytes
		}
	}
	if !s.at.IsZero() {
		if dt := total - s.hostTotal; dt > 0 {
			out.HostCpuPercent = 100 * (busy - s.hostBusy) / dt
		}
		// Agent CPU as a share of the whole machine, like the host figure.
		if wall := now.Sub(s.at).Seconds(); wall > 0 {
			out.AgentCpuPercent = 100 * (selfCPU - s.selfCPU) / wall / float64(runtime.NumCPU())
		}
	}
	s.at, s.hostBusy, s.hostTotal, s.selfCPU = now, busy, total, selfCPU
	s.last = out
	return out, nil
}

// Last returns the latest sample (nil before the first).
func (s *Sampler) Last() *agentv1.HostStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Event renders a sample as an ECS host.stats document.
func Event(src ecs.Source, now time.Time, hs *agentv1.HostStats) ([]byte, error) {
	type cpu struct {
		Pct float64 `json:"pct"`
	}
	type mem struct {
		Total uint64 `json:"total"`
		Used  uint64 `json:"used"`
	}
	doc := struct {
		ecs.Base
		HostStats struct {
			CPU    cpu `json:"cpu"`
			Memory mem `json:"memory"`
		} `json:"host_stats"`
		AgentStats struct {
			CPU cpu    `json:"cpu"`
			RSS uint64 `json:"rss"`
		} `json:"agent_stats"`
	}{Base: src.NewBase(now, ecs.Event{
		Kind: "metric", Category: []string{"host"}, Type: []string{"info"},
		Action: "host-stats", Dataset: "host.stats", Module: "hoststats",
	})}
	doc.HostStats.CPU.Pct = hs.HostCpuPercent
	doc.HostStats.Memory = mem{Total: hs.HostMemTotalBytes, Used: hs.HostMemUsedBytes}
	doc.AgentStats.CPU.Pct = hs.AgentCpuPercent
	doc.AgentStats.RSS = hs.AgentRssBytes
	return json.Marshal(doc)
}

// Collector emits one event every interval.
type Collector struct {
	Sampler  *Sampler
	Sink     Sink
	Source   ecs.Source
	Interval time.Duration
	Clock    clockwork.Clock // nil: the real clock
	Logger   *slog.Logger
}

// Name is the collector's name in logs and status.
func (c *Collector) Name() string { return "hoststats" }

// Run samples until ctx ends.
func (c *Collector) Run(ctx context.Context) error {
	clock := c.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if _, err := c.Sampler.Sample(clock.Now()); err != nil { // baseline for CPU deltas
		c.Logger.Warn("host stats unavailable", "err", err)
	}
	t := clock.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.Chan():
			now := clock.Now()
			hs, err := c.Sampler.Sample(now)
			if err != nil {
				c.Logger.Warn("host stats unavailable", "err", err)
				continue
			}
			ev, err := Event(c.Source, now, hs)
			if err != nil {
				continue
			}
			if err := c.Sink.Add(ev, nil); err != nil {
				c.Logger.Error("queue host stats", "err", err)
			}
		}
	}
}
