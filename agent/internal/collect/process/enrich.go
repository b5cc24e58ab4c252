package process

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Small bounded caches: the agent must stay small, so a full cache is
// cleared rather than grown.
const (
	maxHashCache = 2048
	maxUserCache = 512
)

type fileKey struct {
	dev, ino   uint64
	mtime      int64
	size       int64
	mtimeNanos int64
}

// hasher computes executables' SHA-256, cached by (dev, inode, mtime, size).
type hasher struct {
	excluded []string
	maxBytes int64

	mu    sync.Mutex
	cache map[fileKey]string
	hits  uint64
}

func newHasher(excluded []string, maxBytes int64) *hasher {
	return &hasher{excluded: excluded, maxBytes: maxBytes, cache: map[fileKey]string{}}
}

// Excluded reports whether path matches one of the excluded paths: a
// directory prefix ("/usr/lib/") or a filepath.Match glob.
func Excluded(patterns []string, path string) bool {
	for _, p := range patterns {
		if strings.HasSuffix(p, "/") && strings.HasPrefix(path, p) {
			return true
		}
		if p == path {
			return true
		}
		if ok, _ := filepath.Match(p, path); ok {
			return true
		}
	}
	return false
}

// hash returns the SHA-256 of the file open as f (or at path when f fails),
// or "" when excluded, too large or unreadable.
func (h *hasher) hash(open, path string) (string, error) {
	if Excluded(h.excluded, path) {
		return "", nil
	}
	// Raw open and fstat: a cache hit (nearly every exec) costs three
	// system calls; os.Open would add four more to try the netpoller.
	fd, err := unix.Open(open, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			return "", fmt.Errorf("hash %s: %w", path, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	if h.maxBytes > 0 && st.Size > h.maxBytes {
		unix.Close(fd)
		return "", nil
	}
	k := fileKey{dev: st.Dev, ino: st.Ino, mtime: st.Mtim.Sec, mtimeNanos: st.Mtim.Nsec, size: st.Size}
	h.mu.Lock()
	if s, ok := h.cache[k]; ok {
		h.hits++
		h.mu.Unlock()
		unix.Close(fd)
		return s, nil
	}
	h.mu.Unlock()
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	s := hex.EncodeToString(sum.Sum(nil))
	h.mu.Lock()
	if len(h.cache) >= maxHashCache {
		clear(h.cache)
	}
	h.cache[k] = s
	h.mu.Unlock()
	return s, nil
}

// users maps uids to names through os/user, cached.
type users struct {
	mu    sync.Mutex
	names map[uint32]string
}

func (u *users) name(uid uint32) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if n, ok := u.names[uid]; ok {
		return n
	}
	if u.names == nil || len(u.names) >= maxUserCache {
		u.names = map[uint32]string{}
	}
	id := strconv.FormatUint(uint64(uid), 10)
	n := ""
	if usr, err := user.LookupId(id); err == nil {
		n = usr.Username
	} else {
		n = getentUser(id)
	}
	u.names[uid] = n
	return n
}

// getentUser asks NSS (sssd, LDAP, winbind) through getent(1) for a uid
// /etc/passwd does not have: the agent is built without cgo, so os/user
// reads /etc/passwd only. Misses are rare and cached by the caller.
func getentUser(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "getent", "passwd", id).Output()
	if err != nil {
		return ""
	}
	name, _, ok := strings.Cut(string(out), ":")
	if !ok {
		return ""
	}
	return name
}

// cmdline reads /proc/<pid>/cmdline; the process may be gone already.
func cmdline(proc string, pid uint32) []string {
	b, err := os.ReadFile(filepath.Join(proc, strconv.FormatUint(uint64(pid), 10), "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	b = []byte(strings.TrimSuffix(string(b), "\x00"))
	return strings.Split(string(b), "\x00")
}

// QuoteArgs joins args into a shell-like command line.
func QuoteArgs(args []string) string {
	var sb strings.Builder
	for i, a := range args {
		if i > 0 {
			sb.WriteByte(' ')
		}
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`") {
			sb.WriteString(strconv.Quote(a))
		} else {
			sb.WriteString(a)
		}
	}
	return sb.String()
}
