package dnsserver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// FuzzServePacket feeds raw bytes to the packet path: it must never panic
// and must answer with a parseable message no larger than the client takes,
// or drop the packet (counted), or hand it to the upstreams.
func FuzzServePacket(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{{"ingest.cloud.example.com.", dns.TypeA, false}, {"API.cloud.example.com.", dns.TypeA, true},
		{"_gatehouse._tcp.cloud.example.com.", dns.TypeSRV, true}, {"www.example.org.", dns.TypeAAAA, false}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if q.edns {
			m.SetEdns0(4096, true)
		}
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0xc0, 0x0c, 0, 1, 0, 1})
	cfg := testConfig()
	cfg.RefuseUnknown = false
	cfg.Upstreams = []string{"127.0.0.1:9"}
	cfg.AllowNetworks = []string{"127.0.0.0/8"}
	s, err := newServer(cfg, Deps{})
	if err != nil {
		f.Fatal(err)
	}
	client := netip.MustParseAddr("127.0.0.1")
	out := make([]byte, 0, maxTCPSize)
	f.Fuzz(func(t *testing.T, p []byte) {
		defer func() {
			if n := testutil.ToFloat64(s.m.panics); n != 0 {
				t.Fatalf("packet handling panicked (%v recovered)", n)
			}
		}()
		for _, proto := range []int{protoUDP, protoTCP} {
			resp, job := s.handle(p, client, proto, out)
			if resp == nil {
				continue
			}
			if job != nil {
				t.Fatalf("got both a response and a job")
			}
			m := new(dns.Msg)
			if err := m.Unpack(resp); err != nil && len(resp) > headerLen {
				t.Fatalf("response does not parse: %v (% x)", err, resp)
			}
			if proto == protoUDP && len(resp) > maxUDPSize {
				t.Fatalf("udp response %d bytes > %d", len(resp), maxUDPSize)
			}
			if len(p) >= 2 && (resp[0] != p[0] || resp[1] != p[1]) {
				t.Fatalf("response ID % x, query ID % x", resp[:2], p[:2])
			}
		}
	})
}
