package framing

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// eventBatchField is Frame.event_batch's number, read from the schema so the
// raw framing below cannot drift from the generated code.
var eventBatchField = (&agentv1.Frame{}).ProtoReflect().Descriptor().Fields().ByName("event_batch").Number()

// AppendEventBatch appends batch, an already serialized EventBatch (as the
// agent's spool stores it), to dst as one Frame, without decoding and
// re-encoding it. The bytes are exactly what Append of a Frame holding the
// decoded batch produces, and Reader decodes them like any other frame.
func AppendEventBatch(dst, batch []byte) ([]byte, error) {
	size := protowire.SizeTag(eventBatchField) + protowire.SizeBytes(len(batch))
	if size > MaxFrameSize {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, size, MaxFrameSize)
	}
	dst = binary.AppendUvarint(dst, uint64(size))
	dst = protowire.AppendTag(dst, eventBatchField, protowire.BytesType)
	return protowire.AppendBytes(dst, batch), nil
}
