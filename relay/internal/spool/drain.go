package spool

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Item is one spooled batch handed to the uplink.
type Item struct {
	Key   []byte
	Batch *agentv1.EventBatch
	Size  int // serialized bytes
}

// Peek returns the oldest batches in upload order (security, then bulk, then
// file; oldest first within a lane) up to maxBytes serialized bytes, and at
// least one batch when any is spooled. It does not remove them.
func (s *Spool) Peek(maxBytes int) ([]Item, error) {
	var items []Item
	total := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindBatch}, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			_, _, size, err := parseBatchKey(item.Key())
			if err != nil {
				return err
			}
			if len(items) > 0 && total+size > maxBytes {
				return nil
			}
			b := &agentv1.EventBatch{}
			if err := item.Value(func(v []byte) error { return proto.Unmarshal(v, b) }); err != nil {
				return fmt.Errorf("read batch %x: %w", item.Key(), err)
			}
			items = append(items, Item{Key: item.KeyCopy(nil), Batch: b, Size: size})
			total += size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("peek spool: %w", err)
	}
	return items, nil
}

// Complete removes items the cloud has acknowledged (stored, duplicate or
// rejected) and records a delivered receipt for each, durably. Receipts are
// written before the deletes (in one transaction unless Badger splits it),
// so a crash never loses a receipt for a removed batch. It returns the new
// receipts by agent id.
func (s *Spool) Complete(items []Item) (map[string][]uint64, error) {
	if len(items) == 0 {
		return nil, nil
	}
	entries := make([]*badger.Entry, 0, 2*len(items))
	receipts := make(map[string][]uint64)
	for _, it := range items {
		a, seq := it.Batch.GetAgentId(), it.Batch.GetSeq()
		entries = append(entries, badger.NewEntry(agentSeqKey(kindReceipt, a, seq), nil))
		receipts[a] = append(receipts[a], seq)
	}
	var freed int64
	for _, it := range items {
		entries = append(entries, deleteEntry(it.Key))
		freed += int64(it.Size)
	}
	if err := s.write(entries); err != nil {
		return nil, fmt.Errorf("complete %d batches: %w", len(items), err)
	}
	s.mu.Lock()
	s.bytes -= freed
	s.batches -= int64(len(items))
	s.receipts += int64(len(items))
	changed := s.full && s.bytes < s.opts.MaxBytes
	if changed {
		s.full = false
	}
	bytes := s.bytes
	s.mu.Unlock()
	if changed {
		s.fullChanged(false, bytes)
	}
	s.m.delivered.Add(float64(len(items)))
	return receipts, nil
}
