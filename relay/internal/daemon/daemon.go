// Package daemon composes the relay from its components and starts them;
// it holds no state of its own. docs/architecture.md names each component
// and the one way commands, DNS overrides and batches pass through them.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gatehouse/gatehouse/cluster"
	"github.com/gatehouse/gatehouse/internal/adminhttp"
	"github.com/gatehouse/gatehouse/internal/dirlock"
	"github.com/gatehouse/gatehouse/internal/identity"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/cloudclient"
	"github.com/gatehouse/gatehouse/relay/internal/config"
	"github.com/gatehouse/gatehouse/relay/internal/dispatch"
	"github.com/gatehouse/gatehouse/relay/internal/dnsserver"
	"github.com/gatehouse/gatehouse/relay/internal/enrollment"
	"github.com/gatehouse/gatehouse/relay/internal/ingress"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate"
	"github.com/gatehouse/gatehouse/relay/internal/spool"
	"github.com/gatehouse/gatehouse/relay/internal/uplink"
)

// Daemon is a whole relay. New opens and binds everything; Run serves.
type Daemon struct {
	cfg config.Config
	log *slog.Logger

	enrolled *enrollment.State   // who the relay is at the cloud
	spool    *spool.Spool        // batches and receipts
	client   *cloudclient.Client // the cloud's relay API
	node     *cluster.Node       // the site's Raft member (a cluster of one when alone)
	site     *sitestate.State    // registry and control state, in the node
	results  *dispatch.Results   // agents' action results → cloud
	in       *ingress.Server     // agents
	pusher   *dispatch.Pusher    // site state → connected agents
	up       *uplink.Uplink      // spool → cloud, cloud's control → site state
	dns      *dnsserver.Server   // nil unless dns.enabled
	dnsSync  *dispatch.DNS       // site state → dns
	admin    *adminhttp.Server   // metrics, health, status, cluster commands

	lock    *dirlock.Lock // data_dir, held from New to Close
	closers []func() error
	once    sync.Once
}

