package store

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Keys:
//   m/<tenant>/<agent>/<seq BE>          dedup marker, forever
//   eb/<tenant>/<last cursor BE>         one stored batch: first cursor, received
//                                        time, the EventBatch protobuf
//   ea/<tenant>/<agent>/<last cursor BE> per-agent index of eb
//   c/evt/<tenant>                       tenant's event count = its last cursor
//   c/eva/<tenant>/<agent>               agent's event count
//   c/events, c/batches, c/dups          fleet-wide totals
//
// A batch's events get consecutive per-tenant cursors first..last; keying the
// batch by its last cursor lets a forward seek to after+1 land on the batch
// that holds the next event.

// Rejection is a batch that will never be accepted.
type Rejection struct {
	AgentID string
	Seq     uint64
	Reason  string
}

// UploadResult says what happened to each batch of an upload.
type UploadResult struct {
	Accepted   int
	Duplicates int
	Events     int // events stored now
	Rejected   []Rejection
}

// MaxQueryLimit caps one page of QueryEvents.
const MaxQueryLimit = 10000

// Upload stores the batches of one relay upload for a tenant. Batches of
// agents not registered in the tenant, and malformed ones, are rejected; a
// batch whose (agent_id, seq) was stored before is a duplicate. Everything is
// committed durably (in one transaction, or a few if it is too big for one)
// before Upload returns.
func (s *Store) Upload(tenant string, batches []*agentv1.EventBatch) (UploadResult, error) {
	var res UploadResult
	valid := make([]*agentv1.EventBatch, 0, len(batches))
	for _, b := range batches {
		if reason := checkBatch(b); reason != "" {
			res.Rejected = append(res.Rejected, Rejection{AgentID: b.GetAgentId(), Seq: b.GetSeq(), Reason: reason})
			continue
		}
		valid = append(valid, b)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.db.IsClosed() {
		return res, ErrClosed
	}
	agents := map[string]bool{} // agent id -> registered in tenant
	chunk := len(valid)
	if s.maxPerTxn > 0 && chunk > s.maxPerTxn {
		chunk = s.maxPerTxn
	}
	for len(valid) > 0 {
		n := min(chunk, len(valid))
		r, err := s.commitBatches(tenant, valid[:n], agents)
		if errors.Is(err, badger.ErrTxnTooBig) && n > 1 {
			chunk = n / 2
			continue
		}
		if err != nil {
			return res, fmt.Errorf("store upload: %w", err)
		}
		res.Accepted += r.Accepted
		res.Duplicates += r.Duplicates
		res.Events += r.Events
		res.Rejected = append(res.Rejected, r.Rejected...)
		valid = valid[n:]
	}
	return res, nil
}

func checkBatch(b *agentv1.EventBatch) string {
	id := b.GetAgentId()
	if _, err := hex.DecodeString(id); err != nil || len(id) != 64 {
		return "malformed agent id"
	}
	if b.GetSeq() == 0 {
		return "seq must be > 0"
	}
	for i, e := range b.GetEvents() {
		if !json.Valid(e) {
			return fmt.Sprintf("event %d is not valid JSON", i)
		}
	}
	return ""
}

// commitBatches stores batches in one transaction. The caller holds wmu.
func (s *Store) commitBatches(tenant string, batches []*agentv1.EventBatch, agents map[string]bool) (UploadResult, error) {
	var res UploadResult
	err := s.db.Update(func(txn *badger.Txn) error {
		res = UploadResult{}
		cursor, err := getCounter(txn, k("c", "evt", tenant))
		if err != nil {
			return err
		}
		perAgent := map[string]uint64{}
		acts := map[string]*activity{}
		now := s.now().UTC()
		for _, b := range batches {
			ok, known := agents[b.AgentId]
			if !known {
				var a Agent
				err := getJSON(txn, k("a", b.AgentId), &a)
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				ok = err == nil && a.TenantID == tenant
				agents[b.AgentId] = ok
			}
			if !ok {
				res.Rejected = append(res.Rejected, Rejection{AgentID: b.AgentId, Seq: b.Seq, Reason: "unknown agent"})
				continue
			}
			mk := k("m", tenant, b.AgentId, be64(b.Seq))
			dup, err := exists(txn, mk)
			if err != nil {
				return err
			}
			if dup {
				res.Duplicates++
				continue
			}
			n := uint64(len(b.Events))
			first := cursor + 1
			cursor += n
			if err := txn.Set(mk, []byte(be64(cursor))); err != nil {
				return err
			}
			res.Accepted++
			act := acts[b.AgentId]
			if act == nil {
				act = &activity{}
				acts[b.AgentId] = act
			}
			act.add(now, b.CreatedUnixMs, int(n))
			if n == 0 {
				continue
			}
			body, err := proto.Marshal(b)
			if err != nil {
				return err
			}
			val := make([]byte, 16, 16+len(body))
			binary.BigEndian.PutUint64(val[0:], first)
			binary.BigEndian.PutUint64(val[8:], uint64(now.UnixMilli()))
			val = append(val, body...)
			if err := txn.Set(k("eb", tenant, be64(cursor)), val); err != nil {
				return err
			}
			if err := txn.Set(k("ea", tenant, b.AgentId, be64(cursor)), nil); err != nil {
				return err
			}
			perAgent[b.AgentId] += n
			res.Events += int(n)
		}
		if err := txn.Set(k("c", "evt", tenant), []byte(be64(cursor))); err != nil {
			return err
		}
		for a, n := range perAgent {
			if _, err := addCounter(txn, k("c", "eva", tenant, a), n); err != nil {
				return err
			}
		}
		if err := recordActivity(txn, tenant, acts); err != nil {
			return err
		}
		for key, n := range map[string]int{"events": res.Events, "batches": res.Accepted, "dups": res.Duplicates} {
			if n > 0 {
				if _, err := addCounter(txn, k("c", key), uint64(n)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return res, err
}

// CountEvents returns the number of events of a tenant, or of one of its
// agents when agent is not empty.
func (s *Store) CountEvents(tenant, agent string) (uint64, error) {
	key := k("c", "evt", tenant)
	if agent != "" {
		key = k("c", "eva", tenant, agent)
	}
	var n uint64
	err := s.view(func(txn *badger.Txn) (err error) {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		n, err = getCounter(txn, key)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// QueryEvents returns up to limit events of a tenant (or of one of its
// agents) with cursor > after, in cursor order, and the cursor to continue
// from (after itself when there is nothing new).
func (s *Store) QueryEvents(tenant, agent string, after uint64, limit int) ([]Event, uint64, error) {
	if limit <= 0 || limit > MaxQueryLimit {
		return nil, after, fmt.Errorf("%w: limit must be 1..%d", ErrInvalid, MaxQueryLimit)
	}
	out := []Event{}
	next := after
	err := s.view(func(txn *badger.Txn) error {
		if err := tenantExists(txn, tenant); err != nil {
			return err
		}
		p := prefix("eb", tenant)
		if agent != "" {
			p = prefix("ea", tenant, agent)
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p, PrefetchValues: agent == "", PrefetchSize: 16})
		defer it.Close()
		for it.Seek(append(p[:len(p):len(p)], be64(after+1)...)); it.ValidForPrefix(p) && len(out) < limit; it.Next() {
			last := it.Item().Key()[len(p):]
			var val []byte
			var err error
			if agent == "" {
				val, err = it.Item().ValueCopy(nil)
			} else {
				var item *badger.Item
				if item, err = txn.Get(k("eb", tenant, string(last))); err == nil {
					val, err = item.ValueCopy(nil)
				}
			}
			if err != nil {
				return fmt.Errorf("read batch: %w", err)
			}
			evs, err := decodeStored(val)
			if err != nil {
				return err
			}
			for _, e := range evs {
				if e.Cursor <= after {
					continue
				}
				if len(out) == limit {
					break
				}
				out = append(out, e)
				next = e.Cursor
			}
		}
		return nil
	})
	if err != nil {
		return nil, after, fmt.Errorf("query events: %w", err)
	}
	return out, next, nil
}

func decodeStored(val []byte) ([]Event, error) {
	if len(val) < 16 {
		return nil, fmt.Errorf("stored batch: %d bytes", len(val))
	}
	first := binary.BigEndian.Uint64(val)
	recv := time.UnixMilli(int64(binary.BigEndian.Uint64(val[8:]))).UTC()
	var b agentv1.EventBatch
	if err := proto.Unmarshal(val[16:], &b); err != nil {
		return nil, fmt.Errorf("stored batch: %w", err)
	}
	out := make([]Event, len(b.Events))
	for i, e := range b.Events {
		out[i] = Event{Cursor: first + uint64(i), AgentID: b.AgentId, Seq: b.Seq, ReceivedAt: recv, Event: e}
	}
	return out, nil
}

// Stats returns fleet-wide totals (O(1): counters).
func (s *Store) Stats() (Stats, error) {
	var st Stats
	err := s.view(func(txn *badger.Txn) error {
		for key, dst := range map[string]*uint64{
			"tenants": &st.Tenants, "agents": &st.Agents, "events": &st.Events,
			"batches": &st.Batches, "dups": &st.DuplicateBatches,
		} {
			v, err := getCounter(txn, k("c", key))
			if err != nil {
				return err
			}
			*dst = v
		}
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}
