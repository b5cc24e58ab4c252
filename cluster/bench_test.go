package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// BenchmarkLogStore compares the Raft log stores on fsynced appends of
// one 256-byte entry (what a control write costs on disk).
func BenchmarkLogStore(b *testing.B) {
	stores := []struct {
		name string
		open func(dir string) (raft.LogStore, func() error, error)
	}{
		{"raft-wal", func(dir string) (raft.LogStore, func() error, error) {
			s, err := openLogStore(dir, 0, testLogger(nil))
			if err != nil {
				return nil, nil, err
			}
			return s, s.Close, nil
		}},
		{"raft-boltdb", func(dir string) (raft.LogStore, func() error, error) {
			s, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
			if err != nil {
				return nil, nil, err
			}
			return s, s.Close, nil
		}},
	}
	data := make([]byte, 256)
	for _, st := range stores {
		for _, batch := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/batch=%d", st.name, batch), func(b *testing.B) {
				s, closeFn, err := st.open(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				defer closeFn()
				logs := make([]*raft.Log, batch)
				idx := uint64(1)
				b.SetBytes(int64(len(data) * batch))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for j := range logs {
						logs[j] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}
						idx++
					}
					if err := s.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}

// BenchmarkControlWrite measures control writes through a 3-node cluster,
// from the leader and forwarded from a follower.
func BenchmarkControlWrite(b *testing.B) {
	c := newTestCluster(b, 3, nil)
	for _, via := range []string{"leader", "follower"} {
		b.Run("via="+via, func(b *testing.B) {
			n := c.waitLeader()
			if via == "follower" {
				n = c.follower()
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := n.SetIsolation(context.Background(), fmt.Sprintf("a%d", i), i%2 == 0); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			reportLatency(b, lat)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
	b.Run("parallel", func(b *testing.B) {
		n := c.waitLeader()
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				if _, err := n.SetIsolation(context.Background(), fmt.Sprintf("p%d", i), true); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	})
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// BenchmarkFailover measures the time from stopping the leader to the next
// committed write (production timeouts: Default()).
func BenchmarkFailover(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := newTestCluster(b, 3, func(cfg *Config) {
			d := Default()
			cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout
		})
		old := c.waitLeader()
		var other *testNode
		for _, n := range c.live() {
			if n != old {
				other = n
			}
		}
		b.StartTimer()
		start := time.Now()
		old.stop(b)
		if _, err := other.SetIsolation(context.Background(), "x", true); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		for _, n := range c.live() {
			n.stop(b)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-write")
}
