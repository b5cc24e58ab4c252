package cluster

import (
	"fmt"
	"log/slog"
	"os"

	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// logStore is raft-wal plus its meta store, which WAL.Close leaves open.
type logStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

// Close closes the WAL and its meta store (releasing the file lock).
func (l *logStore) Close() error {
	err := l.WAL.Close()
	if merr := l.meta.Close(); err == nil {
		err = merr
	}
	return err
}

// openLogStore opens the Raft log and stable store: hashicorp/raft-wal
// (segment files + a bolt meta store, fsync on every append). The choice and
// its numbers are in docs/cluster.md (BenchmarkLogStore).
func openLogStore(dir string, segmentBytes int, log *slog.Logger) (*logStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft log dir %s: %w", dir, err)
	}
	meta := &metadb.BoltMetaDB{}
	size := wal.DefaultSegmentSize
	if segmentBytes > 0 {
		size = segmentBytes
	}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithLogger(newHCLog(log, "raft-wal")), wal.WithSegmentSize(size))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	return &logStore{WAL: w, meta: meta}, nil
}
