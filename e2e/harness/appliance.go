package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// ApplianceDir is the appliance build directory (appliance-image/_build),
// from GATEHOUSE_APPLIANCE as `make appliance-test` sets it; the tests that
// need it skip without it, saying how to run them.
func ApplianceDir(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot, network namespaces, tap devices)")
	}
	dir := os.Getenv("GATEHOUSE_APPLIANCE")
	if dir == "" {
		t.Skip("set GATEHOUSE_APPLIANCE to appliance-image/_build (make appliance-test builds the image and runs this)")
	}
	return dir
}

// ApplianceBase is the cached Debian root the image is made from.
func ApplianceBase(t testing.TB) string {
	t.Helper()
	base := filepath.Join(ApplianceDir(t), "base")
	if _, err := os.Stat(filepath.Join(base, ".done")); err != nil {
		t.Fatalf("no appliance base in %s: run make -C appliance-image base (as root)", base)
	}
	return base
}

var exposureRe = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// SecurityExposure is `systemd-analyze security`'s overall exposure of a
// unit file, scored offline (no running systemd needed).
func SecurityExposure(unitFile string) (float64, error) {
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", unitFile).CombinedOutput()
	m := exposureRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("systemd-analyze security %s: %v\n%s", unitFile, err, out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
