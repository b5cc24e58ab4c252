package actions

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gatehouse/gatehouse/agent/internal/isolate"
	"github.com/gatehouse/gatehouse/internal/action"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

type fakeIsolator struct {
	p       isolate.Policy
	applied int
}

func (f *fakeIsolator) Apply(_ context.Context, p isolate.Policy) error {
	f.p = p
	f.applied++
	return nil
}
func (f *fakeIsolator) Policy() isolate.Policy { return f.p }

func newExec(t *testing.T, deps Deps) *Executor {
	t.Helper()
	if deps.DataDir == "" {
		deps.DataDir = t.TempDir()
	}
	e, err := New(deps)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var nextID int

func do(t *testing.T, e *Executor, typ, payload string) *agentv1.CommandResult {
	t.Helper()
	nextID++
	return e.Execute(context.Background(), &agentv1.Command{Id: "cmd-" + typ + "-" + string(rune('a'+nextID%26)) + hex.EncodeToString([]byte{byte(nextID)}), Action: typed(typ, payload)})
}

// typed builds the typed action from the JSON the tests were written in,
// without validating it (the executor must refuse what is invalid): an
// unknown field or a JSON error leaves the payload unset.
func typed(typ, payload string) *agentv1.Action {
	t, _ := action.Parse(typ)
	a := &agentv1.Action{Type: t}
	var p struct {
		Path         string    `json:"path"`
		QuarantineID string    `json:"quarantine_id"`
		PID          int64     `json:"pid"`
		URL          string    `json:"url"`
		AllowCIDRs   *[]string `json:"allow_cidrs"`
		AllowNames   *[]string `json:"allow_names"`
	}
	if payload == "" {
		payload = "{}"
	}
	dec := json.NewDecoder(strings.NewReader(payload))
	dec.DisallowUnknownFields()
	if dec.Decode(&p) != nil {
		return a
	}
	switch t {
	case agentv1.ActionType_ACTION_TYPE_ISOLATE:
		iso := &agentv1.IsolatePayload{}
		if p.AllowCIDRs != nil || p.AllowNames != nil {
			iso.AllowList = &agentv1.IsolationAllowList{}
			if p.AllowCIDRs != nil {
				iso.AllowList.Cidrs = *p.AllowCIDRs
			}
			if p.AllowNames != nil {
				iso.AllowList.Names = *p.AllowNames
			}
		}
		a.Payload = &agentv1.Action_Isolate{Isolate: iso}
	case agentv1.ActionType_ACTION_TYPE_QUARANTINE_FILE:
		a.Payload = &agentv1.Action_QuarantineFile{QuarantineFile: &agentv1.PathPayload{Path: p.Path}}
	case agentv1.ActionType_ACTION_TYPE_RETRIEVE_FILE:
		a.Payload = &agentv1.Action_RetrieveFile{RetrieveFile: &agentv1.PathPayload{Path: p.Path}}
	case agentv1.ActionType_ACTION_TYPE_RESTORE_FILE:
		a.Payload = &agentv1.Action_RestoreFile{RestoreFile: &agentv1.RestoreFilePayload{QuarantineId: p.QuarantineID}}
	case agentv1.ActionType_ACTION_TYPE_TERMINATE_PROCESS:
		a.Payload = &agentv1.Action_TerminateProcess{TerminateProcess: &agentv1.TerminateProcessPayload{Pid: p.PID}}
	case agentv1.ActionType_ACTION_TYPE_SET_PROXY:
		a.Payload = &agentv1.Action_SetProxy{SetProxy: &agentv1.SetProxyPayload{Url: p.URL}}
	default:
		a = action.New(t)
	}
	return a
}

func TestQuarantineAndRestore(t *testing.T) {
	e := newExec(t, Deps{})
	dir := t.TempDir()
	path := filepath.Join(dir, "evil.bin")
	content := []byte("#!/bin/sh\necho pwned\n")
	if err := os.WriteFile(path, content, 0o751); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])

	res := do(t, e, TypeQuarantineFile, `{"path":"`+path+`"}`)
	if !res.Ok {
		t.Fatalf("quarantine: got failure %q, want ok", res.Reason)
	}
	var out struct {
		QuarantineID string `json:"quarantine_id"`
		SHA256       string `json:"sha256"`
	}
	if err := json.Unmarshal(res.Output, &out); err != nil {
		t.Fatalf("quarantine output %q: %v", res.Output, err)
	}
	if out.SHA256 != want {
		t.Errorf("quarantine sha256: got %s, want %s", out.SHA256, want)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("original after quarantine: got %v, want it gone", err)
	}
	fi, err := os.Stat(filepath.Join(e.quarantineDir(), out.QuarantineID))
	if err != nil {
		t.Fatalf("quarantined file: %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("quarantined file mode: got %o, want 600", got)
	}

	// The same file again: it is gone.
	if res := do(t, e, TypeQuarantineFile, `{"path":"`+path+`"}`); res.Ok {
		t.Errorf("quarantine of a missing file: got ok, want failure")
	}

	res = do(t, e, TypeRestoreFile, `{"quarantine_id":"`+out.QuarantineID+`"}`)
	if !res.Ok {
		t.Fatalf("restore: got failure %q, want ok", res.Reason)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("restored file: %v", err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != want {
		t.Errorf("restored sha256: got %x, want %s", sum, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o751 {
		t.Errorf("restored mode: got %o, want 751", fi.Mode().Perm())
	}
	if res := do(t, e, TypeRestoreFile, `{"quarantine_id":"`+out.QuarantineID+`"}`); res.Ok {
		t.Errorf("second restore of the same id: got ok, want failure")
	}
}

func TestRestoreRefusals(t *testing.T) {
	e := newExec(t, Deps{})
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("x"), 0o644)
	res := do(t, e, TypeQuarantineFile, `{"path":"`+path+`"}`)
	var out struct {
		QuarantineID string `json:"quarantine_id"`
	}
	json.Unmarshal(res.Output, &out)
	tests := []struct {
		name, payload, prepare string
	}{
		{"unknown id", `{"quarantine_id":"00000000000000000000000000000000"}`, ""},
		{"path traversal", `{"quarantine_id":"../../etc/passwd"}`, ""},
		{"original exists", `{"quarantine_id":"` + out.QuarantineID + `"}`, "recreate"},
		{"tampered", `{"quarantine_id":"` + out.QuarantineID + `"}`, "tamper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			switch tt.prepare {
			case "recreate":
				os.WriteFile(path, []byte("new"), 0o644)
				t.Cleanup(func() { os.Remove(path) })
			case "tamper":
				os.WriteFile(filepath.Join(e.quarantineDir(), out.QuarantineID), []byte("changed"), 0o600)
			}
			if res := do(t, e, TypeRestoreFile, tt.payload); res.Ok {
				t.Errorf("got ok, want failure")
			} else {
				t.Logf("reason: %s", res.Reason)
			}
		})
	}
	if res := do(t, e, TypeQuarantineFile, `{"path":"`+filepath.Dir(path)+`"}`); res.Ok {
		t.Errorf("quarantine of a directory: got ok, want failure")
	}
}

func TestIdempotentByCommandID(t *testing.T) {
	data := t.TempDir()
	e := newExec(t, Deps{DataDir: data})
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("one"), 0o644)
	cmd := &agentv1.Command{Id: "same", Action: typed(TypeQuarantineFile, `{"path":"`+path+`"}`)}
	first := e.Execute(context.Background(), cmd)
	if !first.Ok {
		t.Fatalf("first: %s", first.Reason)
	}
	// A new file at the path: a re-delivery must not quarantine it.
	os.WriteFile(path, []byte("two"), 0o644)
	for _, ex := range []*Executor{e, newExec(t, Deps{DataDir: data})} { // also after a restart
		again := ex.Execute(context.Background(), cmd)
		if again.Ok != first.Ok || !bytes.Equal(again.Output, first.Output) || again.Id != "same" {
			t.Errorf("re-delivered: got %v %q, want %v %q", again.Ok, again.Output, first.Ok, first.Output)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != "two" {
		t.Errorf("file after re-delivery: got %q, want it untouched", b)
	}
}

func TestTerminateProcess(t *testing.T) {
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	e := newExec(t, Deps{})
	res := do(t, e, TypeTerminateProcess, `{"pid":`+itoa(cmd.Process.Pid)+`}`)
	if !res.Ok {
		t.Fatalf("terminate: got failure %q, want ok", res.Reason)
	}
	err := <-waited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("process end: got %v, want killed by SIGKILL", err)
	}
	tests := []struct{ name, payload string }{
		{"the agent itself", `{"pid":` + itoa(os.Getpid()) + `}`},
		{"init", `{"pid":1}`},
		{"gone", `{"pid":` + itoa(cmd.Process.Pid) + `}`},
		{"negative", `{"pid":-5}`},
		{"not a number", `{"pid":"12"}`},
	}
	for _, tt := range tests {
		if res := do(t, e, TypeTerminateProcess, tt.payload); res.Ok {
			t.Errorf("%s: got ok, want failure", tt.name)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestRetrieveFile(t *testing.T) {
	e := newExec(t, Deps{MaxRetrieveBytes: 1024})
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	os.WriteFile(small, []byte("hello"), 0o600)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 1025), 0o600)
	res := do(t, e, TypeRetrieveFile, `{"path":"`+small+`"}`)
	var out struct {
		Size    int    `json:"size"`
		SHA256  string `json:"sha256"`
		Content []byte `json:"content"`
	}
	if !res.Ok || json.Unmarshal(res.Output, &out) != nil {
		t.Fatalf("retrieve: got %v %q %q", res.Ok, res.Reason, res.Output)
	}
	sum := sha256.Sum256([]byte("hello"))
	if string(out.Content) != "hello" || out.SHA256 != hex.EncodeToString(sum[:]) || out.Size != 5 {
		t.Errorf("retrieve output: got %+v, want hello with its hash", out)
	}
	if res := do(t, e, TypeRetrieveFile, `{"path":"`+big+`"}`); res.Ok || !strings.Contains(res.Reason, "cap") {
		t.Errorf("over the cap: got %v %q, want a failure naming the cap", res.Ok, res.Reason)
	}
}

func TestSupportBundle(t *testing.T) {
	dir := t.TempDir()
	logf, conf, status := filepath.Join(dir, "agent.log"), filepath.Join(dir, "agent.yaml"), filepath.Join(dir, "status.json")
	os.WriteFile(logf, []byte("level=INFO msg=started\n"), 0o600)
	os.WriteFile(conf, []byte("data_dir: /var/lib/x\nregistration_key: gh_reg_SECRET1\nproxy: http://bob:SECRET2@proxy:3128\nrelays:\n  - relay.example:7443\n"), 0o600)
	os.WriteFile(status, []byte(`{"state":"connected"}`), 0o600)
	e := newExec(t, Deps{LogFile: logf, ConfigFile: conf, StatusFile: status})
	res := do(t, e, TypeRetrieveSupportBundle, `{}`)
	if !res.Ok {
		t.Fatalf("bundle: %s", res.Reason)
	}
	files := untar(t, res.Output)
	for _, name := range []string{"agent.log", "config.yaml", "status.json", "MANIFEST.json"} {
		if _, ok := files[name]; !ok {
			t.Errorf("bundle: want %s, got %v", name, keys(files))
		}
	}
	c := files["config.yaml"]
	for _, secret := range []string{"SECRET1", "SECRET2", "bob"} {
		if strings.Contains(c, secret) {
			t.Errorf("config in bundle holds %q:\n%s", secret, c)
		}
	}
	if !strings.Contains(c, "relay.example:7443") || !strings.Contains(c, "[REDACTED]") {
		t.Errorf("config in bundle: got\n%s\nwant relays kept and secrets redacted", c)
	}
	if files["status.json"] != `{"state":"connected"}` {
		t.Errorf("status.json in bundle: got %q", files["status.json"])
	}
}

func untar(t *testing.T, b []byte) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		c, _ := io.ReadAll(tr)
		out[h.Name] = string(c)
	}
}

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

