package state

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/action"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

func newTestFSM() *fsm {
	return NewFSM(NewStore(), NewWatchers(), slog.New(slog.DiscardHandler))
}

func applyAll(t *testing.T, f *fsm, cmds ...Command) {
	t.Helper()
	for i, c := range cmds {
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if resp := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: b}); resp != nil {
			t.Fatalf("apply %s: %v", c.Type, resp)
		}
	}
}

func snapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, s.(*fsmSnapshot).st); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var (
	agentA = &clusterv1.Agent{AgentId: "a1", PublicKey: bytes.Repeat([]byte{1}, 32), TenantId: "t1", GroupId: "g1",
		PolicyTier: "server", RegisteredUnixMs: 1000, PendingReconcile: true, Hostname: "h1"}
	agentB = &clusterv1.Agent{AgentId: "a2", TenantId: "t1", GroupId: "g2", PolicyTier: "workstation", RegisteredUnixMs: 2000}
	dnsA   = &clusterv1.DnsOverride{Name: "ingest.example.com.", Type: cloudv1.DnsType_DNS_TYPE_A, Values: []string{"10.0.0.1", "10.0.0.2"}, TtlSeconds: 30}
	dnsSRV = &clusterv1.DnsOverride{Name: "_relay._udp.site.", Type: cloudv1.DnsType_DNS_TYPE_SRV, Values: []string{"10 5 443 relay1.site."}, TtlSeconds: 60}
	allow  = &clusterv1.AllowList{TenantId: "t1", Cidrs: []string{"10.1.0.0/16", "2001:db8::/32"}, Names: []string{"update.example.com."}}
	cmd1   = &clusterv1.PendingCommand{CommandId: "c1", AgentId: "a1", Action: action.New(agentv1.ActionType_ACTION_TYPE_ISOLATE), CreatedUnixMs: 5}
	cmd2   = &clusterv1.PendingCommand{CommandId: "c2", AgentId: "a1", Action: action.New(agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW), CreatedUnixMs: 6}
	member = &clusterv1.Member{NodeId: "n1", RaftAddr: "10.0.0.1:7946", AgentAddr: "10.0.0.1:443", Name: "relay-1"}
)

