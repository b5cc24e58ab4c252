package netflow

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/gatehouse/gatehouse/agent/internal/collect"
)

// Record types written by netflow.c.
const (
	typeConnect = 1
	typeAccept  = 2
	typeClose   = 3
)

const (
	afInet  = 2
	afInet6 = 10
)

// recordSize is sizeof(struct event) in netflow.c.
const recordSize = 64

// record is one ring-buffer record: the local end is L, the remote end R.
type record struct {
	Type     uint8
	OldState uint8
	PID      uint32
	Local    netip.AddrPort
	Remote   netip.AddrPort
	Comm     string
}

// decodeRecord parses a record; anything malformed is an error, never a
// panic.
func decodeRecord(b []byte) (record, error) {
	if len(b) < recordSize {
		return record{}, fmt.Errorf("netflow record: %d bytes, want %d", len(b), recordSize)
	}
	le := binary.LittleEndian
	r := record{Type: b[0], OldState: b[1], PID: le.Uint32(b[4:]), Comm: collect.CString(b[48:64])}
	if r.Type < typeConnect || r.Type > typeClose {
		return record{}, fmt.Errorf("netflow record: type %d", r.Type)
	}
	sport, dport := le.Uint16(b[8:]), le.Uint16(b[10:])
	var l, rem netip.Addr
	switch fam := le.Uint16(b[2:]); fam {
	case afInet:
		l = netip.AddrFrom4([4]byte(b[16:20]))
		rem = netip.AddrFrom4([4]byte(b[32:36]))
	case afInet6:
		l = netip.AddrFrom16([16]byte(b[16:32])).Unmap()
		rem = netip.AddrFrom16([16]byte(b[32:48])).Unmap()
	default:
		return record{}, fmt.Errorf("netflow record: address family %d", fam)
	}
	r.Local, r.Remote = netip.AddrPortFrom(l, sport), netip.AddrPortFrom(rem, dport)
	return r, nil
}
