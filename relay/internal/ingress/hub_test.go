package ingress

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// An agent racing QUIC against TCP opens a second session and may close it
// while the first lives on: pushes must then reach the first again.
func TestHubSecondSessionClosedFirstIsCurrentAgain(t *testing.T) {
	h := newHub(newMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	first := &session{agentID: "a1", out: make(chan *agentv1.Frame, 1)}
	second := &session{agentID: "a1", out: make(chan *agentv1.Frame, 1)}
	h.add(first)
	h.add(second)
	if got := h.current("a1"); got != second {
		t.Fatalf("current after the second connect: got %p, want the second session %p", got, second)
	}
	h.remove(second)
	if !h.push("a1", &agentv1.Frame{}) {
		t.Fatal("push after the second session closed: got false, want it queued on the first session")
	}
	if len(first.out) != 1 {
		t.Fatalf("first session's queue: got %d frames, want 1", len(first.out))
	}
	h.remove(first)
	if h.current("a1") != nil || len(h.by) != 0 {
		t.Fatalf("after both closed: got %d agents in the hub, want none", len(h.by))
	}
	if h.push("a1", &agentv1.Frame{}) {
		t.Fatal("push with no session: got true, want false")
	}
}
