package agent

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/gatehouse/gatehouse/agent/internal/batch"
	"github.com/gatehouse/gatehouse/agent/internal/collect"
	"github.com/gatehouse/gatehouse/agent/internal/collect/auth"
	"github.com/gatehouse/gatehouse/agent/internal/collect/filemod"
	"github.com/gatehouse/gatehouse/agent/internal/collect/netflow"
	"github.com/gatehouse/gatehouse/agent/internal/collect/process"
	"github.com/gatehouse/gatehouse/agent/internal/config"
	"github.com/gatehouse/gatehouse/agent/internal/ecs"
	"github.com/gatehouse/gatehouse/agent/internal/hoststats"
	"github.com/gatehouse/gatehouse/agent/internal/logtail"
	"github.com/gatehouse/gatehouse/agent/internal/ring"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Collectors runs every collector of the agent. The security ones
// (process, netflow, auth, filemod) write to the security lane through a
// batcher of their own (events wait at most security_max_delay, so a burst
// is one ring write, not one each); log tailing and host stats write to the
// bulk lane's batcher, which the agent runs.
type Collectors struct {
	log  *slog.Logger
	sec  *batch.Batcher
	list []collect.Collector

	tailer  *logtail.Tailer    // also in list; its counters are in the status
	sampler *hoststats.Sampler // nil when host stats are unavailable here
}

// collectorDeps is what the collectors write to and describe events with.
type collectorDeps struct {
	source ecs.Source
	ring   *ring.Ring
	bulk   *batch.Batcher
}

// newCollectors builds the agent's collectors from cfg: the one list of
// them. Add a collector here (and its config in agent/internal/config).
func newCollectors(cfg config.Config, tier collect.Tier, log *slog.Logger, d collectorDeps) *Collectors {
	s := &Collectors{log: log.With("component", "collectors")}
	s.sec = batch.New(d.ring, batch.Options{
		Lane: agentv1.Priority_PRIORITY_SECURITY, MaxEvents: cfg.Batch.MaxEvents, MaxBytes: cfg.Batch.MaxBytes,
		MaxDelay: cfg.SecurityMaxDelay, Logger: log.With("component", "batch", "lane", "security"),
	})
	src := d.source

	var sources []logtail.Source
	for _, l := range cfg.Logs {
		sources = append(sources, logtail.Source{Globs: l.Paths, MaxLine: l.MaxLine()})
	}
	s.tailer = logtail.New(logtail.Options{
		Sources: sources, CheckpointPath: filepath.Join(cfg.DataDir, "checkpoints.json"), Source: src,
		Logger: log.With("component", "logtail"),
	}, d.bulk, d.ring)
	s.list = append(s.list, s.tailer)

	if smp, err := hoststats.NewSampler(); err != nil {
		log.Warn("host stats disabled", "err", err)
	} else {
		s.sampler = smp
		s.list = append(s.list, &hoststats.Collector{
			Sampler: smp, Sink: d.bulk, Source: src, Interval: cfg.StatsInterval, Logger: log.With("component", "hoststats"),
		})
	}
	if cfg.Process.Enabled {
		s.list = append(s.list, process.New(process.Options{
			Source: src, Sink: s.sec, Tier: tier, HashesExcludedPaths: cfg.Process.HashesExcludedPaths,
			HashMaxBytes: cfg.Process.HashMaxBytes, DrainEvery: cfg.SecurityMaxDelay, Logger: log.With("component", "process"),
		}))
	}
	if cfg.Netflow.Enabled {
		s.list = append(s.list, netflow.New(netflow.Options{Source: src, Sink: s.sec, Tier: tier, DrainEvery: cfg.SecurityMaxDelay, Logger: log.With("component", "netflow")}))
	}
	if cfg.Auth.Enabled {
		s.list = append(s.list, auth.New(auth.Options{
			Source: src, Sink: s.sec, From: cfg.Auth.Source, Paths: cfg.Auth.Paths, DataDir: cfg.DataDir,
			Ring: d.ring, Logger: log.With("component", "auth"),
		}))
	}
	if cfg.FileMod.Enabled && len(cfg.FileMod.Paths) > 0 {
		s.list = append(s.list, filemod.New(filemod.Options{Source: src, Sink: s.sec, Paths: cfg.FileMod.Paths, DrainEvery: cfg.SecurityMaxDelay, Logger: log.With("component", "filemod")}))
	}
	return s
}

// SetPolicyTier switches every collector to tier ("server" or
// "workstation") without a restart; the transport calls it when the cloud
// pushes a tier.
func (a *Agent) SetPolicyTier(tier string) error {
	t, err := collect.ParseTier(tier)
	if err != nil {
		return err
	}
	a.tierMu.Lock()
	defer a.tierMu.Unlock()
	if err := a.coll.SetTier(tier); err != nil {
		return err
	}
	a.tier = t
	return nil
}

// SetTier switches every collector that follows the tier to tier.
func (s *Collectors) SetTier(tier string) error {
	t, err := collect.ParseTier(tier)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range s.list {
		if f, ok := c.(collect.TierFollower); ok {
			if err := f.SetTier(t); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.Name(), err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("set policy tier %s: %v", t, errs)
	}
	s.log.Info("policy tier set", "tier", t)
	return nil
}

// Run runs the collectors until ctx ends; the security batcher flushes
// after the last collector stopped, so no event is left behind. A collector
// that cannot run here (no BTF, no fanotify) is logged and the others go on.
func (s *Collectors) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, c := range s.list {
		wg.Go(func() {
			if err := c.Run(ctx); err != nil {
				s.log.Error("collector stopped", "collector", c.Name(), "err", err)
			}
		})
	}
	batchCtx, stopBatch := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.sec.Run(batchCtx)
	}()
	wg.Wait()
	stopBatch()
	<-done
	return nil
}
