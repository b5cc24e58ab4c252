package cluster

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// The leader refuses to commit a write of a type it does not know (a newer
// follower forwarded it); an entry of that type already in the log (left by
// a newer leader) stops the node with an error naming the number, and it
// stops again at its next start instead of skipping it.
func TestNodeStopsAtUnknownCommandType(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	if err := InitSolo(dir, "n1"); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, testConfig(dir, "n1", "127.0.0.1:0"))
	waitFor(t, "leader", func() bool { return isLeader(n) })
	if _, err := n.applyLeader([]byte{77, 1}, time.Second); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("leader asked to commit type 77: got %v, want ErrUnknownCommand", err)
	}
	if _, err := n.RegisterAgent(ctxT(t), agent("a1")); err != nil {
		t.Fatalf("after refusing type 77 the node must go on: %v", err)
	}
	// What a newer leader would have written.
	if err := n.r().Apply([]byte{77, 1}, time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-n.errc:
		n.errc = nil
		if !errors.Is(err, ErrUnknownCommand) || !strings.Contains(err.Error(), "command type 77") {
			t.Fatalf("run: got %v, want an error naming command type 77", err)
		}
	case <-time.After(waitLong):
		t.Fatal("the node did not stop at a command type it does not know")
	}
	again, err := New(testConfig(dir, "n1", "127.0.0.1:0"), Deps{Logger: testLogger(nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := again.Run(ctx); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("restart over the same log: got %v, want it to stop again", err)
	}
}
