package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/cloud/adminapi"
	"github.com/gatehouse/gatehouse/e2e/harness"
)

// Actions from the cloud's API reach the agent through a cluster of real
// relays and have their real effects: a process is terminated, a file is
// quarantined and restored with the same content; an action for an offline
// agent is delivered when it reconnects; an action whose relay died is
// delivered through another node.
func TestActionsEndToEnd(t *testing.T) {
	cs := newClusterSite(t, 3)
	a, _ := cs.agentOn("agent-1", cs.relays[0])
	if err := a.WaitConnected(cs.ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	st, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	agentID := st.AgentID
	run := func(typ string, payload any) adminapi.Action {
		t.Helper()
		p, _ := json.Marshal(payload)
		act, err := cs.cloud.Admin.CreateAction(cs.ctx, cs.site.TenantID, agentID, typ, p)
		if err != nil {
			t.Fatal(err)
		}
		return act
	}
	wait := func(act adminapi.Action) adminapi.Action {
		t.Helper()
		var got adminapi.Action
		err := harness.WaitFor(cs.ctx, 90*time.Second, act.Type+" finished", func() (bool, error) {
			var err error
			got, err = cs.cloud.Admin.GetAction(cs.ctx, cs.site.TenantID, act.ID)
			return err == nil && got.Finished(), fmt.Errorf("state %s", got.State)
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Result == nil || !got.Result.OK {
			t.Fatalf("%s failed: %+v", act.Type, got.Result)
		}
		return got
	}

	t.Run("terminate process", func(t *testing.T) {
		p := exec.Command("sleep", "300")
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- p.Wait() }()
		wait(run("terminate_process", map[string]int{"pid": p.Process.Pid}))
		select {
		case err := <-exited:
			if err == nil {
				t.Fatal("process exited cleanly, want killed")
			}
		case <-time.After(10 * time.Second):
			p.Process.Kill()
			t.Fatal("process still running after terminate_process succeeded")
		}
	})

	file := filepath.Join(cs.dir, "suspicious.bin")
	content := []byte("not really malware\n")
	t.Run("quarantine and restore", func(t *testing.T) {
		if err := os.WriteFile(file, content, 0o644); err != nil {
			t.Fatal(err)
		}
		q := wait(run("quarantine_file", map[string]string{"path": file}))
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Fatalf("file still there after quarantine: %v", err)
		}
		var out struct {
			QuarantineID string `json:"quarantine_id"`
		}
		if err := json.Unmarshal(q.Result.Output, &out); err != nil || out.QuarantineID == "" {
			t.Fatalf("quarantine output %q: %v", q.Result.Output, err)
		}
		wait(run("restore_file", map[string]string{"quarantine_id": out.QuarantineID}))
		got, err := os.ReadFile(file)
		if err != nil || string(got) != string(content) {
			t.Fatalf("restored file: %q, %v; want %q", got, err, content)
		}
	})

	t.Run("offline agent gets it on reconnect", func(t *testing.T) {
		if err := a.Stop(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		act := run("quarantine_file", map[string]string{"path": file})
		time.Sleep(2 * time.Second)
		if got, _ := cs.cloud.Admin.GetAction(cs.ctx, cs.site.TenantID, act.ID); got.Finished() {
			t.Fatalf("action finished while the agent was offline: %+v", got)
		}
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		wait(act)
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Fatalf("file still there: %v", err)
		}
	})

	t.Run("relay dies, another node delivers", func(t *testing.T) {
		if err := cs.relays[0].Kill(); err != nil {
			t.Fatal(err)
		}
		wait(run("heartbeat_now", map[string]string{}))
	})
}
