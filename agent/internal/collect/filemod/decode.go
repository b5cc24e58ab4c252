package filemod

import (
	"encoding/binary"
	"fmt"
)

// fanotify record layout (linux/fanotify.h).
const (
	metadataLen = 24 // struct fanotify_event_metadata
	fanVersion  = 3

	infoFID         = 1
	infoDFIDName    = 2
	infoDFID        = 3
	infoOldDFIDName = 10
	infoNewDFIDName = 12
)

// fidName is a directory file handle and a name inside it.
type fidName struct {
	Kind   uint8
	Handle string // fsid, handle type and handle bytes: a map key
	Name   string
}

// rawEvent is one fanotify event: its mask, the pid that caused it, and
// its directory+name records.
type rawEvent struct {
	Mask uint64
	PID  int32
	FIDs []fidName
}

// decodeEvents parses a read(2) of a fanotify fd. Malformed input gives an
// error (and the events before it), never a panic.
func decodeEvents(b []byte) ([]rawEvent, error) {
	le := binary.LittleEndian
	var out []rawEvent
	for len(b) > 0 {
		if len(b) < metadataLen {
			return out, fmt.Errorf("fanotify: %d trailing bytes", len(b))
		}
		evLen := int(le.Uint32(b[0:]))
		vers := b[4]
		metaLen := int(le.Uint16(b[6:]))
		if vers != fanVersion {
			return out, fmt.Errorf("fanotify: metadata version %d, want %d", vers, fanVersion)
		}
		if evLen < metadataLen || evLen > len(b) || metaLen < metadataLen || metaLen > evLen {
			return out, fmt.Errorf("fanotify: event length %d, metadata %d, have %d", evLen, metaLen, len(b))
		}
		ev := rawEvent{Mask: le.Uint64(b[8:]), PID: int32(le.Uint32(b[20:]))}
		info := b[metaLen:evLen]
		for len(info) > 0 {
			if len(info) < 4 {
				return out, fmt.Errorf("fanotify: short info header")
			}
			typ, ilen := info[0], int(le.Uint16(info[2:]))
			if ilen < 4 || ilen > len(info) {
				return out, fmt.Errorf("fanotify: info length %d, have %d", ilen, len(info))
			}
			body := info[4:ilen]
			switch typ {
			case infoFID, infoDFIDName, infoDFID, infoOldDFIDName, infoNewDFIDName:
				f, err := decodeFID(typ, body)
				if err != nil {
					return out, err
				}
				ev.FIDs = append(ev.FIDs, f)
			}
			info = info[ilen:]
		}
		out = append(out, ev)
		b = b[evLen:]
	}
	return out, nil
}

// decodeFID parses fsid (8 bytes), struct file_handle and, for the *_NAME
// kinds, a NUL-terminated name.
func decodeFID(typ uint8, b []byte) (fidName, error) {
	le := binary.LittleEndian
	if len(b) < 8+8 {
		return fidName{}, fmt.Errorf("fanotify: short fid record")
	}
	hb := int(le.Uint32(b[8:]))
	if hb < 0 || 16+hb > len(b) {
		return fidName{}, fmt.Errorf("fanotify: file handle of %d bytes, have %d", hb, len(b)-16)
	}
	f := fidName{Kind: typ, Handle: handleKey(b[0:8], int32(le.Uint32(b[12:])), b[16:16+hb])}
	if typ == infoDFIDName || typ == infoOldDFIDName || typ == infoNewDFIDName {
		name := b[16+hb:]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		f.Name = string(name)
	}
	return f, nil
}

// handleKey makes the map key of a directory from its fsid and handle.
func handleKey(fsid []byte, typ int32, handle []byte) string {
	k := make([]byte, 0, 12+len(handle))
	k = append(k, fsid...)
	k = binary.LittleEndian.AppendUint32(k, uint32(typ))
	return string(append(k, handle...))
}
