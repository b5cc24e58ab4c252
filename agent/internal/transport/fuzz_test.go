package transport

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/gatehouse/gatehouse/agent/internal/ring"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

func frames(fs ...*agentv1.Frame) []byte {
	var b []byte
	for _, f := range fs {
		b, _ = framing.Append(b, f)
	}
	return b
}

// FuzzRelayFrames feeds arbitrary relay bytes to both agent-side readers:
// the control stream (Delivered, HeartbeatReply, Command, Error) and a lane
// stream (BatchAck). Bad input must end in an error, never a panic.
func FuzzRelayFrames(f *testing.F) {
	f.Add(frames(&agentv1.Frame{Body: &agentv1.Frame_BatchAck{BatchAck: &agentv1.BatchAck{Seq: 1, Status: agentv1.BatchAck_STATUS_SPOOLED}}},
		&agentv1.Frame{Body: &agentv1.Frame_BatchAck{BatchAck: &agentv1.BatchAck{Seq: 2, Status: agentv1.BatchAck_STATUS_SPOOL_FULL, RetryAfterMs: 5}}}))
	f.Add(frames(&agentv1.Frame{Body: &agentv1.Frame_Delivered{Delivered: &agentv1.Delivered{Seqs: []uint64{1, 2, 99}}}},
		&agentv1.Frame{Body: &agentv1.Frame_HeartbeatReply{HeartbeatReply: &agentv1.HeartbeatReply{Commands: []*agentv1.Command{{Id: "c", Action: &agentv1.Action{
			Type: agentv1.ActionType_ACTION_TYPE_ISOLATE, Payload: &agentv1.Action_Isolate{Isolate: &agentv1.IsolatePayload{}},
		}}}}}}))
	f.Add(frames(&agentv1.Frame{Body: &agentv1.Frame_Error{Error: &agentv1.Error{Code: agentv1.Error_CODE_KEY_EXPIRED}}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x7f})
	dir := f.TempDir()
	id, err := identity.LoadOrCreate(filepath.Join(dir, "id"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ring.Open(t.TempDir(), ring.Options{MaxBytes: 1 << 20, AgentID: id.ID()})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for i := 0; i < 3; i++ {
			r.Append(agentv1.Priority_PRIORITY_BULK, [][]byte{[]byte("{}")}, nil)
		}
		c := &Client{opts: Options{Ring: r, Clock: clockwork.NewRealClock()}, log: slog.New(slog.DiscardHandler)}
		s := &session{c: c, ctrl: io.Discard, cancel: func() {}}
		ls := &laneState{inflight: map[uint64]bool{1: true, 2: true, 3: true}, wake: make(chan struct{}, 1)}
		_ = s.readAcks(context.Background(), agentv1.Priority_PRIORITY_BULK, bytes.NewReader(b), ls)
		_ = s.readControl(context.Background(), framing.NewReader(bytes.NewReader(b), 0))
	})
}
