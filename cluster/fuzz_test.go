package cluster

import (
	"testing"
)

// FuzzRPCRequest feeds the cluster port's request decoder arbitrary bytes.
func FuzzRPCRequest(f *testing.F) {
	f.Add([]byte{0x04, 0x0a, 0x02, 0x08, 0x05})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeRequest(b)
		if err == nil && req.Call == nil {
			t.Fatal("decoded a request without a call")
		}
	})
}
