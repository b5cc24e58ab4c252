package ingress

import (
	"context"
	"testing"

	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// setTiers stores group policy tiers in the relay's site state as a
// control poll of the given version does.
func setTiers(t *testing.T, r *relay, version uint64, groupTiers ...string) {
	t.Helper()
	var ps []*cloudv1.GroupPolicy
	for i := 0; i+1 < len(groupTiers); i += 2 {
		ps = append(ps, &cloudv1.GroupPolicy{GroupId: groupTiers[i], Tier: groupTiers[i+1]})
	}
	if _, err := r.site.Node().SetRegistrationKeys(context.Background(), version, nil, ps); err != nil {
		t.Fatal(err)
	}
}

func (a *agent) heartbeat(t *testing.T) *agentv1.HeartbeatReply {
	t.Helper()
	if err := framing.Write(a.ctrl, &agentv1.Frame{Body: &agentv1.Frame_Heartbeat{Heartbeat: &agentv1.Heartbeat{}}}); err != nil {
		t.Fatal(err)
	}
	for {
		f := a.next(t, a.rd)
		if hb := f.GetHeartbeatReply(); hb != nil {
			return hb
		}
		if f.GetDelivered() == nil {
			t.Fatalf("got %v, want a HeartbeatReply", f)
		}
	}
}

func TestPolicyTierInHelloAndHeartbeats(t *testing.T) {
	r := startRelay(t, nil)
	setTiers(t, r, 1, "g1", "workstation")
	id := newAgentIdentity(t)
	register(t, r, id) // group g1
	a := dial(t, r, id)
	if got := a.hello(t, "").GetHelloReply().GetPolicyTier(); got != "workstation" {
		t.Fatalf("hello reply tier: got %q, want workstation", got)
	}
	if got := a.heartbeat(t).GetPolicyTier(); got != "workstation" {
		t.Fatalf("heartbeat reply tier: got %q, want workstation", got)
	}
	setTiers(t, r, 2, "g1", "server") // the next poll changed the group's tier
	if got := a.heartbeat(t).GetPolicyTier(); got != "server" {
		t.Fatalf("heartbeat reply tier after change: got %q, want server", got)
	}
	setTiers(t, r, 3, "other", "server") // the whole state: g1 is gone
	if got := a.heartbeat(t).GetPolicyTier(); got != "" {
		t.Fatalf("heartbeat reply tier of a group the poll no longer lists: got %q, want empty", got)
	}
}

func TestPolicyTierUnknown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tiers []string
	}{
		{"never polled", nil},
		{"group unknown", []string{"other", "server"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelay(t, nil)
			if tc.tiers != nil {
				setTiers(t, r, 1, tc.tiers...)
			}
			id := newAgentIdentity(t)
			register(t, r, id)
			a := dial(t, r, id)
			if got := a.hello(t, "").GetHelloReply().GetPolicyTier(); got != "" {
				t.Errorf("hello reply tier: got %q, want empty", got)
			}
			if got := a.heartbeat(t).GetPolicyTier(); got != "" {
				t.Errorf("heartbeat reply tier: got %q, want empty", got)
			}
		})
	}
}
