package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// Until 0ada000 the spool also held the agent registry, the offline
// registrations to reconcile and the last control poll (key kinds a, p and
// k). They now live in the site's replicated state; a data directory from
// then is read once by LegacyRegistry, moved by the relay, and its keys
// dropped by DropLegacyRegistry.

// LegacyAgent is an agent record as the spool stored it (JSON).
type LegacyAgent struct {
	AgentID      string    `json:"agent_id"`
	TenantID     string    `json:"tenant_id"`
	GroupID      string    `json:"group_id"`
	RegisteredAt time.Time `json:"registered_at"`
	Pending      bool      `json:"pending,omitempty"`
	// Request is the offline registration still to tell the cloud.
	Request *cloudv1.RegisterAgentRequest `json:"-"`
}

// LegacyRegistry is what an old spool held besides batches and receipts.
type LegacyRegistry struct {
	Agents []LegacyAgent
	// Control is the last control poll (key hashes, group tiers); nil if none.
	Control *cloudv1.ControlPollResponse
}

// Empty reports whether there is nothing to move.
func (l LegacyRegistry) Empty() bool { return len(l.Agents) == 0 && l.Control == nil }

// LegacyRegistry reads the registry an old spool kept.
func (s *Spool) LegacyRegistry() (LegacyRegistry, error) {
	var out LegacyRegistry
	pending := map[string]*cloudv1.RegisterAgentRequest{}
	err := s.db.View(func(txn *badger.Txn) error {
		err := eachValue(txn, kindPending, func(k, v []byte) error {
			req := &cloudv1.RegisterAgentRequest{}
			if err := proto.Unmarshal(v, req); err != nil {
				return fmt.Errorf("pending registration %q: %w", k, err)
			}
			pending[string(k[1:])] = req
			return nil
		})
		if err != nil {
			return err
		}
		err = eachValue(txn, kindAgent, func(k, v []byte) error {
			var a LegacyAgent
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("agent record %q: %w", k, err)
			}
			a.Request = pending[a.AgentID]
			out.Agents = append(out.Agents, a)
			return nil
		})
		if err != nil {
			return err
		}
		item, err := txn.Get(keyCacheKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		out.Control = &cloudv1.ControlPollResponse{}
		return item.Value(func(v []byte) error { return proto.Unmarshal(v, out.Control) })
	})
	if err != nil {
		return LegacyRegistry{}, fmt.Errorf("read the spool's old agent registry: %w", err)
	}
	return out, nil
}

// DropLegacyRegistry deletes what LegacyRegistry read, once it is moved.
func (s *Spool) DropLegacyRegistry() error {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		for _, kind := range []byte{kindAgent, kindPending, kindKeyCache} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kind}})
			for it.Rewind(); it.Valid(); it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return err
	}
	entries := make([]*badger.Entry, len(keys))
	for i, k := range keys {
		entries[i] = deleteEntry(k)
	}
	if err := s.write(entries); err != nil {
		return fmt.Errorf("drop the spool's old agent registry: %w", err)
	}
	return nil
}

// eachValue calls f with every key and value of one kind.
func eachValue(txn *badger.Txn, kind byte, f func(k, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{kind}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().KeyCopy(nil)
		if err := it.Item().Value(func(v []byte) error { return f(k, v) }); err != nil {
			return err
		}
	}
	return nil
}
