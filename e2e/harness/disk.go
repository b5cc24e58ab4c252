package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MountTmpfs mounts a tmpfs of size bytes on dir (created if needed); the
// returned function unmounts it. Needs root.
func MountTmpfs(dir string, size int64) (unmount func() error, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mount tmpfs on %s: %v: %s", dir, err, out)
	}
	return func() error {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			return fmt.Errorf("umount %s: %v: %s", dir, err, out)
		}
		return nil
	}, nil
}

// FsFree is the space left to unprivileged writers on dir's filesystem.
func FsFree(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// Fill grows the file path until its filesystem has at most leave bytes
// free (0: until the filesystem is full), as another program filling the
// disk would.
func Fill(path string, leave int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		free, err := FsFree(filepath.Dir(path))
		if err != nil {
			return err
		}
		if free <= leave {
			return nil
		}
		n := min(int64(len(buf)), max(free-leave, 4096))
		if _, err := f.Write(buf[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return fmt.Errorf("fill %s: %w", path, err)
		}
	}
}

// DiskUsage is the space the files under dir take on disk (allocated
// blocks, as du counts them: sparse files count what they use).
func DiskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}

// WriteSized is Write with each line padded to about size bytes, to fill
// a spool with few lines.
func (w *LogWriter) WriteSized(n, size int) error { return w.writeLines(n, size) }

// StartLive starts the relay and waits until it serves /healthz (alive),
// not /readyz: a relay whose spool is full is alive but not ready.
func (r *Relay) StartLive(ctx context.Context) error {
	if err := r.Start(); err != nil {
		return err
	}
	return WaitFor(ctx, 30*time.Second, r.Name+" alive", func() (bool, error) {
		if !r.Running() {
			return false, fmt.Errorf("%s exited: %v\n%s", r.Name, r.ExitErr(), r.Tail(30))
		}
		code, _, err := r.get(ctx, "/healthz")
		return err == nil && code == http.StatusOK, err
	})
}

// Ready fetches /readyz: whether it answered 200, and its body.
func (r *Relay) Ready(ctx context.Context) (bool, string, error) {
	code, body, err := r.get(ctx, "/readyz")
	return code == http.StatusOK, body, err
}

func (r *Relay) get(ctx context.Context, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.AdminAddr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}
