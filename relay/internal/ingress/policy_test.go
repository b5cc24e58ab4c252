package ingress

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	"github.com/gatehouse/gatehouse/relay/internal/spool"
)

// tiers is a PolicyTier source the test changes while agents are connected.
type tiers struct {
	mu sync.Mutex
	m  map[string]string
}

func (t *tiers) get(group string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[group]
}

func (t *tiers) set(group, tier string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[group] = tier
}

func startRelayWithTiers(t *testing.T, policy func(string) string) *relay {
	t.Helper()
	dir := t.TempDir()
	sp, err := spool.Open(spool.Options{Dir: filepath.Join(dir, "spool"), MaxBytes: 1 << 20, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{
		Listen: "127.0.0.1:0", DataDir: dir, Name: "relay-test", Store: sp, PolicyTier: policy, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sp.Run(ctx) }()
	go func() { defer wg.Done(); srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait(); sp.Close() })
	return &relay{srv: srv, spool: sp, dir: dir}
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
	tt := &tiers{m: map[string]string{"g1": "workstation"}}
	r := startRelayWithTiers(t, tt.get)
	id := newAgentIdentity(t)
	register(t, r, id) // group g1
	a := dial(t, r, id)
	if got := a.hello(t, "").GetHelloReply().GetPolicyTier(); got != "workstation" {
		t.Fatalf("hello reply tier: got %q, want workstation", got)
	}
	if got := a.heartbeat(t).GetPolicyTier(); got != "workstation" {
		t.Fatalf("heartbeat reply tier: got %q, want workstation", got)
	}
	tt.set("g1", "server") // the next poll changed the group's tier
	if got := a.heartbeat(t).GetPolicyTier(); got != "server" {
		t.Fatalf("heartbeat reply tier after change: got %q, want server", got)
	}
}

func TestPolicyTierUnknown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy func(string) string
	}{
		{"nil func", nil},
		{"group unknown", (&tiers{m: map[string]string{"other": "server"}}).get},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRelayWithTiers(t, tc.policy)
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
