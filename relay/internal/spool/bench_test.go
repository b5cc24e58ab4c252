package spool

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// benchBatch is a typical bulk batch: 20 ECS events of about 250 bytes.
func benchBatch(agent string, seq uint64) *agentv1.EventBatch {
	ev := make([][]byte, 20)
	for i := range ev {
		ev[i] = fmt.Appendf(nil, `{"@timestamp":"2026-11-21T10:00:00Z","event":{"kind":"event","dataset":"log"},"host":{"hostname":"h%d"},"message":"line %d of batch %d with some padding to look like a real log line"}`, i, i, seq)
	}
	return &agentv1.EventBatch{AgentId: agent, Seq: seq, Priority: agentv1.Priority_PRIORITY_BULK, Events: ev}
}

// BenchmarkDurableAppend compares the spool's group commit with its peer,
// one Badger transaction per batch with SyncWrites (Badger's own write
// pipeline may still merge concurrent commits), for 1 and 64 concurrent
// agents. Every op is one batch made durable.
func BenchmarkDurableAppend(b *testing.B) {
	for _, agents := range []int{1, 64} {
		b.Run(fmt.Sprintf("group-commit/agents=%d", agents), func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir(), MaxBytes: 1 << 40, Logger: quiet()})
			if err != nil {
				b.Fatal(err)
			}
			stop := runSpool(s)
			defer func() { stop(); s.Close() }()
			runAgents(b, agents, func(agent string, seq uint64) error {
				_, err := s.Append(context.Background(), benchBatch(agent, seq))
				return err
			})
		})
		b.Run(fmt.Sprintf("txn-per-batch/agents=%d", agents), func(b *testing.B) {
			db, err := badger.Open(badgerOptions(b.TempDir(), memtableSize(1<<40, 0, DefaultMinFreeBytes), quiet()))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var next atomic.Uint64
			runAgents(b, agents, func(agent string, seq uint64) error {
				data, err := proto.Marshal(benchBatch(agent, seq))
				if err != nil {
					return err
				}
				return db.Update(func(txn *badger.Txn) error {
					if err := txn.Set(batchKey(2, next.Add(1), len(data)), data); err != nil {
						return err
					}
					return txn.Set(agentSeqKey(kindDedup, agent, seq), nil)
				})
			})
		})
	}
}

// runAgents spreads b.N appends over n goroutines, each one agent.
func runAgents(b *testing.B, n int, appendOne func(agent string, seq uint64) error) {
	b.ReportAllocs()
	var wg sync.WaitGroup
	var ops atomic.Int64
	errc := make(chan error, n)
	b.ResetTimer()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(agent string) {
			defer wg.Done()
			for seq := uint64(1); ops.Add(1) <= int64(b.N); seq++ {
				if err := appendOne(agent, seq); err != nil {
					errc <- err
					return
				}
			}
		}(fmt.Sprintf("%064d", i))
	}
	wg.Wait()
	b.StopTimer()
	select {
	case err := <-errc:
		b.Fatal(err)
	default:
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "batches/s")
}
