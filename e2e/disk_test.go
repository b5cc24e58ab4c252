package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// diskSite is a site whose relay keeps its data on a tmpfs of size bytes
// (the spool's filesystem smaller than spool.max_bytes, as in the field).
func diskSite(t *testing.T, size int64, opt harness.RelayOptions) (s *testSite, disk string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs for the relay's data; run as root")
	}
	disk = filepath.Join(t.TempDir(), "disk")
	unmount, err := harness.MountTmpfs(disk, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unmount(); err != nil {
			t.Error(err)
		}
	})
	opt.DataDir = filepath.Join(disk, "relay")
	return newSite(t, opt), disk
}

// twoAgentsCloudDown starts two agents, waits until they are connected,
// then stops the cloud so that whatever they send stays in the spool.
func (s *testSite) twoAgentsCloudDown() ([]*harness.Agent, []*harness.LogWriter) {
	s.t.Helper()
	a1, w1 := s.agent("agent-1")
	a2, w2 := s.agent("agent-2")
	agents := []*harness.Agent{a1, a2}
	for _, a := range agents {
		if err := a.WaitConnected(s.ctx, time.Minute); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := s.cloud.Stop(10 * time.Second); err != nil {
		s.t.Fatal(err)
	}
	return agents, []*harness.LogWriter{w1, w2}
}

// waitSpoolGaveSpaceBack waits until a drained spool takes no more than its
// reserve file and a small index on disk.
func (s *testSite) waitSpoolGaveSpaceBack(spoolDir string) {
	s.t.Helper()
	const drained = 16 << 20
	var used int64
	err := harness.WaitFor(s.ctx, time.Minute, "spool disk usage back down after the drain", func() (bool, error) {
		var err error
		used, err = harness.DiskUsage(spoolDir)
		return err == nil && used <= drained, fmt.Errorf("spool uses %d bytes on disk, want <= %d (err %v)", used, drained, err)
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("spool on disk after the drain: %d bytes", used)
}

// writeUntil appends lines of about 1 KB to every writer until cond holds
// (or fails), so the spool grows by about 100 KB per writer per tick.
func (s *testSite) writeUntil(timeout time.Duration, what string, ws []*harness.LogWriter, cond func() (bool, error)) {
	s.t.Helper()
	err := harness.WaitFor(s.ctx, timeout, what, func() (bool, error) {
		if !s.relay.Running() {
			s.t.Fatalf("relay died: %v\n%s", s.relay.ExitErr(), s.relay.Tail(30))
		}
		ok, cerr := cond()
		if ok {
			return true, nil
		}
		for _, w := range ws {
			if err := w.WriteSized(100, 1000); err != nil {
				s.t.Fatal(err)
			}
		}
		return false, cerr
	})
	if err != nil {
		s.t.Fatal(err)
	}
}

// spoolRefusing waits for the relay to say its spool is full, to have
// refused batches with SPOOL_FULL, and /readyz to answer 503 with why.
func (s *testSite) spoolRefusing() (bool, error) {
	st, err := s.relay.Status(s.ctx)
	if err != nil || !st.Spool.Full {
		return false, err
	}
	refused, err := s.relay.Metric(s.ctx, "gatehouse_relay_spool_rejected_full_total")
	if err != nil || refused == 0 {
		return false, err
	}
	ok, body, err := s.relay.Ready(s.ctx)
	if err != nil {
		return false, err
	}
	if ok || !strings.Contains(body, "spool full") {
		return false, fmt.Errorf("/readyz says %q while the spool refuses batches", body)
	}
	return true, nil
}

// The relay's filesystem (64 MB) is smaller than spool.max_bytes (1 GB
// default): it refuses batches with SPOOL_FULL before the disk runs out
// instead of dying of SIGBUS inside Badger, restarts on a full disk, drains
// once the cloud is back and space is freed, gives the space back, and
// every line reaches the cloud exactly once.
func TestRelayDiskFullRefusesAndRecovers(t *testing.T) {
	s, disk := diskSite(t, 64<<20, harness.RelayOptions{SpoolMinFreeBytes: 8 << 20})
	spoolDir := filepath.Join(s.relay.DataDir, "spool")
	agents, ws := s.twoAgentsCloudDown()
	a1 := agents[0]
	// Another program fills the disk to 16 MB free: the spool takes about
	// 8 MB more, then keeps min_free_bytes free.
	filler := filepath.Join(disk, "filler")
	if err := harness.Fill(filler, 16<<20); err != nil {
		t.Fatal(err)
	}
	s.writeUntil(2*time.Minute, "relay refusing batches on a nearly full disk", ws, s.spoolRefusing)
	free, _ := harness.FsFree(disk)
	used, _ := harness.DiskUsage(spoolDir)
	t.Logf("spool full by the disk reserve: %d bytes free on the filesystem, spool uses %d bytes", free, used)
	// What a site watches: free space, the spool's own use, how old its
	// oldest batch is and who is waiting.
	for _, m := range []struct {
		name     string
		min, max float64
	}{
		{"gatehouse_relay_spool_fs_free_bytes", 1, 12 << 20}, // min_free_bytes and less than a batch group
		{"gatehouse_relay_spool_fs_used_bytes", 52 << 20, 64 << 20},
		{"gatehouse_relay_spool_disk_bytes", 1 << 20, 64 << 20},
		{"gatehouse_relay_spool_oldest_batch_age_seconds", 0.001, 600},
		{"gatehouse_relay_spool_backlog_agents", 1, 2},
		{"gatehouse_relay_spool_backlog_max_agent_bytes", 1 << 10, 16 << 20},
	} {
		v, err := s.relay.Metric(s.ctx, m.name)
		if err != nil {
			t.Fatal(err)
		}
		if v < m.min || v > m.max {
			t.Errorf("%s: got %v, want %v..%v", m.name, v, m.min, m.max)
		}
	}

	// The agents say why they are held back.
	err := harness.WaitFor(s.ctx, time.Minute, "agent status to show the relay's spool is full", func() (bool, error) {
		as, err := a1.Status()
		if err != nil {
			return false, err
		}
		return as.State == "connected" && strings.Contains(as.LastError, "spool full"), fmt.Errorf("agent status: state %q, last_error %q", as.State, as.LastError)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !s.relay.LogContains("spool full") {
		t.Errorf("relay log does not say the spool is full")
	}

	// Restart on a disk filled to the last byte: the relay comes up, says
	// it is full, refuses batches and does not crash.
	if err := s.relay.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := harness.Fill(filler, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.relay.StartLive(s.ctx); err != nil {
		t.Fatal(err)
	}
	s.writeUntil(2*time.Minute, "relay refusing batches after a restart on a full disk", ws, s.spoolRefusing)
	// Still alive after the agents have been told SPOOL_FULL a few times.
	time.Sleep(2 * time.Second)
	if !s.relay.Running() {
		t.Fatalf("relay died on the full disk: %v\n%s", s.relay.ExitErr(), s.relay.Tail(30))
	}
	// It opened its index with the room of its reserve file.
	if !s.relay.LogContains("released the spool's reserve file") {
		t.Errorf("relay log does not say it released its reserve file on the full disk")
	}

	// The cloud back, the disk still full but for what the spool holds: it
	// drains in the room of its reserve file, every segment delivered gives
	// space back, and that is enough to take the agents' batches again.
	if err := s.cloud.Restart(s.ctx); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(4*time.Minute, agents, ws...)
	if ok, body, err := s.relay.Ready(s.ctx); err != nil || !ok {
		t.Errorf("/readyz after the drain: %q, %v", body, err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}

	s.waitSpoolGaveSpaceBack(spoolDir)
}

// spool.max_bytes 20 MB bounds what the spool uses on disk (batches plus
// the index and the free-space ballast: docs/operations.md, "Sizing the
// spool"), and a full drain gives the space back.
func TestSpoolOnDiskBoundedByMaxBytes(t *testing.T) {
	const maxBytes = 20 << 20
	s := newSite(t, harness.RelayOptions{SpoolMaxBytes: maxBytes})
	spoolDir := filepath.Join(s.relay.DataDir, "spool")
	agents, ws := s.twoAgentsCloudDown()
	s.writeUntil(3*time.Minute, "relay spool full at max_bytes", ws, s.spoolRefusing)
	// Held at max_bytes for a while, the spool does not creep.
	const bound = 2*maxBytes + 16<<20
	var peak int64
	for range 5 {
		used, err := harness.DiskUsage(spoolDir)
		if err != nil {
			t.Fatal(err)
		}
		peak = max(peak, used)
		time.Sleep(time.Second)
	}
	st, err := s.relay.Status(s.ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("spool full: %d batches, %d batch bytes, %d bytes on disk (bound %d)", st.Spool.Batches, st.Spool.Bytes, peak, bound)
	if peak > bound {
		t.Errorf("spool uses %d bytes on disk with max_bytes %d, want <= %d", peak, maxBytes, bound)
	}
	if err := s.cloud.Restart(s.ctx); err != nil {
		t.Fatal(err)
	}
	s.waitExactlyOnce(4*time.Minute, agents, ws...)
	s.waitSpoolGaveSpaceBack(spoolDir)
}