// New opens the spool and the cluster node's credentials, binds the agent,
// admin and DNS listeners and builds every component. It starts no
// goroutine; on failure it closes what it opened. cfg must be validated.
func New(cfg config.Config, log *slog.Logger) (_ *Daemon, err error) {
	lock, err := dirlock.Acquire(cfg.DataDir, "gatehouse-relay")
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, lock: lock}
	defer func() {
		if err != nil {
			d.closeOpened()
		}
	}()
	if d.enrolled, err = enrollment.Load(cfg.DataDir); err != nil {
		return nil, err
	}
	if d.enrolled.Current() == nil && cfg.Cloud.EnrollmentToken == "" {
		return nil, fmt.Errorf("relay not enrolled (%s absent): set cloud.enrollment_token", filepath.Join(cfg.DataDir, cloudclient.EnrollmentFile))
	}
	// The relay's key: agents pin it, and enrollment proves it.
	id, err := identity.LoadOrCreate(filepath.Join(cfg.DataDir, "identity"))
	if err != nil {
		return nil, err
	}
	if d.admin, err = adminhttp.New(cfg.AdminListen, d.ready); err != nil {
		return nil, err
	}
	d.opened(d.admin.Close)
	reg := d.admin.Registry

	if d.spool, err = spool.Open(spool.Options{
		Dir: filepath.Join(cfg.DataDir, "spool"), MaxBytes: cfg.Spool.MaxBytes, MinFreeBytes: cfg.Spool.MinFreeBytes,
		Logger: log.With("component", "spool"), Registerer: reg,
	}); err != nil {
		return nil, err
	}
	d.opened(d.spool.Close)
	if d.client, err = cloudclient.New(cloudclient.Options{
		URL: cfg.Cloud.URL, CAFile: cfg.Cloud.CAFile, Fingerprint: cfg.Cloud.Fingerprint, Timeout: cfg.Uplink.RequestTimeout,
		ConnectTimeout: cfg.Uplink.ConnectTimeout, Proxy: cfg.Cloud.Proxy, Registerer: reg,
	}); err != nil {
		return nil, err
	}
	d.opened(func() error { d.client.Close(); return nil })

	// Every relay is a cluster member: alone, a cluster of one.
	if !cluster.Initialized(cfg.Cluster.DataDir) {
		if err := cluster.InitSolo(cfg.Cluster.DataDir, cfg.Cluster.NodeID); err != nil {
			return nil, fmt.Errorf("make this relay a cluster of one: %w", err)
		}
	}
	ccfg := cfg.Cluster
	ccfg.AgentFingerprint = id.Fingerprint()
	if d.node, err = cluster.New(ccfg, cluster.Deps{Logger: log.With("component", "cluster"), Registry: reg}); err != nil {
		return nil, err
	}
	d.opened(d.node.Close)
	d.site = sitestate.New(ccfg.ApplyTimeout, sitestate.Deps{Node: d.node, Identity: d.enrolled, Logger: log})
	d.results = dispatch.NewResults(dispatch.ResultsDeps{State: d.site, Client: d.client, Logger: log})

	if d.in, err = ingress.New(ingress.Options{
		Listen: cfg.Listen, Advertise: []string{cfg.Advertise}, DataDir: cfg.DataDir, Name: cfg.Name,
		HeartbeatInterval: cfg.HeartbeatInterval, RetryAfter: cfg.Spool.RetryAfter, Logger: log, Registerer: reg,
	}, ingress.Deps{
		Store: d.spool, Site: d.site, Identity: d.enrolled, Cloud: enrolledRegistrar{d.enrolled, d.client}, Results: d.results,
	}); err != nil {
		return nil, err
	}
	d.opened(d.in.Close)
	d.pusher = dispatch.NewPusher(dispatch.PusherDeps{State: d.site, Agents: d.in})

	if cfg.DNS.Enabled {
		if d.dns, err = dnsserver.New(cfg.DNS.Config, dnsserver.Deps{Logger: log.With("component", "dns"), Registerer: reg}); err != nil {
			return nil, err
		}
		d.opened(d.dns.Close)
		d.dnsSync = dispatch.NewDNS(dispatch.DNSConfig{Overrides: cfg.DNS.Overrides, StrictIsolation: cfg.DNS.StrictIsolation},
			dispatch.DNSDeps{State: d.site, Server: d.dns, Agents: d.in, Logger: log.With("component", "dns")})
	}

	d.up = uplink.New(uplink.Options{
		DataDir: cfg.DataDir, EnrollmentToken: cfg.Cloud.EnrollmentToken, Key: id.Private, Name: cfg.Name,
		MaxUploadBytes: cfg.Uplink.MaxUploadBytes, MaxUploadAge: cfg.Uplink.MaxUploadAge,
		MinBackoff: cfg.Uplink.MinBackoff, MaxBackoff: cfg.Uplink.MaxBackoff,
		PollWait: min(25*cfg.Uplink.RequestTimeout/30, cfg.Uplink.RequestTimeout),
		Logger:   log, Registerer: reg,
	}, uplink.Deps{Spool: d.spool, Client: d.client, Site: d.site, Receipts: d.in, Enrolled: d.enrolled})

	d.admin.Mux.HandleFunc("GET /v1/status", d.status)
	d.clusterRoutes()
	d.healthChecks()
	return d, nil
}

// opened records what Close (or a failing New) must close, in reverse.
func (d *Daemon) opened(closeFn func() error) { d.closers = append(d.closers, closeFn) }

func (d *Daemon) closeOpened() error {
	var errs []error
	for _, c := range slices.Backward(d.closers) {
		errs = append(errs, c())
	}
	d.lock.Release()
	return errors.Join(errs...)
}

// enrolledRegistrar calls the cloud only once the relay has credentials;
// before that it reports the cloud unreachable, so ingress registers offline.
type enrolledRegistrar struct {
	enrolled *enrollment.State
	client   *cloudclient.Client
}

var errNotEnrolled = errors.New("relay not enrolled yet")

