package process

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/gatehouse/gatehouse/agent/internal/collect"
)

// Record types written by process.c.
const (
	typeExec = 1
	typeExit = 2
)

// recordSize is offsetof(struct event, args) in process.c: every record
// has it, an exec record is followed by args_len bytes of argv.
const (
	recordSize     = 6*4 + 8 + 16 + 256 + 4 + 4
	filenameEnd    = 48 + 256
	maxArgsBytes   = 1023
	flagsTruncated = 1
)

// record is one ring-buffer record from the kernel.
type record struct {
	Type     uint32
	PID      uint32
	PPID     uint32
	UID      uint32
	GID      uint32
	ExitCode int32
	StartNS  uint64 // CLOCK_MONOTONIC
	Comm     string
	Filename string
	// Args is argv as the kernel held it at exec; ArgsTruncated when it
	// was longer than maxArgsBytes (the last one is then cut short).
	Args          []string
	ArgsTruncated bool
}

// decodeRecord parses a record; anything malformed is an error, never a
// panic.
func decodeRecord(b []byte) (record, error) {
	if len(b) < recordSize {
		return record{}, fmt.Errorf("process record: %d bytes, want %d", len(b), recordSize)
	}
	le := binary.LittleEndian
	r := record{
		Type: le.Uint32(b[0:]), PID: le.Uint32(b[4:]), PPID: le.Uint32(b[8:]),
		UID: le.Uint32(b[12:]), GID: le.Uint32(b[16:]), ExitCode: int32(le.Uint32(b[20:])),
		StartNS: le.Uint64(b[24:]),
		Comm:    collect.CString(b[32:48]),
	}
	if r.Type != typeExec && r.Type != typeExit {
		return record{}, fmt.Errorf("process record: type %d", r.Type)
	}
	if r.Type == typeExec {
		r.Filename = collect.CString(b[48:filenameEnd])
		n := int(le.Uint32(b[filenameEnd:]))
		if n > maxArgsBytes || len(b) < recordSize+n {
			return record{}, fmt.Errorf("process record: args_len %d in a %d-byte record", n, len(b))
		}
		r.Args = splitArgs(b[recordSize : recordSize+n])
		r.ArgsTruncated = le.Uint32(b[filenameEnd+4:])&flagsTruncated != 0
	}
	return r, nil
}

// splitArgs splits NUL-separated argv; the final NUL is optional (a
// truncated read ends mid-argument).
func splitArgs(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	b = bytes.TrimSuffix(b, []byte{0})
	parts := bytes.Split(b, []byte{0})
	args := make([]string, len(parts))
	for i, p := range parts {
		args[i] = string(p)
	}
	return args
}
