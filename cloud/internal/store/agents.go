package store

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/internal/identity"
)

// Keys:
//   a/<agent id>              Agent (ids are global: hash of the public key)
//   at/<tenant>/<agent id>    tenant index
//   c/agents                  fleet-wide count

// Registration is what a relay sends to register an agent.
type Registration struct {
	AgentID         string
	PublicKey       []byte
	RegistrationKey string
	Hostname        string
	AgentVersion    string
	OS              string
}

// RegisterAgent registers an agent through a relay of its tenant. An agent
// already registered in the relay's tenant is accepted whatever its key; one
// registered in another tenant is refused as an invalid key.
func (s *Store) RegisterAgent(relay Relay, reg Registration) (Agent, error) {
	if len(reg.PublicKey) != ed25519.PublicKeySize {
		return Agent{}, fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalid, len(reg.PublicKey), ed25519.PublicKeySize)
	}
	if id := identity.AgentID(ed25519.PublicKey(reg.PublicKey)); id != reg.AgentID {
		return Agent{}, fmt.Errorf("%w: agent id does not match public key", ErrInvalid)
	}
	var a Agent
	err := s.update(func(txn *badger.Txn) error {
		err := getJSON(txn, k("a", reg.AgentID), &a)
		switch {
		case err == nil && a.TenantID == relay.TenantID:
			return nil
		case err == nil:
			return fmt.Errorf("%w: agent is registered elsewhere", ErrKeyInvalid)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		key, err := lookupKey(txn, reg.RegistrationKey)
		if err != nil {
			return err
		}
		if key.TenantID != relay.TenantID {
			return ErrKeyInvalid
		}
		now := s.now().UTC()
		if !now.Before(key.ExpiresAt) {
			return ErrKeyExpired
		}
		a = Agent{
			ID: reg.AgentID, TenantID: relay.TenantID, GroupID: key.GroupID,
			PublicKey: reg.PublicKey, Hostname: reg.Hostname, AgentVersion: reg.AgentVersion,
			OS: reg.OS, RelayID: relay.ID, KeyID: key.ID, RegisteredAt: now,
		}
		if err := txn.Set(k("at", a.TenantID, a.ID), nil); err != nil {
			return err
		}
		if _, err := addCounter(txn, k("c", "agents"), 1); err != nil {
			return err
		}
		return setJSON(txn, k("a", a.ID), a)
	})
	if err != nil {
		return Agent{}, fmt.Errorf("register agent %s: %w", reg.AgentID, err)
	}
	return a, nil
}

// GetAgent returns an agent of a tenant.
func (s *Store) GetAgent(tenant, id string) (Agent, error) {
	var a Agent
	err := s.view(func(txn *badger.Txn) error {
		if err := getJSON(txn, k("a", id), &a); err != nil {
			return err
		}
		if a.TenantID != tenant {
			return ErrNotFound
		}
		return fillActivity(txn, &a)
	})
	if err != nil {
		return Agent{}, fmt.Errorf("agent %s: %w", id, err)
	}
	return a, nil
}

// ListAgents returns a tenant's agents.
func (s *Store) ListAgents(tenant string) ([]Agent, error) {
	out := []Agent{}
	err := s.view(func(txn *badger.Txn) error {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		ids, err := indexIDs(txn, prefix("at", tenant))
		if err != nil {
			return err
		}
		for _, id := range ids {
			var a Agent
			if err := getJSON(txn, k("a", id), &a); err != nil {
				return fmt.Errorf("agent %s: %w", id, err)
			}
			if err := fillActivity(txn, &a); err != nil {
				return fmt.Errorf("agent %s: %w", id, err)
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return out, nil
}
