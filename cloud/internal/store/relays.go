package store

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Keys:
//   e/<hex sha256 of token>   EnrollmentToken
//   r/<relay id>              Relay (relays authenticate by id alone)
//   rt/<tenant>/<relay id>    tenant index

// DefaultTokenValidity is how long an enrollment token lives.
const DefaultTokenValidity = 24 * time.Hour

// lastSeenEvery bounds how often a relay's last_seen is written.
const lastSeenEvery = time.Minute

// CreateEnrollmentToken makes a single-use token for a relay of a tenant's
// site. It returns the token text; only its hash is stored.
func (s *Store) CreateEnrollmentToken(tenant, site string, validFor time.Duration) (string, EnrollmentToken, error) {
	if validFor <= 0 {
		validFor = DefaultTokenValidity
	}
	now := s.now().UTC()
	text := randomSecret("ghe_")
	tok := EnrollmentToken{TenantID: tenant, SiteID: site, CreatedAt: now, ExpiresAt: now.Add(validFor)}
	err := s.update(func(txn *badger.Txn) error {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		if ok, err := exists(txn, k("s", tenant, site)); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("site %q: %w", site, ErrNotFound)
			}
			return err
		}
		return setJSON(txn, k("e", hex.EncodeToString(HashSecret(text))), tok)
	})
	if err != nil {
		return "", EnrollmentToken{}, fmt.Errorf("create enrollment token: %w", err)
	}
	return text, tok, nil
}

// Enroll trades an enrollment token for a new relay and its secret.
func (s *Store) Enroll(token, name, hostname string) (Relay, string, error) {
	var secretBytes [32]byte
	rand.Read(secretBytes[:])
	secret := base64.RawURLEncoding.EncodeToString(secretBytes[:])
	r := Relay{ID: newID("rly_"), Name: name, Hostname: hostname, SecretHash: HashSecret(secret)}
	err := s.update(func(txn *badger.Txn) error {
		tk := k("e", hex.EncodeToString(HashSecret(token)))
		var tok EnrollmentToken
		if err := getJSON(txn, tk, &tok); err != nil {
			return fmt.Errorf("%w: unknown enrollment token", ErrUnauthenticated)
		}
		now := s.now().UTC()
		if !tok.UsedAt.IsZero() {
			return fmt.Errorf("%w: enrollment token already used", ErrUnauthenticated)
		}
		if !now.Before(tok.ExpiresAt) {
			return fmt.Errorf("%w: enrollment token expired", ErrUnauthenticated)
		}
		tok.UsedAt, tok.RelayID = now, r.ID
		r.TenantID, r.SiteID, r.EnrolledAt, r.LastSeen = tok.TenantID, tok.SiteID, now, now
		if err := setJSON(txn, tk, tok); err != nil {
			return err
		}
		if err := txn.Set(k("rt", r.TenantID, r.ID), nil); err != nil {
			return err
		}
		return setJSON(txn, k("r", r.ID), r)
	})
	if err != nil {
		return Relay{}, "", fmt.Errorf("enroll: %w", err)
	}
	return r, secret, nil
}

// AuthenticateRelay checks a bearer credential "<relay_id>.<secret>" and
// returns the relay. It records last_seen (at most once a minute).
func (s *Store) AuthenticateRelay(cred string) (Relay, error) {
	id, secret, ok := strings.Cut(cred, ".")
	if !ok || id == "" || secret == "" || strings.Contains(id, "/") {
		return Relay{}, fmt.Errorf("%w: malformed relay credential", ErrUnauthenticated)
	}
	var r Relay
	err := s.view(func(txn *badger.Txn) error { return getJSON(txn, k("r", id), &r) })
	if err != nil {
		return Relay{}, fmt.Errorf("%w: unknown relay", ErrUnauthenticated)
	}
	if subtle.ConstantTimeCompare(HashSecret(secret), r.SecretHash) != 1 {
		return Relay{}, fmt.Errorf("%w: bad relay secret", ErrUnauthenticated)
	}
	s.touchRelay(r)
	return r, nil
}

func (s *Store) touchRelay(r Relay) {
	now := s.now().UTC()
	s.seenMu.Lock()
	last, ok := s.lastSeen[r.ID]
	if !ok {
		last = r.LastSeen
	}
	if now.Sub(last) < lastSeenEvery {
		s.seenMu.Unlock()
		return
	}
	s.lastSeen[r.ID] = now
	s.seenMu.Unlock()
	err := s.update(func(txn *badger.Txn) error {
		var cur Relay
		if err := getJSON(txn, k("r", r.ID), &cur); err != nil {
			return err
		}
		cur.LastSeen = now
		return setJSON(txn, k("r", r.ID), cur)
	})
	if err != nil {
		s.log.Warn("record relay last_seen", "relay", r.ID, "err", err)
	}
}

// ListRelays returns a tenant's relays.
func (s *Store) ListRelays(tenant string) ([]Relay, error) {
	out := []Relay{}
	err := s.view(func(txn *badger.Txn) error {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		ids, err := indexIDs(txn, prefix("rt", tenant))
		if err != nil {
			return err
		}
		for _, id := range ids {
			var r Relay
			if err := getJSON(txn, k("r", id), &r); err != nil {
				return fmt.Errorf("relay %s: %w", id, err)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list relays: %w", err)
	}
	return out, nil
}

// indexIDs returns the last key component of every key under prefix p.
func indexIDs(txn *badger.Txn, p []byte) ([]string, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
	defer it.Close()
	var ids []string
	for it.Seek(p); it.ValidForPrefix(p); it.Next() {
		ids = append(ids, string(it.Item().Key()[len(p):]))
	}
	return ids, nil
}
