package store

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Keys:
//   e/<hex sha256 of token>   EnrollmentToken
//   r/<relay id>              Relay (relays authenticate by id alone)
//   rt/<tenant>/<relay id>    tenant index
//   rk/<hex relay key>        relay id (JSON string) of an enrolled relay key

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

// Enrollment is what EnrollRelay did.
type Enrollment struct {
	Relay  Relay
	Secret string // the relay's new secret; only its hash is stored
	// Again: this relay key was enrolled before (the same token answered
	// again, or a fresh token for a relay that lost its data dir). The
	// relay keeps its id; its secret is replaced.
	Again bool
}

// Enroll trades an enrollment token for a new relay and its secret, for a
// relay that proves no key (EnrollRelay with none).
func (s *Store) Enroll(token, name, hostname string) (Relay, string, error) {
	e, err := s.EnrollRelay(token, name, hostname, nil)
	return e.Relay, e.Secret, err
}

// EnrollRelay trades an enrollment token for a relay and its secret. A
// token is used once, but the relay key that used it (pub, whose
// possession the caller has checked) may present it again while it is
// valid: a relay that stopped before it stored the answer must be able to
// start again. A relay key already enrolled in the token's site keeps its
// relay id.
func (s *Store) EnrollRelay(token, name, hostname string, pub []byte) (Enrollment, error) {
	var secretBytes [32]byte
	rand.Read(secretBytes[:])
	secret := base64.RawURLEncoding.EncodeToString(secretBytes[:])
	pubHex := hex.EncodeToString(pub)
	var out Enrollment
	err := s.update(func(txn *badger.Txn) error {
		tk := k("e", hex.EncodeToString(HashSecret(token)))
		var tok EnrollmentToken
		if err := getJSON(txn, tk, &tok); err != nil {
			return fmt.Errorf("%w: unknown enrollment token", ErrUnauthenticated)
		}
		now := s.now().UTC()
		if !now.Before(tok.ExpiresAt) {
			return fmt.Errorf("%w: enrollment token expired at %s: make a new one with gatehousectl relay enroll-token", ErrUnauthenticated, tok.ExpiresAt.Format(time.RFC3339))
		}
		var r Relay
		switch {
		case !tok.UsedAt.IsZero() && (pub == nil || tok.RelayKey != pubHex):
			return fmt.Errorf("%w: enrollment token already used by relay %s (another relay key): make a new one with gatehousectl relay enroll-token", ErrUnauthenticated, tok.RelayID)
		case !tok.UsedAt.IsZero():
			if err := getJSON(txn, k("r", tok.RelayID), &r); err != nil {
				return fmt.Errorf("relay %s of the used token: %w", tok.RelayID, err)
			}
			out.Again = true
		case pub != nil:
			var id string
			if err := getJSON(txn, k("rk", pubHex), &id); err == nil {
				if err := getJSON(txn, k("r", id), &r); err != nil {
					return fmt.Errorf("relay %s of key %s: %w", id, pubHex, err)
				}
				// The same key in another site is another relay.
				out.Again = r.TenantID == tok.TenantID && r.SiteID == tok.SiteID
			} else if !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		if !out.Again {
			r = Relay{ID: newID("rly_"), TenantID: tok.TenantID, SiteID: tok.SiteID, EnrolledAt: now, LastSeen: now}
		}
		r.Name, r.Hostname, r.SecretHash = name, hostname, HashSecret(secret)
		if pub != nil {
			r.PublicKey = pub
			if err := setJSON(txn, k("rk", pubHex), r.ID); err != nil {
				return err
			}
		}
		if tok.UsedAt.IsZero() {
			tok.UsedAt, tok.RelayID, tok.RelayKey = now, r.ID, pubHex
			if err := setJSON(txn, tk, tok); err != nil {
				return err
			}
		}
		if err := txn.Set(k("rt", r.TenantID, r.ID), nil); err != nil {
			return err
		}
		out.Relay = r
		return setJSON(txn, k("r", r.ID), r)
	})
	if err != nil {
		return Enrollment{}, fmt.Errorf("enroll: %w", err)
	}
	out.Secret = secret
	return out, nil
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
