package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// BenchmarkClusterFailover kills -9 the leader of three real relays with
// agents streaming through all of them, and reports how long until the
// survivors commit again (a new leader's first entry) and until every agent
// streams again through a survivor. Targets: 2 s and 5 s.
func BenchmarkClusterFailover(b *testing.B) {
	const agentsPerRelay = 3
	for range b.N {
		b.StopTimer()
		cs := newClusterSite(b, 3)
		var agents []*harness.Agent
		stop := make(chan struct{})
		for i, r := range cs.relays {
			for j := range agentsPerRelay {
				a, w := cs.agentOn(fmt.Sprintf("agent-%d-%d", i+1, j+1), r)
				agents = append(agents, a)
				writeFor(w, 5, 50*time.Millisecond, stop)
			}
		}
		for _, a := range agents {
			if err := a.WaitConnected(cs.ctx, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(3 * time.Second) // heartbeats carry every relay's pin
		lead := cs.leader()
		var survivors []*harness.Relay
		for _, r := range cs.relays {
			if r != lead {
				survivors = append(survivors, r)
			}
		}
		st, err := survivors[0].ClusterStatus(cs.ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		killed := time.Now()
		if err := lead.Kill(); err != nil {
			b.Fatal(err)
		}
		var toWrite, toAgents time.Duration
		for toWrite == 0 || toAgents == 0 {
			if time.Since(killed) > 2*time.Minute {
				b.Fatalf("no recovery within 2 minutes (write %v, agents %v)", toWrite, toAgents)
			}
			if toWrite == 0 {
				for _, r := range survivors {
					s, err := r.ClusterStatus(cs.ctx)
					if err == nil && s.LeaderID != "" && s.LeaderID != lead.NodeID() && s.CommitIndex > st.CommitIndex {
						toWrite = time.Since(killed)
						break
					}
				}
			}
			if toAgents == 0 {
				n := 0
				for _, r := range survivors {
					if s, err := r.Status(cs.ctx); err == nil {
						n += s.AgentsConnected
					}
				}
				if n == len(agents) {
					toAgents = time.Since(killed)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.StopTimer()
		close(stop)
		b.ReportMetric(float64(toWrite.Milliseconds()), "ms-to-write")
		b.ReportMetric(float64(toAgents.Milliseconds()), "ms-to-agents")
		b.ReportMetric(float64(len(agents)), "agents")
	}
}
