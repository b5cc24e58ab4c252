package cluster

import (
	"fmt"
	"log/slog"
	"os"

	wal "github.com/hashicorp/raft-wal"
)

// openLogStore opens the Raft log and stable store: hashicorp/raft-wal
// (segment files + a bolt meta store, fsync on every append). The choice and
// its numbers are in docs/cluster.md (BenchmarkLogStore).
func openLogStore(dir string, log *slog.Logger) (*wal.WAL, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft log dir %s: %w", dir, err)
	}
	w, err := wal.Open(dir, wal.WithLogger(newHCLog(log, "raft-wal")))
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	return w, nil
}
