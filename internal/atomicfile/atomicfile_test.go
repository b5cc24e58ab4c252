package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteAndReplace(t *testing.T) {
	for name, write := range map[string]func(string, []byte, os.FileMode) error{"Write": Write, "Replace": Replace} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "state")
			for _, content := range []string{"first", "second, longer"} {
				if err := write(p, []byte(content), 0o640); err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if string(b) != content {
					t.Errorf("got %q, want %q", b, content)
				}
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o640 {
				t.Errorf("mode: got %v, want 0640", fi.Mode().Perm())
			}
			des, _ := os.ReadDir(dir)
			if len(des) != 1 {
				t.Errorf("directory holds %d entries, want 1 (no temporary file left)", len(des))
			}
		})
	}
	if err := Replace(filepath.Join(t.TempDir(), "missing", "x"), []byte("x"), 0o600); err == nil {
		t.Error("Replace into a missing directory: got nil error")
	}
}
