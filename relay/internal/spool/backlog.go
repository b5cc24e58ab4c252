package spool

import (
	"cmp"
	"errors"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Backlog is what one agent has waiting in the spool.
type Backlog struct {
	AgentID string `json:"agent_id"`
	Batches int64  `json:"batches"`
	Bytes   int64  `json:"bytes"`
}

// addBacklog counts batches in (or, negative, out of) agent's backlog.
// Caller holds s.mu.
func (s *Spool) addBacklog(agent string, batches, bytes int64) {
	b := s.backlog[agent]
	if b == nil {
		if batches <= 0 {
			return
		}
		b = &Backlog{AgentID: agent}
		s.backlog[agent] = b
	}
	b.Batches += batches
	b.Bytes += bytes
	if b.Batches <= 0 {
		delete(s.backlog, agent)
	}
}

// BacklogTop returns the n agents with the most bytes waiting (largest
// first) and how many agents have anything waiting. Batches spooled before
// segments existed are not counted per agent.
func (s *Spool) BacklogTop(n int) (top []Backlog, agents int) {
	s.mu.Lock()
	all := make([]Backlog, 0, len(s.backlog))
	for _, b := range s.backlog {
		all = append(all, *b)
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b Backlog) int {
		if c := cmp.Compare(b.Bytes, a.Bytes); c != 0 {
			return c
		}
		return cmp.Compare(a.AgentID, b.AgentID)
	})
	return all[:min(n, len(all))], len(all)
}

// backlogAgents is how many agents have batches waiting.
func (s *Spool) backlogAgents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.backlog)
}

// OldestAge is how long the oldest undelivered batch has waited (0 when
// the spool is empty). Within a lane the first key is the oldest, so it is
// the oldest of three seeks. A batch spooled before segments has no arrival
// time: it counts from when the spool was opened.
func (s *Spool) OldestAge() (time.Duration, error) {
	var oldest int64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{kindBatch}})
		defer it.Close()
		for prio := byte(0); prio < 255; prio++ {
			it.Seek([]byte{kindBatch, prio})
			if !it.Valid() {
				return nil
			}
			item := it.Item()
			at := s.opened.UnixNano()
			if item.UserMeta() == metaSegment {
				if err := item.Value(func(v []byte) error {
					p, err := decodeSegPtr(v)
					at = p.arrival
					return err
				}); err != nil {
					return err
				}
			}
			if oldest == 0 || at < oldest {
				oldest = at
			}
			prio = item.Key()[1] // next: the lane after this one
			if prio == 255 {
				return nil
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return 0, err
	}
	if oldest == 0 {
		return 0, nil
	}
	return max(s.opts.Clock.Now().Sub(time.Unix(0, oldest)), 0), nil
}
