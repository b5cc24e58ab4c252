package cluster

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

func isLeader(n *testNode) bool {
	r := n.r()
	return r != nil && r.State() == raft.Leader
}

// ownRaftAddr is the address the Raft configuration holds for n itself.
func ownRaftAddr(n *testNode) string {
	f := n.r().GetConfiguration()
	if f.Error() != nil {
		return ""
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.id {
			return string(s.Address)
		}
	}
	return ""
}

// A relay started with no cluster commands is a cluster of one on
// loopback; `cluster init` opens it on its configured port with its state
// kept, and other relays join it; a cluster of one can also join a site.
func TestClusterOfOneGrows(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bind := ln.Addr().String()
	ln.Close()

	dir := filepath.Join(t.TempDir(), "n1")
	if err := InitSolo(dir, "n1"); err != nil {
		t.Fatal(err)
	}
	n1 := startNode(t, testConfig(dir, "n1", bind))
	if got := n1.Addr(); got == bind || !net.ParseIP(hostOf(t, got)).IsLoopback() {
		t.Fatalf("cluster of one listens on %s, want a loopback port other than the configured %s", got, bind)
	}
	waitFor(t, "the cluster of one to elect itself", func() bool { return isLeader(n1) })
	if _, err := n1.RegisterAgent(ctxT(t), agent("a1")); err != nil {
		t.Fatalf("write to a cluster of one: %v", err)
	}
	n1.stop(t)

	tok, err := Init(dir, "n1")
	if err != nil {
		t.Fatalf("cluster init on a cluster of one: %v", err)
	}
	if Solo(dir) {
		t.Fatal("still a cluster of one after cluster init")
	}
	if _, err := Init(dir, "n1"); err == nil {
		t.Fatal("second cluster init: got no error")
	}
	n1 = startNode(t, testConfig(dir, "n1", bind))
	if n1.Addr() != bind {
		t.Fatalf("after cluster init: listens on %s, want %s", n1.Addr(), bind)
	}
	waitFor(t, "the leader to record its new address", func() bool { return isLeader(n1) && ownRaftAddr(n1) == bind })
	if !hasAgent(n1, "a1") {
		t.Fatal("after cluster init: the cluster of one's agent is gone")
	}

	c := &testCluster{t: t, token: tok, tweak: func(*Config) {}, nodes: []*testNode{n1}}
	n2 := c.join("n2")
	c.waitConverged()
	waitFor(t, "the agent on the new member", func() bool { return hasAgent(n2, "a1") })

	// A relay that ran alone joins the site: its own state is set aside.
	dir3 := filepath.Join(t.TempDir(), "n3")
	if err := InitSolo(dir3, "n3"); err != nil {
		t.Fatal(err)
	}
	n3 := startNode(t, testConfig(dir3, "n3", "127.0.0.1:0"))
	waitFor(t, "n3 alone to elect itself", func() bool { return isLeader(n3) })
	if _, err := n3.RegisterAgent(ctxT(t), agent("only-on-n3")); err != nil {
		t.Fatal(err)
	}
	n3.stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := Enroll(ctx, dir3, "n3", n1.Addr(), tok); err != nil {
		t.Fatalf("join from a cluster of one: %v", err)
	}
	n3 = startNode(t, testConfig(dir3, "n3", "127.0.0.1:0"))
	c.nodes = append(c.nodes, n3)
	c.waitConverged()
	waitFor(t, "the site's agent on the joined node", func() bool { return hasAgent(n3, "a1") })
	if hasAgent(n3, "only-on-n3") {
		t.Error("joined node still serves its cluster of one's state")
	}
}

func hostOf(t *testing.T, addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
