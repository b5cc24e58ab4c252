package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// clusterSite is a cloud and a site served by a cluster of relays.
type clusterSite struct {
	*testSite
	relays []*harness.Relay
}

// newClusterSite starts n relays of one site as a Raft cluster: the first
// initialises it, the others join through it.
func newClusterSite(t testing.TB, n int) *clusterSite {
	return newClusterSiteWith(t, n, harness.RelayOptions{})
}

// newClusterSiteWith is newClusterSite with options for every relay.
func newClusterSiteWith(t testing.TB, n int, opt harness.RelayOptions) *clusterSite {
	t.Helper()
	s := newCloudSite(t, 10*time.Minute)
	ctx, bin := s.ctx, s.bin
	cs := &clusterSite{testSite: s}
	var joinToken string
	for i := 1; i <= n; i++ {
		tok, err := s.cloud.EnrollmentToken(ctx, s.site)
		if err != nil {
			t.Fatal(err)
		}
		port, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		opt.ClusterBind = fmt.Sprintf("127.0.0.1:%d", port)
		r, err := harness.PrepareRelay(bin, filepath.Join(s.dir, fmt.Sprintf("relay-%d", i)), s.cloud, tok, opt)
		if err != nil {
			t.Fatal(err)
		}
		s.procs = append(s.procs, r.Proc)
		if i == 1 {
			if joinToken, err = r.ClusterInit(ctx); err != nil {
				t.Fatal(err)
			}
		} else if err := r.ClusterJoin(ctx, cs.relays[0].ClusterAddr, joinToken); err != nil {
			t.Fatal(err)
		}
		if err := r.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		cs.relays = append(cs.relays, r)
	}
	cs.waitVoters(cs.relays[0], n)
	cs.waitAgentAddrs(n)
	s.relay = cs.relays[0]
	var err error
	if s.fp, err = s.relay.Fingerprint(); err != nil {
		t.Fatal(err)
	}
	return cs
}

// waitVoters waits until r sees a leader and n voters.
func (cs *clusterSite) waitVoters(r *harness.Relay, n int) {
	cs.t.Helper()
	err := harness.WaitFor(cs.ctx, time.Minute, fmt.Sprintf("%d voters with a leader", n), func() (bool, error) {
		st, err := r.ClusterStatus(cs.ctx)
		if err != nil {
			return false, err
		}
		voters := 0
		for _, m := range st.Members {
			if strings.EqualFold(m.Suffrage, "voter") {
				voters++
			}
		}
		return st.LeaderID != "" && voters == n, fmt.Errorf("leader %q, %d voters", st.LeaderID, voters)
	})
	if err != nil {
		cs.t.Fatal(err)
	}
}

// waitAgentAddrs waits until every relay's replicated state lists the n
// relays with their agent addresses: a member records its address after it
// joined, and an agent learns the site's relays from its relay's state at
// hello (then only at each heartbeat), so an agent connected before that
// would not know where to go when its relay dies.
func (cs *clusterSite) waitAgentAddrs(n int) {
	cs.t.Helper()
	for _, r := range cs.relays {
		err := harness.WaitFor(cs.ctx, time.Minute, r.Name+" knows every relay's agent address", func() (bool, error) {
			st, err := r.ClusterStatus(cs.ctx)
			if err != nil {
				return false, err
			}
			known := 0
			for _, m := range st.Members {
				if m.AgentAddr != "" {
					known++
				}
			}
			return known == n, fmt.Errorf("%d of %d members with an agent address", known, n)
		})
		if err != nil {
			cs.t.Fatal(err)
		}
	}
}

