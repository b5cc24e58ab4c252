package process

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

// execRecord builds an exec record as process.c writes it.
func execRecord(filename string, args []byte, argsLen uint32, flags uint32) []byte {
	b := make([]byte, recordSize, recordSize+len(args))
	le := binary.LittleEndian
	le.PutUint32(b[0:], typeExec)
	le.PutUint32(b[4:], 42)
	le.PutUint32(b[8:], 1)
	copy(b[32:48], "comm")
	copy(b[48:filenameEnd], filename)
	le.PutUint32(b[filenameEnd:], argsLen)
	le.PutUint32(b[filenameEnd+4:], flags)
	return append(b, args...)
}

func TestDecodeRecordArgs(t *testing.T) {
	long := "x\x00" + strings.Repeat("a", maxArgsBytes-2)
	tests := []struct {
		name      string
		rec       []byte
		want      []string
		truncated bool
		wantErr   bool
	}{
		{"argv", execRecord("/bin/sh", []byte("sh\x00-c\x00echo a b\x00"), 15, 0), []string{"sh", "-c", "echo a b"}, false, false},
		{"no final NUL", execRecord("/bin/x", []byte("x\x00ab"), 4, flagsTruncated), []string{"x", "ab"}, true, false},
		{"empty argv", execRecord("/bin/x", nil, 0, 0), nil, false, false},
		{"longest", execRecord("/bin/x", []byte(long), maxArgsBytes, flagsTruncated), []string{"x", long[2:]}, true, false},
		{"args_len past the record", execRecord("/bin/x", []byte("ab"), 3, 0), nil, false, true},
		{"args_len over the limit", execRecord("/bin/x", make([]byte, 2000), 2000, 0), nil, false, true},
		{"header cut short", execRecord("/bin/x", nil, 0, 0)[:recordSize-1], nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := decodeRecord(tt.rec)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err: got %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if !slices.Equal(r.Args, tt.want) {
				t.Errorf("args: got %q, want %q", r.Args, tt.want)
			}
			if r.ArgsTruncated != tt.truncated {
				t.Errorf("truncated: got %v, want %v", r.ArgsTruncated, tt.truncated)
			}
			if r.PID != 42 || r.PPID != 1 || r.Comm != "comm" {
				t.Errorf("header: got pid %d ppid %d comm %q, want 42 1 comm", r.PID, r.PPID, r.Comm)
			}
		})
	}
}
