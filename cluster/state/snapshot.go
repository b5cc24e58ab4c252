package state

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	clusterv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cluster/v1"
)

// snapshotFormat is the version of the record stream.
const snapshotFormat = 1

// maxRecordSize bounds one snapshot record (a corrupt length never allocates GiBs).
const maxRecordSize = 64 << 20

type fsmSnapshot struct{ st *state }

// Persist writes a header then one typed record per item, in a stable order.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.st); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

func writeSnapshot(w io.Writer, st *state) error {
	bw := bufio.NewWriter(w)
	put := func(r *clusterv1.SnapshotRecord) error {
		_, err := protodelim.MarshalTo(bw, r)
		return err
	}
	recs := []*clusterv1.SnapshotRecord{
		{Record: &clusterv1.SnapshotRecord_Header{Header: &clusterv1.SnapshotHeader{Format: snapshotFormat}}},
		{Record: &clusterv1.SnapshotRecord_RegistrationKeys{RegistrationKeys: st.keys}},
	}
	for _, k := range sortedKeys(st.agents) {
		recs = append(recs, &clusterv1.SnapshotRecord{Record: &clusterv1.SnapshotRecord_Agent{Agent: st.agents[k]}})
	}
	for _, k := range sortedKeys(st.isolation) {
		recs = append(recs, &clusterv1.SnapshotRecord{Record: &clusterv1.SnapshotRecord_Isolation{Isolation: st.isolation[k]}})
	}
	dns := make([]*clusterv1.DnsOverride, 0, len(st.dns))
	for _, d := range st.dns {
		dns = append(dns, d)
	}
	sort.Slice(dns, func(i, j int) bool {
		return dns[i].Name < dns[j].Name || (dns[i].Name == dns[j].Name && dns[i].Type < dns[j].Type)
	})
	for _, d := range dns {
		recs = append(recs, &clusterv1.SnapshotRecord{Record: &clusterv1.SnapshotRecord_DnsOverride{DnsOverride: d}})
	}
	for _, k := range sortedKeys(st.allow) {
		recs = append(recs, &clusterv1.SnapshotRecord{Record: &clusterv1.SnapshotRecord_AllowList{AllowList: st.allow[k]}})
	}
	for _, a := range sortedKeys(st.commands) {
		for _, id := range sortedKeys(st.commands[a]) {
			recs = append(recs, &clusterv1.SnapshotRecord{Record: &clusterv1.SnapshotRecord_Command{Command: st.commands[a][id]}})
		}
	}
	for _, k := range sortedKeys(st.members) {
		recs = append(recs, &clusterv1.SnapshotRecord{Record: &clusterv1.SnapshotRecord_Member{Member: st.members[k]}})
	}
	for _, r := range recs {
		if err := put(r); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func readSnapshot(r io.Reader) (*state, error) {
	br := bufio.NewReader(r)
	opts := protodelim.UnmarshalOptions{MaxSize: maxRecordSize}
	st := newState()
	for n := 0; ; n++ {
		rec := &clusterv1.SnapshotRecord{}
		err := opts.UnmarshalFrom(br, rec)
		if errors.Is(err, io.EOF) && n > 0 {
			return st, nil
		}
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", n, err)
		}
		if n == 0 {
			h := rec.GetHeader()
			if h == nil {
				return nil, fmt.Errorf("record 0: not a snapshot header")
			}
			if h.Format != snapshotFormat {
				return nil, fmt.Errorf("snapshot format %d, want %d", h.Format, snapshotFormat)
			}
			continue
		}
		switch x := rec.Record.(type) {
		case *clusterv1.SnapshotRecord_Agent:
			st.agents[x.Agent.AgentId] = x.Agent
		case *clusterv1.SnapshotRecord_RegistrationKeys:
			st.keys = x.RegistrationKeys
		case *clusterv1.SnapshotRecord_Isolation:
			st.isolation[x.Isolation.AgentId] = x.Isolation
		case *clusterv1.SnapshotRecord_DnsOverride:
			st.dns[dnsKey{x.DnsOverride.Name, x.DnsOverride.Type}] = x.DnsOverride
		case *clusterv1.SnapshotRecord_AllowList:
			st.allow[x.AllowList.TenantId] = x.AllowList
		case *clusterv1.SnapshotRecord_Command:
			c := x.Command
			if st.commands[c.AgentId] == nil {
				st.commands[c.AgentId] = map[string]*clusterv1.PendingCommand{}
			}
			st.commands[c.AgentId][c.CommandId] = c
		case *clusterv1.SnapshotRecord_Member:
			st.members[x.Member.NodeId] = x.Member
		default:
			return nil, fmt.Errorf("record %d: unknown record type %T", n, rec.Record)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var _ proto.Message = (*clusterv1.SnapshotRecord)(nil)