func TestProxyAndHeartbeat(t *testing.T) {
	var changed []string
	beats := 0
	data := t.TempDir()
	e := newExec(t, Deps{DataDir: data, ProxyChanged: func(u string) { changed = append(changed, u) }, HeartbeatNow: func() { beats++ }})
	if res := do(t, e, TypeSetProxy, `{"url":"http://proxy.example:3128"}`); !res.Ok {
		t.Fatalf("set_proxy: %s", res.Reason)
	}
	p, ok, err := ReadProxyOverride(data)
	if err != nil || !ok || p.URL != "http://proxy.example:3128" {
		t.Errorf("proxy.json after set_proxy: got %+v %v %v", p, ok, err)
	}
	if res := do(t, e, TypeClearProxy, ``); !res.Ok {
		t.Fatalf("clear_proxy: %s", res.Reason)
	}
	if _, ok, _ := ReadProxyOverride(data); ok {
		t.Errorf("proxy.json after clear_proxy: got present, want gone")
	}
	if got, want := strings.Join(changed, ","), "http://proxy.example:3128,"; got != want {
		t.Errorf("proxy callbacks: got %q, want %q", got, want)
	}
	if res := do(t, e, TypeSetProxy, `{"url":"socks5://x:1"}`); res.Ok {
		t.Errorf("set_proxy socks5: got ok, want failure")
	}
	if res := do(t, e, TypeHeartbeatNow, `{}`); !res.Ok || beats != 1 {
		t.Errorf("heartbeat_now: got %v %q and %d beats, want ok and 1", res.Ok, res.Reason, beats)
	}
}

