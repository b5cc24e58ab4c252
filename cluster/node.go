// Package cluster keeps a site's control state in Raft (hashicorp/raft):
// registered agents, registration-key hashes, isolation intents, DNS
// overrides, allow-lists, pending agent commands and the site's relays.
// Nodes talk over one mutual-TLS port with certificates from a site CA.
// See docs/cluster.md.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/cluster/state"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

// Deps are a node's collaborators; all optional.
type Deps struct {
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Clock stamps the Apply helpers' writes; nil: the real clock.
	Clock clockwork.Clock
	// Dial opens TCP connections to peers (tests inject faults here).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Node is one relay's member of the site cluster.
type Node struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics
	store   *Store
	watch   *state.Watchers
	fsm     *state.FSM

	done      chan struct{}
	closeOnce sync.Once
	started   chan struct{}
	mu        sync.Mutex // guards the fields below, set once by Run
	pki       *pki
	sl        *streamLayer
	raft      *raft.Raft
}

var errNotLeader = errors.New("not the leader")

// New checks cfg and builds a node; it starts nothing.
func New(cfg Config, deps Deps) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	if deps.Dial == nil {
		var d net.Dialer
		deps.Dial = d.DialContext
	}
	log := deps.Logger.With("component", "cluster", "node", cfg.NodeID)
	store, ws := state.NewStore(), state.NewWatchers()
	n := &Node{
		cfg: cfg, deps: deps, log: log, metrics: newMetrics(deps.Registry),
		store: store, watch: ws, fsm: state.NewFSM(store, ws, log),
		done: make(chan struct{}), started: make(chan struct{}),
	}
	if deps.Registry != nil {
		deps.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gatehouse_cluster_ignored_unknown_commands_total",
			Help: "Raft entries of command types unknown to this version, skipped because flagged ignore-if-unknown.",
		}, func() float64 { return float64(n.fsm.Ignored()) }))
	}
	return n, nil
}

// Initialized reports whether dataDir holds cluster credentials (after
// Init or Enroll).
func Initialized(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, caCertFile))
	return err == nil
}

// Store is the local (possibly slightly stale) read side of the state.
func (n *Node) Store() *Store { return n.store }

// Watch returns a watcher told about changes of the given kinds.
func (n *Node) Watch(kinds Kinds) *Watcher { return n.watch.Add(kinds) }

// Started is closed once Run has the cluster port bound and Raft running.
func (n *Node) Started() <-chan struct{} { return n.started }

// Addr is the advertised cluster address (valid after Started).
func (n *Node) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sl == nil {
		return ""
	}
	return n.sl.Addr().String()
}

// JoinToken returns the site's join token (valid after Started).
func (n *Node) JoinToken() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pki == nil {
		return ""
	}
	return n.pki.token
}

func (n *Node) r() *raft.Raft {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.raft
}

// Run opens the stores, binds the cluster port, runs Raft, and blocks
// until ctx ends or Close; then it shuts Raft down and waits for its goroutines.
func (n *Node) Run(ctx context.Context) error {
	select {
	case <-n.done:
		return ErrClosed
	default:
	}
	p, err := loadPKI(n.cfg.DataDir)
	if err != nil {
		return err
	}
	raftDir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return fmt.Errorf("create raft dir %s: %w", raftDir, err)
	}
	logs, err := openLogStore(filepath.Join(raftDir, "wal"), n.cfg.LogSegmentBytes, n.log)
	if err != nil {
		return err
	}
	defer logs.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, n.cfg.SnapshotRetain, newHCLog(n.log, "raft-snapshot"))
	if err != nil {
		return fmt.Errorf("open snapshot store %s: %w", raftDir, err)
	}
	bind, advertise := n.cfg.Bind, n.cfg.Advertise
	if Solo(n.cfg.DataDir) {
		// A cluster of one has no peer to talk to: no port for the network.
		bind, advertise = "127.0.0.1:0", ""
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return fmt.Errorf("listen cluster port %s: %w", bind, err)
	}
	adv := ln.Addr()
	if advertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", advertise); err != nil {
			ln.Close()
			return fmt.Errorf("cluster advertise %s: %w", advertise, err)
		}
	}
	sl := &streamLayer{
		ln: ln, advertise: adv, pki: p, dial: n.deps.Dial, log: n.log,
		raftCh: make(chan net.Conn), closed: make(chan struct{}), conns: map[*trackedConn]struct{}{},
	}
	sl.handleRPC = n.handleRPC
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: sl, MaxPool: 3, Timeout: 10 * time.Second, Logger: newHCLog(n.log, "raft-net"),
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeID)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.TrailingLogs = n.cfg.TrailingLogs
	if Solo(n.cfg.DataDir) {
		// No peer can be slow or partitioned: elect at once, so a relay
		// alone admits agents within milliseconds of its start.
		rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	}
	rc.Logger = newHCLog(n.log, "raft")

	bootstrap := filepath.Join(n.cfg.DataDir, bootstrapFile)
	if _, err := os.Stat(bootstrap); err == nil {
		has, err := raft.HasExistingState(logs, logs, snaps)
		if err != nil {
			trans.Close()
			return fmt.Errorf("check raft state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(adv.String()),
			}}}
			if err := raft.BootstrapCluster(rc, logs, logs, snaps, trans, conf); err != nil {
				trans.Close()
				return fmt.Errorf("bootstrap cluster: %w", err)
			}
			n.log.Info("cluster bootstrapped", "addr", adv.String())
		}
		if err := os.Remove(bootstrap); err != nil {
			trans.Close()
			return fmt.Errorf("cluster bootstrap marker: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, logs, snaps, trans)
	if err != nil {
		trans.Close()
		return fmt.Errorf("start raft: %w", err)
	}
	n.mu.Lock()
	n.pki, n.sl, n.raft = p, sl, r
	n.mu.Unlock()

	var wg sync.WaitGroup
	runCtx, cancel := context.WithCancel(ctx)
	wg.Add(2)
	go func() { defer wg.Done(); sl.serve() }()
	go func() { defer wg.Done(); n.announce(runCtx) }()
	close(n.started)
	if Solo(n.cfg.DataDir) {
		n.log.Info("cluster of one running (cluster port on loopback only; `gatehouse-relay cluster init` or `join` makes it a site cluster)", "addr", adv.String())
	} else {
		n.log.Info("cluster node running", "addr", adv.String())
	}

	select {
	case <-ctx.Done():
	case <-n.done:
	case <-n.fsm.Stopped():
	}
	cancel()
	err = r.Shutdown().Error()
	trans.Close()
	sl.Close()
	wg.Wait()
	sl.wg.Wait()
	if ferr := n.fsm.Fatal(); ferr != nil {
		return ferr
	}
	if err != nil {
		return fmt.Errorf("raft shutdown: %w", err)
	}
	return nil
}

// Close stops Run; idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { close(n.done) })
	return nil
}

