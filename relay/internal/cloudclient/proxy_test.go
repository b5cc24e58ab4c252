package cloudclient

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/internal/netns"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// fakeCloud answers enroll with fixed credentials.
func fakeCloud(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := proto.Marshal(&cloudv1.EnrollResponse{RelayId: "r1", RelaySecret: "s", TenantId: "t", SiteId: "s1"})
		w.Header().Set("Content-Type", contentType)
		w.Write(b)
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Through a real tinyproxy: good credentials work; a wrong password, a
// refused CONNECT and a proxy that is down each give a clear error, counted
// by reason, that never shows the password.
func TestCloudThroughProxy(t *testing.T) {
	srv := fakeCloud(t)
	cloudAddr := strings.TrimPrefix(srv.URL, "https://")
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxyPort := port(t, free.Addr().String())
	free.Close()
	p := netns.StartProxy(t, netns.ProxyOptions{
		Listen: "127.0.0.1", Port: proxyPort, User: "relay", Pass: "good-pw",
		ConnectPorts: []int{port(t, cloudAddr)},
	})
	strict := netns.StartProxy(t, netns.ProxyOptions{ // CONNECT only to 443
		Listen: "127.0.0.1", Port: port(t, closedPort(t)), User: "relay", Pass: "good-pw",
	})

	tests := []struct {
		name       string
		proxy      string
		wantErr    string // "" = success
		wantReason string
	}{
		{"good credentials", p.URLWith("relay", "good-pw"), "", ""},
		{"wrong password", p.URLWith("relay", "WRONG-pw"), "cloud proxy authentication failed (401): check cloud.proxy credentials", ProxyAuthFailed},
		{"no credentials", p.URLWith("", ""), "cloud proxy authentication failed (407): check cloud.proxy credentials", ProxyAuthFailed},
		{"connect refused", strict.URLWith("relay", "good-pw"), "cloud proxy " + strict.Addr() + " refused CONNECT to " + cloudAddr + ": 403", ProxyRefused},
		{"proxy down", "http://relay:good-pw@" + closedPort(t), "unreachable", ProxyUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			c, err := New(Options{
				URL: srv.URL, Fingerprint: identity.Fingerprint(srv.Certificate()), Timeout: 5 * time.Second,
				Proxy: tt.proxy, Registerer: reg,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Enroll(context.Background(), &cloudv1.EnrollRequest{EnrollmentToken: "tok"})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				if !p.LogContains("CONNECT " + cloudAddr) {
					t.Errorf("tinyproxy log has no CONNECT %s: the call did not go through the proxy", cloudAddr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("got %q, want no password in the message", err)
			}
			if reason, ok := IsProxyError(err); !ok || reason != tt.wantReason {
				t.Errorf("got reason %q (proxy error %v), want %q", reason, ok, tt.wantReason)
			}
			if !Retryable(err) || !Unreachable(err) {
				t.Errorf("got retryable %v, unreachable %v; want both (the cloud was not reached)", Retryable(err), Unreachable(err))
			}
			got := map[string]float64{}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() != "gatehouse_relay_cloud_proxy_errors_total" {
					continue
				}
				for _, m := range mf.GetMetric() {
					got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
				}
			}
			want := map[string]float64{ProxyAuthFailed: 0, ProxyRefused: 0, ProxyUnreachable: 0}
			want[tt.wantReason] = 1
			for k, v := range want {
				if got[k] != v {
					t.Errorf("gatehouse_relay_cloud_proxy_errors_total{reason=%q}: got %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestParseProxyURL(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"http://u:p@proxy:3128", ""},
		{"https://proxy.example:443", ""},
		{"http://proxy", "host:port"},
		{"socks5://u:pw@proxy:1080", "scheme"},
		{"http://u:pw@proxy:3128/path", "no path"},
		{"http://u:pw@[::1", "not a URL"},
	}
	for _, tt := range tests {
		_, err := ParseProxyURL(tt.in)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: got %v, want no error", tt.in, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: got %v, want error containing %q", tt.in, err, tt.wantErr)
		case err != nil && strings.Contains(err.Error(), "pw"):
			t.Errorf("%s: got %q, want the password left out", tt.in, err)
		}
	}
}
