// Package atomicfile replaces small state files (keys, checkpoints, status)
// so that a reader or a crash sees either the old content or the new, whole.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write writes b to path through a synced temporary file in the same
// directory, renames it into place and syncs the directory.
func Write(path string, b []byte, perm os.FileMode) error {
	return write(path, b, perm, true)
}

// Replace replaces path with b atomically (a reader sees the old or the new
// content, never a mix) but not durably: no fsync, so after a power cut the
// old content may come back. For files rewritten often whose loss is
// harmless, such as a status snapshot.
func Replace(path string, b []byte, perm os.FileMode) error {
	return write(path, b, perm, false)
}

func write(path string, b []byte, perm os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	// The rename is durable only once the directory entry is on disk: a
	// caller that acts on the new content (credentials, a checkpoint) must
	// know when it is not.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory of %s: %w", path, err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("sync directory of %s: %w", path, err)
	}
	return nil
}
