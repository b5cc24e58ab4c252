// Package daemon wires the relay: config, identity, spool, ingress, uplink
// and the admin HTTP server (metrics, health, /v1/status).
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/gatehouse/gatehouse/cluster"
	"github.com/gatehouse/gatehouse/internal/adminhttp"
	"github.com/gatehouse/gatehouse/internal/dirlock"
	"github.com/gatehouse/gatehouse/internal/identity"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/cloudclient"
	"github.com/gatehouse/gatehouse/relay/internal/config"
	"github.com/gatehouse/gatehouse/relay/internal/dnsserver"
	"github.com/gatehouse/gatehouse/relay/internal/ingress"
	"github.com/gatehouse/gatehouse/relay/internal/spool"
	"github.com/gatehouse/gatehouse/relay/internal/uplink"
)

// Daemon is a whole relay. New opens and binds everything; Run serves.
type Daemon struct {
	cfg    config.Config
	log    *slog.Logger
	spool  *spool.Spool
	client *cloudclient.Client
	in     *ingress.Server
	up     *uplink.Uplink
	admin  *adminhttp.Server
	node   *cluster.Node     // nil unless this relay is in a cluster
	dns    *dnsserver.Server // nil unless dns.enabled

	lastControl atomic.Pointer[cloudv1.ControlPollResponse] // the last poll: a relay alone serves DNS and commands from it
	pusher      commandPusher
	ctx         context.Context // Run's, for work started by callbacks
	wg          sync.WaitGroup  // that work
	dnsChanged  chan struct{}

	lock *dirlock.Lock // data_dir, held from New to Close
	once sync.Once
}

