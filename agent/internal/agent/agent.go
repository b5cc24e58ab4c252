// Package agent wires the agent's parts together: identity, ring,
// collectors (log files, host stats) through batchers into the ring, the
// transport from the ring to a relay, and the status file.
package agent

import (
	"context"
	"fmt"
	"github.com/gatehouse/gatehouse/agent/internal/actions"
	"github.com/gatehouse/gatehouse/agent/internal/isolate"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/gatehouse/gatehouse/agent/internal/batch"
	"github.com/gatehouse/gatehouse/agent/internal/collect"
	"github.com/gatehouse/gatehouse/agent/internal/config"
	"github.com/gatehouse/gatehouse/agent/internal/ecs"
	"github.com/gatehouse/gatehouse/agent/internal/ring"
	"github.com/gatehouse/gatehouse/agent/internal/status"
	"github.com/gatehouse/gatehouse/agent/internal/transport"
	"github.com/gatehouse/gatehouse/internal/identity"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// StatusRefresh: status.json is rewritten at once on a connection state
// change, else at most every status_interval when something in it changed,
// and every StatusRefresh anyway (so updated_at shows the agent is alive).
// Creating the file is not free (about a twentieth of the agent's CPU at
// 100 events/s when it was rewritten every 2 s).
const StatusRefresh = 30 * time.Second

// Agent is the running agent.
type Agent struct {
	cfg     config.Config
	log     *slog.Logger
	id      *identity.Identity
	ring    *ring.Ring
	client  *transport.Client
	bulk    *batch.Batcher
	changed chan struct{}
	coll    *Collectors
	iso     *isolate.Isolator // nil without root/eBPF
	exec    *actions.Executor

	tierMu sync.Mutex // serializes tier switches (tier.go)
	tier   collect.Tier

	closeOnce sync.Once
	closeErr  error
}

// New opens the identity and the ring; it starts nothing.
func New(cfg config.Config, log *slog.Logger, version string) (*Agent, error) {
	id, err := identity.LoadOrCreate(cfg.IdentityDir())
	if err != nil {
		return nil, err
	}
	r, err := ring.Open(cfg.RingDir(), ring.Options{MaxBytes: cfg.Ring.MaxBytes, SyncAfter: cfg.Ring.SyncAfter, AgentID: id.ID(), Logger: log.With("component", "ring")})
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, id: id, ring: r, changed: make(chan struct{}, 1)}
	src := ecs.Source{Hostname: cfg.Hostname, AgentID: id.ID(), Version: version}
	a.bulk = batch.New(r, batch.Options{
		Lane: agentv1.Priority_PRIORITY_BULK, MaxEvents: cfg.Batch.MaxEvents, MaxBytes: cfg.Batch.MaxBytes,
		MaxDelay: cfg.Batch.MaxDelay, Logger: log.With("component", "batch", "lane", "bulk"),
	})
	a.tier = collect.Tier(cfg.PolicyTier)
	if t, err := loadTier(cfg.DataDir); err != nil {
		log.Warn("ignoring the persisted policy tier", "err", err, "tier", cfg.PolicyTier)
	} else if t != "" {
		a.tier = t
	}
	a.coll = newCollectors(cfg, a.tier, log, collectorDeps{source: src, ring: r, bulk: a.bulk})
	proxy, err := cfg.ProxyURL()
	if err != nil {
		r.Close()
		return nil, err
	}
	if err := a.newActions(); err != nil {
		r.Close()
		return nil, err
	}
	a.client, err = transport.New(transport.Options{
		Mode: cfg.Transport.Mode, TCPDelay: cfg.Transport.TCPDelay, QUICReprobe: cfg.Transport.QUICReprobe,
		Proxy: proxy, ProxyFromEnv: httpproxy.FromEnvironment().ProxyFunc(),
		Relays: cfg.Relays, Fingerprint: cfg.RelayFingerprint, RegistrationKey: cfg.RegistrationKey,
		DataDir: cfg.DataDir, Hostname: cfg.Hostname, Version: version,
		HeartbeatInterval: cfg.HeartbeatInterval, RedeliverAfter: cfg.RedeliverAfter,
		Identity: id, Ring: r, Stats: a.hostStats, Logger: log.With("component", "transport"),
		OnChange: a.signal, OnPolicyTier: a.onPolicyTier, OnCommand: a.onCommand,
	})
	if err != nil {
		r.Close()
		return nil, err
	}
	a.loadProxyOverride()
	return a, nil
}

