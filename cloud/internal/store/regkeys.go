package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Keys:
//   k/<tenant>/<key id>   RegistrationKey
//   kh/<hex sha256>       "<tenant>/<key id>"
//   c/kv/<tenant>         key-set version counter

const (
	// DefaultKeyValidity is how long a registration key lives.
	DefaultKeyValidity = 365 * 24 * time.Hour
	// SuccessorWindow is how long before expiry a key gets its successor.
	SuccessorWindow = 30 * 24 * time.Hour
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func randomSecret(prefix string) string {
	var b [20]byte
	rand.Read(b[:])
	return prefix + strings.ToLower(b32.EncodeToString(b[:]))
}

// HashSecret is the SHA-256 under which keys and tokens are looked up.
func HashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// CreateRegistrationKey makes a new key for a tenant's group. validFor <= 0
// means DefaultKeyValidity.
func (s *Store) CreateRegistrationKey(tenant, group string, validFor time.Duration) (RegistrationKey, error) {
	if validFor <= 0 {
		validFor = DefaultKeyValidity
	}
	var key RegistrationKey
	err := s.update(func(txn *badger.Txn) (err error) {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		if ok, err := exists(txn, k("g", tenant, group)); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("group %q: %w", group, ErrNotFound)
			}
			return err
		}
		key, err = s.putKey(txn, tenant, group, validFor, "")
		return err
	})
	if err != nil {
		return RegistrationKey{}, fmt.Errorf("create registration key: %w", err)
	}
	s.notify()
	return key, nil
}

func (s *Store) putKey(txn *badger.Txn, tenant, group string, validFor time.Duration, successorOf string) (RegistrationKey, error) {
	now := s.now().UTC()
	text := randomSecret("ghk_")
	key := RegistrationKey{
		ID: newID("key_"), TenantID: tenant, GroupID: group,
		Key: text, SHA256: HashSecret(text),
		CreatedAt: now, ExpiresAt: now.Add(validFor), SuccessorOf: successorOf,
	}
	if err := setJSON(txn, k("k", tenant, key.ID), key); err != nil {
		return key, err
	}
	if err := txn.Set(k("kh", hex.EncodeToString(key.SHA256)), []byte(tenant+"/"+key.ID)); err != nil {
		return key, err
	}
	_, err := addCounter(txn, k("c", "kv", tenant), 1)
	return key, err
}

// ListRegistrationKeys returns a tenant's keys.
func (s *Store) ListRegistrationKeys(tenant string) ([]RegistrationKey, error) {
	return listScoped[RegistrationKey](s, tenant, "k")
}

// KeySet returns a tenant's keys and the key-set version, which changes
// whenever a key is added. Versions start at 1.
func (s *Store) KeySet(tenant string) ([]RegistrationKey, uint64, error) {
	var keys []RegistrationKey
	var v uint64
	err := s.view(func(txn *badger.Txn) (err error) {
		if keys, err = listJSON[RegistrationKey](txn, prefix("k", tenant)); err != nil {
			return err
		}
		v, err = getCounter(txn, k("c", "kv", tenant))
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("key set %s: %w", tenant, err)
	}
	return keys, v + 1, nil
}

// KeysChanged returns a channel closed at the next control change (any
// tenant); it is ControlChanged, kept for its callers.
func (s *Store) KeysChanged() <-chan struct{} { return s.ControlChanged() }

// lookupKey finds a key by its text, in any tenant.
func lookupKey(txn *badger.Txn, text string) (RegistrationKey, error) {
	var key RegistrationKey
	item, err := txn.Get(k("kh", hex.EncodeToString(HashSecret(text))))
	if err != nil {
		return key, ErrKeyInvalid
	}
	ref, err := item.ValueCopy(nil)
	if err != nil {
		return key, err
	}
	tenant, id, _ := strings.Cut(string(ref), "/")
	if err := getJSON(txn, k("k", tenant, id), &key); err != nil {
		return key, fmt.Errorf("key %s: %w", id, err)
	}
	return key, nil
}

// EnsureSuccessors gives every key within SuccessorWindow of its expiry, and
// without a successor yet, a successor for the same tenant and group valid
// for DefaultKeyValidity. It returns the new keys.
func (s *Store) EnsureSuccessors() ([]RegistrationKey, error) {
	var made []RegistrationKey
	err := s.update(func(txn *badger.Txn) error {
		all, err := listJSON[RegistrationKey](txn, prefix("k"))
		if err != nil {
			return err
		}
		now := s.now()
		for _, old := range all {
			if old.SuccessorID != "" || now.Before(old.ExpiresAt.Add(-SuccessorWindow)) {
				continue
			}
			nk, err := s.putKey(txn, old.TenantID, old.GroupID, DefaultKeyValidity, old.ID)
			if err != nil {
				return err
			}
			old.SuccessorID = nk.ID
			if err := setJSON(txn, k("k", old.TenantID, old.ID), old); err != nil {
				return err
			}
			made = append(made, nk)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("key successors: %w", err)
	}
	if len(made) > 0 {
		s.notify()
	}
	return made, nil
}