func (r enrolledRegistrar) Register(ctx context.Context, req *cloudv1.RegisterAgentRequest) (*cloudv1.RegisterAgentResponse, error) {
	if r.enrolled.Current() == nil {
		return nil, errNotEnrolled
	}
	return r.client.Register(ctx, req)
}

// AgentAddr is the bound QUIC (UDP) address; TLS over TCP listens on the
// same port number (AgentTCPAddr).
func (d *Daemon) AgentAddr() string { return d.in.Addr().String() }

// AgentTCPAddr is the bound TLS-over-TCP address.
func (d *Daemon) AgentTCPAddr() string { return d.in.TCPAddr().String() }

// AdminAddr is the bound admin HTTP address.
func (d *Daemon) AdminAddr() string { return d.admin.Addr() }

// Fingerprint is the relay key's fingerprint.
func (d *Daemon) Fingerprint() string { return d.in.Fingerprint() }

// Run serves until ctx ends or a component fails, then stops everything,
// waits for it and closes what New opened.
func (d *Daemon) Run(ctx context.Context) error {
	// The spool committer outlives ingress so in-flight appends are answered.
	spoolCtx, stopSpool := context.WithCancel(context.Background())
	spoolDone := make(chan struct{})
	go func() { defer close(spoolDone); d.spool.Run(spoolCtx) }()

	g, gctx := errgroup.WithContext(ctx)
	run := func(name string, f func(context.Context) error) {
		g.Go(func() error {
			if err := f(gctx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	run("cluster", d.node.Run)
	run("admin", d.admin.Run)
	run("action results", d.results.Run)
	run("agents", func(ctx context.Context) error {
		// A data directory from before every relay was a cluster member
		// keeps its agents in the spool: move them before admitting any.
		if err := d.importLegacyRegistry(ctx); err != nil {
			return err
		}
		g.Go(func() error { return wrap("ingress", d.in.Run(ctx)) })
		g.Go(func() error { return wrap("command push", d.pusher.Run(ctx)) })
		g.Go(func() error { return wrap("uplink", d.up.Run(ctx)) })
		if d.dns != nil {
			g.Go(func() error { return wrap("dns", d.dns.Run(ctx)) })
			g.Go(func() error { return wrap("dns sync", d.dnsSync.Run(ctx)) })
		}
		d.log.Info("relay running", "name", d.cfg.Name, "listen_udp", d.AgentAddr(), "listen_tcp", d.AgentTCPAddr(), "admin", d.AdminAddr(), "fingerprint", d.Fingerprint())
		return nil
	})
	err := g.Wait()
	stopSpool()
	<-spoolDone
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	d.log.Info("relay stopped")
	return err
}

func wrap(name string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// importLegacyRegistry moves the agent registry an old spool held into the
// site state, retrying while the cluster cannot take writes.
func (d *Daemon) importLegacyRegistry(ctx context.Context) error {
	legacy, err := d.spool.LegacyRegistry()
	if err != nil {
		return err
	}
	if legacy.Empty() {
		return nil
	}
	select {
	case <-d.node.Started():
	case <-ctx.Done():
		return nil
	}
	for {
		n, err := d.site.ImportLegacy(ctx, legacy)
		if err == nil {
			if err := d.spool.DropLegacyRegistry(); err != nil {
				return err
			}
			d.log.Info("moved the spool's agent registry into the site state", "agents", n)
			return nil
		}
		d.log.Warn("spool's agent registry (from an earlier release) not moved into the site state yet; agents are admitted once it is", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// Close releases what New opened. Idempotent; Run calls it.
func (d *Daemon) Close() error {
	var err error
	d.once.Do(func() { err = d.closeOpened() })
	return err
}

func (d *Daemon) ready() error {
	if d.in == nil || d.spool == nil {
		return errors.New("starting")
	}
	select {
	case <-d.node.Started():
	default:
		return errors.New("cluster node starting")
	}
	return d.spoolReady()
}

// spoolReady fails while the spool refuses batches: agents cannot deliver
// through this relay (they keep their data and retry).
func (d *Daemon) spoolReady() error {
	st := d.spool.Stats()
	if !st.Full {
		return nil
	}
	if st.FullReason == "disk" {
		return fmt.Errorf("spool full: %d bytes free on its filesystem, spool.min_free_bytes is %d; refusing batches (SPOOL_FULL) until space is freed",
			st.FsFreeBytes, st.MinFreeBytes)
	}
	return fmt.Errorf("spool full: %d of spool.max_bytes %d on disk; refusing batches (SPOOL_FULL) until the cloud takes some",
		st.DiskBytes, st.MaxBytes)
}

// Status is the body of GET /v1/status.
type Status struct {
	RelayID         string        `json:"relay_id"`
	Name            string        `json:"name"`
	Listen          string        `json:"listen"`     // UDP (QUIC)
	ListenTCP       string        `json:"listen_tcp"` // TLS over TCP, same port
	Fingerprint     string        `json:"fingerprint"`
	AgentsConnected int           `json:"agents_connected"`
	Spool           SpoolStatus   `json:"spool"`
	Uplink          uplink.Status `json:"uplink"`
	ReceiptsPending int64         `json:"receipts_pending"`
	Cluster         *ClusterBrief `json:"cluster,omitempty"`
}

// ClusterBrief is the cluster part of Status.
type ClusterBrief struct {
	NodeID   string `json:"node_id"`
	State    string `json:"state"`
	LeaderID string `json:"leader_id"`
	Members  int    `json:"members"`
}

// SpoolStatus is the spool part of Status.
type SpoolStatus struct {
	Batches  int64 `json:"batches"`
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes"`
	Full     bool  `json:"full"`
	// FullReason is why it refuses: "max_bytes" or "disk" (min_free_bytes).
	FullReason   string `json:"full_reason,omitempty"`
	DiskBytes    int64  `json:"disk_bytes"`
	FsFreeBytes  int64  `json:"fs_free_bytes"`
	FsSizeBytes  int64  `json:"fs_size_bytes"`
	MinFreeBytes int64  `json:"min_free_bytes"`
	// OldestBatchAgeSeconds is how long the oldest undelivered batch has waited.
	OldestBatchAgeSeconds float64 `json:"oldest_batch_age_seconds"`
	// BacklogAgents agents have batches waiting; Backlog lists the ones
	// with the most bytes (at most backlogTop).
	BacklogAgents int             `json:"backlog_agents"`
	Backlog       []spool.Backlog `json:"backlog"`
}

// backlogTop bounds Status.Spool.Backlog: a site has thousands of agents.
const backlogTop = 20

func spoolStatus(sp *spool.Spool) SpoolStatus {
	st := sp.Stats()
	s := SpoolStatus{
		Batches: st.Batches, Bytes: st.Bytes, MaxBytes: st.MaxBytes, Full: st.Full, FullReason: st.FullReason,
		DiskBytes: st.DiskBytes, FsFreeBytes: st.FsFreeBytes, FsSizeBytes: st.FsSizeBytes, MinFreeBytes: st.MinFreeBytes,
	}
	if age, err := sp.OldestAge(); err == nil {
		s.OldestBatchAgeSeconds = age.Seconds()
	}
	s.Backlog, s.BacklogAgents = sp.BacklogTop(backlogTop)
	return s
}

func (d *Daemon) status(w http.ResponseWriter, _ *http.Request) {
	st := d.spool.Stats()
	s := Status{
		Name: d.cfg.Name, Listen: d.AgentAddr(), ListenTCP: d.AgentTCPAddr(), Fingerprint: d.Fingerprint(), AgentsConnected: d.in.Connected(),
		Spool:  spoolStatus(d.spool),
		Uplink: d.up.Status(), ReceiptsPending: st.Receipts,
	}
	s.RelayID = d.enrolled.RelayID()
	if cs, err := d.node.Status(); err == nil {
		s.Cluster = &ClusterBrief{NodeID: cs.NodeID, State: cs.State, LeaderID: cs.LeaderID, Members: len(cs.Members)}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s)
}
