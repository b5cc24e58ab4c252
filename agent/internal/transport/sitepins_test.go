package transport

import (
	"strings"
	"sync"
	"testing"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// An agent pinned to relay A learns the site's other relays and their keys
// from A, and moves to B (another key) when A stops serving it; without
// those pins B's key is refused.
func TestMovesToSiteRelayByItsPin(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tellPins  bool
		wantMoved bool
	}{
		{"site pins told", true, true},
		{"no site pins", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newFakeRelay(t), newFakeRelay(t)
			var mu sync.Mutex
			hellos := 0
			a.onHello = func(h *agentv1.Hello) *agentv1.Frame {
				mu.Lock()
				defer mu.Unlock()
				hellos++
				if hellos > 1 {
					return &agentv1.Frame{Body: &agentv1.Frame_Error{Error: &agentv1.Error{Code: agentv1.Error_CODE_UNAVAILABLE, Message: "relay going away"}}}
				}
				rep := &agentv1.HelloReply{AgentId: "x", TenantId: "t1", GroupId: "g1", RelayId: "a", Relays: []string{a.addr, b.addr}, MaxInflightBatches: 4}
				if tc.tellPins {
					rep.RelayPins = []*agentv1.RelayPin{{Addr: a.addr, Fingerprint: a.id.Fingerprint()}, {Addr: b.addr, Fingerprint: b.id.Fingerprint()}}
				}
				return &agentv1.Frame{Body: &agentv1.Frame_HelloReply{HelloReply: rep}}
			}
			a.onBatch = func(*agentv1.EventBatch) *agentv1.BatchAck { return nil } // A dies mid-stream
			ag := newAgent(t, a, a.id.Fingerprint())
			ag.add(t, bulk, 3)
			ag.run(t)
			if tc.wantMoved {
				waitFor(t, "batches spooled on relay B", func() bool { return ag.ring.Stats().Spooled == 3 })
				if _, batches, _, _ := b.snapshot(); len(batches) < 3 {
					t.Fatalf("relay B got %d batches, want 3", len(batches))
				}
				return
			}
			waitFor(t, "a pin error for relay B", func() bool {
				return strings.Contains(ag.client.Status().LastError, "pinned fingerprint")
			})
			if _, batches, _, _ := b.snapshot(); len(batches) != 0 {
				t.Fatalf("relay B got %d batches from an agent that must not trust it", len(batches))
			}
		})
	}
}
