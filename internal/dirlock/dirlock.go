// Package dirlock makes a data directory belong to one running process: a
// second instance started on the same directory fails at once with a
// message naming the directory, instead of both writing the same files.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// FileName is the lock file inside the directory.
const FileName = ".lock"

// Lock is a held directory lock. The kernel releases it when the process
// exits, however it exits.
type Lock struct{ f *os.File }

// Acquire creates dir if needed and locks it for this process. what names
// the program in the error ("gatehouse-agent").
func Acquire(dir, what string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, syscall.EROFS) || errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("data dir %s is not writable (%v): give %s a writable data directory", dir, err, what)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another running %s: stop it, or give this one another data directory", dir, what)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	return &Lock{f: f}, nil
}

// Release unlocks the directory. Idempotent.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
