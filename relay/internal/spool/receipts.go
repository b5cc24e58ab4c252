package spool

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// PendingReceipts lists the seqs delivered to the cloud that agentID has not
// acknowledged yet, in order.
func (s *Spool) PendingReceipts(agentID string) ([]uint64, error) {
	var seqs []uint64
	prefix := agentPrefix(kindReceipt, agentID)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+8 {
				continue
			}
			seqs = append(seqs, binary.BigEndian.Uint64(k[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pending receipts %s: %w", agentID, err)
	}
	return seqs, nil
}

// AckReceipts forgets receipts agentID has acknowledged. Unknown seqs are ignored.
func (s *Spool) AckReceipts(agentID string, seqs []uint64) error {
	if err := s.guardIndex(); err != nil {
		return fmt.Errorf("ack receipts %s: %w", agentID, err)
	}
	var removed int64
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, seq := range seqs {
			k := agentSeqKey(kindReceipt, agentID, seq)
			if _, err := txn.Get(k); errors.Is(err, badger.ErrKeyNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if err := txn.Delete(k); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if errors.Is(err, badger.ErrConflict) {
		// Two acks for the same agent at once: the other one won; retry once.
		return s.AckReceipts(agentID, seqs)
	}
	if err != nil {
		return fmt.Errorf("ack receipts %s: %w", agentID, err)
	}
	s.mu.Lock()
	s.receipts -= removed
	s.mu.Unlock()
	return nil
}
