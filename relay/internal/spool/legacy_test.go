package spool

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// A spool written by 0ada000 kept agents, pending registrations and the
// last poll under keys a, p and k: LegacyRegistry reads them as that
// release wrote them, and DropLegacyRegistry leaves batches alone.
func TestLegacyRegistryReadAndDropped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, err := Open(Options{Dir: dir, MaxBytes: 64 << 20, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSpool(s)
	defer func() { stop(); s.Close() }()
	if empty, err := s.LegacyRegistry(); err != nil || !empty.Empty() {
		t.Fatalf("new spool: got %+v %v, want nothing", empty, err)
	}
	at := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	rec := func(id string, pending bool) []byte {
		b, _ := json.Marshal(map[string]any{"agent_id": id, "tenant_id": "t1", "group_id": "g1", "registered_at": at, "pending": pending})
		return b
	}
	req, _ := proto.Marshal(&cloudv1.RegisterAgentRequest{AgentId: "a-off", RegistrationKey: "k", Hostname: "h"})
	poll, _ := proto.Marshal(&cloudv1.ControlPollResponse{Version: 7, GroupPolicies: []*cloudv1.GroupPolicy{{GroupId: "g1", Tier: "server"}}})
	if err := s.write([]*badger.Entry{
		badger.NewEntry(agentKey(kindAgent, "a-on"), rec("a-on", false)),
		badger.NewEntry(agentKey(kindAgent, "a-off"), rec("a-off", true)),
		badger.NewEntry(agentKey(kindPending, "a-off"), req),
		badger.NewEntry(keyCacheKey, poll),
	}); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, batch("a-on", 1, agentv1.Priority_PRIORITY_BULK, "x"), Spooled)

	l, err := s.LegacyRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Agents) != 2 || l.Control.GetVersion() != 7 {
		t.Fatalf("got %+v, want two agents and control version 7", l)
	}
	for _, a := range l.Agents {
		switch a.AgentID {
		case "a-on":
			if a.Pending || a.Request != nil || a.TenantID != "t1" || !a.RegisteredAt.Equal(at) {
				t.Errorf("a-on: got %+v", a)
			}
		case "a-off":
			if !a.Pending || a.Request.GetRegistrationKey() != "k" {
				t.Errorf("a-off: got %+v, want pending with its request", a)
			}
		}
	}
	if err := s.DropLegacyRegistry(); err != nil {
		t.Fatal(err)
	}
	if l, err := s.LegacyRegistry(); err != nil || !l.Empty() {
		t.Fatalf("after drop: got %+v %v, want nothing", l, err)
	}
	if st := s.Stats(); st.Batches != 1 {
		t.Fatalf("after drop: %d batches, want the one spooled", st.Batches)
	}
}
