package relayapi

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// Request decoding errors, mapped to HTTP status in errors.go.
var (
	errBadRequest    = errors.New("bad request")
	errTooLarge      = errors.New("request too large")
	errBadEncoding   = errors.New("unsupported content encoding")
	errUnauthorized  = errors.New("missing or malformed authorization")
	errMethodOrMedia = errors.New("unsupported media type")
)

// Decoder turns request bodies into messages, bounding decompression.
type Decoder struct {
	zr              *zstd.Decoder
	maxDecompressed int64
}

// NewDecoder makes a decoder that refuses zstd bodies that decompress to more
// than maxDecompressed bytes.
func NewDecoder(maxDecompressed int64) (*Decoder, error) {
	zr, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(uint64(maxDecompressed)),
		zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &Decoder{zr: zr, maxDecompressed: maxDecompressed}, nil
}

// Close releases the decoder.
func (d *Decoder) Close() { d.zr.Close() }

// Body undoes the Content-Encoding ("zstd", or "" / "identity").
func (d *Decoder) Body(body []byte, encoding string) ([]byte, error) {
	switch encoding {
	case "", "identity":
		if int64(len(body)) > d.maxDecompressed {
			return nil, errTooLarge
		}
		return body, nil
	case "zstd":
		out, err := d.zr.DecodeAll(body, nil)
		switch {
		case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrWindowSizeExceeded):
			return nil, fmt.Errorf("%w: decompressed body over %d bytes", errTooLarge, d.maxDecompressed)
		case err != nil:
			return nil, fmt.Errorf("%w: zstd: %v", errBadRequest, err)
		case int64(len(out)) > d.maxDecompressed:
			return nil, fmt.Errorf("%w: decompressed body over %d bytes", errTooLarge, d.maxDecompressed)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w %q", errBadEncoding, encoding)
	}
}

// Message unmarshals a protobuf body into m.
func Message(body []byte, m proto.Message) error {
	if err := proto.Unmarshal(body, m); err != nil {
		return fmt.Errorf("%w: decode %s: %v", errBadRequest, m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

// Upload decodes an upload body: content decoding, then UploadRequest.
func (d *Decoder) Upload(body []byte, encoding string) (*cloudv1.UploadRequest, error) {
	raw, err := d.Body(body, encoding)
	if err != nil {
		return nil, err
	}
	req := &cloudv1.UploadRequest{}
	if err := Message(raw, req); err != nil {
		return nil, err
	}
	return req, nil
}

// Results decodes an action results body: content decoding, then
// ActionResults.
func (d *Decoder) Results(body []byte, encoding string) (*cloudv1.ActionResults, error) {
	raw, err := d.Body(body, encoding)
	if err != nil {
		return nil, err
	}
	req := &cloudv1.ActionResults{}
	if err := Message(raw, req); err != nil {
		return nil, err
	}
	return req, nil
}
