// Package store keeps the cloud tier's state in Badger: tenants, sites,
// groups, relays, agents, registration keys, enrollment tokens and the
// events relays upload. Every record carries its tenant; every lookup that
// serves a tenant is scoped by it.
//
// Writes are serialised by one mutex (the cloud is an appliance-sized single
// writer), so read-modify-write counters never meet a transaction conflict,
// and every commit is fsynced (SyncWrites) before it returns.
package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/jonboulle/clockwork"
)

// Options configure a Store.
type Options struct {
	// Dir is the data directory; the database lives in Dir/db.
	Dir    string
	Logger *slog.Logger
	// Clock gives creation times and expiry; nil: the real clock.
	Clock clockwork.Clock
	// MaxBatchesPerTxn, when > 0,, caps the number of batches per upload
	// transaction (tests use it to exercise the split path).
	MaxBatchesPerTxn int
}

// Store is the cloud's durable state.
type Store struct {
	db  *badger.DB
	log *slog.Logger
	now func() time.Time

	maxPerTxn int

	wmu sync.Mutex // serialises update transactions

	changedMu sync.Mutex
	changed   chan struct{} // closed and replaced at every control change

	seenMu   sync.Mutex
	lastSeen map[string]time.Time // relay id -> last persisted last_seen

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store under opts.Dir/db.
func Open(opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	dir := filepath.Join(opts.Dir, "db")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create store dir %s: %w", dir, err)
	}
	bo := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithValueThreshold(64 << 10).
		WithNumCompactors(2).
		WithLogger(badgerLogger{opts.Logger.With("component", "badger")})
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return &Store{
		db:        db,
		log:       opts.Logger,
		now:       opts.Clock.Now,
		maxPerTxn: opts.MaxBatchesPerTxn,
		changed:   make(chan struct{}),
		lastSeen:  make(map[string]time.Time),
	}, nil
}

// Close closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
		}
	})
	return s.closeErr
}

// update runs fn in a serialised, durable read-write transaction.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.db.IsClosed() {
		return ErrClosed
	}
	return s.db.Update(fn)
}

func (s *Store) view(fn func(txn *badger.Txn) error) error {
	if s.db.IsClosed() {
		return ErrClosed
	}
	return s.db.View(fn)
}

// Key layout. IDs are generated here (prefix + hex) or are hex agent ids, so
// they never contain the "/" separator.
func k(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, '/')
		}
		b = append(b, p...)
	}
	return b
}

func prefix(parts ...string) []byte { return append(k(parts...), '/') }

func be64(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return string(b[:])
}

func newID(prefix string) string {
	var b [8]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func getJSON(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func setJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set(key, b)
}

func exists(txn *badger.Txn, key []byte) (bool, error) {
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// listJSON decodes every value under prefix p, in key order.
func listJSON[T any](txn *badger.Txn, p []byte) ([]T, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: p, PrefetchValues: true, PrefetchSize: 100})
	defer it.Close()
	out := []T{}
	for it.Seek(p); it.ValidForPrefix(p); it.Next() {
		var v T
		if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &v) }); err != nil {
			return nil, fmt.Errorf("decode %q: %w", it.Item().Key(), err)
		}
		out = append(out, v)
	}
	return out, nil
}

// getCounter reads a big-endian uint64 counter (0 when absent).
func getCounter(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = item.Value(func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("counter %q: %d bytes", key, len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, err
}

func addCounter(txn *badger.Txn, key []byte, delta uint64) (uint64, error) {
	v, err := getCounter(txn, key)
	if err != nil {
		return 0, err
	}
	v += delta
	return v, txn.Set(key, []byte(be64(v)))
}

// badgerLogger adapts Badger's printf logger to slog.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug(trim(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Debug(trim(fmt.Sprintf(f, a...))) }

func trim(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}