// TestSnapshotRoundTrip applies each command type, snapshots, restores into
// a fresh FSM and checks the state survived exactly.
func TestSnapshotRoundTrip(t *testing.T) {
	tests := []struct {
		typ   CommandType
		cmds  []Command
		check func(s *Store) (got, want any)
	}{
		{CmdRegisterAgent, []Command{{CmdRegisterAgent, agentA}, {CmdRegisterAgent, agentB}},
			func(s *Store) (any, any) { return len(s.Agents()), 2 }},
		{CmdReconcileAgent, []Command{{CmdRegisterAgent, agentA}, {CmdReconcileAgent, &clusterv1.AgentRef{AgentId: "a1"}}},
			func(s *Store) (any, any) { a, _ := s.Agent("a1"); return a.GetPendingReconcile(), false }},
		{CmdDeregisterAgent, []Command{{CmdRegisterAgent, agentA}, {CmdRegisterAgent, agentB}, {CmdEnqueueCommand, cmd1},
			{CmdSetIsolation, &clusterv1.IsolationIntent{AgentId: "a1", Isolated: true}}, {CmdDeregisterAgent, &clusterv1.AgentRef{AgentId: "a1"}}},
			func(s *Store) (any, any) {
				return []int{len(s.Agents()), len(s.AllPendingCommands()), len(s.Isolations())}, []int{1, 0, 0}
			}},
		{CmdSetRegistrationKeys, []Command{
			{CmdSetRegistrationKeys, &clusterv1.RegistrationKeys{Version: 3, Keys: []*cloudv1.RegistrationKeyHash{{KeyId: "k1", Sha256: []byte{1, 2}, TenantId: "t1", GroupId: "g1", ExpiresUnixMs: 99}}}},
			{CmdSetRegistrationKeys, &clusterv1.RegistrationKeys{Version: 2}}, // stale: ignored
		}, func(s *Store) (any, any) {
			k := s.RegistrationKeys()
			return []any{k.Version, len(k.Keys)}, []any{uint64(3), 1}
		}},
		{CmdSetIsolation, []Command{{CmdSetIsolation, &clusterv1.IsolationIntent{AgentId: "a1", Isolated: true, UpdatedUnixMs: 7}}},
			func(s *Store) (any, any) { return s.Isolation("a1").Isolated, true }},
		{CmdSetDNSOverride, []Command{{CmdSetDNSOverride, dnsA}, {CmdSetDNSOverride, dnsSRV}},
			func(s *Store) (any, any) { return len(s.DNSOverrides()), 2 }},
		{CmdDeleteDNSOverride, []Command{{CmdSetDNSOverride, dnsA}, {CmdSetDNSOverride, dnsSRV},
			{CmdDeleteDNSOverride, &clusterv1.DnsOverrideRef{Name: dnsA.Name, Type: dnsA.Type}}},
			func(s *Store) (any, any) { return s.DNSOverrides()[0].Name, dnsSRV.Name }},
		{CmdSetAllowList, []Command{{CmdSetAllowList, allow}},
			func(s *Store) (any, any) { a, _ := s.AllowList("t1"); return len(a.GetCidrs()), 2 }},
		{CmdDeleteAllowList, []Command{{CmdSetAllowList, allow}, {CmdDeleteAllowList, &clusterv1.AllowList{TenantId: "t1"}}},
			func(s *Store) (any, any) { _, err := s.AllowList("t1"); return errors.Is(err, ErrNotFound), true }},
		{CmdEnqueueCommand, []Command{{CmdEnqueueCommand, cmd2}, {CmdEnqueueCommand, cmd1}},
			func(s *Store) (any, any) { return s.PendingCommands("a1")[0].CommandId, "c1" }},
		{CmdCompleteCommand, []Command{{CmdEnqueueCommand, cmd1}, {CmdEnqueueCommand, cmd2}, {CmdCompleteCommand, &clusterv1.CommandRef{AgentId: "a1", CommandId: "c1"}}},
			func(s *Store) (any, any) { return len(s.PendingCommands("a1")), 1 }},
		{CmdUpsertMember, []Command{{CmdUpsertMember, member}},
			func(s *Store) (any, any) { return s.Members()[0].AgentAddr, member.AgentAddr }},
		{CmdRemoveMember, []Command{{CmdUpsertMember, member}, {CmdUpsertMember, &clusterv1.Member{NodeId: "n2"}}, {CmdRemoveMember, &clusterv1.MemberRef{NodeId: "n1"}}},
			func(s *Store) (any, any) { return s.Members()[0].NodeId, "n2" }},
	}
	covered := map[CommandType]bool{}
	for _, tt := range tests {
		covered[tt.typ] = true
		t.Run(tt.typ.String(), func(t *testing.T) {
			f := newTestFSM()
			applyAll(t, f, tt.cmds...)
			if got, want := tt.check(f.store); !equalAny(got, want) {
				t.Fatalf("before snapshot: got %v, want %v", got, want)
			}
			snap := snapshotBytes(t, f)
			g := newTestFSM()
			g.store.st.agents["stale"] = &clusterv1.Agent{AgentId: "stale"} // restore must replace, not merge
			w := g.watch.add(KindAll)
			if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
				t.Fatal(err)
			}
			if got, want := w.Changed(), KindAll; got != want {
				t.Errorf("watch after restore: got %b, want %b", got, want)
			}
			if got, want := tt.check(g.store); !equalAny(got, want) {
				t.Fatalf("after restore: got %v, want %v", got, want)
			}
			if got := snapshotBytes(t, g); !bytes.Equal(got, snap) {
				t.Fatalf("snapshot after restore differs: got %d bytes, want %d", len(got), len(snap))
			}
		})
	}
	for typ := range commandNames {
		if !covered[typ] {
			t.Errorf("command %s has no round-trip case", typ)
		}
	}
}

func equalAny(a, b any) bool {
	if ma, ok := a.(proto.Message); ok {
		return proto.Equal(ma, b.(proto.Message))
	}
	return fmtAny(a) == fmtAny(b)
}