func (a *Agent) signal() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

func (a *Agent) hostStats() *agentv1.HostStats {
	smp := a.coll.sampler
	if smp == nil {
		return nil
	}
	if hs := smp.Last(); hs != nil {
		return hs
	}
	hs, _ := smp.Sample(time.Now())
	return hs
}

// ID is the agent's id.
func (a *Agent) ID() string { return a.id.ID() }

// Run runs every part until ctx ends, then stops them in order: collectors
// and batchers first (their last batch reaches the ring), then the ring.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent starting", "agent_id", a.id.ID(), "relays", a.cfg.Relays, "ring", a.ring.Stats().Batches,
		"transport", a.cfg.Transport.Mode, "proxy", a.proxyHost())
	collectCtx, stopCollect := context.WithCancel(context.Background())
	defer stopCollect()
	var collectors, others sync.WaitGroup
	collectors.Go(func() { a.runLogged("collectors", func() error { return a.coll.Run(collectCtx) }) })
	var batchers sync.WaitGroup
	batchCtx, stopBatch := context.WithCancel(context.Background())
	defer stopBatch()
	batchers.Go(func() { a.runLogged("batch", func() error { return a.bulk.Run(batchCtx) }) })
	a.restoreIsolation(ctx)
	if a.iso != nil {
		others.Go(func() { a.runLogged("isolate", func() error { return a.iso.Run(ctx) }) })
	}
	others.Go(func() { a.runLogged("transport", func() error { return a.client.Run(ctx) }) })
	others.Go(func() { a.statusLoop(ctx) })

	<-ctx.Done()
	stopCollect()
	collectors.Wait()
	stopBatch()
	batchers.Wait()
	others.Wait()
	a.writeStatus()
	a.log.Info("agent stopped")
	return a.Close()
}

func (a *Agent) runLogged(name string, f func() error) {
	if err := f(); err != nil {
		a.log.Error("component failed", "component", name, "err", err)
	}
}

func (a *Agent) statusLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.StatusInterval)
	defer t.Stop()
	var last status.Status
	var lastAt time.Time
	write := func(force bool) {
		st := a.Status()
		cmp := st
		cmp.UpdatedAt = last.UpdatedAt
		if !force && cmp == last && time.Since(lastAt) < StatusRefresh {
			return
		}
		if err := status.Write(a.cfg.StatusPath(), st); err != nil {
			a.log.Warn("write status", "err", err)
			return
		}
		last, lastAt = st, time.Now()
	}
	write(true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			write(false)
		case <-a.changed:
			write(true)
		}
	}
}

// Status assembles the current status.
func (a *Agent) Status() status.Status {
	cs := a.client.Status()
	rs := a.ring.Stats()
	ls := a.coll.tailer.Stats()
	return status.Status{
		AgentID: a.id.ID(), State: cs.State, Relay: cs.Relay, LastError: cs.LastError,
		Transport: cs.Transport, Proxy: cs.Proxy, PolicyTier: a.PolicyTier(),
		Ring: status.Ring{Batches: rs.Batches, Bytes: rs.Bytes, MaxBytes: rs.MaxBytes,
			DroppedBatches: rs.DroppedBatches, DroppedBytes: rs.DroppedBytes},
		Logs:    status.Logs{Lines: ls.Lines, TruncatedLines: ls.Truncated, LostFiles: ls.LostFiles},
		NextSeq: rs.NextSeq, Pending: rs.Pending, SpooledUndelivered: rs.Spooled,
		DeliveredTotal: rs.DeliveredTotal, RejectedTotal: rs.RejectedBatches,
		UpdatedAt: time.Now().UTC(),
	}
}

func (a *Agent) writeStatus() {
	if err := status.Write(a.cfg.StatusPath(), a.Status()); err != nil {
		a.log.Warn("write status", "err", err)
	}
}

// Close releases the ring. Idempotent.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		if a.iso != nil {
			a.iso.Close() // leaves the pins: an isolated host stays isolated
		}
		if err := a.ring.Close(); err != nil {
			a.closeErr = fmt.Errorf("close agent: %w", err)
		}
	})
	return a.closeErr
}

// proxyHost is the configured proxy's host:port for logs (no credentials).
func (a *Agent) proxyHost() string {
	u, _ := a.cfg.ProxyURL()
	if u == nil {
		return "from environment"
	}
	return transport.ProxyHost(u)
}
