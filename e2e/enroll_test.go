package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// The relay's data directory is lost (a dead disk: spool, agent registry,
// enrollment) while the cloud is away, so some lines exist only as
// spooled-but-undelivered batches in the agents' rings. The operator
// restores the relay's key from backup (agents pin it), issues a fresh
// enrollment token and starts the relay: it enrolls again, the agents
// register again by themselves with their configured key, resend what the
// lost spool held, and every line reaches the cloud exactly once.
func TestRelayDataDirLostAgentsRegisterAgain(t *testing.T) {
	s := newSite(t, harness.RelayOptions{})
	a1, w1 := s.agent("agent-1")
	a2, w2 := s.agent("agent-2")
	agents, ws := []*harness.Agent{a1, a2}, []*harness.LogWriter{w1, w2}
	for _, w := range ws {
		if err := w.Write(200); err != nil {
			t.Fatal(err)
		}
	}
	s.waitExactlyOnce(3*time.Minute, agents, ws...)

	// Cloud away: the next lines are spooled by the relay, not delivered.
	if err := s.cloud.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if err := w.Write(200); err != nil {
			t.Fatal(err)
		}
	}
	err := harness.WaitFor(s.ctx, 2*time.Minute, "agents' lines spooled by the relay only", func() (bool, error) {
		for _, a := range agents {
			st, err := a.Status()
			if err != nil {
				return false, err
			}
			if st.Pending != 0 || st.SpooledUndelivered == 0 {
				return false, fmt.Errorf("%s: pending %d, spooled undelivered %d", a.Name, st.Pending, st.SpooledUndelivered)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The relay's disk dies; the lines go on being written meanwhile.
	if err := s.relay.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.relay.LoseDataDir(true); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	d1 := writeFor(w1, 10, 50*time.Millisecond, stop)
	d2 := writeFor(w2, 10, 50*time.Millisecond, stop)
	if err := s.cloud.Restart(s.ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := s.cloud.EnrollmentToken(s.ctx, s.site)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.relay.SetEnrollmentToken(tok); err != nil {
		t.Fatal(err)
	}
	if err := s.relay.Restart(s.ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	for _, d := range []<-chan error{d1, d2} {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	s.waitExactlyOnce(3*time.Minute, agents, ws...)
	for _, a := range agents {
		if !a.LogContains("registered again") {
			t.Errorf("%s: log does not say it registered again", a.Name)
		}
	}
}
