package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/internal/identity"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

func openTest(t *testing.T, dir string, clk *clockwork.FakeClock) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newClock() *clockwork.FakeClock {
	return clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

type fixture struct {
	tenant Tenant
	group  Group
	site   Site
	key    RegistrationKey
	relay  Relay
}

func setup(t testing.TB, s *Store, name string) fixture {
	t.Helper()
	var f fixture
	var err error
	if f.tenant, err = s.CreateTenant(name); err != nil {
		t.Fatal(err)
	}
	if f.group, err = s.CreateGroup(f.tenant.ID, "servers"); err != nil {
		t.Fatal(err)
	}
	if f.site, err = s.CreateSite(f.tenant.ID, "hq"); err != nil {
		t.Fatal(err)
	}
	if f.key, err = s.CreateRegistrationKey(f.tenant.ID, f.group.ID, 0); err != nil {
		t.Fatal(err)
	}
	tok, _, err := s.CreateEnrollmentToken(f.tenant.ID, f.site.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f.relay, _, err = s.Enroll(tok, "relay-1", "dmz1"); err != nil {
		t.Fatal(err)
	}
	return f
}

func newAgent(t testing.TB) (string, ed25519.PublicKey) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return identity.AgentID(pub), pub
}

func register(t testing.TB, s *Store, f fixture) string {
	t.Helper()
	id, pub := newAgent(t)
	if _, err := s.RegisterAgent(f.relay, Registration{AgentID: id, PublicKey: pub, RegistrationKey: f.key.Key, Hostname: "h"}); err != nil {
		t.Fatal(err)
	}
	return id
}

func batch(agent string, seq uint64, n int) *agentv1.EventBatch {
	b := &agentv1.EventBatch{AgentId: agent, Seq: seq}
	for i := range n {
		b.Events = append(b.Events, fmt.Appendf(nil, `{"seq":%d,"i":%d}`, seq, i))
	}
	return b
}

func TestUploadDedupCountQuery(t *testing.T) {
	s := openTest(t, t.TempDir(), newClock())
	f := setup(t, s, "acme")
	a1, a2 := register(t, s, f), register(t, s, f)

	res, err := s.Upload(f.tenant.ID, []*agentv1.EventBatch{batch(a1, 1, 3), batch(a2, 1, 2), batch(a1, 2, 1), batch(a1, 1, 3)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 3 || res.Duplicates != 1 || res.Events != 6 || len(res.Rejected) != 0 {
		t.Fatalf("got %+v, want 3 accepted, 1 duplicate (same upload), 6 events", res)
	}
	res, err = s.Upload(f.tenant.ID, []*agentv1.EventBatch{batch(a1, 1, 3), batch(a2, 2, 4)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1 || res.Duplicates != 1 {
		t.Fatalf("got %+v, want 1 accepted, 1 duplicate", res)
	}
	for _, tc := range []struct {
		agent string
		want  uint64
	}{{"", 10}, {a1, 4}, {a2, 6}} {
		got, err := s.CountEvents(f.tenant.ID, tc.agent)
		if err != nil || got != tc.want {
			t.Errorf("count(%q): got %d, %v, want %d", tc.agent, got, err, tc.want)
		}
	}
	// Page through everything, 3 at a time, and check cursor order.
	var all []Event
	after := uint64(0)
	for {
		evs, next, err := s.QueryEvents(f.tenant.ID, "", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			if next != after {
				t.Fatalf("empty page: got next %d, want %d", next, after)
			}
			break
		}
		all = append(all, evs...)
		after = next
	}
	if len(all) != 10 {
		t.Fatalf("got %d events, want 10", len(all))
	}
	for i, e := range all {
		if e.Cursor != uint64(i+1) {
			t.Fatalf("event %d: got cursor %d, want %d", i, e.Cursor, i+1)
		}
	}
	// Per agent, paging by 1 across batch boundaries.
	var got []uint64
	after = 0
	for {
		evs, next, err := s.QueryEvents(f.tenant.ID, a2, after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		if evs[0].AgentID != a2 {
			t.Fatalf("got agent %s, want %s", evs[0].AgentID, a2)
		}
		got = append(got, evs[0].Seq)
		after = next
	}
	if fmt.Sprint(got) != "[1 1 2 2 2 2]" {
		t.Fatalf("got seqs %v, want [1 1 2 2 2 2]", got)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if want := (Stats{Tenants: 1, Agents: 2, Events: 10, Batches: 4, DuplicateBatches: 2}); st != want {
		t.Fatalf("got stats %+v, want %+v", st, want)
	}
}

func TestUploadRejects(t *testing.T) {
	s := openTest(t, t.TempDir(), newClock())
	f := setup(t, s, "acme")
	a := register(t, s, f)
	unknown, _ := newAgent(t)
	bad := batch(a, 5, 1)
	bad.Events[0] = []byte("{not json")
	res, err := s.Upload(f.tenant.ID, []*agentv1.EventBatch{
		batch(unknown, 1, 1), batch(a, 0, 1), batch("zz", 1, 1), bad, batch(a, 1, 1),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1 || len(res.Rejected) != 4 {
		t.Fatalf("got %+v, want 1 accepted and 4 rejected", res)
	}
}

func TestTenantIsolation(t *testing.T) {
	s := openTest(t, t.TempDir(), newClock())
	fa, fb := setup(t, s, "a"), setup(t, s, "b")
	agentA := register(t, s, fa)
	if _, err := s.Upload(fa.tenant.ID, []*agentv1.EventBatch{batch(agentA, 1, 2)}); err != nil {
		t.Fatal(err)
	}
	// B's relay cannot use A's key.
	id, pub := newAgent(t)
	_, err := s.RegisterAgent(fb.relay, Registration{AgentID: id, PublicKey: pub, RegistrationKey: fa.key.Key})
	if !errors.Is(err, ErrKeyInvalid) {
		t.Fatalf("A's key via B's relay: got %v, want ErrKeyInvalid", err)
	}
	// B's relay cannot re-register A's agent, even with B's key.
	a, _ := s.GetAgent(fa.tenant.ID, agentA)
	_, err = s.RegisterAgent(fb.relay, Registration{AgentID: agentA, PublicKey: a.PublicKey, RegistrationKey: fb.key.Key})
	if !errors.Is(err, ErrKeyInvalid) {
		t.Fatalf("A's agent via B's relay: got %v, want ErrKeyInvalid", err)
	}
	// B cannot upload for A's agent.
	res, err := s.Upload(fb.tenant.ID, []*agentv1.EventBatch{batch(agentA, 2, 1)})
	if err != nil || len(res.Rejected) != 1 {
		t.Fatalf("A's agent uploaded by B: got %+v, %v, want rejected", res, err)
	}
	// Nothing of A is visible from B.
	if n, _ := s.CountEvents(fb.tenant.ID, agentA); n != 0 {
		t.Errorf("B counts A's agent: got %d, want 0", n)
	}
	if evs, _, _ := s.QueryEvents(fb.tenant.ID, agentA, 0, 100); len(evs) != 0 {
		t.Errorf("B queries A's agent: got %d events, want 0", len(evs))
	}
	if evs, _, _ := s.QueryEvents(fb.tenant.ID, "", 0, 100); len(evs) != 0 {
		t.Errorf("B queries: got %d events, want 0", len(evs))
	}
	if ag, _ := s.ListAgents(fb.tenant.ID); len(ag) != 0 {
		t.Errorf("B lists agents: got %d, want 0", len(ag))
	}
	if _, err := s.GetAgent(fb.tenant.ID, agentA); !errors.Is(err, ErrNotFound) {
		t.Errorf("B gets A's agent: got %v, want ErrNotFound", err)
	}
	if keys, _ := s.ListRegistrationKeys(fb.tenant.ID); len(keys) != 1 || keys[0].ID != fb.key.ID {
		t.Errorf("B lists keys: got %v, want only B's", keys)
	}
	if _, err := s.CreateRegistrationKey(fb.tenant.ID, fa.group.ID, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("key for A's group in B: got %v, want ErrNotFound", err)
	}
	if _, _, err := s.CreateEnrollmentToken(fb.tenant.ID, fa.site.ID, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("token for A's site in B: got %v, want ErrNotFound", err)
	}
}

func TestRegisterKeyStates(t *testing.T) {
	clk := newClock()
	s := openTest(t, t.TempDir(), clk)
	f := setup(t, s, "acme")
	short, err := s.CreateRegistrationKey(f.tenant.ID, f.group.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	early, earlyPub := newAgent(t)
	if _, err := s.RegisterAgent(f.relay, Registration{AgentID: early, PublicKey: earlyPub, RegistrationKey: short.Key}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	id, pub := newAgent(t)
	other, _ := newAgent(t)
	tests := []struct {
		name string
		reg  Registration
		want error
	}{
		{"valid", Registration{AgentID: id, PublicKey: pub, RegistrationKey: f.key.Key}, nil},
		{"registered, bad key", Registration{AgentID: id, PublicKey: pub, RegistrationKey: "nope"}, nil},
		{"registered, expired key", Registration{AgentID: early, PublicKey: earlyPub, RegistrationKey: short.Key}, nil},
		{"unknown key", Registration{AgentID: other, PublicKey: mustPub(t, other, nil), RegistrationKey: "ghk_nope"}, ErrInvalid},
		{"id mismatch", Registration{AgentID: other, PublicKey: pub, RegistrationKey: f.key.Key}, ErrInvalid},
	}
	for _, tc := range tests {
		_, err := s.RegisterAgent(f.relay, tc.reg)
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	nid, npub := newAgent(t)
	if _, err := s.RegisterAgent(f.relay, Registration{AgentID: nid, PublicKey: npub, RegistrationKey: "ghk_nope"}); !errors.Is(err, ErrKeyInvalid) {
		t.Errorf("unknown key: got %v, want ErrKeyInvalid", err)
	}
	if _, err := s.RegisterAgent(f.relay, Registration{AgentID: nid, PublicKey: npub, RegistrationKey: short.Key}); !errors.Is(err, ErrKeyExpired) {
		t.Errorf("expired key: got %v, want ErrKeyExpired", err)
	}
}

// mustPub returns a public key that does not match id (for the table above).
func mustPub(t *testing.T, _ string, _ []byte) []byte {
	_, pub := newAgent(t)
	return pub
}

func TestSuccessors(t *testing.T) {
	clk := newClock()
	s := openTest(t, t.TempDir(), clk)
	f := setup(t, s, "acme")
	_, v0, _ := s.KeySet(f.tenant.ID)
	changed := s.KeysChanged()

	made, err := s.EnsureSuccessors()
	if err != nil || len(made) != 0 {
		t.Fatalf("fresh key: got %d successors, %v, want 0", len(made), err)
	}
	clk.Advance(DefaultKeyValidity - SuccessorWindow - time.Hour)
	if made, _ := s.EnsureSuccessors(); len(made) != 0 {
		t.Fatalf("31 days before expiry: got %d successors, want 0", len(made))
	}
	clk.Advance(2 * time.Hour)
	made, err = s.EnsureSuccessors()
	if err != nil || len(made) != 1 {
		t.Fatalf("29 days before expiry: got %d successors, %v, want 1", len(made), err)
	}
	nk := made[0]
	if nk.SuccessorOf != f.key.ID || nk.TenantID != f.tenant.ID || nk.GroupID != f.group.ID {
		t.Fatalf("got successor %+v, want successor of %s in same tenant and group", nk, f.key.ID)
	}
	if got, want := nk.ExpiresAt.Sub(nk.CreatedAt), DefaultKeyValidity; got != want {
		t.Fatalf("successor validity: got %v, want %v", got, want)
	}
	if made, _ := s.EnsureSuccessors(); len(made) != 0 {
		t.Fatalf("second run: got %d successors, want 0", len(made))
	}
	select {
	case <-changed:
	default:
		t.Fatal("KeysChanged not signalled")
	}
	keys, v1, _ := s.KeySet(f.tenant.ID)
	if len(keys) != 2 || v1 == v0 {
		t.Fatalf("got %d keys, version %d -> %d, want 2 keys and a new version", len(keys), v0, v1)
	}
}

func TestDurableReopen(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	s, err := Open(Options{Dir: dir, Clock: clk, MaxBatchesPerTxn: 1})
	if err != nil {
		t.Fatal(err)
	}
	f := setup(t, s, "acme")
	a := register(t, s, f)
	res, err := s.Upload(f.tenant.ID, []*agentv1.EventBatch{batch(a, 1, 2), batch(a, 2, 2), batch(a, 3, 2)})
	if err != nil || res.Accepted != 3 {
		t.Fatalf("got %+v, %v, want 3 accepted", res, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	s2 := openTest(t, dir, clk)
	if n, _ := s2.CountEvents(f.tenant.ID, a); n != 6 {
		t.Fatalf("after reopen: got %d events, want 6", n)
	}
	res, err = s2.Upload(f.tenant.ID, []*agentv1.EventBatch{batch(a, 2, 2), batch(a, 4, 1)})
	if err != nil || res.Accepted != 1 || res.Duplicates != 1 {
		t.Fatalf("after reopen: got %+v, %v, want 1 accepted, 1 duplicate", res, err)
	}
	evs, next, err := s2.QueryEvents(f.tenant.ID, "", 6, 10)
	if err != nil || len(evs) != 1 || next != 7 {
		t.Fatalf("after reopen: got %d events, next %d, %v, want 1 event, next 7", len(evs), next, err)
	}
	if _, err := s2.AuthenticateRelay(f.relay.ID + ".wrong"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("bad secret: got %v, want ErrUnauthenticated", err)
	}
}

// enrollmentFixture is a store with a tenant, a site and an enrollment
// token for it valid for an hour.
func enrollmentFixture(t *testing.T) (*Store, *clockwork.FakeClock, Tenant, Site, string) {
	t.Helper()
	clk := newClock()
	s := openTest(t, t.TempDir(), clk)
	tn, _ := s.CreateTenant("acme")
	st, _ := s.CreateSite(tn.ID, "hq")
	tok, _, err := s.CreateEnrollmentToken(tn.ID, st.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s, clk, tn, st, tok
}

// A relay key may present its used token again while the token is valid
// (it stopped before storing the answer) and keeps its relay id; another
// key may not; a fresh token for an enrolled key keeps the id too.
func TestEnrollRelaySameKeyAgain(t *testing.T) {
	s, clk, tn, st, tok := enrollmentFixture(t)
	key, other := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	first, err := s.EnrollRelay(tok, "r1", "h1", key)
	if err != nil || first.Again {
		t.Fatalf("first enrollment: got %+v, %v", first, err)
	}
	again, err := s.EnrollRelay(tok, "r1", "h1", key)
	if err != nil || !again.Again || again.Relay.ID != first.Relay.ID {
		t.Fatalf("same key again: got %+v, %v, want relay %s again", again, err, first.Relay.ID)
	}
	if _, err := s.AuthenticateRelay(first.Relay.ID + "." + first.Secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("replaced secret: got %v, want ErrUnauthenticated", err)
	}
	if _, err := s.AuthenticateRelay(again.Relay.ID + "." + again.Secret); err != nil {
		t.Fatalf("new secret: %v", err)
	}
	for name, k := range map[string][]byte{"other key": other, "no key": nil} {
		if _, err := s.EnrollRelay(tok, "r2", "h2", k); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "already used by relay "+first.Relay.ID) {
			t.Fatalf("%s with a used token: got %v, want already used by %s", name, err, first.Relay.ID)
		}
	}
	tok2, _, _ := s.CreateEnrollmentToken(tn.ID, st.ID, time.Hour)
	fresh, err := s.EnrollRelay(tok2, "r1", "h1", key)
	if err != nil || !fresh.Again || fresh.Relay.ID != first.Relay.ID {
		t.Fatalf("fresh token, same key: got %+v, %v, want relay %s again", fresh, err, first.Relay.ID)
	}
	clk.Advance(time.Hour)
	if _, err := s.EnrollRelay(tok, "r1", "h1", key); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("same key, expired token: got %v, want expired", err)
	}
	if rs, _ := s.ListRelays(tn.ID); len(rs) != 1 {
		t.Fatalf("got %d relays, want 1", len(rs))
	}
}

func TestEnrollmentToken(t *testing.T) {
	s, clk, tn, st, tok := enrollmentFixture(t)
	r, secret, err := s.Enroll(tok, "r1", "h1")
	if err != nil {
		t.Fatal(err)
	}
	if r.TenantID != tn.ID || r.SiteID != st.ID {
		t.Fatalf("got relay %+v, want tenant %s site %s", r, tn.ID, st.ID)
	}
	if got, err := s.AuthenticateRelay(r.ID + "." + secret); err != nil || got.ID != r.ID {
		t.Fatalf("auth: got %v, %v", got.ID, err)
	}
	if _, _, err := s.Enroll(tok, "r2", "h2"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("reused token: got %v, want ErrUnauthenticated", err)
	}
	tok2, _, _ := s.CreateEnrollmentToken(tn.ID, st.ID, time.Hour)
	clk.Advance(time.Hour)
	if _, _, err := s.Enroll(tok2, "r3", "h3"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("expired token: got %v, want ErrUnauthenticated", err)
	}
	if rs, _ := s.ListRelays(tn.ID); len(rs) != 1 {
		t.Fatalf("got %d relays, want 1", len(rs))
	}
	if _, err := s.CreateTenant("acme"); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate tenant: got %v, want ErrConflict", err)
	}
}
