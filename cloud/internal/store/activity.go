package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Keys:
//   al/<tenant>/<agent id>   the agent's activity: last seen (cloud clock,
//                            unix ms BE), newest batch created (agent clock,
//                            unix ms BE)
//
// Activity is high-churn: it is written once per agent per upload
// transaction, in the transaction that stores the batches, not per event
// and not in the agent record (which stays write-once).

// activity is what one upload transaction learned about an agent.
type activity struct {
	seenMs  int64 // the cloud's time of the upload
	eventMs int64 // the newest batch with events, agent's created_unix_ms; 0: none
}

func (a *activity) add(seen time.Time, createdMs int64, events int) {
	a.seenMs = seen.UnixMilli()
	if events > 0 && createdMs > a.eventMs {
		a.eventMs = createdMs
	}
}

// recordActivity merges the upload's activity into the stored one: the
// latest of each time wins, so batches drained late from a relay's spool
// never move an agent's last event back.
func recordActivity(txn *badger.Txn, tenant string, acts map[string]*activity) error {
	for id, a := range acts {
		key := k("al", tenant, id)
		old, err := readActivity(txn, key)
		if err != nil {
			return err
		}
		old.seenMs = max(old.seenMs, a.seenMs)
		old.eventMs = max(old.eventMs, a.eventMs)
		var b [16]byte
		binary.BigEndian.PutUint64(b[0:], uint64(old.seenMs))
		binary.BigEndian.PutUint64(b[8:], uint64(old.eventMs))
		if err := txn.Set(key, b[:]); err != nil {
			return err
		}
	}
	return nil
}

func readActivity(txn *badger.Txn, key []byte) (activity, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return activity{}, nil
	}
	if err != nil {
		return activity{}, err
	}
	var a activity
	err = item.Value(func(b []byte) error {
		if len(b) != 16 {
			return fmt.Errorf("agent activity %q: %d bytes, want 16", key, len(b))
		}
		a.seenMs = int64(binary.BigEndian.Uint64(b[0:]))
		a.eventMs = int64(binary.BigEndian.Uint64(b[8:]))
		return nil
	})
	return a, err
}

// fillActivity sets a's LastSeenAt and LastEventAt from the store.
func fillActivity(txn *badger.Txn, a *Agent) error {
	act, err := readActivity(txn, k("al", a.TenantID, a.ID))
	if err != nil {
		return err
	}
	if act.seenMs > 0 {
		a.LastSeenAt = time.UnixMilli(act.seenMs).UTC()
	}
	if act.eventMs > 0 {
		a.LastEventAt = time.UnixMilli(act.eventMs).UTC()
	}
	return nil
}
