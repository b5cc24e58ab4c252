package store

import (
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
