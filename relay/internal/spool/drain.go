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
	Size  int     // serialized bytes
	ptr   *segPtr // nil for a batch stored in Badger (before segments)
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
			var ptr *segPtr
			err = item.Value(func(v []byte) error {
				if item.UserMeta() != metaSegment {
					return proto.Unmarshal(v, b)
				}
				p, err := decodeSegPtr(v)
				if err != nil {
					return err
				}
				ptr = &p
				data, err := s.segs.read(p)
				if err != nil {
					return err
				}
				return proto.Unmarshal(data, b)
			})
			if err != nil {
				return fmt.Errorf("read batch %x: %w", item.Key(), err)
			}
			items = append(items, Item{Key: item.KeyCopy(nil), Batch: b, Size: size, ptr: ptr})
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
	var freed, legacy int64
	segRefs := map[uint32]int64{}
	for _, it := range items {
		entries = append(entries, deleteEntry(it.Key))
		freed += int64(it.Size)
		if it.ptr != nil {
			segRefs[it.ptr.seg]++
		} else {
			legacy++
		}
	}
	if err := s.write(entries); err != nil {
		return nil, fmt.Errorf("complete %d batches: %w", len(items), err)
	}
	// The index no longer points into those segments: a failure to delete
	// one only delays giving its space back (the next open prunes it).
	freedDisk, err := s.segs.release(segRefs)
	if err != nil {
		s.log.Warn("delete delivered segment", "err", err)
	}
	s.mu.Lock()
	s.bytes -= freed
	s.batches -= int64(len(items))
	s.receipts += int64(len(items))
	for _, it := range items {
		if it.ptr != nil {
			s.addBacklog(it.ptr.agent, -1, -int64(it.Size))
		}
	}
	byMax, byDisk := s.fullMax, s.fullDisk
	s.mu.Unlock()
	// Room comes back when a segment is deleted, not with each delivery
	// (the bytes stay on disk until the segment's last batch is gone).
	if freedDisk > 0 || legacy > 0 {
		byMax = s.segs.diskBytes() >= s.opts.MaxBytes
	}
	s.setFull(byMax, byDisk)
	select {
	case s.tidyNow <- struct{}{}:
	default:
	}
	s.m.delivered.Add(float64(len(items)))
	return receipts, nil
}
