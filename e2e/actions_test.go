package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// tarNames lists the files of a tar.gz.
func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("support bundle is not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			return names
		}
		names = append(names, filepath.Base(h.Name))
	}
}

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

	t.Run("retrieve file and support bundle", func(t *testing.T) {
		want := []byte("evidence\n")
		path := filepath.Join(cs.dir, "evidence.txt")
		if err := os.WriteFile(path, want, 0o600); err != nil {
			t.Fatal(err)
		}
		got := wait(run("retrieve_file", map[string]string{"path": path}))
		var out struct {
			SHA256  string `json:"sha256"`
			Content []byte `json:"content"`
		}
		if err := json.Unmarshal(got.Result.Output, &out); err != nil || string(out.Content) != string(want) {
			t.Fatalf("retrieved %q (%v), want %q", out.Content, err, want)
		}
		sum := sha256.Sum256(want)
		if out.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("sha256 %s, want %x", out.SHA256, sum)
		}
		bundle := wait(run("retrieve_support_bundle", map[string]string{}))
		names := tarNames(t, bundle.Result.Output)
		if !slices.Contains(names, "status.json") {
			t.Fatalf("support bundle holds %v, want status.json among them", names)
		}
	})

	t.Run("set and clear proxy", func(t *testing.T) {
		// The proxy applies from the next connection; QUIC (direct) still
		// races it, so the agent stays reachable while we look.
		wait(run("set_proxy", map[string]string{"url": "http://127.0.0.1:1"}))
		restart := func(wantProxy string) {
			t.Helper()
			if err := a.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			if err := a.Start(); err != nil {
				t.Fatal(err)
			}
			if err := a.WaitConnected(cs.ctx, time.Minute); err != nil {
				t.Fatal(err)
			}
			err := harness.WaitFor(cs.ctx, 30*time.Second, "proxy in status", func() (bool, error) {
				st, err := a.Status()
				return err == nil && st.Proxy == wantProxy, fmt.Errorf("proxy %q", st.Proxy)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		restart("127.0.0.1:1")
		wait(run("clear_proxy", map[string]string{}))
		restart("")
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