// announce finishes a pending join (asks the leader to add this node) and
// records this node's membership info in the replicated state.
func (n *Node) announce(ctx context.Context) {
	joinPath := filepath.Join(n.cfg.DataDir, joinFile)
	for attempt := 0; ; attempt++ {
		if attempt > 0 && !sleepCtx(ctx, 200*time.Millisecond) {
			return
		}
		if b, err := os.ReadFile(joinPath); err == nil {
			addr := strings.TrimSpace(string(b))
			if err := n.forward(ctx, addr, &clusterv1.RpcRequest{Call: &clusterv1.RpcRequest_AddVoter{AddVoter: &clusterv1.AddVoterCall{
				NodeId: n.cfg.NodeID, RaftAddr: n.Addr(),
			}}}); err != nil {
				n.log.Warn("cluster join: waiting to be added", "via", addr, "err", err)
				continue
			}
			if err := os.Remove(joinPath); err != nil {
				n.log.Error("cluster join marker", "err", err)
			}
			n.log.Info("cluster join: added as voter", "via", addr)
		}
		if _, leader := n.r().LeaderWithID(); leader == "" {
			continue // the leader, if it is this node, may have to fix its address first
		}
		if err := n.fixOwnAddress(); err != nil {
			n.log.Debug("cluster: own address not updated yet", "err", err)
			continue
		}
		want := &clusterv1.Member{NodeId: n.cfg.NodeID, RaftAddr: n.Addr(), AgentAddr: n.cfg.AgentAddr, Name: n.cfg.Name, AgentFingerprint: n.cfg.AgentFingerprint}
		if m := n.findMember(n.cfg.NodeID); m != nil && proto.Equal(m, want) {
			return
		}
		actx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
		_, err := n.Apply(actx, Command{Type: CmdUpsertMember, Body: want})
		cancel()
		if err == nil {
			return
		}
		n.log.Debug("cluster: membership info not recorded yet", "err", err)
	}
}

// fixOwnAddress makes the leader's own entry in the Raft configuration its
// current address: a cluster of one binds a loopback port that changes at
// every start, and keeps the last one when `cluster init` opens it to peers,
// which would then dial the stale address.
func (n *Node) fixOwnAddress() error {
	r := n.r()
	if r == nil || r.State() != raft.Leader {
		return nil
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	self, addr := raft.ServerID(n.cfg.NodeID), raft.ServerAddress(n.Addr())
	for _, s := range f.Configuration().Servers {
		if s.ID == self && s.Address != addr && s.Suffrage == raft.Voter {
			n.log.Info("cluster: recording this node's new address", "was", string(s.Address), "now", string(addr))
			return r.AddVoter(self, addr, 0, n.cfg.ApplyTimeout).Error()
		}
	}
	return nil
}

func (n *Node) findMember(id string) *clusterv1.Member {
	for _, m := range n.store.Members() {
		if m.NodeId == id {
			return m
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// setPartitioned is a test hook: cut this node off the network (or heal it).
func (n *Node) setPartitioned(on bool) {
	n.mu.Lock()
	sl := n.sl
	n.mu.Unlock()
	if sl != nil {
		sl.setPartitioned(on)
	}
}

// IsLeader reports whether this node leads the cluster now.
func (n *Node) IsLeader() bool {
	r := n.r()
	return r != nil && r.State() == raft.Leader
}
