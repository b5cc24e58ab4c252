package slots

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fixture struct {
	dir            string
	key            ed25519.PrivateKey
	rootfs         []byte
	kernel, initrd string
	rootfsPath     string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	if err := GenerateKey(filepath.Join(f.dir, "k"), filepath.Join(f.dir, "k.pub")); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.key, err = LoadPrivateKey(filepath.Join(f.dir, "k")); err != nil {
		t.Fatal(err)
	}
	f.rootfs = bytes.Repeat([]byte("ext4 image "), 100000)
	f.rootfsPath = filepath.Join(f.dir, "rootfs.img")
	f.kernel, f.initrd = filepath.Join(f.dir, "vmlinuz"), filepath.Join(f.dir, "initrd.img")
	for p, b := range map[string][]byte{f.rootfsPath: f.rootfs, f.kernel: []byte("kernel"), f.initrd: []byte("initrd")} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) bundle(t *testing.T, version string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := MakeBundle(&b, f.key, version, f.kernel, f.initrd, f.rootfsPath); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// target is an ESP directory with slot A's blessed entry and a file
// standing in for slot B's partition.
func (f *fixture) target(t *testing.T) Target {
	t.Helper()
	esp := ESP{Dir: filepath.Join(t.TempDir(), "esp")}
	if err := esp.Install(A, "1", 0); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(t.TempDir(), "root-b")
	if err := os.WriteFile(dev, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return Target{ESP: esp, Slot: B, Device: dev, Running: "1", BootTries: 3}
}

func TestApplyWritesSlotOnTrial(t *testing.T) {
	f := newFixture(t)
	tg := f.target(t)
	m, err := Apply(bytes.NewReader(f.bundle(t, "2")), f.key.Public().(ed25519.PublicKey), tg)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "2" {
		t.Errorf("version %q, want 2", m.Version)
	}
	if got, _ := os.ReadFile(tg.Device); !bytes.Equal(got, f.rootfs) {
		t.Errorf("slot holds %d bytes, want the %d-byte root image", len(got), len(f.rootfs))
	}
	if got, _ := os.ReadFile(filepath.Join(tg.ESP.KernelDir(B), KernelName)); string(got) != "kernel" {
		t.Errorf("kernel %q", got)
	}
	en, ok, err := tg.ESP.Entry(B)
	if err != nil || !ok {
		t.Fatalf("slot b entry: %v %v", ok, err)
	}
	if en.File != "gatehouse-b+3.conf" || !en.Counting || en.Left != 3 || en.Version != "2" {
		t.Errorf("entry %+v, want gatehouse-b+3.conf on trial with version 2", en)
	}
}

func TestApplyRefuses(t *testing.T) {
	f := newFixture(t)
	good := f.bundle(t, "2")
	_, otherKey, _ := ed25519.GenerateKey(nil)
	for _, tc := range []struct {
		name    string
		bundle  []byte
		key     ed25519.PublicKey
		running string
		want    string
	}{
		{"signed by another key", good, otherKey.Public().(ed25519.PublicKey), "1", ErrBadSignature.Error()},
		{"not newer", good, f.key.Public().(ed25519.PublicKey), "2", ErrNotNewer.Error()},
		{"older", good, f.key.Public().(ed25519.PublicKey), "10", ErrNotNewer.Error()},
		{"payload changed", bytes.Replace(good, []byte("kernel"), []byte("kernal"), 1), f.key.Public().(ed25519.PublicKey), "1", "SHA-256"},
		{"manifest changed", bytes.Replace(good, []byte(`"version": "2"`), []byte(`"version": "9"`), 1), f.key.Public().(ed25519.PublicKey), "1", ErrBadSignature.Error()},
		{"not a bundle", []byte("hello"), f.key.Public().(ed25519.PublicKey), "1", "not a Gatehouse update bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := f.target(t)
			tg.Running = tc.running
			_, err := Apply(bytes.NewReader(tc.bundle), tc.key, tg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if _, ok, _ := tg.ESP.Entry(B); ok {
				t.Errorf("slot b got a boot entry from a refused bundle")
			}
			if en, ok, _ := tg.ESP.Entry(A); !ok || en.Counting {
				t.Errorf("slot a's entry changed: %+v %v", en, ok)
			}
		})
	}
}

func TestEntriesParseBootCounting(t *testing.T) {
	esp := ESP{Dir: t.TempDir()}
	dir := filepath.Join(esp.Dir, "loader", "entries")
	os.MkdirAll(dir, 0o755)
	for name, v := range map[string]string{"gatehouse-a.conf": "1", "gatehouse-b+0-3.conf": "2", "other.conf": "9"} {
		os.WriteFile(filepath.Join(dir, name), []byte("title x\nversion "+v+"\n"), 0o644)
	}
	all, err := esp.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("got %d entries, want 2: %+v", len(all), all)
	}
	for _, e := range all {
		switch e.Slot {
		case A:
			if e.Counting || !e.Good() || e.Version != "1" {
				t.Errorf("a: %+v", e)
			}
		case B:
			if !e.Counting || e.Left != 0 || e.Done != 3 || e.Good() || e.Version != "2" {
				t.Errorf("b: %+v", e)
			}
		}
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"1", "2", -1}, {"2", "1", 1}, {"1.10", "1.9", 1}, {"0.1.135", "0.1.135", 0}, {"3", "", 1}} {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
