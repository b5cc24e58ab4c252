package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// The spool watches the free space of its filesystem (statfs) and refuses
// batches with SPOOL_FULL while taking one would leave less than
// min_free_bytes. It also keeps a reserve file ("ballast") of a few
// memtables: Badger writes its index through mmap, where running out of
// space is SIGBUS, so when something else fills the disk the spool deletes
// the reserve and Badger has room to finish its writes, to start, and to
// record deliveries (which free segments) until space comes back.

// ErrDiskFull is returned instead of writing the index when its filesystem
// has less than the index needs: Badger writes through mmap, where a full
// disk is a crash, not an error.
var ErrDiskFull = errors.New("spool filesystem full")

type fsSpace struct {
	free int64 // available to unprivileged writers
	size int64
}

func statFS(dir string) (fsSpace, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fsSpace{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return fsSpace{free: int64(st.Bavail) * int64(st.Bsize), size: int64(st.Blocks) * int64(st.Bsize)}, nil
}

// isNoSpace reports whether err means the filesystem (or quota) is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, ErrDiskFull)
}

// ballast is the reserve file.
type ballast struct {
	path    string
	size    int64
	present bool
}

func newBallast(path string, size int64) *ballast {
	st, err := os.Stat(path)
	return &ballast{path: path, size: size, present: err == nil && st.Size() >= size}
}

// create allocates the reserve (blocks, not a sparse file).
func (b *ballast) create() error {
	f, err := os.OpenFile(b.path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, b.size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		_, err = f.WriteAt(make([]byte, b.size), 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(b.path)
		return fmt.Errorf("create spool reserve %s: %w", b.path, err)
	}
	b.present = true
	return nil
}

func (b *ballast) release() error {
	if err := os.Remove(b.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("release spool reserve %s: %w", b.path, err)
	}
	b.present = false
	return nil
}

// diskUsage is what the files under dir take on disk: allocated blocks, so
// sparse (preallocated, mmapped) Badger files count what they use.
func diskUsage(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // removed while we walked
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) == nil {
			total += st.Blocks * 512
		}
		return nil
	})
	return total
}
