package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Batch payloads live in append-only segment files written with write(2)
// and fdatasync, not in Badger: Badger writes its value log, memtable WAL
// and tables through mmap, and a write through mmap on a full filesystem is
// SIGBUS, not an error. A failed write(2) is ENOSPC, which the spool turns
// into SPOOL_FULL. Badger keeps only the small index (a segPtr per batch),
// dedup markers and receipts. A segment is deleted as soon as its last
// batch is delivered, so a drained spool gives its space back at once
// (Badger's value log only gave it back after a GC that itself needed free
// space).
//
// Segment file: records of <len u32 BE><crc32c u32 BE><payload>. A new
// segment is started at every open, so a torn tail left by a crash is never
// appended to; its bytes are referenced by no index entry.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const (
	recordHeader = 8
	segPtrLen    = 4 + 8 + 4 + 4 + 8 + 8
	// metaSegment marks a batch index entry whose value is a segPtr; entries
	// without it (spools written before segments) hold the payload itself.
	metaSegment = 0x53
)

// segPtr locates one batch in a segment.
type segPtr struct {
	seg      uint32
	off      int64 // record start
	size     int   // payload bytes
	crc      uint32
	arrival  int64 // unix nanoseconds when spooled
	agentSeq uint64
	agent    string
}

// segRecord is one batch to append.
type segRecord struct {
	data     []byte
	agent    string
	agentSeq uint64
}

func (p segPtr) encode() []byte {
	b := make([]byte, segPtrLen, segPtrLen+len(p.agent))
	binary.BigEndian.PutUint32(b[0:], p.seg)
	binary.BigEndian.PutUint64(b[4:], uint64(p.off))
	binary.BigEndian.PutUint32(b[12:], uint32(p.size))
	binary.BigEndian.PutUint32(b[16:], p.crc)
	binary.BigEndian.PutUint64(b[20:], uint64(p.arrival))
	binary.BigEndian.PutUint64(b[28:], p.agentSeq)
	return append(b, p.agent...)
}

func decodeSegPtr(b []byte) (segPtr, error) {
	if len(b) < segPtrLen {
		return segPtr{}, fmt.Errorf("bad segment pointer %x", b)
	}
	return segPtr{
		seg:      binary.BigEndian.Uint32(b[0:]),
		off:      int64(binary.BigEndian.Uint64(b[4:])),
		size:     int(binary.BigEndian.Uint32(b[12:])),
		crc:      binary.BigEndian.Uint32(b[16:]),
		arrival:  int64(binary.BigEndian.Uint64(b[20:])),
		agentSeq: binary.BigEndian.Uint64(b[28:]),
		agent:    string(b[segPtrLen:]),
	}, nil
}

type segment struct {
	id   uint32
	f    *os.File
	size int64 // bytes written (the file's length)
	live int64 // batches still referenced by the index
}

// segments is the set of segment files. The committer alone appends (to
// active); the uplink reads and releases.
type segments struct {
	dir     string
	maxSize int64 // start a new segment beyond this

	mu     sync.RWMutex
	all    map[uint32]*segment
	active *segment
	nextID uint32
	bytes  int64 // sum of sizes: what the segments take on disk
}

func segName(id uint32) string { return fmt.Sprintf("%08x.seg", id) }

// openSegments lists dir's segment files; live counts come from the index
// (restore), after which prune deletes the unreferenced ones.
func openSegments(dir string, maxSize int64) (*segments, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	ss := &segments{dir: dir, maxSize: maxSize, all: map[uint32]*segment{}, nextID: 1}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(name, 16, 32)
		if err != nil {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0)
		if err != nil {
			ss.close()
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			ss.close()
			return nil, err
		}
		ss.all[uint32(id)] = &segment{id: uint32(id), f: f, size: st.Size()}
		ss.bytes += st.Size()
		ss.nextID = max(ss.nextID, uint32(id)+1)
	}
	return ss, nil
}

// ref counts a restored index entry; false when its segment is missing.
func (ss *segments) ref(p segPtr) bool {
	s := ss.all[p.seg]
	if s == nil || p.off+recordHeader+int64(p.size) > s.size {
		return false
	}
	s.live++
	return true
}

// prune deletes segments no index entry references (delivered, or written
// before a crash and never indexed).
func (ss *segments) prune() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, s := range ss.all {
		if s.live == 0 && s != ss.active {
			if err := ss.removeLocked(s); err != nil {
				return err
			}
		}
	}
	return nil
}

