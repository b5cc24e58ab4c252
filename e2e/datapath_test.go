package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// Three agents, lines appended in bursts and across a logrotate-style
// rename: every line reaches the cloud exactly once.
func TestEveryLineArrivesExactlyOnce(t *testing.T) {
	s := newSite(t, harness.RelayOptions{})
	var agents []*harness.Agent
	var ws []*harness.LogWriter
	for i := 1; i <= 3; i++ {
		a, w := s.agent(fmt.Sprintf("agent-%d", i))
		agents, ws = append(agents, a), append(ws, w)
	}
	// An agent that first sees app.log after the rename below never
	// learns of app.log.1 (no glob matches it, no checkpoint names it):
	// start the burst once every agent follows its file.
	for i, w := range ws {
		if err := w.Write(1); err != nil {
			t.Fatal(err)
		}
		a := agents[i]
		err := harness.WaitFor(s.ctx, time.Minute, a.Name+" following app.log", func() (bool, error) {
			return a.LogContains("following log file"), nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 10; round++ {
		for _, w := range ws {
			if err := w.Write(150); err != nil {
				t.Fatal(err)
			}
			if round == 5 {
				if err := w.Rotate("1"); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.waitExactlyOnce(3*time.Minute, agents, ws...)
}

// kill -9 of the relay in the middle of a stream, then a restart: no line
// lost, none doubled.
func TestRelayKill9MidStream(t *testing.T) {
	s := newSite(t, harness.RelayOptions{})
	a1, w1 := s.agent("agent-1")
	a2, w2 := s.agent("agent-2")
	stop := make(chan struct{})
	d1 := writeFor(w1, 20, 20*time.Millisecond, stop)
	d2 := writeFor(w2, 20, 20*time.Millisecond, stop)

	// Kill only once data is really flowing through the relay.
	err := harness.WaitFor(s.ctx, time.Minute, "uploads under way", func() (bool, error) {
		st, err := s.relay.Status(s.ctx)
		return err == nil && st.Uplink.UploadedBatches > 5, err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := s.relay.Kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(700 * time.Millisecond)
		if err := s.relay.Restart(s.ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
	}
	close(stop)
	for _, d := range []<-chan error{d1, d2} {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	s.waitExactlyOnce(3*time.Minute, []*harness.Agent{a1, a2}, w1, w2)
}

// The cloud down for a while: the relay spool grows, then drains oldest
// first once the cloud is back, and nothing is lost.
func TestCloudOutageSpoolDrainsOldestFirst(t *testing.T) {
	s := newSite(t, harness.RelayOptions{MaxUploadBytes: 64 << 10})
	a, w := s.agent("agent-1")
	if err := a.WaitConnected(s.ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.cloud.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := w.Write(100); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var spooled int64
	err := harness.WaitFor(s.ctx, time.Minute, "relay spool to hold the outage's lines", func() (bool, error) {
		st, err := s.relay.Status(s.ctx)
		spooled = st.Spool.Batches
		return err == nil && st.Spool.Batches >= 3 && !st.Uplink.CloudReachable, err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("relay spool during the outage: %d batches", spooled)
	if err := s.cloud.Restart(s.ctx); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(3*time.Minute, []*harness.Agent{a}, w)

	// Oldest first: the cloud received this agent's batches in seq order.
	page, err := s.cloud.Admin.QueryEvents(s.ctx, s.site.TenantID, "", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, e := range page.Events {
		if e.Seq < last {
			t.Fatalf("batch seq %d received after seq %d: spool did not drain oldest first", e.Seq, last)
		}
		last = e.Seq
	}
}

// An agent stopped (cleanly, then with kill -9) while its log grows resumes
// at its checkpoint: no line resent, none skipped.
func TestAgentRestartResumesAtCheckpoint(t *testing.T) {
	s := newSite(t, harness.RelayOptions{})
	a, w := s.agent("agent-1")
	if err := w.Write(300); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(2*time.Minute, []*harness.Agent{a}, w)

	if err := a.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(300); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(2*time.Minute, []*harness.Agent{a}, w)

	stop := make(chan struct{})
	done := writeFor(w, 25, 10*time.Millisecond, stop)
	time.Sleep(time.Second)
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(2*time.Minute, []*harness.Agent{a}, w)
}

// A full relay spool holds agents back (they keep their data) and they
// recover once it drains.
func TestSpoolFullHoldsAgentsBack(t *testing.T) {
	s := newSite(t, harness.RelayOptions{SpoolMaxBytes: 128 << 10})
	a1, w1 := s.agent("agent-1")
	a2, w2 := s.agent("agent-2")
	for _, a := range []*harness.Agent{a1, a2} {
		if err := a.WaitConnected(s.ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.cloud.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		for _, w := range []*harness.LogWriter{w1, w2} {
			if err := w.Write(200); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	err := harness.WaitFor(s.ctx, time.Minute, "relay spool full and agents held back", func() (bool, error) {
		st, err := s.relay.Status(s.ctx)
		if err != nil || !st.Spool.Full {
			return false, err
		}
		refused, err := s.relay.Metric(s.ctx, "gatehouse_relay_batches_total", `result="full"`)
		if err != nil || refused == 0 {
			return false, err
		}
		held := int64(0)
		for _, a := range []*harness.Agent{a1, a2} {
			as, err := a.Status()
			if err != nil {
				return false, err
			}
			held += as.Pending
		}
		return held > 0, fmt.Errorf("agents hold %d pending batches", held)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !s.relay.LogContains("spool full") {
		t.Errorf("relay log does not say the spool is full")
	}
	if err := s.cloud.Restart(s.ctx); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(3*time.Minute, []*harness.Agent{a1, a2}, w1, w2)
}
