package logtail

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
)

// headMax is how much of a file's beginning is hashed to tell it from a
// later file that got the same inode: a file deleted while the agent was
// stopped frees its inode, and a new log file may get it at once.
const headMax = 1024

// hashHead returns the SHA-256 of the first n bytes of fh.
func hashHead(fh *os.File, n int) (string, error) {
	h := sha256.New()
	if m, err := io.Copy(h, io.NewSectionReader(fh, 0, int64(n))); err != nil || m != int64(n) {
		return "", fmt.Errorf("hash the first %d bytes: read %d: %v", n, m, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// updateHead hashes the beginning of f while it is shorter than headMax.
func (t *Tailer) updateHead(f *followed) {
	n := int(min(f.size, headMax))
	if n <= f.headLen {
		return
	}
	if sum, err := hashHead(f.f, n); err == nil {
		f.headLen, f.headSum = n, sum
	}
}

// headDiffers reports whether fh does not begin as recorded in h: it is
// not the file that was checkpointed under its inode.
func (t *Tailer) headDiffers(fh *os.File, h head) bool {
	sum, err := hashHead(fh, h.Len)
	return err == nil && sum != h.Sum
}

type head struct {
	Len int
	Sum string
}

// lostWhileStopped counts and logs the unread rest of a file that was
// removed, truncated or replaced while the agent was stopped; a file read to
// its end before the stop lost nothing. Without a recorded size showing
// unread bytes, only a removal (certain loss of whatever came after the
// checkpoint) is reported.
func (t *Tailer) lostWhileStopped(what string, c ring.Checkpoint, always bool) {
	if fc, ok := t.finished[c.ID()]; ok && !c.After(fc.Checkpoint) {
		return
	}
	lost := "unknown (the file's size was not recorded)"
	if size, ok := t.sizes[c.ID()]; ok && size > c.Offset {
		lost = fmt.Sprintf("at least %d", size-c.Offset)
	} else if !always {
		t.log.Info("log file "+what+" while the agent was stopped, reading it from the start", "path", c.Path, "offset", c.Offset)
		return
	} else if ok {
		lost = "unknown (everything up to the last recorded size was read; anything written after it is lost)"
	}
	t.lost.Add(1)
	t.log.Warn("log file "+what+" while the agent was stopped: its lines after the checkpoint are lost; keep rotated files longer (logrotate delaycompress, a larger rotate count) or keep the agent running",
		"path", c.Path, "offset", c.Offset, "lost_bytes", lost)
}
