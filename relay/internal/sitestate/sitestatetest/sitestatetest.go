// Package sitestatetest runs a real site state for tests: a cluster of one
// on loopback, as a relay alone has, with short Raft timeouts.
package sitestatetest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/cluster"
	"github.com/gatehouse/gatehouse/internal/testkit"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate"
)

// Tenant is a fixed sitestate.Identity.
type Tenant string

// TenantID returns t.
func (t Tenant) TenantID() string { return string(t) }

// New starts a cluster of one in a temporary directory, waits until it
// leads, and stops it when the test ends.
func New(t testing.TB, id sitestate.Identity) *sitestate.State {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cluster")
	if err := cluster.InitSolo(dir, "n1"); err != nil {
		t.Fatal(err)
	}
	cfg := cluster.Default()
	cfg.DataDir, cfg.NodeID, cfg.Name, cfg.Bind = dir, "n1", "relay-test", "127.0.0.1:0"
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	cfg.CommitTimeout, cfg.ApplyTimeout = 5*time.Millisecond, 10*time.Second
	n, err := cluster.New(cfg, cluster.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { errc <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("cluster of one: %v", err)
		}
	})
	testkit.WaitFor(t, "the cluster of one to lead", n.IsLeader)
	return sitestate.New(cfg.ApplyTimeout, sitestate.Deps{Node: n, Identity: id, Logger: testkit.Logger(t)})
}