func (ss *segments) removeLocked(s *segment) error {
	s.f.Close()
	delete(ss.all, s.id)
	ss.bytes -= s.size
	if s == ss.active {
		ss.active = nil
	}
	if err := os.Remove(filepath.Join(ss.dir, segName(s.id))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove segment %s: %w", segName(s.id), err)
	}
	return nil
}

// append writes payloads as one run of records to the active segment and
// fdatasyncs it. On error nothing it wrote stays. Committer only.
func (ss *segments) append(recs []segRecord, arrival int64) ([]segPtr, error) {
	s, err := ss.activeSegment()
	if err != nil {
		return nil, err
	}
	n := 0
	for _, r := range recs {
		n += recordHeader + len(r.data)
	}
	buf := make([]byte, 0, n)
	ptrs := make([]segPtr, len(recs))
	off := s.size
	for i, r := range recs {
		c := crc32.Checksum(r.data, crcTable)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r.data)))
		buf = binary.BigEndian.AppendUint32(buf, c)
		buf = append(buf, r.data...)
		ptrs[i] = segPtr{seg: s.id, off: off, size: len(r.data), crc: c, arrival: arrival, agentSeq: r.agentSeq, agent: r.agent}
		off += int64(recordHeader + len(r.data))
	}
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		s.f.Truncate(s.size) // best effort: the bytes are referenced by nothing anyway
		return nil, fmt.Errorf("write segment %s: %w", segName(s.id), err)
	}
	if err := unix.Fdatasync(int(s.f.Fd())); err != nil {
		s.f.Truncate(s.size)
		return nil, fmt.Errorf("sync segment %s: %w", segName(s.id), err)
	}
	ss.mu.Lock()
	s.size += int64(n)
	ss.bytes += int64(n)
	ss.mu.Unlock()
	return ptrs, nil
}

// added counts n new index references to segment id. Committer only, after
// the index commit.
func (ss *segments) added(id uint32, n int64) {
	ss.mu.Lock()
	if s := ss.all[id]; s != nil {
		s.live += n
	}
	ss.mu.Unlock()
}

// activeSegment returns the segment to append to, starting a new one when
// there is none or the active one is full (deleting it if it holds no
// live batch).
func (ss *segments) activeSegment() (*segment, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.active; s != nil {
		if s.size < ss.maxSize {
			return s, nil
		}
		ss.active = nil
		if s.live == 0 {
			if err := ss.removeLocked(s); err != nil {
				return nil, err
			}
		}
	}
	id := ss.nextID
	f, err := os.OpenFile(filepath.Join(ss.dir, segName(id)), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	// The new name must be durable before any batch in it is acknowledged.
	if err := syncDir(ss.dir); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	ss.nextID++
	s := &segment{id: id, f: f}
	ss.all[id] = s
	ss.active = s
	return s, nil
}

// tidy deletes the active segment when it holds no live batch, so that an
// idle, drained spool holds no segment. Committer only. It returns the
// bytes given back.
func (ss *segments) tidy() (int64, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.active; s != nil && s.live == 0 && s.size > 0 {
		return s.size, ss.removeLocked(s)
	}
	return 0, nil
}

// read returns the payload p points to, checked against its CRC.
func (ss *segments) read(p segPtr) ([]byte, error) {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	s := ss.all[p.seg]
	if s == nil {
		return nil, fmt.Errorf("segment %s missing", segName(p.seg))
	}
	buf := make([]byte, recordHeader+p.size)
	if _, err := s.f.ReadAt(buf, p.off); err != nil {
		return nil, fmt.Errorf("read segment %s at %d: %w", segName(p.seg), p.off, err)
	}
	size, c := binary.BigEndian.Uint32(buf[0:]), binary.BigEndian.Uint32(buf[4:])
	payload := buf[recordHeader:]
	if int(size) != p.size || c != p.crc || crc32.Checksum(payload, crcTable) != c {
		return nil, fmt.Errorf("segment %s at %d: record damaged (length or checksum)", segName(p.seg), p.off)
	}
	return payload, nil
}

// release drops references to delivered batches and deletes the segments
// left without any (but the active one: tidy or the next rotation does).
// It returns the bytes given back.
func (ss *segments) release(counts map[uint32]int64) (freed int64, err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	before := ss.bytes
	defer func() { freed = before - ss.bytes }()
	var errs []error
	for id, n := range counts {
		s := ss.all[id]
		if s == nil {
			continue
		}
		s.live -= n
		if s.live <= 0 && s != ss.active {
			errs = append(errs, ss.removeLocked(s))
		}
	}
	return 0, errors.Join(errs...)
}

// diskBytes is what the segments take.
func (ss *segments) diskBytes() int64 {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	return ss.bytes
}

func (ss *segments) close() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, s := range ss.all {
		s.f.Close()
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
