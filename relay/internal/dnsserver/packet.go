package dnsserver

import "encoding/binary"

// Transport of a query, the proto label of queries_total.
const (
	protoUDP = iota
	protoTCP
)

const (
	// minUDPSize is the answer size for clients without EDNS (RFC 1035).
	minUDPSize = 512
	// maxUDPSize caps EDNS answers (DNS flag day 2020): no fragments.
	maxUDPSize = 1232
	// maxTCPSize is what the two-byte length prefix allows.
	maxTCPSize = 65535
	optLen     = 11
	headerLen  = 12
)

// query is what the fast parser learned of a query.
type query struct {
	qend    int // end of the question section
	qtype   uint16
	edns    bool
	udpSize uint16
	do      bool
}

// parseFast parses the common query shape: one IN question without
// compression, at most an OPT record of version 0, nothing else. It
// writes the lower-case wire name into key and returns its length. ok is
// false for anything else; the slow path (miekg/dns) then takes the
// packet. It never reads outside p.
func parseFast(p []byte, key *[256]byte) (q query, klen int, ok bool) {
	if len(p) < headerLen+5 {
		return q, 0, false
	}
	if p[2]&0xF8 != 0 || // QR set or opcode not QUERY
		p[4] != 0 || p[5] != 1 || // QDCOUNT 1
		p[6]|p[7]|p[8]|p[9]|p[10] != 0 || p[11] > 1 { // AN, NS 0; AR <= 1
		return q, 0, false
	}
	off := headerLen
	for {
		if off >= len(p) {
			return q, 0, false
		}
		l := int(p[off])
		if l == 0 {
			key[klen] = 0
			klen++
			off++
			break
		}
		if l > 63 || off+1+l > len(p) || klen+1+l > 254 {
			return q, 0, false
		}
		key[klen] = byte(l)
		klen++
		for _, c := range p[off+1 : off+1+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			key[klen] = c
			klen++
		}
		off += 1 + l
	}
	if off+4 > len(p) {
		return q, 0, false
	}
	q.qtype = binary.BigEndian.Uint16(p[off:])
	if binary.BigEndian.Uint16(p[off+2:]) != 1 { // class IN
		return q, 0, false
	}
	off += 4
	q.qend = off
	if p[11] == 1 {
		if off+optLen > len(p) || p[off] != 0 || binary.BigEndian.Uint16(p[off+1:]) != 41 {
			return q, 0, false
		}
		if p[off+6] != 0 { // EDNS version: BADVERS from the slow path
			return q, 0, false
		}
		q.edns = true
		q.udpSize = binary.BigEndian.Uint16(p[off+3:])
		q.do = p[off+7]&0x80 != 0
		off += optLen + int(binary.BigEndian.Uint16(p[off+9:]))
	}
	if off != len(p) {
		return q, 0, false
	}
	return q, klen, true
}

// limit is the largest response the client takes over proto.
func (q *query) limit(proto int) int {
	if proto == protoTCP {
		return maxTCPSize
	}
	if !q.edns {
		return minUDPSize
	}
	return min(max(int(q.udpSize), minUDPSize), maxUDPSize)
}

// appendOPT adds our OPT record (payload size, DO echoed per RFC 3225) and
// counts it in ARCOUNT.
func appendOPT(out []byte, do bool) []byte {
	var flags byte
	if do {
		flags = 0x80
	}
	out = append(out, 0, 0, 41, byte(maxUDPSize>>8), byte(maxUDPSize&0xff), 0, 0, flags, 0, 0, 0)
	binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])+1)
	return out
}

// writeFast fills out with the precomputed answer a to the query p.
func writeFast(out, p []byte, q *query, a *answer, proto int) []byte {
	limit := q.limit(proto)
	wire := a.wire
	extra := 0
	if q.edns {
		extra = optLen
	}
	if len(wire)+extra > limit && a.noExtra != nil {
		wire = a.noExtra
	}
	out = append(out[:0], wire...)
	out[0], out[1] = p[0], p[1]
	out[2] = 0x84 | p[2]&0x01               // QR, AA, RD as asked
	out[3] = 0x80 | p[3]&0x10 | out[3]&0x0F // RA, CD as asked, rcode
	copy(out[headerLen:q.qend], p[headerLen:q.qend])
	if len(out)+extra > limit {
		out = out[:q.qend]
		out[2] |= 0x02 // TC
		clear(out[6:12])
	}
	if q.edns {
		out = appendOPT(out, q.do)
	}
	return out
}

// writeError answers p with rcode and no records: the question is kept
// when the fast parser understood it (qend > 0), the header alone
// otherwise. The answer is never larger than the query.
func writeError(out, p []byte, qend int, rcode byte) []byte {
	if qend < headerLen {
		qend = headerLen
	}
	out = append(out[:0], p[:qend]...)
	out[2] = 0x80 | p[2]&0x79 // QR, opcode and RD as asked
	out[3] = 0x80 | p[3]&0x10 | rcode&0x0F
	if qend == headerLen {
		clear(out[4:12])
	} else {
		out[4], out[5] = 0, 1
		clear(out[6:12])
	}
	return out
}
