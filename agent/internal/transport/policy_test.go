package transport

import (
	"slices"
	"sync"
	"testing"
	"time"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

func TestPolicyTierFromHelloAndHeartbeats(t *testing.T) {
	relay := newFakeRelay(t)
	var mu sync.Mutex
	var got []string
	tiers := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
	relay.onHello = func(h *agentv1.Hello) *agentv1.Frame {
		return &agentv1.Frame{Body: &agentv1.Frame_HelloReply{HelloReply: &agentv1.HelloReply{
			TenantId: "t1", GroupId: "g1", MaxInflightBatches: 4, PolicyTier: "server",
		}}}
	}
	var beats sync.Mutex
	beat := 0
	relay.onHeartbeat = func() *agentv1.HeartbeatReply {
		beats.Lock()
		defer beats.Unlock()
		beat++
		switch beat {
		case 1:
			return &agentv1.HeartbeatReply{PolicyTier: "server"}
		case 2:
			return &agentv1.HeartbeatReply{} // unknown: never passed on
		default:
			return &agentv1.HeartbeatReply{PolicyTier: "workstation"}
		}
	}
	a := newAgentWith(t, relay, "", func(o *Options) {
		o.HeartbeatInterval = 10 * time.Millisecond
		o.OnPolicyTier = func(tier string) { mu.Lock(); got = append(got, tier); mu.Unlock() }
	})
	a.run(t)
	waitFor(t, "workstation tier from a heartbeat", func() bool { return slices.Contains(tiers(), "workstation") })
	g := tiers()
	if g[0] != "server" || g[1] != "server" {
		t.Fatalf("tiers: got %v, want server (hello), server (heartbeat 1), then workstation", g)
	}
	if slices.Contains(g, "") {
		t.Fatalf("tiers: got %v, want no empty tier passed on", g)
	}
}
