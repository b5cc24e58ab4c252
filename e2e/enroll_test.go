package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// prepareRelay writes a relay's config with a fresh enrollment token.
func (s *testSite) prepareRelay(name string) *harness.Relay {
	s.t.Helper()
	tok, err := s.cloud.EnrollmentToken(s.ctx, s.site)
	if err != nil {
		s.t.Fatal(err)
	}
	r, err := harness.PrepareRelay(s.bin, filepath.Join(s.dir, name), s.cloud, tok, harness.RelayOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	s.procs = append(s.procs, r.Proc)
	return r
}

// cloudRelays returns the site's relays in the cloud named name.
func (s *testSite) cloudRelays(name string) ([]string, error) {
	rs, err := s.cloud.Admin.ListRelays(s.ctx, s.site.TenantID)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range rs {
		if r.Name == name {
			ids = append(ids, r.ID)
		}
	}
	return ids, nil
}

// A relay killed (-9) right after its first enrollment starts again with
// the same, now used, token. Each case is a fresh relay killed at another
// point; whatever the relay had saved by then, it must come up enrolled,
// as one relay in the cloud.
func TestRelayKilledRightAfterEnrollmentStartsAgain(t *testing.T) {
	s := newCloudSite(t, 8*time.Minute)
	enrollmentFile := func(r *harness.Relay) string { return filepath.Join(r.DataDir, "enrollment.pb") }
	cases := []struct {
		name string
		// killAt waits for the moment to kill.
		killAt func(r *harness.Relay) error
		// lose removes the credentials, as a crash before they reached
		// the disk does.
		lose bool
	}{
		{name: "cloud-answered", killAt: func(r *harness.Relay) error {
			return harness.WaitFor(s.ctx, time.Minute, "the cloud lists the relay", func() (bool, error) {
				ids, err := s.cloudRelays(r.Name)
				return len(ids) > 0, err
			})
		}},
		{name: "answer-not-saved", lose: true, killAt: func(r *harness.Relay) error {
			return harness.WaitFor(s.ctx, time.Minute, "the cloud lists the relay", func() (bool, error) {
				ids, err := s.cloudRelays(r.Name)
				return len(ids) > 0, err
			})
		}},
		{name: "credentials-saved", killAt: func(r *harness.Relay) error {
			return harness.WaitFor(s.ctx, time.Minute, "enrollment.pb written", func() (bool, error) {
				_, err := os.Stat(enrollmentFile(r))
				return err == nil, nil
			})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.prepareRelay("relay-" + c.name)
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
			if err := c.killAt(r); err != nil {
				t.Fatal(err)
			}
			if err := r.Kill(); err != nil {
				t.Fatal(err)
			}
			if c.lose {
				if err := os.Remove(enrollmentFile(r)); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
			if err := r.Restart(s.ctx); err != nil {
				t.Fatal(err)
			}
			err := harness.WaitFor(s.ctx, time.Minute, "relay enrolled after the restart", func() (bool, error) {
				if !r.Running() {
					return false, fmt.Errorf("relay exited: %v\n%s", r.ExitErr(), r.Tail(5))
				}
				st, err := r.Status(s.ctx)
				return err == nil && st.RelayID != "" && st.Uplink.CloudReachable, err
			})
			if err != nil {
				t.Fatal(err)
			}
			st, err := r.Status(s.ctx)
			if err != nil {
				t.Fatal(err)
			}
			ids, err := s.cloudRelays(r.Name)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) != 1 || ids[0] != st.RelayID {
				t.Fatalf("cloud lists relays %v for %s, want exactly the relay's own %s", ids, r.Name, st.RelayID)
			}
			// The credentials the relay runs on work: a restart loads them.
			if err := r.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			if err := r.Restart(s.ctx); err != nil {
				t.Fatal(err)
			}
			err = harness.WaitFor(s.ctx, time.Minute, "relay loaded its credentials", func() (bool, error) {
				return r.LogContains("loaded relay credentials for site " + s.site.SiteID), nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A used token presented by another relay (another key) is refused with
// a message that says what to do; the relay that used it is unaffected.
func TestUsedEnrollmentTokenRefusedForAnotherRelay(t *testing.T) {
	s := newCloudSite(t, 8*time.Minute)
	first := s.prepareRelay("relay-first")
	if err := first.Restart(s.ctx); err != nil {
		t.Fatal(err)
	}
	err := harness.WaitFor(s.ctx, time.Minute, "first relay enrolled", func() (bool, error) {
		st, err := first.Status(s.ctx)
		return err == nil && st.RelayID != "", err
	})
	if err != nil {
		t.Fatal(err)
	}
	second := s.prepareRelay("relay-second")
	tok := first.EnrollmentTokenInConfig()
	if err := second.SetEnrollmentToken(tok); err != nil {
		t.Fatal(err)
	}
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	err = harness.WaitFor(s.ctx, time.Minute, "second relay refused and stopped", func() (bool, error) {
		return !second.Running(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if second.ExitErr() == nil {
		t.Fatal("second relay exited 0, want a refusal")
	}
	const want = "enrollment token already used by relay"
	if !second.LogContains(want) || !second.LogContains("gatehousectl relay enroll-token") {
		t.Fatalf("second relay's log lacks %q and the remedy:\n%s", want, second.Tail(10))
	}
	t.Logf("second relay refused:\n%s", second.Tail(2))
	if ids, err := s.cloudRelays(second.Name); err != nil || len(ids) != 0 {
		t.Fatalf("cloud lists %v (err %v) for the refused relay, want none", ids, err)
	}
	if !first.Running() {
		t.Fatal("first relay stopped")
	}
}
