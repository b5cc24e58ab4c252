package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// Every binary started against a fault it cannot run with (its port taken,
// its data directory held by another running instance, read-only, or a
// regular file) exits non-zero at once, does not panic, and says what is
// wrong and where: the port or the path, and the cause.
func TestStartupFailuresNameTheCause(t *testing.T) {
	bin := binaries(t)
	for _, prog := range []string{"gatehouse-cloud", "gatehouse-relay", "gatehouse-agent"} {
		t.Run(prog, func(t *testing.T) {
			faults := []string{"port in use", "data dir locked", "data dir read-only", "data dir is a file"}
			if prog == "gatehouse-agent" {
				faults = faults[1:] // the agent listens on no port
			}
			for _, fault := range faults {
				t.Run(strings.ReplaceAll(fault, " ", "-"), func(t *testing.T) {
					s := harness.NewStartupCase(t.TempDir(), bin, prog)
					var want []string
					switch fault {
					case "port in use":
						ln, err := net.Listen("tcp", "127.0.0.1:0")
						if err != nil {
							t.Fatal(err)
						}
						t.Cleanup(func() { ln.Close() })
						s.Listen = ln.Addr().String()
						want = []string{s.Listen, "address already in use"}
					case "data dir locked":
						first := s.Proc("first")
						if err := first.Start(); err != nil {
							t.Fatal(err)
						}
						t.Cleanup(func() { first.Stop(30 * time.Second) })
						// A second instance must not take the first one's
						// ports: only the directory is shared.
						if err := s.NewPorts(); err != nil {
							t.Fatal(err)
						}
						if err := harness.WaitFor(context.Background(), time.Minute, prog+" holds its data dir", func() (bool, error) {
							if !first.Running() {
								return false, fmt.Errorf("first %s exited: %v\n%s", prog, first.ExitErr(), first.Tail(20))
							}
							return s.Started(first), nil
						}); err != nil {
							t.Fatal(err)
						}
						want = []string{s.DataDir, "in use by another running " + prog}
					case "data dir read-only":
						if os.Geteuid() != 0 {
							t.Skip("needs root for a read-only bind mount (root ignores mode bits)")
						}
						if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
							t.Fatal(err)
						}
						readOnlyMount(t, s.DataDir)
						want = []string{s.DataDir, "read-only file system"}
					case "data dir is a file":
						if err := os.WriteFile(s.DataDir, []byte("not a directory\n"), 0o600); err != nil {
							t.Fatal(err)
						}
						want = []string{s.DataDir, "not a directory"}
					}
					out, code := s.RunToExit(t, 2*time.Minute)
					if code == 0 {
						t.Errorf("%s exited 0 with %s; want a failure", prog, fault)
					}
					if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
						t.Errorf("%s panicked with %s:\n%s", prog, fault, out)
					}
					for _, w := range want {
						if !strings.Contains(out, w) {
							t.Errorf("%s with %s: output does not name %q:\n%s", prog, fault, w, out)
						}
					}
					t.Logf("%s, %s: exit %d: %s", prog, fault, code, strings.TrimSpace(out))
				})
			}
		})
	}
}

// readOnlyMount makes dir read-only for root too, until the test ends.
func readOnlyMount(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
		t.Fatalf("bind mount %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s read-only: %v: %s", dir, err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "probe"), nil, 0o600); err == nil || !errors.Is(err, os.ErrPermission) && !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("%s still writable after a read-only remount (%v)", dir, err)
	}
}

// A value of the wrong type in a config file is refused with the key's
// full path and line, by every binary, so a key that exists in several
// sections (max_bytes, listen) is found at once.
func TestConfigTypeErrorNamesTheKey(t *testing.T) {
	bin := binaries(t)
	for _, tc := range []struct {
		prog, yaml string
		args       []string
		want       string
	}{
		{"gatehouse-relay", "name: r1\nuplink:\n  max_upload_bytes: 4096\n  max_backoff: soon\n", []string{"--config"}, "line 4: uplink.max_backoff: cannot unmarshal !!str `soon` into time.Duration"},
		{"gatehouse-cloud", "log:\n  level: info\nlisten: [1, 2]\n", []string{"--config"}, "line 3: listen: cannot unmarshal !!seq into string"},
		{"gatehouse-agent", "ring:\n  max_bytes: lots\n", []string{"run", "--config"}, "line 2: ring.max_bytes: cannot unmarshal !!str `lots` into int64"},
	} {
		t.Run(tc.prog, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(cfg, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, filepath.Join(bin, tc.prog), append(tc.args, cfg)...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Errorf("%s with a bad config: got %v, want a non-zero exit", tc.prog, err)
			}
			if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), cfg) {
				t.Errorf("%s: output does not name the file and %q:\n%s", tc.prog, tc.want, out)
			}
			t.Logf("%s: %s", tc.prog, strings.TrimSpace(string(out)))
		})
	}
}
