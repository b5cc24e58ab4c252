package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/cloud/adminapi"
	"github.com/gatehouse/gatehouse/cloud/internal/server"
)

func startCloud(t *testing.T) *server.Server {
	t.Helper()
	cfg := server.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	s, err := server.New(cfg, server.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		s.Close()
	})
	return s
}

// ctl runs gatehousectl in-process and returns its stdout.
func ctl(t *testing.T, s *server.Server, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCommand(&out)
	cmd.SetArgs(append([]string{"--server", "http://" + s.AdminAddr(), "--token", s.AdminToken()}, args...))
	cmd.SetErr(&bytes.Buffer{})
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func mustCtl(t *testing.T, s *server.Server, args ...string) string {
	t.Helper()
	out, err := ctl(t, s, args...)
	if err != nil {
		t.Fatalf("gatehousectl %v: %v", args, err)
	}
	return out
}

func jsonOut[T any](t *testing.T, s *server.Server, args ...string) T {
	t.Helper()
	var v T
	out := mustCtl(t, s, append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("gatehousectl %v: %v: %q", args, err, out)
	}
	return v
}

func TestCommands(t *testing.T) {
	s := startCloud(t)
	tn := jsonOut[adminapi.Tenant](t, s, "tenant", "create", "acme")
	if tn.Name != "acme" || tn.ID == "" {
		t.Fatalf("tenant create: got %+v", tn)
	}
	out := mustCtl(t, s, "tenant", "list")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[1], "acme") {
		t.Fatalf("tenant list: got %q, want a header and one row", out)
	}
	site := jsonOut[adminapi.Site](t, s, "site", "create", "--tenant", tn.ID, "hq")
	grp := jsonOut[adminapi.Group](t, s, "group", "create", "--tenant", tn.ID, "servers")
	if out := mustCtl(t, s, "site", "list", "--tenant", tn.ID); !strings.Contains(out, site.ID) {
		t.Fatalf("site list: got %q, want %s", out, site.ID)
	}
	if out := mustCtl(t, s, "group", "list", "--tenant", tn.ID); !strings.Contains(out, grp.ID) {
		t.Fatalf("group list: got %q, want %s", out, grp.ID)
	}
	key := jsonOut[adminapi.RegistrationKey](t, s, "key", "create", "--tenant", tn.ID, "--group", grp.ID, "--valid-for", "720h")
	if got := key.ExpiresAt.Sub(key.CreatedAt).Hours(); got != 720 || !strings.HasPrefix(key.Key, "ghk_") {
		t.Fatalf("key create: got %+v (%vh), want a ghk_ key valid 720h", key, got)
	}
	if out := mustCtl(t, s, "key", "list", "--tenant", tn.ID); !strings.Contains(out, key.Key) {
		t.Fatalf("key list: got %q, want %s", out, key.Key)
	}
	tok := strings.TrimSpace(mustCtl(t, s, "relay", "enroll-token", "--tenant", tn.ID, "--site", site.ID))
	if !strings.HasPrefix(tok, "ghe_") || strings.Contains(tok, "\n") {
		t.Fatalf("enroll-token: got %q, want one ghe_ token", tok)
	}
	if _, _, err := s.Store().Enroll(tok, "r1", "dmz1"); err != nil {
		t.Fatalf("enroll with printed token: %v", err)
	}
	if out := mustCtl(t, s, "relay", "list", "--tenant", tn.ID); !strings.Contains(out, "dmz1") {
		t.Fatalf("relay list: got %q", out)
	}
	if out := mustCtl(t, s, "agent", "list", "--tenant", tn.ID); strings.TrimSpace(out) != strings.TrimSpace(strings.Split(out, "\n")[0]) {
		t.Fatalf("agent list: got %q, want only a header", out)
	}
	if out := mustCtl(t, s, "events", "count", "--tenant", tn.ID); strings.TrimSpace(out) != "0" {
		t.Fatalf("events count: got %q, want 0", out)
	}
	page := jsonOut[adminapi.EventsPage](t, s, "events", "query", "--tenant", tn.ID, "--limit", "5")
	if len(page.Events) != 0 {
		t.Fatalf("events query: got %+v", page)
	}
	st := jsonOut[adminapi.Stats](t, s, "stats")
	if st.Tenants != 1 {
		t.Fatalf("stats: got %+v", st)
	}

	// Token from a file; errors come back as errors.
	tf := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(tf, []byte(s.AdminToken()+"\n"), 0o600)
	var buf bytes.Buffer
	cmd := newRootCommand(&buf)
	cmd.SetArgs([]string{"--server", "http://" + s.AdminAddr(), "--token-file", tf, "stats"})
	if err := cmd.Execute(); err != nil || !strings.Contains(buf.String(), "TENANTS") {
		t.Fatalf("--token-file: got %q, %v", buf.String(), err)
	}
	if _, err := ctl(t, s, "site", "list", "--tenant", "tn_nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown tenant: got %v, want a 404 error", err)
	}
	if _, err := ctl(t, s, "key", "create", "--tenant", tn.ID); err == nil {
		t.Fatal("key create without --group: got no error")
	}
}
