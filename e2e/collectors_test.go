package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// procEvent is what the test reads of a process event in the cloud.
type procEvent struct {
	Event struct {
		Action string `json:"action"`
	} `json:"event"`
	Process struct {
		PID    int      `json:"pid"`
		Args   []string `json:"args"`
		Parent *struct {
			PID int `json:"pid"`
		} `json:"parent"`
	} `json:"process"`
}

// processEvents pages through every event of agentID in the cloud and
// returns the process events by pid.
func (s *testSite) processEvents(agentID string) (map[int][]procEvent, error) {
	out := map[int][]procEvent{}
	var after uint64
	for {
		page, err := s.cloud.Admin.QueryEvents(s.ctx, s.site.TenantID, agentID, after, 10000)
		if err != nil {
			return nil, err
		}
		for _, e := range page.Events {
			var pe procEvent
			if json.Unmarshal(e.Event, &pe) != nil || pe.Process.PID == 0 {
				continue
			}
			switch pe.Event.Action {
			case "process-created", "process-terminated":
				out[pe.Process.PID] = append(out[pe.Process.PID], pe)
			}
		}
		if len(page.Events) == 0 || page.Next <= after {
			return out, nil
		}
		after = page.Next
	}
}

// runMarked runs /bin/sh -c "sleep 0.5; exit 0" with a unique $0 and
// returns its pid and args once it has exited. It lives half a second: the
// process collector reads the args from /proc/<pid>/cmdline when the exec
// event arrives, and a process gone by then is reported with its path only.
func runMarked(t *testing.T, marker string) (int, []string) {
	t.Helper()
	args := []string{"/bin/sh", "-c", "sleep 0.5; exit 0", marker}
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Run(); err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return cmd.Process.Pid, args
}

func hasAction(evs []procEvent, action string) bool {
	return slices.ContainsFunc(evs, func(e procEvent) bool { return e.Event.Action == action })
}

// Collector events reach the cloud through the real relay, and a tier set
// in the cloud reaches the running agent: in the server tier a process
// exit is no longer reported, its creation still is.
func TestCollectorEventsAndTierThroughRelay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("system test of the eBPF collectors: needs root (run the e2e tests as root)")
	}
	s := newSite(t, harness.RelayOptions{})
	// Heartbeats every 2s, so the tier reaches the agent quickly (the
	// relay's heartbeat_interval is what agents use).
	if err := s.relay.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(s.relay.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "heartbeat_interval: 2s")
	f.Close()
	if err := s.relay.Restart(s.ctx); err != nil {
		t.Fatal(err)
	}
	a, _ := s.agentWith("agent-1", func(o *harness.AgentOptions) {
		o.Collectors = true
		o.PolicyTier = "workstation"
		o.Extra = map[string]any{"filemod": map[string]any{"enabled": false}, "auth": map[string]any{"enabled": false}}
	})
	if err := a.WaitConnected(s.ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	st, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	agentID := st.AgentID

	// waitEvents waits until pid has every action in want in the cloud.
	waitEvents := func(what string, pid int, want ...string) []procEvent {
		t.Helper()
		var got []procEvent
		err := harness.WaitFor(s.ctx, 90*time.Second, what, func() (bool, error) {
			evs, err := s.processEvents(agentID)
			if err != nil {
				return false, err
			}
			got = evs[pid]
			for _, w := range want {
				if !hasAction(got, w) {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	checkCreated := func(evs []procEvent, pid int, args []string) {
		t.Helper()
		for _, e := range evs {
			if e.Event.Action != "process-created" {
				continue
			}
			if !slices.Equal(e.Process.Args, args) {
				t.Errorf("pid %d process.args: got %q, want %q", pid, e.Process.Args, args)
			}
			if e.Process.Parent == nil || e.Process.Parent.PID != os.Getpid() {
				t.Errorf("pid %d process.parent: got %+v, want pid %d (the test)", pid, e.Process.Parent, os.Getpid())
			}
			return
		}
		t.Errorf("pid %d: got no process-created event", pid)
	}

	// Workstation (the group's default): creation and termination.
	pid1, args1 := runMarked(t, fmt.Sprintf("gatehouse-e2e-ws-%d", time.Now().UnixNano()))
	evs := waitEvents("creation and termination of the first process", pid1, "process-created", "process-terminated")
	checkCreated(evs, pid1, args1)

	// The cloud sets the group to server: the running agent follows.
	if _, err := s.cloud.Admin.SetGroupTier(s.ctx, s.site.TenantID, s.site.GroupID, "server"); err != nil {
		t.Fatal(err)
	}
	err = harness.WaitFor(s.ctx, time.Minute, "agent in the server tier", func() (bool, error) {
		st, err := a.Status()
		return err == nil && st.PolicyTier == "server", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pid2, args2 := runMarked(t, fmt.Sprintf("gatehouse-e2e-srv-%d", time.Now().UnixNano()))
	// A third process fences the stream: its creation comes after the
	// second one's exit, so once it is in the cloud a termination of the
	// second would be too.
	pid3, _ := runMarked(t, fmt.Sprintf("gatehouse-e2e-fence-%d", time.Now().UnixNano()))
	evs = waitEvents("creation of the second process", pid2, "process-created")
	checkCreated(evs, pid2, args2)
	waitEvents("creation of the fence process", pid3, "process-created")
	all, err := s.processEvents(agentID)
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{pid2, pid3} {
		if hasAction(all[pid], "process-terminated") {
			t.Errorf("pid %d in the server tier: got a process-terminated event, want none", pid)
		}
	}
	if !a.LogContains("policy tier changed by the cloud") {
		t.Errorf("agent log: want %q", "policy tier changed by the cloud")
	}
}
