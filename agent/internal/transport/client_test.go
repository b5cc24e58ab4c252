package transport

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
	"github.com/gatehouse/gatehouse/internal/identity"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

const (
	bulk = agentv1.Priority_PRIORITY_BULK
	sec  = agentv1.Priority_PRIORITY_SECURITY
)

type agentUnderTest struct {
	dir    string
	ring   *ring.Ring
	client *Client
	id     *identity.Identity
}

func newAgent(t *testing.T, relay *fakeRelay, fingerprint string) *agentUnderTest {
	t.Helper()
	return newAgentWith(t, relay, fingerprint, nil)
}

// newAgentWith lets a test adjust the options before the client is made.
func newAgentWith(t *testing.T, relay *fakeRelay, fingerprint string, adjust func(*Options)) *agentUnderTest {
	t.Helper()
	dir, id, r := newAgentDir(t, 1<<20)
	opts := Options{
		Relays: []string{relay.addr}, Fingerprint: fingerprint, RegistrationKey: "key-1",
		DataDir: dir, Hostname: "h1", Version: "test", Identity: id, Ring: r,
		HeartbeatInterval: time.Hour, RedeliverAfter: time.Hour,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, KeyErrorBackoff: 50 * time.Millisecond,
	}
	if adjust != nil {
		adjust(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &agentUnderTest{dir: dir, ring: r, client: c, id: id}
}

// newAgentDir makes an agent's data dir with its identity and a ring of
// maxBytes, closed when the test ends.
func newAgentDir(tb testing.TB, maxBytes int64) (string, *identity.Identity, *ring.Ring) {
	tb.Helper()
	dir := tb.TempDir()
	id, err := identity.LoadOrCreate(filepath.Join(dir, "identity"))
	if err != nil {
		tb.Fatal(err)
	}
	r, err := ring.Open(filepath.Join(dir, "ring"), ring.Options{MaxBytes: maxBytes, AgentID: id.ID()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return dir, id, r
}

func (a *agentUnderTest) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { a.client.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func (a *agentUnderTest) add(t *testing.T, lane agentv1.Priority, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := a.ring.Append(lane, [][]byte{[]byte(`{"message":"x"}`)}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSpooledThenDelivered(t *testing.T) {
	relay := newFakeRelay(t)
	a := newAgent(t, relay, "")
	a.add(t, bulk, 10) // more than the relay's window of 4
	a.add(t, sec, 2)
	a.run(t)
	waitFor(t, "all batches spooled", func() bool { return a.ring.Stats().Spooled == 12 })
	hellos, batches, _, _ := relay.snapshot()
	if got := hellos[0].GetRegistrationKey(); got != "key-1" {
		t.Fatalf("hello key: got %q, want key-1", got)
	}
	var prev uint64
	for _, b := range batches {
		if b.GetAgentId() != a.id.ID() {
			t.Fatalf("batch agent id: got %q, want %q", b.GetAgentId(), a.id.ID())
		}
		if b.GetPriority() == bulk {
			if b.GetSeq() <= prev {
				t.Fatalf("bulk lane order: got seq %d after %d, want increasing", b.GetSeq(), prev)
			}
			prev = b.GetSeq()
		}
	}
	if st := a.client.Status(); st.State != StateConnected || st.Relay != relay.addr {
		t.Fatalf("status: got %+v, want connected to %s", st, relay.addr)
	}
	// Trust on first use pinned the relay, and the registration was kept.
	pin, _ := os.ReadFile(filepath.Join(a.dir, "relay.pin"))
	if got, want := strings.TrimSpace(string(pin)), relay.id.Fingerprint(); got != want {
		t.Fatalf("relay.pin: got %q, want %q", got, want)
	}
	reg, err := LoadRegistration(a.dir)
	if err != nil || reg == nil || reg.TenantID != "t1" || reg.AgentID != a.id.ID() {
		t.Fatalf("registration: got %+v %v, want tenant t1", reg, err)
	}
	waitFor(t, "heartbeat", func() bool { _, _, _, n := relay.snapshot(); return n >= 1 })

	seqs := []uint64{}
	for s := uint64(1); s <= 12; s++ {
		seqs = append(seqs, s)
	}
	relay.deliver(seqs...)
	waitFor(t, "ring empty", func() bool { return a.ring.Stats().Batches == 0 })
	waitFor(t, "receipt acks", func() bool { _, _, r, _ := relay.snapshot(); return len(r) == 12 })
	if got := a.ring.Stats().DeliveredTotal; got != 12 {
		t.Fatalf("delivered_total: got %d, want 12", got)
	}
}

func TestSpoolFullKeepsAndRetries(t *testing.T) {
	relay := newFakeRelay(t)
	var mu sync.Mutex
	fulls := 0
	relay.onBatch = func(b *agentv1.EventBatch) *agentv1.BatchAck {
		mu.Lock()
		defer mu.Unlock()
		if fulls < 3 {
			fulls++
			return &agentv1.BatchAck{Seq: b.GetSeq(), Status: agentv1.BatchAck_STATUS_SPOOL_FULL, RetryAfterMs: 20}
		}
		return &agentv1.BatchAck{Seq: b.GetSeq(), Status: agentv1.BatchAck_STATUS_SPOOLED}
	}
	a := newAgent(t, relay, "")
	a.add(t, bulk, 3)
	a.run(t)
	waitFor(t, "all spooled after spool full", func() bool { return a.ring.Stats().Spooled == 3 })
	if _, batches, _, _ := relay.snapshot(); len(batches) < 4 {
		t.Fatalf("relay saw %d batches, want retries (>= 4)", len(batches))
	}
}

func TestRejectedIsDroppedAndCounted(t *testing.T) {
	relay := newFakeRelay(t)
	relay.onBatch = func(b *agentv1.EventBatch) *agentv1.BatchAck {
		if b.GetSeq() == 2 {
			return &agentv1.BatchAck{Seq: 2, Status: agentv1.BatchAck_STATUS_REJECTED, Reason: "bad"}
		}
		return &agentv1.BatchAck{Seq: b.GetSeq(), Status: agentv1.BatchAck_STATUS_DUPLICATE}
	}
	a := newAgent(t, relay, "")
	a.add(t, bulk, 3)
	a.run(t)
	waitFor(t, "rejected dropped", func() bool { st := a.ring.Stats(); return st.RejectedBatches == 1 && st.Spooled == 2 })
	if got := a.ring.Stats().Batches; got != 2 {
		t.Fatalf("batches: got %d, want 2", got)
	}
}

func TestReconnectResendsPending(t *testing.T) {
	relay := newFakeRelay(t)
	var mu sync.Mutex
	dropped := false
	relay.onBatch = func(b *agentv1.EventBatch) *agentv1.BatchAck {
		mu.Lock()
		defer mu.Unlock()
		if !dropped {
			dropped = true
			return nil // cut the connection before acking
		}
		return &agentv1.BatchAck{Seq: b.GetSeq(), Status: agentv1.BatchAck_STATUS_SPOOLED}
	}
	a := newAgent(t, relay, "")
	a.add(t, bulk, 2)
	a.run(t)
	waitFor(t, "spooled after reconnect", func() bool { return a.ring.Stats().Spooled == 2 })
	hellos, batches, _, _ := relay.snapshot()
	if len(hellos) < 2 {
		t.Fatalf("hellos: got %d, want a reconnect (>= 2)", len(hellos))
	}
	if hellos[1].GetRegistrationKey() != "" {
		t.Fatalf("second hello: got key %q, want none once registered", hellos[1].GetRegistrationKey())
	}
	if batches[0].GetSeq() != 1 || len(batches) < 3 {
		t.Fatalf("batches: got %d starting at %d, want seq 1 resent", len(batches), batches[0].GetSeq())
	}
}

func TestErrorsKeepData(t *testing.T) {
	other, err := identity.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pin     func(r *fakeRelay) string
		onHello func(*agentv1.Hello) *agentv1.Frame
		want    string
	}{
		{
			name: "key invalid",
			pin:  func(r *fakeRelay) string { return r.id.Fingerprint() },
			onHello: func(*agentv1.Hello) *agentv1.Frame {
				return &agentv1.Frame{Body: &agentv1.Frame_Error{Error: &agentv1.Error{Code: agentv1.Error_CODE_KEY_INVALID, Message: "no such key"}}}
			},
			want: "key invalid",
		},
		{
			name: "wrong pin",
			pin:  func(*fakeRelay) string { return other.Fingerprint() },
			want: "pin",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			relay := newFakeRelay(t)
			relay.onHello = tt.onHello
			a := newAgent(t, relay, tt.pin(relay))
			a.add(t, bulk, 2)
			a.run(t)
			waitFor(t, "error status", func() bool {
				st := a.client.Status()
				return st.State == StateError && strings.Contains(st.LastError, tt.want)
			})
			if got := a.ring.Stats().Batches; got != 2 {
				t.Fatalf("batches: got %d, want 2 kept", got)
			}
			if _, err := os.Stat(filepath.Join(a.dir, "registration.json")); err == nil {
				t.Fatalf("registration.json written despite error")
			}
		})
	}
}
