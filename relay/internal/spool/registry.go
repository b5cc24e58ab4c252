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

// ErrNotFound is returned for an unknown agent.
var ErrNotFound = errors.New("not found")

// AgentRecord is what the relay knows of a registered agent.
type AgentRecord struct {
	AgentID      string    `json:"agent_id"`
	TenantID     string    `json:"tenant_id"`
	GroupID      string    `json:"group_id"`
	RegisteredAt time.Time `json:"registered_at"`
	// Pending is true while an offline registration awaits the cloud.
	Pending bool `json:"pending,omitempty"`
}

// Agent returns the record of agentID or ErrNotFound.
func (s *Spool) Agent(agentID string) (AgentRecord, error) {
	var rec AgentRecord
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(agentKey(kindAgent, agentID))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return AgentRecord{}, ErrNotFound
	}
	if err != nil {
		return AgentRecord{}, fmt.Errorf("agent %s: %w", agentID, err)
	}
	return rec, nil
}

// PutAgent stores rec durably. With pending non-nil the agent was
// registered offline: the request is kept until ReconcileDone.
func (s *Spool) PutAgent(rec AgentRecord, pending *cloudv1.RegisterAgentRequest) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	entries := []*badger.Entry{badger.NewEntry(agentKey(kindAgent, rec.AgentID), v)}
	if pending != nil {
		pb, err := proto.Marshal(pending)
		if err != nil {
			return err
		}
		entries = append(entries, badger.NewEntry(agentKey(kindPending, rec.AgentID), pb))
	}
	if err := s.write(entries); err != nil {
		return fmt.Errorf("store agent %s: %w", rec.AgentID, err)
	}
	return nil
}

// PendingRegistrations lists offline registrations not yet told to the cloud.
func (s *Spool) PendingRegistrations() ([]*cloudv1.RegisterAgentRequest, error) {
	var out []*cloudv1.RegisterAgentRequest
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindPending}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			req := &cloudv1.RegisterAgentRequest{}
			if err := it.Item().Value(func(v []byte) error { return proto.Unmarshal(v, req) }); err != nil {
				return err
			}
			out = append(out, req)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pending registrations: %w", err)
	}
	return out, nil
}

// ReconcileDone clears agentID's pending marker, storing rec (the cloud's
// answer) or, when rec is nil, forgetting the agent (the cloud refused it).
func (s *Spool) ReconcileDone(agentID string, rec *AgentRecord) error {
	entries := []*badger.Entry{deleteEntry(agentKey(kindPending, agentID))}
	if rec != nil {
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		entries = append(entries, badger.NewEntry(agentKey(kindAgent, agentID), v))
	} else {
		entries = append(entries, deleteEntry(agentKey(kindAgent, agentID)))
	}
	if err := s.write(entries); err != nil {
		return fmt.Errorf("reconcile %s: %w", agentID, err)
	}
	return nil
}

// PutKeyHashes caches the cloud's control state (registration key hashes,
// group policies: GroupTier) from a control poll.
func (s *Spool) PutKeyHashes(resp *cloudv1.ControlPollResponse) error {
	b, err := proto.Marshal(resp)
	if err != nil {
		return err
	}
	if err := s.write([]*badger.Entry{badger.NewEntry(keyCacheKey, b)}); err != nil {
		return fmt.Errorf("store key hashes: %w", err)
	}
	s.setTiers(resp)
	return nil
}

// KeyHashes returns the cached registration key hashes (empty if none).
func (s *Spool) KeyHashes() (*cloudv1.ControlPollResponse, error) {
	resp := &cloudv1.ControlPollResponse{}
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyCacheKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return proto.Unmarshal(v, resp) })
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("key hashes: %w", err)
	}
	return resp, nil
}