// leader returns the running relay that leads the cluster.
func (cs *clusterSite) leader() *harness.Relay {
	cs.t.Helper()
	var lead *harness.Relay
	err := harness.WaitFor(cs.ctx, time.Minute, "a leader", func() (bool, error) {
		for _, r := range cs.relays {
			if !r.Running() {
				continue
			}
			st, err := r.ClusterStatus(cs.ctx)
			if err != nil {
				continue
			}
			for _, c := range cs.relays {
				if c.NodeID() == st.LeaderID && c.Running() {
					lead = c
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		cs.t.Fatal(err)
	}
	return lead
}

// agentOn starts an agent that knows only relay r (and its key): the others
// it learns from r.
func (cs *clusterSite) agentOn(name string, r *harness.Relay) (*harness.Agent, *harness.LogWriter) {
	cs.t.Helper()
	fp, err := r.Fingerprint()
	if err != nil {
		cs.t.Fatal(err)
	}
	dir := filepath.Join(cs.dir, name)
	w, err := harness.NewLogWriter(filepath.Join(dir, "logs", "app.log"), name)
	if err != nil {
		cs.t.Fatal(err)
	}
	a, err := harness.StartAgent(cs.ctx, cs.bin, dir, harness.AgentOptions{
		Relays: []string{r.Addr}, Fingerprint: fp, RegistrationKey: cs.site.RegistrationKey,
		LogGlobs: []string{filepath.Join(dir, "logs", "*.log")},
	})
	if a != nil && a.Proc != nil {
		cs.procs = append(cs.procs, a.Proc)
	}
	if err != nil {
		cs.t.Fatal(err)
	}
	return a, w
}

// waitAllExactlyOnce waits for every line at the cloud, every relay's spool
// empty and the agents drained, then checks each line arrived exactly once.
func (cs *clusterSite) waitAllExactlyOnce(timeout time.Duration, agents []*harness.Agent, ws ...*harness.LogWriter) {
	cs.t.Helper()
	want := allLines(ws...)
	err := harness.WaitFor(cs.ctx, timeout, "every line delivered and everything drained", func() (bool, error) {
		got, err := cs.cloud.Messages(cs.ctx, cs.site.TenantID)
		if err != nil {
			return false, err
		}
		if n := harness.Delivered(want, got); n < len(want) {
			return false, fmt.Errorf("%d of %d lines delivered", n, len(want))
		}
		for _, r := range cs.relays {
			st, err := r.Status(cs.ctx)
			if err != nil {
				return false, err
			}
			if st.Spool.Batches != 0 {
				return false, fmt.Errorf("%s spool holds %d batches", r.Name, st.Spool.Batches)
			}
		}
		for _, a := range agents {
			as, err := a.Status()
			if err != nil {
				return false, err
			}
			if as.Pending != 0 || as.SpooledUndelivered != 0 {
				return false, fmt.Errorf("%s: pending %d, spooled undelivered %d", a.Name, as.Pending, as.SpooledUndelivered)
			}
		}
		return true, nil
	})
	if err != nil {
		cs.t.Fatal(err)
	}
	got, err := cs.cloud.Messages(cs.ctx, cs.site.TenantID)
	if err != nil {
		cs.t.Fatal(err)
	}
	if err := harness.ExactlyOnce(want, got); err != nil {
		cs.t.Fatal(err)
	}
	cs.t.Logf("%d lines, each delivered exactly once", len(want))
}

// Three real relays under load: kill -9 of the leader, then of a follower,
// then both restarted. Agents move to a live relay by themselves; nothing
// acknowledged is lost and nothing is doubled at the cloud.
func TestClusterKillLeaderThenFollower(t *testing.T) {
	cs := newClusterSite(t, 3)
	var agents []*harness.Agent
	var ws []*harness.LogWriter
	stop := make(chan struct{})
	var done []<-chan error
	for i, r := range cs.relays {
		a, w := cs.agentOn(fmt.Sprintf("agent-%d", i+1), r)
		agents, ws = append(agents, a), append(ws, w)
		done = append(done, writeFor(w, 10, 25*time.Millisecond, stop))
	}
	for _, a := range agents {
		if err := a.WaitConnected(cs.ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// Registration went through Raft: every relay knows every agent.
	time.Sleep(2 * time.Second)

	lead := cs.leader()
	t.Logf("killing leader %s", lead.Name)
	if err := lead.Kill(); err != nil {
		t.Fatal(err)
	}
	next := cs.leader()
	if next == lead {
		t.Fatalf("leader did not change after kill -9")
	}
	var follower *harness.Relay
	for _, r := range cs.relays {
		if r != lead && r != next {
			follower = r
		}
	}
	time.Sleep(2 * time.Second)
	t.Logf("killing follower %s (leader now %s)", follower.Name, next.Name)
	if err := follower.Kill(); err != nil {
		t.Fatal(err)
	}
	// Every agent streams to the one relay left.
	err := harness.WaitFor(cs.ctx, time.Minute, "agents on the surviving relay", func() (bool, error) {
		st, err := next.Status(cs.ctx)
		return err == nil && st.AgentsConnected == len(agents), fmt.Errorf("%d agents connected to %s", st.AgentsConnected, next.Name)
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	for _, r := range []*harness.Relay{lead, follower} {
		if err := r.Restart(cs.ctx); err != nil {
			t.Fatal(err)
		}
	}
	cs.waitVoters(next, 3)
	close(stop)
	for _, d := range done {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	cs.waitAllExactlyOnce(4*time.Minute, agents, ws...)
}
