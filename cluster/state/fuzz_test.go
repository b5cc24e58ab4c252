package state

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzApplyEntry feeds the FSM arbitrary log entries (a forwarded write
// carries a command type and body chosen by the peer).
func FuzzApplyEntry(f *testing.F) {
	f.Add([]byte{byte(CmdRegisterAgent), 0x0a, 0x01, 0x61, 0x1a, 0x01, 0x74})
	f.Fuzz(func(t *testing.T, b []byte) {
		fs := newTestFSM()
		fs.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: b})
	})
}

// FuzzSnapshotRestore feeds the snapshot reader arbitrary bytes.
func FuzzSnapshotRestore(f *testing.F) {
	f.Add([]byte{0x04, 0x0a, 0x02, 0x08, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = readSnapshot(bytes.NewReader(b))
	})
}
