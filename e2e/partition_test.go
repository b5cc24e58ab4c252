package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/cluster"
	"github.com/gatehouse/gatehouse/e2e/harness"
	"github.com/gatehouse/gatehouse/internal/netns"
)

// A cluster of three relays in the DMZ topology; the router's nftables cut
// one relay off from the other two on the cluster port. The cut-off relay
// keeps accepting and spooling its agents' telemetry but refuses control
// writes (a new agent cannot register there); the majority goes on. After
// healing the state converges and every line arrived exactly once.
func TestClusterPartitionOfOneNode(t *testing.T) {
	bin := binaries(t)
	n := netns.NewSite(t, netns.SiteOptions{Relays: 3, Agents: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	s := &testSite{t: t, ctx: ctx, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.stopAll)
	var err error
	s.cloud, err = harness.StartCloudAt(ctx, bin, filepath.Join(s.dir, "cloud"), place(n.Cloud))
	if s.cloud != nil && s.cloud.Proc != nil {
		s.procs = append(s.procs, s.cloud.Proc)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.site, err = s.cloud.Bootstrap(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	cs := &clusterSite{testSite: s}
	var joinToken string
	for i, h := range n.Relays {
		tok, err := s.cloud.EnrollmentToken(ctx, s.site)
		if err != nil {
			t.Fatal(err)
		}
		r, err := harness.PrepareRelay(bin, filepath.Join(s.dir, fmt.Sprintf("relay-%d", i+1)), s.cloud, tok,
			harness.RelayOptions{Place: place(h), ClusterBind: h.Addr(cluster.DefaultPort)})
		if err != nil {
			t.Fatal(err)
		}
		s.procs = append(s.procs, r.Proc)
		if i == 0 {
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
	cs.waitVoters(cs.relays[0], 3)

	// agent-1 streams through relay-1 (majority side), agent-2 through
	// relay-3, the node about to be cut off.
	startAgent := func(name string, host *netns.Host, r *harness.Relay) (*harness.Agent, *harness.LogWriter) {
		fp, err := r.Fingerprint()
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(s.dir, name)
		w, err := harness.NewLogWriter(filepath.Join(dir, "logs", "app.log"), name)
		if err != nil {
			t.Fatal(err)
		}
		a, err := harness.StartAgent(ctx, bin, dir, harness.AgentOptions{
			Place: place(host), Relays: []string{r.Addr}, Fingerprint: fp, RegistrationKey: s.site.RegistrationKey,
			LogGlobs: []string{filepath.Join(dir, "logs", "*.log")},
		})
		if a != nil && a.Proc != nil {
			s.procs = append(s.procs, a.Proc)
		}
		if err != nil {
			t.Fatal(err)
		}
		return a, w
	}
	a1, w1 := startAgent("agent-1", n.Agents[0], cs.relays[0])
	a2, w2 := startAgent("agent-2", n.Agents[1], cs.relays[2])
	for _, a := range []*harness.Agent{a1, a2} {
		if err := a.WaitConnected(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	d1 := writeFor(w1, 10, 50*time.Millisecond, stop)
	d2 := writeFor(w2, 10, 50*time.Millisecond, stop)

	// Cut relay-3 off from relay-1 and relay-2 on the cluster port.
	cut := n.Relays[2].IP.String()
	others := n.Relays[0].IP.String() + ", " + n.Relays[1].IP.String()
	open, err := netns.Open.Ruleset(nil)
	if err != nil {
		t.Fatal(err)
	}
	partition := strings.Replace(open, "ct state established,related accept", fmt.Sprintf(
		"ip saddr %s ip daddr { %s } tcp dport %d counter drop comment \"partition\"\n\t\t"+
			"ip saddr { %s } ip daddr %s tcp dport %d counter drop comment \"partition\"\n\t\t"+
			"ip saddr %s ip daddr { %s } tcp sport %d counter drop comment \"partition\"\n\t\t"+
			"ip saddr { %s } ip daddr %s tcp sport %d counter drop comment \"partition\"\n\t\t"+
			"ct state established,related accept",
		cut, others, cluster.DefaultPort, others, cut, cluster.DefaultPort,
		cut, others, cluster.DefaultPort, others, cut, cluster.DefaultPort), 1)
	if err := n.Nft(partition); err != nil {
		t.Fatal(err)
	}
	t.Log("relay-3 partitioned")

	// The majority elects (or keeps) a leader among relay-1 and relay-2.
	err = harness.WaitFor(ctx, time.Minute, "a leader on the majority side", func() (bool, error) {
		st, err := cs.relays[0].ClusterStatus(ctx)
		return err == nil && st.LeaderID != "" && st.LeaderID != cs.relays[2].NodeID(), err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Registration is a control write: refused on the cut-off node, taken on
	// the majority side.
	a3, _ := startAgent("agent-3", n.Agents[1], cs.relays[2])
	err = harness.WaitFor(ctx, time.Minute, "agent-3 refused by the minority node", func() (bool, error) {
		st, err := a3.Status()
		return err == nil && st.LastError != "" && st.State != "connected", err
	})
	if err != nil {
		t.Fatal(err)
	}
	a3.Stop(10 * time.Second)
	a4, _ := startAgent("agent-4", n.Agents[0], cs.relays[1])
	if err := a4.WaitConnected(ctx, time.Minute); err != nil {
		t.Fatalf("registration on the majority side: %v", err)
	}
	// Telemetry through the cut-off node keeps flowing to the cloud.
	before, _ := cs.relays[2].Status(ctx)
	err = harness.WaitFor(ctx, time.Minute, "relay-3 still uploading its agent's telemetry", func() (bool, error) {
		st, err := cs.relays[2].Status(ctx)
		return err == nil && st.Uplink.UploadedBatches > before.Uplink.UploadedBatches+2, err
	})
	if err != nil {
		t.Fatal(err)
	}

	// Heal: relay-3 catches up (agent-4's registration included).
	if err := n.Nft(open); err != nil {
		t.Fatal(err)
	}
	t.Log("partition healed")
	err = harness.WaitFor(ctx, time.Minute, "state converged on every node", func() (bool, error) {
		var idx []uint64
		for _, r := range cs.relays {
			st, err := r.ClusterStatus(ctx)
			if err != nil || st.LeaderID == "" {
				return false, err
			}
			idx = append(idx, st.LastIndex)
		}
		return idx[0] == idx[1] && idx[1] == idx[2], fmt.Errorf("last indexes %v", idx)
	})
	if err != nil {
		t.Fatal(err)
	}
	// agent-3, refused during the partition, now registers through relay-3.
	if err := a3.Start(); err != nil {
		t.Fatal(err)
	}
	if err := a3.WaitConnected(ctx, 2*time.Minute); err != nil {
		t.Fatalf("registration through the healed node: %v", err)
	}
	close(stop)
	for _, d := range []<-chan error{d1, d2} {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	cs.waitAllExactlyOnce(3*time.Minute, []*harness.Agent{a1, a2}, w1, w2)
}
