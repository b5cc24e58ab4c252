package relayapi

import (
	"errors"
	"testing"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// FuzzUploadBody feeds arbitrary bytes to the upload decoder, both as a zstd
// body and as an uncompressed one: it must answer a message or a bad-request
// or too-large error, never panic.
func FuzzUploadBody(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x28\xb5\x2f\xfd\x00\x58\x00\x00"))
	f.Add(zstdSeed(&cloudv1.UploadRequest{UploadId: "u"}))
	d, err := NewDecoder(1 << 20)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(d.Close)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, enc := range []string{"zstd", ""} {
			req, err := d.Upload(b, enc)
			if err != nil {
				if !errors.Is(err, errBadRequest) && !errors.Is(err, errTooLarge) {
					t.Fatalf("%s: unexpected error class: %v", enc, err)
				}
				continue
			}
			for _, bt := range req.Batches {
				_ = bt.GetAgentId()
			}
		}
	})
}

// FuzzRequests feeds arbitrary bytes to every small relay request decoder.
func FuzzRequests(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x03, 'a', 'b', 'c'})
	f.Add([]byte{0x12, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range []proto.Message{
			&cloudv1.EnrollRequest{}, &cloudv1.RegisterAgentRequest{}, &cloudv1.ControlPollRequest{}, &cloudv1.ActionResults{},
		} {
			if err := Message(b, m); err != nil && !errors.Is(err, errBadRequest) {
				t.Fatalf("unexpected error class: %v", err)
			}
		}
	})
}

// FuzzResultsBody feeds arbitrary bytes to the action results decoder, as a
// zstd body and as a plain one.
func FuzzResultsBody(f *testing.F) {
	f.Add([]byte{})
	valid, _ := proto.Marshal(&cloudv1.ActionResults{Results: []*cloudv1.ActionResult{{ActionId: "act_1", AgentId: "a", Ok: true, Output: []byte("out")}}})
	f.Add(valid)
	f.Add(encodeZstd(valid))
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	d, err := NewDecoder(1 << 20)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(d.Close)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, enc := range []string{"zstd", ""} {
			req, err := d.Results(b, enc)
			if err != nil {
				if !errors.Is(err, errBadRequest) && !errors.Is(err, errTooLarge) {
					t.Fatalf("%s: unexpected error class: %v", enc, err)
				}
				continue
			}
			for _, r := range req.Results {
				_ = r.GetActionId()
			}
		}
	})
}

func zstdSeed(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	return encodeZstd(b)
}

func encodeZstd(b []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		panic(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}
