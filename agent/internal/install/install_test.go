package install

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/agent/internal/config"
	"github.com/gatehouse/gatehouse/agent/internal/isolate"
)

// binary copies the test binary (an ELF file) beside a config.yaml.
func binary(t *testing.T, startCfg string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "gatehouse-agent")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if startCfg != "" {
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(startCfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestInstallStatusUpdateUninstall(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	o := Options{
		Root: root, Binary: binary(t, "policy_tier: server\nprocess:\n  hashes_excluded_paths: [\"/usr/lib/\"]\n"),
		RegistrationKey: "KEY1", Relay: "relay.example:443", Proxy: "http://u:p@proxy:3128", DisableAutoUpdate: true,
		RelayFingerprint: strings.Repeat("ab", 32),
	}
	if err := Install(ctx, o); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(root, ConfigPath))
	if err != nil {
		t.Fatalf("installed config does not load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"relays", strings.Join(cfg.Relays, ","), "relay.example:443"},
		{"registration_key", cfg.RegistrationKey, "KEY1"},
		{"proxy", cfg.Proxy, "http://u:p@proxy:3128"},
		{"auto_update", cfg.AutoUpdate, false},
		{"relay_fingerprint", cfg.RelayFingerprint, strings.Repeat("ab", 32)},
		{"policy_tier (from config.yaml beside the binary)", cfg.PolicyTier, "server"},
		{"hashes_excluded_paths", strings.Join(cfg.Process.HashesExcludedPaths, ","), "/usr/lib/"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	st, err := Status(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(st, "present") != 3 {
		t.Errorf("status after install:\n%s", st)
	}

	// Update from a file keeps the configuration.
	before, _ := os.ReadFile(filepath.Join(root, ConfigPath))
	newBin := binary(t, "")
	if err := Update(ctx, o, newBin); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(root, ConfigPath))
	if string(before) != string(after) {
		t.Error("update changed the configuration")
	}
	if err := Update(ctx, o, filepath.Join(root, ConfigPath)); err == nil {
		t.Error("update with a non-ELF file: got nil error")
	}

	// Isolation pins left by an isolated agent (in a --root install, plain
	// files where bpffs would be) go too.
	pins := filepath.Join(root, isolate.DefaultPinDir)
	if err := os.MkdirAll(pins, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pins, "link_egress"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Uninstall(ctx, o); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{BinaryPath, ConfigPath, UnitPath, DataDir, isolate.DefaultPinDir} {
		if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s still there after uninstall (err %v)", p, err)
		}
	}
	st, _ = Status(ctx, o)
	if strings.Count(st, "missing") != 3 {
		t.Errorf("status after uninstall:\n%s", st)
	}
}

func TestInstallNeedsKeyAndRelay(t *testing.T) {
	if err := Install(context.Background(), Options{Root: t.TempDir(), Binary: binary(t, ""), Relay: "r:1"}); err == nil {
		t.Error("install without a key: got nil error")
	}
}

func TestUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt install systemd): skipped")
	}
	dir := t.TempDir()
	bin := binary(t, "")
	// verify checks that ExecStart exists: point it at a real binary.
	unit := strings.Replace(Unit(), "ExecStart="+BinaryPath, "ExecStart="+bin, 1)
	p := filepath.Join(dir, UnitName)
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", p).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
