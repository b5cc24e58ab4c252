package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/gatehouse/gatehouse/agent/internal/batch"
	"github.com/gatehouse/gatehouse/agent/internal/collect"
	"github.com/gatehouse/gatehouse/agent/internal/collect/auth"
	"github.com/gatehouse/gatehouse/agent/internal/collect/filemod"
	"github.com/gatehouse/gatehouse/agent/internal/collect/netflow"
	"github.com/gatehouse/gatehouse/agent/internal/collect/process"
	"github.com/gatehouse/gatehouse/agent/internal/config"
	"github.com/gatehouse/gatehouse/agent/internal/ecs"
	"github.com/gatehouse/gatehouse/agent/internal/ring"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Collectors runs the security collectors (process, netflow, auth,
// filemod) into the security lane through a batcher of its own (events wait
// at most security_max_delay, so a burst is one ring write, not one each).
type Collectors struct {
	log     *slog.Logger
	sec     *batch.Batcher
	process *process.Collector
	netflow *netflow.Collector
	auth    *auth.Collector
	filemod *filemod.Collector
}

func newCollectors(cfg config.Config, tier collect.Tier, log *slog.Logger, src ecs.Source, r *ring.Ring) *Collectors {
	s := &Collectors{log: log.With("component", "collectors")}
	s.sec = batch.New(r, batch.Options{
		Lane: agentv1.Priority_PRIORITY_SECURITY, MaxEvents: cfg.Batch.MaxEvents, MaxBytes: cfg.Batch.MaxBytes,
		MaxDelay: cfg.SecurityMaxDelay, Logger: log.With("component", "batch", "lane", "security"),
	})
	if cfg.Process.Enabled {
		s.process = process.New(process.Options{
			Source: src, Sink: s.sec, Tier: tier, HashesExcludedPaths: cfg.Process.HashesExcludedPaths,
			HashMaxBytes: cfg.Process.HashMaxBytes, DrainEvery: cfg.SecurityMaxDelay, Logger: log.With("component", "process"),
		})
	}
	if cfg.Netflow.Enabled {
		s.netflow = netflow.New(netflow.Options{Source: src, Sink: s.sec, Tier: tier, DrainEvery: cfg.SecurityMaxDelay, Logger: log.With("component", "netflow")})
	}
	if cfg.Auth.Enabled {
		s.auth = auth.New(auth.Options{
			Source: src, Sink: s.sec, From: cfg.Auth.Source, Paths: cfg.Auth.Paths, DataDir: cfg.DataDir,
			Ring: r, Logger: log.With("component", "auth"),
		})
	}
	if cfg.FileMod.Enabled && len(cfg.FileMod.Paths) > 0 {
		s.filemod = filemod.New(filemod.Options{Source: src, Sink: s.sec, Paths: cfg.FileMod.Paths, DrainEvery: cfg.SecurityMaxDelay, Logger: log.With("component", "filemod")})
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

// SetTier switches every collector to tier.
func (s *Collectors) SetTier(tier string) error {
	t, err := collect.ParseTier(tier)
	if err != nil {
		return err
	}
	var errs []error
	if s.process != nil {
		if err := s.process.SetTier(t); err != nil {
			errs = append(errs, err)
		}
	}
	if s.netflow != nil {
		if err := s.netflow.SetTier(t); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("set policy tier %s: %v", t, errs)
	}
	s.log.Info("policy tier set", "tier", t)
	return nil
}

// Run runs the collectors until ctx ends; the batcher flushes after the
// last collector stopped, so no event is left behind. A collector that
// cannot run here (no BTF, no fanotify) is logged and the others go on.
func (s *Collectors) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil {
				s.log.Error("collector stopped", "collector", name, "err", err)
			}
		})
	}
	if s.process != nil {
		run("process", s.process.Run)
	}
	if s.netflow != nil {
		run("netflow", s.netflow.Run)
	}
	if s.auth != nil {
		run("auth", s.auth.Run)
	}
	if s.filemod != nil {
		run("filemod", s.filemod.Run)
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