func TestIsolateActions(t *testing.T) {
	iso := &fakeIsolator{p: isolate.Policy{AllowNames: []string{"kept.example"}}}
	e := newExec(t, Deps{Isolator: iso})
	if res := do(t, e, TypeIsolate, `{}`); !res.Ok {
		t.Fatalf("isolate: %s", res.Reason)
	}
	if !iso.p.Isolated || len(iso.p.AllowNames) != 1 {
		t.Errorf("policy after isolate {}: got %+v, want isolated keeping the allow-list", iso.p)
	}
	if res := do(t, e, TypeIsolate, `{"allow_cidrs":["10.1.2.3/8"],"allow_names":["a.example"]}`); !res.Ok {
		t.Fatalf("isolate with list: %s", res.Reason)
	}
	if want := netip.MustParsePrefix("10.0.0.0/8"); len(iso.p.AllowCIDRs) != 1 || iso.p.AllowCIDRs[0] != want || iso.p.AllowNames[0] != "a.example" {
		t.Errorf("policy after isolate with list: got %+v", iso.p)
	}
	if res := do(t, e, TypeCancelIsolation, `{}`); !res.Ok || iso.p.Isolated {
		t.Errorf("cancel: got %v %q isolated=%v", res.Ok, res.Reason, iso.p.Isolated)
	}
	tests := []struct{ typ, payload string }{
		{TypeIsolate, `{"extra":1}`},
		{TypeIsolate, `{"allow_cidrs":["nope"]}`},
		{TypeCancelIsolation, `[]`},
		{"format_disk", `{}`},
	}
	for _, tt := range tests {
		if res := do(t, e, tt.typ, tt.payload); res.Ok {
			t.Errorf("%s %s: got ok, want failure", tt.typ, tt.payload)
		}
	}
	if res := do(t, newExec(t, Deps{}), TypeIsolate, `{}`); res.Ok {
		t.Errorf("isolate without an isolator: got ok, want failure")
	}
}

// The agent refuses an isolation allow-list that would open the host to the
// internet, whoever sent it: two /1s are a /0.
func TestIsolateRefusesWideAllowList(t *testing.T) {
	e := newExec(t, Deps{Isolator: &fakeIsolator{}})
	for _, payload := range []string{
		`{"allow_cidrs":["0.0.0.0/0"]}`,
		`{"allow_cidrs":["0.0.0.0/1","128.0.0.0/1"]}`,
		`{"allow_cidrs":["::/1"]}`,
	} {
		if res := do(t, e, TypeIsolate, payload); res.Ok || !strings.Contains(res.Reason, "is wider than /") {
			t.Errorf("isolate %s: got %v %q, want a refusal naming the width", payload, res.Ok, res.Reason)
		}
	}
	cidrs, _, _ := isolatePolicy(typed(TypeIsolate, `{"allow_cidrs":["10.0.0.0/8","2001:db8::/32"]}`).GetIsolate())
	if res := do(t, e, TypeIsolate, `{"allow_cidrs":["10.0.0.0/8","2001:db8::/32"]}`); !res.Ok || len(cidrs) != 2 {
		t.Fatalf("isolate with /8 and /32: got %v %q, %v; want both kept", res.Ok, res.Reason, cidrs)
	}
}
