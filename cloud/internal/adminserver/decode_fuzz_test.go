package adminserver

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"testing"

	api "github.com/gatehouse/gatehouse/cloud/adminapi"
)

// FuzzDecodeRequest feeds arbitrary bodies to the admin request decoder and
// the valid_for parser: a value or a bad-request error, never a panic.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"group_id":"grp_1","valid_for":"8760h"}`))
	f.Add([]byte(`{"name":"acme"}`))
	f.Add([]byte(`{"valid_for":"-1h"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req api.CreateKeyRequest
		r := httptest.NewRequest("POST", "/api/v1/tenants/t/registration-keys", bytes.NewReader(b))
		err := decode(r, &req)
		if err != nil && !errors.Is(err, errBadRequest) {
			t.Fatalf("unexpected error class: %v", err)
		}
		if err == nil {
			if d, err := duration(req.ValidFor); err != nil && !errors.Is(err, errBadRequest) || d < 0 {
				t.Fatalf("valid_for %q: got %v, %v", req.ValidFor, d, err)
			}
		}
	})
}
