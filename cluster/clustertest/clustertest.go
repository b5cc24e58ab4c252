// Package clustertest runs real cluster nodes in process on loopback, with
// short Raft timeouts, for tests of the packages built on the site state:
// a cluster of one (as a relay alone runs) or a site of three or five.
package clustertest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/cluster"
	"github.com/gatehouse/gatehouse/internal/testkit"
)

// Node is one running member.
type Node struct {
	*cluster.Node
	ID   string
	Dir  string
	errc chan error
}

// Config is a node's config for tests: loopback, an ephemeral port,
// timeouts a hundred times shorter than production's.
func Config(dir, id string) cluster.Config {
	c := cluster.Default()
	c.DataDir, c.NodeID, c.Name, c.Bind = dir, id, "relay-"+id, "127.0.0.1:0"
	c.AgentAddr = "127.0.0.1:0"
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	c.CommitTimeout, c.ApplyTimeout = 5*time.Millisecond, 15*time.Second
	c.SnapshotInterval = 24 * time.Hour
	return c
}

// Start runs a node of cfg until the test ends.
func Start(t testing.TB, cfg cluster.Config) *Node {
	t.Helper()
	n, err := cluster.New(cfg, cluster.Deps{Logger: testkit.Logger(t).With("node", cfg.NodeID)})
	if err != nil {
		t.Fatal(err)
	}
	tn := &Node{Node: n, ID: cfg.NodeID, Dir: cfg.DataDir, errc: make(chan error, 1)}
	go func() { tn.errc <- n.Run(context.Background()) }()
	select {
	case <-n.Started():
	case err := <-tn.errc:
		t.Fatalf("node %s: run: %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { tn.Stop(t) })
	return tn
}

// Stop closes the node and waits for Run; idempotent.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	if n.errc == nil {
		return
	}
	n.Close()
	if err := <-n.errc; err != nil {
		t.Errorf("node %s: run: %v", n.ID, err)
	}
	n.errc = nil
}

// Running reports whether the node has not been stopped.
func (n *Node) Running() bool { return n.errc != nil }

// Solo starts a cluster of one, as a relay started without cluster
// commands runs, and waits until it leads.
func Solo(t testing.TB) *Node {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "solo")
	if err := cluster.InitSolo(dir, "solo"); err != nil {
		t.Fatal(err)
	}
	n := Start(t, Config(dir, "solo"))
	testkit.WaitFor(t, "the cluster of one to lead", n.IsLeader)
	return n
}

// Cluster is a site of nodes that joined the first one.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
	Token string
}

// New starts a site of size nodes and waits until they agree on a leader
// and on their membership.
func New(t testing.TB, size int) *Cluster {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "n1")
	token, err := cluster.Init(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Token: token}
	c.Nodes = append(c.Nodes, Start(t, Config(dir, "n1")))
	for i := 2; i <= size; i++ {
		c.Join(fmt.Sprintf("n%d", i))
	}
	c.WaitConverged()
	return c
}

// Join enrolls a new node through a live member and starts it.
func (c *Cluster) Join(id string) *Node {
	c.t.Helper()
	dir := filepath.Join(c.t.TempDir(), id)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Patience)
	defer cancel()
	if err := cluster.Enroll(ctx, dir, id, c.Live()[0].Addr(), c.Token); err != nil {
		c.t.Fatalf("enroll %s: %v", id, err)
	}
	n := Start(c.t, Config(dir, id))
	c.Nodes = append(c.Nodes, n)
	return n
}

// Live lists the nodes not stopped.
func (c *Cluster) Live() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// Leader waits for a live leader and returns it.
func (c *Cluster) Leader() *Node {
	c.t.Helper()
	var l *Node
	testkit.WaitFor(c.t, "a leader", func() bool {
		for _, n := range c.Live() {
			if n.IsLeader() {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

// Follower returns a live node that does not lead.
func (c *Cluster) Follower() *Node {
	l := c.Leader()
	for _, n := range c.Live() {
		if n != l {
			return n
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// WaitConverged waits until every live node sees every live node as a
// voter and in the membership info.
func (c *Cluster) WaitConverged() {
	c.t.Helper()
	live := c.Live()
	testkit.WaitFor(c.t, "membership to converge", func() bool {
		for _, n := range live {
			st, err := n.Status()
			if err != nil || st.LeaderID == "" || len(st.Members) != len(live) || len(n.Store().Members()) != len(live) {
				return false
			}
		}
		return true
	})
}
