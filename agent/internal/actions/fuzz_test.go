package actions

import "testing"

// FuzzDecodePayload: every payload decoder either decodes or errors.
func FuzzDecodePayload(f *testing.F) {
	for _, s := range []string{`{}`, ``, `{"path":"/etc/passwd"}`, `{"quarantine_id":"0123456789abcdef0123456789abcdef"}`,
		`{"pid":4242}`, `{"url":"http://p:3128"}`, `{"allow_cidrs":["10.0.0.0/8"],"allow_names":["a.example"]}`, `{"pid":1e99}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeEmpty(b)
		DecodeIsolate(b)
		if p, err := DecodePath(b); err == nil && (p == "" || p[0] != '/') {
			t.Fatalf("DecodePath accepted %q", p)
		}
		if id, err := DecodeQuarantineID(b); err == nil && !validQuarantineID(id) {
			t.Fatalf("DecodeQuarantineID accepted %q", id)
		}
		if pid, err := DecodePID(b); err == nil && pid <= 1 {
			t.Fatalf("DecodePID accepted %d", pid)
		}
		DecodeProxy(b)
	})
}
