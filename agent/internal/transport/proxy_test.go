package transport

import (
	"bufio"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func connectReq() *http.Request {
	return &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: "relay:443"}, Host: "relay:443", Header: http.Header{}}
}

func TestConnectResponse(t *testing.T) {
	tests := []struct {
		name, resp string
		wantKind   error
		wantMsg    string
	}{
		{"ok", "HTTP/1.1 200 Connection established\r\n\r\n", nil, ""},
		{"407", "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n", ErrProxyAuth,
			"proxy authentication failed (407): check the proxy credentials"},
		{"403", "HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!", ErrProxyRefused,
			"proxy refused CONNECT to relay:443: HTTP/1.1 403 Forbidden"},
		{"garbage", "SSH-2.0-OpenSSH\r\n", ErrProxyRefused, "proxy refused CONNECT to relay:443: bad answer from proxy:3128"},
		{"truncated", "HTTP/1.1 200", ErrProxyRefused, "bad answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := readConnectResponse(bufio.NewReader(strings.NewReader(tt.resp)), connectReq(), "proxy:3128", "relay:443")
			if tt.wantKind == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.wantKind) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("got %v, want %v containing %q", err, tt.wantKind, tt.wantMsg)
			}
		})
	}
}

// FuzzConnectResponse feeds arbitrary proxy answers to the CONNECT reader:
// an error or success, never a panic.
func FuzzConnectResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 407 Proxy Authentication Required\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		err := readConnectResponse(bufio.NewReader(strings.NewReader(string(b))), connectReq(), "proxy:3128", "relay:443")
		var pe *ProxyError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("got %T %v, want a *ProxyError", err, err)
		}
	})
}
