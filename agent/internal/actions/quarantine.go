package actions

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
)

// QuarantineEntry is one quarantined file in <data_dir>/quarantine/index.json.
type QuarantineEntry struct {
	OriginalPath  string      `json:"original_path"`
	Mode          fs.FileMode `json:"mode"`
	UID           int         `json:"uid"`
	GID           int         `json:"gid"`
	Size          int64       `json:"size"`
	SHA256        string      `json:"sha256"`
	QuarantinedAt time.Time   `json:"quarantined_at"`
}

func (e *Executor) quarantineDir() string { return filepath.Join(e.deps.DataDir, "quarantine") }

func (e *Executor) readIndex() (map[string]QuarantineEntry, error) {
	idx := map[string]QuarantineEntry{}
	b, err := os.ReadFile(filepath.Join(e.quarantineDir(), "index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read quarantine index: %w", err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("decode quarantine index: %w", err)
	}
	return idx, nil
}

func (e *Executor) writeIndex(idx map[string]QuarantineEntry) error {
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(e.quarantineDir(), "index.json"), b, 0o600); err != nil {
		return fmt.Errorf("write quarantine index: %w", err)
	}
	return nil
}

// quarantine moves a regular file into <data_dir>/quarantine/<id> (0600)
// and records its hash, original path, mode and owner.
func (e *Executor) quarantine(path string) Result {
	fi, err := os.Lstat(path)
	if err != nil {
		return fail("quarantine %s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fail("quarantine %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if dd, err := filepath.Abs(e.deps.DataDir); err == nil && strings.HasPrefix(path, dd+string(filepath.Separator)) {
		return fail("quarantine %s: refusing a file of the agent's own data dir", path)
	}
	if err := os.MkdirAll(e.quarantineDir(), 0o700); err != nil {
		return fail("quarantine %s: %v", path, err)
	}
	idx, err := e.readIndex()
	if err != nil {
		return fail("quarantine %s: %v", path, err)
	}
	id := newID()
	dst := filepath.Join(e.quarantineDir(), id)
	if err := moveFile(path, dst, 0o600); err != nil {
		return fail("quarantine %s: %v", path, err)
	}
	sum, size, err := hashFile(dst)
	if err != nil {
		return fail("quarantine %s: hash: %v", path, err)
	}
	ent := QuarantineEntry{OriginalPath: path, Mode: fi.Mode().Perm() | fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky),
		Size: size, SHA256: sum, QuarantinedAt: e.deps.Clock.Now().UTC()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ent.UID, ent.GID = int(st.Uid), int(st.Gid)
	}
	idx[id] = ent
	if err := e.writeIndex(idx); err != nil {
		// Without an index entry the file could not be restored: put it back.
		if rerr := moveFile(dst, path, fi.Mode().Perm()); rerr != nil {
			return fail("quarantine %s: %v; and putting it back failed: %v (file is %s)", path, err, rerr, dst)
		}
		return fail("quarantine %s: %v", path, err)
	}
	out, _ := json.Marshal(map[string]any{"quarantine_id": id, "sha256": sum, "path": path, "size": size})
	return Result{OK: true, Output: out}
}

// restore moves a quarantined file back after checking its hash.
func (e *Executor) restore(id string) Result {
	idx, err := e.readIndex()
	if err != nil {
		return fail("restore %s: %v", id, err)
	}
	ent, ok := idx[id]
	if !ok {
		return fail("restore %s: no such quarantined file", id)
	}
	src := filepath.Join(e.quarantineDir(), id)
	sum, _, err := hashFile(src)
	if err != nil {
		return fail("restore %s: %v", id, err)
	}
	if sum != ent.SHA256 {
		return fail("restore %s: quarantined file changed: sha256 %s, want %s", id, sum, ent.SHA256)
	}
	if _, err := os.Lstat(ent.OriginalPath); err == nil {
		return fail("restore %s: %s exists: refusing to overwrite it", id, ent.OriginalPath)
	}
	if err := os.MkdirAll(filepath.Dir(ent.OriginalPath), 0o755); err != nil {
		return fail("restore %s: %v", id, err)
	}
	if err := moveFile(src, ent.OriginalPath, ent.Mode.Perm()); err != nil {
		return fail("restore %s: %v", id, err)
	}
	os.Lchown(ent.OriginalPath, ent.UID, ent.GID)
	os.Chmod(ent.OriginalPath, ent.Mode)
	delete(idx, id)
	if err := e.writeIndex(idx); err != nil {
		return fail("restore %s: file restored to %s but %v", id, ent.OriginalPath, err)
	}
	out, _ := json.Marshal(map[string]any{"quarantine_id": id, "sha256": sum, "path": ent.OriginalPath})
	return Result{OK: true, Output: out}
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// moveFile renames src to dst (mode perm), or copies, fsyncs and removes
// src across file systems. dst must not exist.
func moveFile(src, dst string, perm fs.FileMode) error {
	if err := os.Chmod(src, perm); err != nil {
		return err
	}
	err := os.Rename(src, dst)
	if err == nil {
		return syncDir(filepath.Dir(dst))
	}
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return err
	}
	return os.Remove(src)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