func TestApplyRejectsBadEntries(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"unknown type", []byte{72, 1, 2}},
		{"garbage body", []byte{byte(CmdRegisterAgent), 0xff, 0xff, 0xff}},
		{"agent without tenant", mustEncode(t, Command{CmdRegisterAgent, &clusterv1.Agent{AgentId: "x"}})},
		{"bad dns", mustEncode(t, Command{CmdSetDNSOverride, &clusterv1.DnsOverride{Name: "x.", Type: cloudv1.DnsType_DNS_TYPE_A, Values: []string{"nope"}}})},
		{"bad cidr", mustEncode(t, Command{CmdSetAllowList, &clusterv1.AllowList{TenantId: "t", Cidrs: []string{"10.0.0.0/99"}}})},
		{"reconcile unknown", mustEncode(t, Command{CmdReconcileAgent, &clusterv1.AgentRef{AgentId: "nobody"}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFSM()
			resp := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: tt.data})
			if _, ok := resp.(error); !ok {
				t.Fatalf("got response %v, want an error", resp)
			}
		})
	}
}

func mustEncode(t *testing.T, c Command) []byte {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRestoreRejectsCorruptSnapshots(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"no header", []byte{2, 0x12, 0x00}},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"truncated", []byte{10, 0x0a, 0x02}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := readSnapshot(bytes.NewReader(tt.data)); err == nil {
				t.Fatal("got nil error, want one")
			}
		})
	}
}

// An entry of a command type this version does not know stops the FSM
// with an error naming the number, unless flagged IgnoreIfUnknown; after
// it nothing is applied and no snapshot is taken.
func TestUnknownCommandTypeStopsTheFSM(t *testing.T) {
	f := newTestFSM()
	applyAll(t, f, Command{CmdRegisterAgent, &clusterv1.Agent{AgentId: "a1", TenantId: "t1"}})

	resp := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte{77 | byte(IgnoreIfUnknown), 1, 2}})
	if resp != nil || f.ignored.Load() != 1 || f.Fatal() != nil {
		t.Fatalf("flagged unknown type: got %v, %d ignored, fatal %v; want skipped and counted", resp, f.ignored.Load(), f.Fatal())
	}

	resp = f.Apply(&raft.Log{Index: 42, Type: raft.LogCommand, Data: []byte{77, 1, 2}})
	err, _ := resp.(error)
	if err == nil || !errors.Is(err, ErrUnknownCommand) || !strings.Contains(err.Error(), "command type 77") || !strings.Contains(err.Error(), "index 42") {
		t.Fatalf("unknown type 77: got %v, want an error naming type 77 at index 42", resp)
	}
	select {
	case <-f.stopped:
	default:
		t.Fatal("the FSM did not ask the node to stop")
	}
	if resp := f.Apply(&raft.Log{Index: 43, Type: raft.LogCommand, Data: mustEncode(t, Command{CmdRegisterAgent, &clusterv1.Agent{AgentId: "a2", TenantId: "t1"}})}); resp == nil {
		t.Fatal("an entry after the unknown one was applied")
	}
	if _, err := f.store.Agent("a2"); err == nil {
		t.Fatal("the state moved past the entry it could not apply")
	}
	if _, err := f.Snapshot(); err == nil {
		t.Fatal("snapshot of a stopped FSM: got none error, want one")
	}
}

// Every command number is below the flag bit, used once, named, and not
// reserved; Encode refuses an unknown type unless it is flagged.
func TestCommandNumbers(t *testing.T) {
	seen := map[uint8]bool{}
	for c, name := range commandNames {
		if c&IgnoreIfUnknown != 0 || c == 0 {
			t.Errorf("%s: number %d is not in 1..127", name, c)
		}
		if seen[c.Number()] {
			t.Errorf("%s: number %d used twice", name, c)
		}
		seen[c.Number()] = true
		if why, ok := reservedCommands[c]; ok {
			t.Errorf("%s: number %d is reserved (%s)", name, c, why)
		}
	}
	if _, err := (Command{Type: 99, Body: &clusterv1.AgentRef{}}).Encode(); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("encode unknown 99: got %v, want ErrUnknownCommand", err)
	}
	if _, err := (Command{Type: 99 | IgnoreIfUnknown, Body: &clusterv1.AgentRef{}}).Encode(); err != nil {
		t.Errorf("encode flagged 99: %v", err)
	}
}
