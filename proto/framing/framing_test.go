package framing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"google.golang.org/protobuf/proto"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := []*agentv1.Frame{
		{Body: &agentv1.Frame_Hello{Hello: &agentv1.Hello{Hostname: "h1", RegistrationKey: "k"}}},
		{Body: &agentv1.Frame_EventBatch{EventBatch: &agentv1.EventBatch{AgentId: "a", Seq: 7, Events: [][]byte{[]byte(`{"message":"x"}`)}}}},
		{Body: &agentv1.Frame_BatchAck{BatchAck: &agentv1.BatchAck{Seq: 7, Status: agentv1.BatchAck_STATUS_SPOOLED}}},
	}
	for _, f := range in {
		if err := Write(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&buf, 0)
	for i, want := range in {
		got := &agentv1.Frame{}
		if err := r.Next(got); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("frame %d: got %v, want %v", i, got, want)
		}
	}
	if err := r.Next(&agentv1.Frame{}); err != io.EOF {
		t.Fatalf("after last frame: got %v, want io.EOF", err)
	}
}

func TestBadInput(t *testing.T) {
	huge := binary.AppendUvarint(nil, MaxFrameSize+1)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"oversized", huge, ErrFrameTooLarge},
		{"truncated body", append(binary.AppendUvarint(nil, 10), 1, 2, 3), io.ErrUnexpectedEOF},
		{"truncated prefix", []byte{0x80}, io.ErrUnexpectedEOF},
		{"overlong varint", bytes.Repeat([]byte{0xff}, 11), ErrBadFrame},
		{"garbage body", append(binary.AppendUvarint(nil, 3), 0xff, 0xff, 0xff), ErrBadFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := NewReader(bytes.NewReader(tt.in), 0).Next(&agentv1.Frame{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteRefusesOversized(t *testing.T) {
	big := &agentv1.EventBatch{Events: [][]byte{make([]byte, MaxFrameSize)}}
	if err := Write(io.Discard, big); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
}

// FuzzAgentFrames feeds arbitrary bytes to the agent<->relay stream decoder.
func FuzzAgentFrames(f *testing.F) {
	seed, _ := Append(nil, &agentv1.Frame{Body: &agentv1.Frame_EventBatch{EventBatch: &agentv1.EventBatch{AgentId: "a", Seq: 1, Events: [][]byte{[]byte("{}")}}}})
	f.Add(seed)
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b), 1<<16)
		for i := 0; i < 64; i++ {
			m := &agentv1.Frame{}
			if err := r.Next(m); err != nil {
				return
			}
			// Whatever decodes must re-encode.
			if _, err := Append(nil, m); err != nil {
				t.Fatalf("re-encode: %v", err)
			}
		}
	})
}

// FuzzCloudMessages feeds arbitrary bytes to every relay<->cloud message decoder.
func FuzzCloudMessages(f *testing.F) {
	up, _ := proto.Marshal(&cloudv1.UploadRequest{UploadId: "u", Batches: []*agentv1.EventBatch{{AgentId: "a", Seq: 2}}})
	f.Add(up)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range []proto.Message{
			&cloudv1.UploadRequest{}, &cloudv1.UploadAck{}, &cloudv1.EnrollRequest{}, &cloudv1.EnrollResponse{},
			&cloudv1.RegisterAgentRequest{}, &cloudv1.RegisterAgentResponse{}, &cloudv1.ControlPollRequest{},
			&cloudv1.ControlPollResponse{}, &cloudv1.Status{},
		} {
			_ = Unmarshal(b, m)
		}
	})
}

// A transport failure inside the length prefix is the stream's error, not a
// malformed frame: the relay must not count a dropped connection as an attack.
func TestTransportErrorIsNotBadFrame(t *testing.T) {
	broken := errors.New("stream reset")
	for _, tc := range []struct {
		name string
		in   io.Reader
		want error
	}{
		{"mid-prefix", io.MultiReader(bytes.NewReader([]byte{0x80}), iotest.ErrReader(broken)), broken},
		{"before prefix", iotest.ErrReader(broken), broken},
		{"eof mid-prefix", bytes.NewReader([]byte{0x80}), io.ErrUnexpectedEOF},
		{"clean eof", bytes.NewReader(nil), io.EOF},
		{"overflow", bytes.NewReader(bytes.Repeat([]byte{0xff}, 11)), ErrBadFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := NewReader(tc.in, 0).Next(&agentv1.Frame{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.want != ErrBadFrame && errors.Is(err, ErrBadFrame) {
				t.Fatalf("got %v: a transport error reported as a bad frame", err)
			}
		})
	}
}

// The raw framing of a stored batch must be exactly the generated encoding
// of the Frame holding it, so the relay cannot tell the two apart.
func TestAppendEventBatchMatchesFrame(t *testing.T) {
	eb := &agentv1.EventBatch{AgentId: "a", Seq: 9, Priority: agentv1.Priority_PRIORITY_BULK, Events: [][]byte{[]byte(`{"message":"x"}`)}}
	raw, err := proto.Marshal(eb)
	if err != nil {
		t.Fatal(err)
	}
	got, err := AppendEventBatch([]byte("prefix"), raw)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Append([]byte("prefix"), &agentv1.Frame{Body: &agentv1.Frame_EventBatch{EventBatch: eb}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	if _, err := AppendEventBatch(nil, make([]byte, MaxFrameSize)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized batch: got %v, want ErrFrameTooLarge", err)
	}
}

// FuzzEventBatchFrame: whatever batch bytes the agent frames raw, the relay's
// decoder reads back the same batch, or refuses the frame as malformed.
func FuzzEventBatchFrame(f *testing.F) {
	seed, _ := proto.Marshal(&agentv1.EventBatch{AgentId: "a", Seq: 1, Events: [][]byte{[]byte("{}")}})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, batch []byte) {
		b, err := AppendEventBatch(nil, batch)
		if err != nil {
			t.Fatal(err)
		}
		m := &agentv1.Frame{}
		err = NewReader(bytes.NewReader(b), 0).Next(m)
		want := &agentv1.EventBatch{}
		if proto.Unmarshal(batch, want) != nil {
			if err == nil && m.GetEventBatch() == nil {
				t.Fatal("a malformed batch decoded as another frame")
			}
			return
		}
		if err != nil {
			t.Fatalf("valid batch refused: %v", err)
		}
		if !proto.Equal(m.GetEventBatch(), want) {
			t.Fatalf("got %v, want %v", m.GetEventBatch(), want)
		}
	})
}
