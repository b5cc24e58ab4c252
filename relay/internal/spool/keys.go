package spool

import (
	"encoding/binary"
	"fmt"
)

// Key layout. Every key starts with a one-byte kind so that each kind is one
// prefix scan:
//
//	b <prio 1> <spool seq 8 BE> <value len 4 BE> -> serialized agentv1.EventBatch
//	s <agent_id> / <seq 8 BE>                    -> (empty, TTL) dedup marker
//	r <agent_id> / <seq 8 BE>                    -> (empty) delivered receipt
//	a <agent_id>                                 -> (until 0ada000, legacy.go) JSON agent record
//	p <agent_id>                                 -> (until 0ada000) RegisterAgentRequest pending reconcile
//	k registration-keys                          -> (until 0ada000) ControlPollResponse (key hashes)
//
// Batch keys sort by priority, then by arrival, so one forward scan is the
// upload order. The value length rides in the key so that size accounting
// is restored at open by a key-only scan.
const (
	kindBatch   = 'b'
	kindDedup   = 's'
	kindReceipt = 'r'
	// Kinds of the registry a spool kept until 0ada000 (legacy.go).
	kindAgent    = 'a'
	kindPending  = 'p'
	kindKeyCache = 'k'
)

const batchKeyLen = 1 + 1 + 8 + 4

func batchKey(prio uint8, seq uint64, size int) []byte {
	k := make([]byte, batchKeyLen)
	k[0] = kindBatch
	k[1] = prio
	binary.BigEndian.PutUint64(k[2:], seq)
	binary.BigEndian.PutUint32(k[10:], uint32(size))
	return k
}

func parseBatchKey(k []byte) (prio uint8, seq uint64, size int, err error) {
	if len(k) != batchKeyLen || k[0] != kindBatch {
		return 0, 0, 0, fmt.Errorf("bad batch key %x", k)
	}
	return k[1], binary.BigEndian.Uint64(k[2:]), int(binary.BigEndian.Uint32(k[10:])), nil
}

func agentSeqKey(kind byte, agentID string, seq uint64) []byte {
	k := make([]byte, 0, 1+len(agentID)+1+8)
	k = append(k, kind)
	k = append(k, agentID...)
	k = append(k, '/')
	return binary.BigEndian.AppendUint64(k, seq)
}

func agentPrefix(kind byte, agentID string) []byte {
	k := make([]byte, 0, 1+len(agentID)+1)
	k = append(k, kind)
	k = append(k, agentID...)
	return append(k, '/')
}

func agentKey(kind byte, agentID string) []byte {
	return append([]byte{kind}, agentID...)
}

var keyCacheKey = []byte{kindKeyCache, 'r', 'e', 'g', 'k', 'e', 'y', 's'}