// New opens the spool, binds the agent and admin listeners and prepares the
// uplink. It starts no goroutine. cfg must be validated.
func New(cfg config.Config, log *slog.Logger) (*Daemon, error) {
	lock, err := dirlock.Acquire(cfg.DataDir, "gatehouse-relay")
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, dnsChanged: make(chan struct{}, 1), lock: lock}
	// Release what the steps below do not close themselves on failure.
	opened := false
	defer func() {
		if !opened {
			if d.admin != nil {
				d.admin.Close()
			}
			lock.Release()
		}
	}()
	if e, err := cloudclient.LoadEnrollment(cfg.DataDir); err != nil {
		return nil, err
	} else if e == nil && cfg.Cloud.EnrollmentToken == "" {
		return nil, fmt.Errorf("relay not enrolled (%s absent): set cloud.enrollment_token", filepath.Join(cfg.DataDir, cloudclient.EnrollmentFile))
	}
	// The relay's key: agents pin it, and enrollment proves it.
	id, err := identity.LoadOrCreate(filepath.Join(cfg.DataDir, "identity"))
	if err != nil {
		return nil, err
	}
	d.admin, err = adminhttp.New(cfg.AdminListen, d.ready)
	if err != nil {
		return nil, err
	}
	reg := d.admin.Registry
	d.spool, err = spool.Open(spool.Options{
		Dir: filepath.Join(cfg.DataDir, "spool"), MaxBytes: cfg.Spool.MaxBytes, MinFreeBytes: cfg.Spool.MinFreeBytes,
		Logger: log.With("component", "spool"), Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	d.client, err = cloudclient.New(cloudclient.Options{
		URL: cfg.Cloud.URL, CAFile: cfg.Cloud.CAFile, Fingerprint: cfg.Cloud.Fingerprint, Timeout: cfg.Uplink.RequestTimeout,
		ConnectTimeout: cfg.Uplink.ConnectTimeout,
		Proxy:          cfg.Cloud.Proxy, Registerer: reg,
	})
	if err != nil {
		d.spool.Close()
		return nil, err
	}
	d.up = uplink.New(uplink.Options{
		Spool: d.spool, Client: d.client, DataDir: cfg.DataDir, EnrollmentToken: cfg.Cloud.EnrollmentToken, Key: id.Private, Name: cfg.Name,
		MaxUploadBytes: cfg.Uplink.MaxUploadBytes, MaxUploadAge: cfg.Uplink.MaxUploadAge,
		MinBackoff: cfg.Uplink.MinBackoff, MaxBackoff: cfg.Uplink.MaxBackoff,
		PollWait:  min(25*cfg.Uplink.RequestTimeout/30, cfg.Uplink.RequestTimeout),
		Delivered: func(agent string, seqs []uint64) { d.in.Delivered(agent, seqs) },
		Control:   d.applyControl,
		Reconciled: func(ctx context.Context, agentID string) {
			if d.node == nil {
				return
			}
			if _, err := d.node.ReconcileAgent(ctx, agentID); err != nil {
				d.log.Warn("clear pending registration in the cluster", "agent_id", agentID, "err", err)
			}
		},
		Logger: log, Registerer: reg,
	})
	var store ingress.Store = d.spool
	var pins func() []*agentv1.RelayPin
	if cluster.Initialized(cfg.Cluster.DataDir) {
		ccfg := cfg.Cluster
		ccfg.AgentFingerprint = id.Fingerprint()
		d.node, err = cluster.New(ccfg, cluster.Deps{Logger: log.With("component", "cluster"), Registry: reg})
		if err != nil {
			d.spool.Close()
			return nil, err
		}
		store = clusterStore{Spool: d.spool, node: d.node, timeout: ccfg.ApplyTimeout}
		pins = sitePins(d.node)
	}
	d.in, err = ingress.New(ingress.Options{
		SitePins: pins,
		Commands: d.agentCommands, CommandResult: d.commandResult,
		Listen: cfg.Listen, Advertise: []string{cfg.Advertise}, DataDir: cfg.DataDir, Name: cfg.Name,
		Store: store, Cloud: d.registrar(),
		RelayID: func() string {
			if e := d.up.Enrollment(); e != nil {
				return e.RelayId
			}
			return ""
		},
		TenantID: func() string {
			if e := d.up.Enrollment(); e != nil {
				return e.TenantId
			}
			return ""
		},
		HeartbeatInterval: cfg.HeartbeatInterval, RetryAfter: cfg.Spool.RetryAfter,
		PolicyTier: d.up.PolicyTier, Logger: log, Registerer: reg,
	})
	if err != nil {
		d.spool.Close()
		return nil, err
	}
	if cfg.DNS.Enabled {
		d.dns, err = dnsserver.New(cfg.DNS.Config, dnsserver.Deps{Logger: log.With("component", "dns"), Registerer: reg})
		if err != nil {
			d.in.Close()
			d.spool.Close()
			return nil, err
		}
	}
	d.admin.Mux.HandleFunc("GET /v1/status", d.status)
	d.clusterRoutes()
	d.healthChecks()
	opened = true
	return d, nil
}

// registrar hands ingress the cloud client once the relay is enrolled;
// before that, registrations take the offline path.
func (d *Daemon) registrar() ingress.Registrar { return enrolledRegistrar{d} }

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
// waits for it and closes the spool.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.ctx = ctx
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	// The spool committer outlives ingress so in-flight appends are answered.
	spoolCtx, stopSpool := context.WithCancel(context.Background())
	spoolDone := make(chan struct{})
	go func() { defer close(spoolDone); d.spool.Run(spoolCtx) }()
	if d.node != nil {
		run("cluster", d.node.Run)
		run("command push", d.runCommandPush)
	}
	if d.dns != nil {
		run("dns", d.dns.Run)
		run("dns sync", d.runDNSSync)
	}
	run("ingress", d.in.Run)
	run("uplink", d.up.Run)
	run("admin", d.admin.Run)
	d.log.Info("relay running", "name", d.cfg.Name, "listen_udp", d.AgentAddr(), "listen_tcp", d.AgentTCPAddr(), "admin", d.AdminAddr(), "fingerprint", d.Fingerprint())
	<-ctx.Done()
	wg.Wait()
	d.wg.Wait()
	stopSpool()
	<-spoolDone
	d.Close()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	d.log.Info("relay stopped")
	return errors.Join(errs...)
}

// Close releases what New opened. Idempotent; Run calls it.
func (d *Daemon) Close() error {
	var err error
	d.once.Do(func() {
		d.in.Close()
		if d.node != nil {
			d.node.Close()
		}
		if d.dns != nil {
			d.dns.Close()
		}
		d.client.Close()
		err = d.spool.Close()
		d.lock.Release()
	})
	return err
}

func (d *Daemon) ready() error {
	if d.in == nil || d.spool == nil {
		return errors.New("starting")
	}
	if d.node != nil {
		select {
		case <-d.node.Started():
		default:
			return errors.New("cluster node starting")
		}
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
	if e := d.up.Enrollment(); e != nil {
		s.RelayID = e.RelayId
	}
	if d.node != nil {
		if cs, err := d.node.Status(); err == nil {
			s.Cluster = &ClusterBrief{NodeID: cs.NodeID, State: cs.State, LeaderID: cs.LeaderID, Members: len(cs.Members)}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s)
}
