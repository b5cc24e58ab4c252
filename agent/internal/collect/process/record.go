package process

import (
	"encoding/binary"
	"fmt"

	"github.com/gatehouse/gatehouse/agent/internal/collect"
)

// Record types written by process.c.
const (
	typeExec = 1
	typeExit = 2
)

// recordSize is sizeof(struct event) in process.c.
const recordSize = 6*4 + 8 + 16 + 256

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
		r.Filename = collect.CString(b[48:recordSize])
	}
	return r, nil
}
