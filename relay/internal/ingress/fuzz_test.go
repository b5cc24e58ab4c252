package ingress

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/sitestate"
	"github.com/gatehouse/gatehouse/relay/internal/spool"
)

// memStore is an in-memory Store and Site for fuzzing the protocol
// without Badger and Raft (thousands of runs a second).
type memStore struct {
	mu     sync.Mutex
	seen   map[uint64]bool
	agents map[string]sitestate.AgentRecord
}

func newMemStore() *memStore {
	return &memStore{seen: map[uint64]bool{}, agents: map[string]sitestate.AgentRecord{fuzzAgent: {AgentID: fuzzAgent}}}
}

func (m *memStore) Submit(_ context.Context, b *agentv1.EventBatch) (func(context.Context) (spool.Result, error), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	res := spool.Spooled
	if m.seen[b.Seq] {
		res = spool.Duplicate
	}
	m.seen[b.Seq] = true
	return func(context.Context) (spool.Result, error) { return res, nil }, nil
}

func (m *memStore) Agent(id string) (sitestate.AgentRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.agents[id]; ok {
		return r, nil
	}
	return sitestate.AgentRecord{}, sitestate.ErrNotFound
}

func (m *memStore) PutAgent(rec sitestate.AgentRecord, _ *cloudv1.RegisterAgentRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.agents[rec.AgentID] = rec
	return nil
}

func (m *memStore) RegistrationKeys() (uint64, []*cloudv1.RegistrationKeyHash) { return 0, nil }
func (m *memStore) GroupTier(string) string                                    { return "" }
func (m *memStore) Commands(string) []*agentv1.Command                         { return nil }
func (m *memStore) SitePins() []*agentv1.RelayPin                              { return nil }
func (m *memStore) PendingReceipts(string) ([]uint64, error)                   { return nil, nil }
func (m *memStore) AckReceipts(string, []uint64) error                         { return nil }

const fuzzAgent = "fuzz-agent"

func fuzzHandler() *handler {
	ms := newMemStore()
	return &handler{
		store: ms, site: ms, id: noIdentity{}, m: newMetrics(nil), log: quiet(), now: time.Now,
		heartbeat: time.Minute, retryAfter: time.Second, maxInflight: 4, regTimeout: time.Second,
	}
}

func frames(t testing.TB, fs ...*agentv1.Frame) []byte {
	var b []byte
	for _, f := range fs {
		var err error
		if b, err = framing.Append(b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// FuzzLane drives a lane stream with raw bytes: every outcome must be acks
// or a connection error, never a panic or a hang.
func FuzzLane(f *testing.F) {
	f.Add(frames(f, batch(fuzzAgent, 1), batch(fuzzAgent, 2), batch(fuzzAgent, 1)))
	f.Add(frames(f, batch("other", 1)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, raw []byte) {
		h := fuzzHandler()
		var out bytes.Buffer
		ce := h.lane(context.Background(), fuzzAgent, bytes.NewReader(raw), &out, nil)
		if ce != nil && ce.code == 0 {
			t.Fatalf("connection error without code: %v", ce)
		}
		r := framing.NewReader(&out, 0)
		for {
			fr := &agentv1.Frame{}
			if err := r.Next(fr); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("relay wrote an unreadable frame: %v", err)
			}
			if fr.GetBatchAck() == nil {
				t.Fatalf("lane wrote %v, want only acks", fr)
			}
		}
	})
}

// FuzzControl drives the control stream (hello, then heartbeats, receipt
// acks, command results) with raw bytes.
func FuzzControl(f *testing.F) {
	hello := &agentv1.Frame{Body: &agentv1.Frame_Hello{Hello: &agentv1.Hello{Hostname: "h"}}}
	hb := &agentv1.Frame{Body: &agentv1.Frame_Heartbeat{Heartbeat: &agentv1.Heartbeat{}}}
	ra := &agentv1.Frame{Body: &agentv1.Frame_ReceiptAck{ReceiptAck: &agentv1.ReceiptAck{Seqs: []uint64{1, 2}}}}
	f.Add(frames(f, hello, hb, ra))
	f.Add(frames(f, hb))
	f.Add(frames(f, hello, batch(fuzzAgent, 1)))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, raw []byte) {
		h := fuzzHandler()
		r := framing.NewReader(bytes.NewReader(raw), 0)
		_, ce := h.hello(context.Background(), r, fuzzAgent, ed25519.PublicKey(make([]byte, 32)))
		if ce != nil {
			if ce.code == 0 {
				t.Fatalf("hello error without code: %v", ce)
			}
			return
		}
		sent := 0
		ce = h.control(context.Background(), fuzzAgent, "g1", r, func(*agentv1.Frame) error { sent++; return nil })
		if ce != nil && ce.code == 0 {
			t.Fatalf("control error without code: %v", ce)
		}
	})
}
