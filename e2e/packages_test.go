package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

// The packaged units' `systemd-analyze security` exposure stays where
// docs/appliance.md reports it (lower is better; 10 is a unit with no
// hardening at all).
func TestPackagedUnitsHardened(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("needs systemd-analyze (systemd) to score the units")
	}
	for _, tc := range []struct {
		unit string
		max  float64
	}{
		{"gatehouse-relay", 2.0},
		{"gatehouse-cloud", 2.0},
		{"gatehouse-agent", 7.0}, // root with a bounded set of capabilities: it watches the whole host
	} {
		path := filepath.Join("..", "appliance-image", "packages", tc.unit, tc.unit+".service")
		got, err := harness.SecurityExposure(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: exposure %.1f", tc.unit, got)
		if got > tc.max {
			t.Errorf("%s: exposure %.1f, want <= %.1f", tc.unit, got, tc.max)
		}
	}
}

// Install, upgrade, remove and purge the three packages in a Debian 12
// root (the appliance's base): the units are enabled, an edited conffile
// survives the upgrade and the remove, purge takes configuration and state.
func TestPackagesInstallUpgradePurge(t *testing.T) {
	base := harness.ApplianceBase(t)
	bin, err := harness.BuildBinaries(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	debs := t.TempDir()
	for _, v := range []string{"0.1.1", "0.1.2"} {
		if out, err := exec.Command(filepath.Join("..", "appliance-image", "packages", "build.sh"), bin, filepath.Join(debs, v), v).CombinedOutput(); err != nil {
			t.Fatalf("build packages %s: %v\n%s", v, err, out)
		}
	}
	root := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("cp", "-a", base, root).CombinedOutput(); err != nil {
		t.Fatalf("copy base: %v\n%s", err, out)
	}
	chroot := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("chroot", append([]string{root}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("chroot %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	exists := func(p string) bool { _, err := os.Lstat(filepath.Join(root, p)); return err == nil }
	install := func(v, pkg string) {
		t.Helper()
		deb := fmt.Sprintf("%s_%s_amd64.deb", pkg, v)
		if out, err := exec.Command("cp", filepath.Join(debs, v, deb), filepath.Join(root, "tmp")).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		chroot("dpkg", "-i", "/tmp/"+deb)
	}
	for _, tc := range []struct{ pkg, conf string }{
		{"gatehouse-relay", "relay.yaml"},
		{"gatehouse-agent", "agent.yaml"},
		{"gatehouse-cloud", "cloud.yaml"},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			conf := "/etc/gatehouse/" + tc.conf
			wants := "/etc/systemd/system/multi-user.target.wants/" + tc.pkg + ".service"
			install("0.1.1", tc.pkg)
			for _, p := range []string{"/usr/bin/" + tc.pkg, "/lib/systemd/system/" + tc.pkg + ".service", conf, wants} {
				if !exists(p) {
					t.Errorf("after install: %s missing", p)
				}
			}
			edited := "# edited by the operator\n"
			f, err := os.OpenFile(filepath.Join(root, conf), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(edited)
			f.Close()
			install("0.1.2", tc.pkg)
			if got := chroot("dpkg-query", "-W", "-f", "${Version}", tc.pkg); got != "0.1.2" {
				t.Errorf("after upgrade: version %q, want 0.1.2", got)
			}
			if b, _ := os.ReadFile(filepath.Join(root, conf)); !strings.HasSuffix(string(b), edited) {
				t.Errorf("after upgrade: the operator's edit of %s is gone", conf)
			}
			state := "/var/lib/private/" + tc.pkg
			if err := os.MkdirAll(filepath.Join(root, state, "db"), 0o700); err != nil {
				t.Fatal(err)
			}
			chroot("dpkg", "-r", tc.pkg)
			if exists("/usr/bin/" + tc.pkg) {
				t.Errorf("after remove: binary still there")
			}
			if !exists(conf) || !exists(state) {
				t.Errorf("after remove: configuration or state gone (remove keeps both)")
			}
			chroot("dpkg", "-P", tc.pkg)
			for _, p := range []string{conf, state, wants} {
				if exists(p) {
					t.Errorf("after purge: %s still there", p)
				}
			}
		})
	}
}
