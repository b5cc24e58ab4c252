// Package framing carries protobuf messages on byte streams: each frame is a
// uvarint length followed by that many bytes of a serialized message. Agent
// and relay share it, so both sides enforce the same hard size limit.
package framing

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// MaxFrameSize is the largest frame either side accepts. An EventBatch is
// bounded well below it by the agent; anything larger is an attack or a bug.
const MaxFrameSize = 4 << 20

var (
	// ErrFrameTooLarge means the length prefix exceeds the limit; the stream
	// cannot be resynchronised and must be closed.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrBadFrame means the frame's bytes are not a valid message.
	ErrBadFrame = errors.New("malformed frame")
)

// Reader decodes frames from a stream.
type Reader struct {
	br  *bufio.Reader
	max int
	buf []byte
}

// NewReader returns a Reader that refuses frames above maxSize bytes
// (MaxFrameSize when maxSize <= 0).
func NewReader(r io.Reader, maxSize int) *Reader {
	if maxSize <= 0 {
		maxSize = MaxFrameSize
	}
	return &Reader{br: bufio.NewReaderSize(r, 32<<10), max: maxSize}
}

// Next reads one frame into m. It returns io.EOF at a clean end of stream,
// io.ErrUnexpectedEOF for a stream cut mid-frame, ErrFrameTooLarge or
// ErrBadFrame (wrapped) for hostile input.
func (r *Reader) Next(m proto.Message) error {
	n, err := r.readLength()
	if err != nil {
		return err
	}
	if n > uint64(r.max) {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, r.max)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.br, b); err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if err := Unmarshal(b, m); err != nil {
		return err
	}
	// Large one-off frames should not pin their buffer for the stream's life.
	if cap(r.buf) > 256<<10 {
		r.buf = nil
	}
	return nil
}

// readLength reads the uvarint length prefix. Unlike binary.ReadUvarint it
// keeps the stream's own errors (a reset, a closed connection) apart from a
// malformed prefix, so callers can tell a dead peer from a hostile one.
func (r *Reader) readLength() (uint64, error) {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.br.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && b > 1 {
			break
		}
		if b < 0x80 {
			return x | uint64(b)<<(7*i), nil
		}
		x |= uint64(b&0x7f) << (7 * i)
	}
	return 0, fmt.Errorf("%w: length prefix overflows 64 bits", ErrBadFrame)
}

// Unmarshal decodes one frame body, wrapping failures in ErrBadFrame.
func Unmarshal(b []byte, m proto.Message) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	return nil
}

// Append appends m as one frame to dst.
func Append(dst []byte, m proto.Message) ([]byte, error) {
	size := proto.Size(m)
	if size > MaxFrameSize {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, size, MaxFrameSize)
	}
	dst = binary.AppendUvarint(dst, uint64(size))
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

// Write writes m as one frame to w in a single Write call, so a frame is
// never interleaved with another writer's on the same stream.
func Write(w io.Writer, m proto.Message) error {
	b, err := Append(nil, m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
