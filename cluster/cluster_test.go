package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

const waitLong = 30 * time.Second

type testNode struct {
	*Node
	id   string
	dir  string
	errc chan error
}

func testConfig(dir, id, bind string) Config {
	c := Default()
	c.DataDir, c.NodeID, c.Name, c.Bind = dir, id, "relay-"+id, bind
	c.AgentAddr = "agent-" + id + ":443"
	c.HeartbeatTimeout = 300 * time.Millisecond
	c.ElectionTimeout = 300 * time.Millisecond
	c.LeaderLeaseTimeout = 150 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.ApplyTimeout = 15 * time.Second
	c.SnapshotInterval = 24 * time.Hour
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("GATEHOUSE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startNode(t testing.TB, cfg Config) *testNode {
	t.Helper()
	n, err := New(cfg, Deps{Logger: testLogger(nil)})
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{Node: n, id: cfg.NodeID, dir: cfg.DataDir, errc: make(chan error, 1)}
	go func() { tn.errc <- n.Run(context.Background()) }()
	select {
	case <-n.Started():
	case err := <-tn.errc:
		t.Fatalf("node %s: run: %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { tn.stop(t) })
	return tn
}

// stop closes the node and waits for Run; idempotent.
func (tn *testNode) stop(t testing.TB) {
	t.Helper()
	if tn.errc == nil {
		return
	}
	tn.Close()
	if err := <-tn.errc; err != nil {
		t.Errorf("node %s: run: %v", tn.id, err)
	}
	tn.errc = nil
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testCluster struct {
	t     testing.TB
	nodes []*testNode
	token string
	tweak func(*Config)
}

func newTestCluster(t testing.TB, size int, tweak func(*Config)) *testCluster {
	t.Helper()
	if tweak == nil {
		tweak = func(*Config) {}
	}
	c := &testCluster{t: t, tweak: tweak}
	dir := filepath.Join(t.TempDir(), "n1")
	token, err := Init(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	c.token = token
	cfg := testConfig(dir, "n1", "127.0.0.1:0")
	tweak(&cfg)
	c.nodes = append(c.nodes, startNode(t, cfg))
	for i := 2; i <= size; i++ {
		c.join(fmt.Sprintf("n%d", i))
	}
	c.waitConverged()
	return c
}

// join enrolls and starts a new node through the first live node.
func (c *testCluster) join(id string) *testNode {
	c.t.Helper()
	dir := filepath.Join(c.t.TempDir(), id)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := Enroll(ctx, dir, id, c.live()[0].Addr(), c.token); err != nil {
		c.t.Fatalf("enroll %s: %v", id, err)
	}
	cfg := testConfig(dir, id, "127.0.0.1:0")
	c.tweak(&cfg)
	n := startNode(c.t, cfg)
	c.nodes = append(c.nodes, n)
	return n
}

func (c *testCluster) live() []*testNode {
	var out []*testNode
	for _, n := range c.nodes {
		if n.errc != nil {
			out = append(out, n)
		}
	}
	return out
}

func (c *testCluster) leader() *testNode {
	for _, n := range c.live() {
		if r := n.r(); r != nil && r.State() == raft.Leader {
			return n
		}
	}
	return nil
}

func (c *testCluster) follower() *testNode {
	l := c.waitLeader()
	for _, n := range c.live() {
		if n != l {
			return n
		}
	}
	return nil
}

func (c *testCluster) waitLeader() *testNode {
	c.t.Helper()
	var l *testNode
	waitFor(c.t, "a leader", func() bool { l = c.leader(); return l != nil })
	return l
}

// waitConverged waits until every live node sees every live node as a
// voter and in the membership info.
func (c *testCluster) waitConverged() {
	c.t.Helper()
	live := c.live()
	waitFor(c.t, "membership to converge", func() bool {
		for _, n := range live {
			st, err := n.Status()
			if err != nil || st.LeaderID == "" || len(st.Members) != len(live) || len(n.Store().Members()) != len(live) {
				return false
			}
		}
		return true
	})
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	t.Cleanup(cancel)
	return ctx
}

func agent(id string) *clusterv1.Agent {
	return &clusterv1.Agent{AgentId: id, TenantId: "t1", GroupId: "g1", PolicyTier: "server"}
}

func hasAgent(n *testNode, id string) bool {
	_, err := n.Store().Agent(id)
	return err == nil
}

func TestFollowerForwardingAndBarrier(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.follower()
	w := f.Watch(KindAgents)
	defer w.Close()
	if _, err := f.RegisterAgent(ctxT(t), agent("fwd")); err != nil {
		t.Fatalf("apply on follower: %v", err)
	}
	if err := f.Barrier(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if !hasAgent(f, "fwd") {
		t.Fatal("after barrier: got no agent on the follower, want it")
	}
	select {
	case <-w.C():
		if got := w.Changed(); got&KindAgents == 0 {
			t.Errorf("watch: got kinds %b, want agents", got)
		}
	default:
		t.Error("watch: got no notification, want one")
	}
	for _, n := range c.live() {
		waitFor(t, "agent on "+n.id, func() bool { return hasAgent(n, "fwd") })
	}
	// A refused command is final, not retried until the timeout.
	if _, err := f.Apply(ctxT(t), Command{Type: CmdReconcileAgent, Body: &clusterv1.AgentRef{AgentId: "nobody"}}); err == nil || errors.Is(err, ErrNoQuorum) {
		t.Fatalf("reconcile unknown agent: got %v, want a not-found error", err)
	}
}

func TestLeaderFailover(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.waitLeader()
	if _, err := old.RegisterAgent(ctxT(t), agent("before")); err != nil {
		t.Fatal(err)
	}
	old.stop(t)
	survivor := c.live()[0]
	if _, err := survivor.RegisterAgent(ctxT(t), agent("after")); err != nil {
		t.Fatalf("write after leader stop: %v", err)
	}
	for _, n := range c.live() {
		waitFor(t, "both agents on "+n.id, func() bool { return hasAgent(n, "before") && hasAgent(n, "after") })
	}
	if l := c.waitLeader(); l == old {
		t.Fatal("got the stopped node as leader")
	}
}

func TestMinorityRefusesWritesThenConverges(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	cut := c.waitLeader()
	cut.setPartitioned(true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := cut.SetIsolation(ctx, "a1", true)
	if !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("write on the minority: got %v, want ErrNoQuorum", err)
	}
	var majority *testNode
	for _, n := range c.live() {
		if n != cut {
			majority = n
		}
	}
	if _, err := majority.SetIsolation(ctxT(t), "a2", true); err != nil {
		t.Fatalf("write on the majority: %v", err)
	}
	cut.setPartitioned(false)
	waitFor(t, "the healed node to converge", func() bool {
		return cut.Store().Isolation("a2").Isolated && !cut.Store().Isolation("a1").Isolated
	})
}

func TestSnapshotCatchUpOfNewNode(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 16
		cfg.TrailingLogs = 4
		// Small segments: raft-wal frees truncated entries only by whole sealed segment.
		cfg.LogSegmentBytes = 2048
	})
	l := c.waitLeader()
	for i := 0; i < 60; i++ {
		if _, err := l.RegisterAgent(ctxT(t), agent(fmt.Sprintf("agent-%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	l = c.waitLeader()
	if err := l.r().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	t.Logf("leader %s stats: snap=%s last=%s", l.id, l.r().Stats()["last_snapshot_index"], l.r().Stats()["last_log_index"])
	n4 := c.join("n4")
	c.waitConverged()
	waitFor(t, "the new node to catch up", func() bool { return len(n4.Store().Agents()) == 60 })
	if got := n4.fsm.Restores(); got == 0 {
		t.Fatalf("restores on the new node: got %d, want at least 1 (caught up from a snapshot)", got)
	}
}

func TestRejoinAfterRestart(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.follower()
	if _, err := f.RegisterAgent(ctxT(t), agent("one")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "agent one on the follower", func() bool { return hasAgent(f, "one") })
	addr := f.Addr()
	f.stop(t)
	if _, err := c.live()[0].RegisterAgent(ctxT(t), agent("two")); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(f.dir, f.id, addr)
	back := startNode(t, cfg)
	c.nodes = append(c.nodes, back)
	waitFor(t, "the restarted node to catch up", func() bool { return hasAgent(back, "one") && hasAgent(back, "two") })
	if _, err := back.RegisterAgent(ctxT(t), agent("three")); err != nil {
		t.Fatalf("write through the restarted node: %v", err)
	}
}

func TestRemoveDeadNode(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	dead := c.follower()
	dead.stop(t)
	var alive *testNode
	for _, n := range c.live() {
		alive = n
	}
	if err := alive.Remove(ctxT(t), dead.id); err != nil {
		t.Fatalf("remove: %v", err)
	}
	c.waitConverged()
	st, err := alive.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		if m.ID == dead.id {
			t.Fatalf("status after remove: got member %s, want it gone", dead.id)
		}
	}
	if got, want := len(st.Members), 2; got != want {
		t.Fatalf("members: got %d, want %d", got, want)
	}
	if _, err := alive.RegisterAgent(ctxT(t), agent("after-remove")); err != nil {
		t.Fatal(err)
	}
}

func TestLeave(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.follower()
	if err := f.Leave(ctxT(t)); err != nil {
		t.Fatalf("leave: %v", err)
	}
	f.stop(t)
	c.waitConverged()
	if got, want := len(c.live()[0].Store().Members()), 2; got != want {
		t.Fatalf("members after leave: got %d, want %d", got, want)
	}
}
