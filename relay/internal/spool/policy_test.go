package spool

import (
	"testing"

	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

func TestGroupTierStoredAndReopened(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 20, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.GroupTier("g1"); got != "" {
		t.Fatalf("tier before any poll: got %q, want empty", got)
	}
	poll := func(v uint64, tiers ...string) *cloudv1.ControlPollResponse {
		r := &cloudv1.ControlPollResponse{Version: v}
		for i := 0; i+1 < len(tiers); i += 2 {
			r.GroupPolicies = append(r.GroupPolicies, &cloudv1.GroupPolicy{GroupId: tiers[i], Tier: tiers[i+1]})
		}
		return r
	}
	if err := s.PutKeyHashes(poll(2, "g1", "workstation", "g2", "server")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKeyHashes(poll(3, "g1", "server")); err != nil { // the whole state: g2 is gone
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := startSpool(t, dir, 1<<20)
	for _, tc := range []struct{ group, want string }{{"g1", "server"}, {"g2", ""}, {"", ""}} {
		if got := s2.GroupTier(tc.group); got != tc.want {
			t.Errorf("tier of %q after reopen: got %q, want %q", tc.group, got, tc.want)
		}
	}
}
