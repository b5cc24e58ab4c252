package store

import (
	"testing"
	"time"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// An agent's last seen (cloud clock, per upload) and last event (its own
// batch time) show in GetAgent and ListAgents; late batches (drained from a
// spool) never move them back; duplicates and empty batches do not count
// as events; they survive a restart of the store.
func TestAgentActivity(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := openTest(t, dir, clk)
	f := setup(t, s, "acme")
	a1, a2 := register(t, s, f), register(t, s, f)
	at := func(id string) Agent {
		t.Helper()
		a, err := s.GetAgent(f.tenant.ID, id)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	if a := at(a1); !a.LastSeenAt.IsZero() || !a.LastEventAt.IsZero() {
		t.Fatalf("before any upload: got seen %v event %v, want zero", a.LastSeenAt, a.LastEventAt)
	}
	created := func(b *agentv1.EventBatch, ts time.Time) *agentv1.EventBatch {
		b.CreatedUnixMs = ts.UnixMilli()
		return b
	}
	t0 := clk.Now()
	if _, err := s.Upload(f.tenant.ID, []*agentv1.EventBatch{
		created(batch(a1, 1, 2), t0.Add(-time.Minute)), created(batch(a1, 2, 1), t0.Add(-30*time.Second)),
	}); err != nil {
		t.Fatal(err)
	}
	if a := at(a1); !a.LastSeenAt.Equal(t0) || !a.LastEventAt.Equal(t0.Add(-30*time.Second)) {
		t.Fatalf("after an upload: got seen %v event %v, want %v and %v", a.LastSeenAt, a.LastEventAt, t0, t0.Add(-30*time.Second))
	}
	clk.Advance(time.Hour)
	// A late, older batch; a duplicate; an empty (heartbeat-only) batch.
	if _, err := s.Upload(f.tenant.ID, []*agentv1.EventBatch{
		created(batch(a1, 3, 1), t0.Add(-time.Hour)), created(batch(a1, 2, 1), t0.Add(time.Hour)), created(batch(a1, 4, 0), t0.Add(time.Hour)),
	}); err != nil {
		t.Fatal(err)
	}
	t1 := clk.Now()
	if a := at(a1); !a.LastSeenAt.Equal(t1) || !a.LastEventAt.Equal(t0.Add(-30*time.Second)) {
		t.Fatalf("after late, duplicate and empty batches: got seen %v event %v, want %v and %v (unchanged)", a.LastSeenAt, a.LastEventAt, t1, t0.Add(-30*time.Second))
	}
	s.Close()
	s = openTest(t, dir, clk)
	as, err := s.ListAgents(f.tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Agent{}
	for _, a := range as {
		got[a.ID] = a
	}
	if a := got[a1]; !a.LastSeenAt.Equal(t1) || !a.LastEventAt.Equal(t0.Add(-30*time.Second)) {
		t.Errorf("listed after restart: got seen %v event %v", a.LastSeenAt, a.LastEventAt)
	}
	if a := got[a2]; !a.LastSeenAt.IsZero() {
		t.Errorf("an agent that sent nothing: got seen %v, want zero", a.LastSeenAt)
	}
}
