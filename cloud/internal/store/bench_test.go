package store

import (
	"fmt"
	"testing"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// BenchmarkUpload stores uploads of 100 batches x 50 events (one fsynced
// transaction each) and reports events per second.
func BenchmarkUpload(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := setup(b, s, "bench")
	a := register(b, s, f)
	seq := uint64(0)
	b.ResetTimer()
	for range b.N {
		var bs []*agentv1.EventBatch
		for range 100 {
			seq++
			bs = append(bs, batch(a, seq, 50))
		}
		if _, err := s.Upload(f.tenant.ID, bs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*5000)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkCreateAction measures queuing one action (one fsynced txn).
func BenchmarkCreateAction(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := setup(b, s, "acme")
	agent := register(b, s, f)
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.CreateAction(f.tenant.ID, agent, ActHeartbeatNow, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkControl1000 measures reading a site's control state with 1,000
// pending actions and 200 DNS records (what each poll answer costs).
func BenchmarkControl1000(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := setup(b, s, "acme")
	var agents []string
	for range 1000 {
		agents = append(agents, register(b, s, f))
	}
	if _, err := s.CreateBulkActions(f.tenant.ID, agents, "", ActIsolate, nil); err != nil {
		b.Fatal(err)
	}
	var recs []DNSRecord
	for i := range 200 {
		recs = append(recs, DNSRecord{Name: fmt.Sprintf("h%d.example.com", i), Type: "A", Values: []string{"192.0.2.1"}})
	}
	if _, err := s.SetDNSOverrides(f.tenant.ID, f.site.ID, recs); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		cs, err := s.Control(f.tenant.ID, f.site.ID)
		if err != nil || len(cs.Actions) != 1000 {
			b.Fatal(len(cs.Actions), err)
		}
	}
}
