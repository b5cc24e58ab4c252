//go:build unix

package logtail

import (
	"fmt"
	"os"
	"syscall"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
)

func fileID(fi os.FileInfo) (ring.FileID, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ring.FileID{}, fmt.Errorf("%s: no device/inode", fi.Name())
	}
	return ring.FileID{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, nil //nolint:unconvert // types differ by OS
}
