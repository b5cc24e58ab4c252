package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// Checkpoint is how far one log file has been put into the ring: the byte
// offset just past the last complete line, for the file identified by
// (Dev, Ino). Gen counts truncations seen on that file (copytruncate
// rotation), so that after a truncation a smaller offset still wins.
type Checkpoint struct {
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Gen    uint64 `json:"gen"`
	Offset int64  `json:"offset"`
	Path   string `json:"path"`
}

// FileID identifies a file across renames.
type FileID struct{ Dev, Ino uint64 }

// ID returns the file identity the checkpoint is for.
func (c Checkpoint) ID() FileID { return FileID{c.Dev, c.Ino} }

// After reports whether c is further than o (same file assumed).
func (c Checkpoint) After(o Checkpoint) bool {
	if c.Gen != o.Gen {
		return c.Gen > o.Gen
	}
	return c.Offset > o.Offset
}

const (
	magic       = "GHR1"
	headerSize  = 8 // magic + crc32c
	maxPathLen  = 4096
	maxCkpts    = 1 << 16
	maxEntryLen = 8 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt means an entry file is torn or damaged.
var ErrCorrupt = errors.New("corrupt ring entry")

// encodeEntry lays out one entry file:
//
//	"GHR1" | crc32c(rest) | lane u8 | uvarint n | n * (dev, ino, gen, offset, len(path), path) | uvarint len(batch) | batch
func encodeEntry(lane agentv1.Priority, ckpts []Checkpoint, batch []byte) []byte {
	b := make([]byte, headerSize, headerSize+16+len(batch)+len(ckpts)*48)
	copy(b, magic)
	b = append(b, byte(lane))
	b = binary.AppendUvarint(b, uint64(len(ckpts)))
	for _, c := range ckpts {
		b = binary.AppendUvarint(b, c.Dev)
		b = binary.AppendUvarint(b, c.Ino)
		b = binary.AppendUvarint(b, c.Gen)
		b = binary.AppendUvarint(b, uint64(c.Offset))
		b = binary.AppendUvarint(b, uint64(len(c.Path)))
		b = append(b, c.Path...)
	}
	b = binary.AppendUvarint(b, uint64(len(batch)))
	b = append(b, batch...)
	binary.LittleEndian.PutUint32(b[4:8], crc32.Checksum(b[headerSize:], castagnoli))
	return b
}

// decodeEntry parses an entry file, verifying its checksum. The returned
// batch aliases b.
func decodeEntry(b []byte) (lane agentv1.Priority, ckpts []Checkpoint, batch []byte, err error) {
	if len(b) < headerSize+2 || string(b[:4]) != magic {
		return 0, nil, nil, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	if len(b) > maxEntryLen {
		return 0, nil, nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	if got, want := crc32.Checksum(b[headerSize:], castagnoli), binary.LittleEndian.Uint32(b[4:8]); got != want {
		return 0, nil, nil, fmt.Errorf("%w: checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	p := b[headerSize:]
	lane = agentv1.Priority(p[0])
	if lane < agentv1.Priority_PRIORITY_SECURITY || lane > agentv1.Priority_PRIORITY_FILE {
		return 0, nil, nil, fmt.Errorf("%w: lane %d", ErrCorrupt, p[0])
	}
	p = p[1:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	n, ok := next()
	if !ok || n > maxCkpts {
		return 0, nil, nil, fmt.Errorf("%w: checkpoint count", ErrCorrupt)
	}
	for i := uint64(0); i < n; i++ {
		var c Checkpoint
		var off, plen uint64
		okAll := true
		for _, v := range []*uint64{&c.Dev, &c.Ino, &c.Gen, &off, &plen} {
			if *v, ok = next(); !ok {
				okAll = false
				break
			}
		}
		if !okAll || off > 1<<62 || plen > maxPathLen || plen > uint64(len(p)) {
			return 0, nil, nil, fmt.Errorf("%w: checkpoint %d", ErrCorrupt, i)
		}
		c.Offset = int64(off)
		c.Path = string(p[:plen])
		p = p[plen:]
		ckpts = append(ckpts, c)
	}
	blen, ok := next()
	if !ok || blen != uint64(len(p)) {
		return 0, nil, nil, fmt.Errorf("%w: batch length", ErrCorrupt)
	}
	return lane, ckpts, p, nil
}
