package agent

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/agent/internal/config"
)

func tierConfig(t *testing.T, dir, tier string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Relays = []string{"127.0.0.1:9"}
	cfg.PolicyTier = tier
	// No kernel collectors: the test is about the tier's plumbing.
	cfg.Process.Enabled, cfg.Netflow.Enabled, cfg.Auth.Enabled, cfg.FileMod.Enabled = false, false, false, false
	return cfg
}

func newTestAgent(t *testing.T, cfg config.Config) *Agent {
	t.Helper()
	a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestPolicyTierFromCloudPersists(t *testing.T) {
	dir := t.TempDir()
	a := newTestAgent(t, tierConfig(t, dir, "workstation"))
	if got := a.PolicyTier(); got != "workstation" {
		t.Fatalf("tier at start: got %q, want workstation (config)", got)
	}
	a.onPolicyTier("bogus") // ignored
	if got := a.PolicyTier(); got != "workstation" {
		t.Fatalf("tier after a bogus one: got %q, want workstation", got)
	}
	if _, err := os.Stat(filepath.Join(dir, TierFile)); !os.IsNotExist(err) {
		t.Fatalf("tier file after no change: got %v, want absent", err)
	}
	a.onPolicyTier("server")
	if got := a.PolicyTier(); got != "server" {
		t.Fatalf("tier after the cloud's: got %q, want server", got)
	}
	if got := a.Status().PolicyTier; got != "server" {
		t.Fatalf("status policy_tier: got %q, want server", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, TierFile))
	if err != nil || strings.TrimSpace(string(b)) != "server" {
		t.Fatalf("tier file: got %q %v, want server", b, err)
	}
	a.Close()

	// A restart starts in the last tier the cloud sent, whatever the config says.
	a2 := newTestAgent(t, tierConfig(t, dir, "workstation"))
	defer a2.Close()
	if got := a2.PolicyTier(); got != "server" {
		t.Fatalf("tier after restart: got %q, want server", got)
	}
}

func TestPolicyTierFileDamaged(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, TierFile), []byte("laptop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, tierConfig(t, dir, "server"))
	defer a.Close()
	if got := a.PolicyTier(); got != "server" {
		t.Fatalf("tier with a damaged file: got %q, want server (config)", got)
	}
}
