//go:build linux

package dnsserver

import (
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

func TestSockaddrAddrPort(t *testing.T) {
	v4 := func(a [4]byte, port uint16) (unix.RawSockaddrInet6, uint32) {
		var sa unix.RawSockaddrInet6
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		sa4.Family = unix.AF_INET
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		sa4.Addr = a
		return sa, unix.SizeofSockaddrInet4
	}
	v6 := func(a string, port uint16, scope uint32) (unix.RawSockaddrInet6, uint32) {
		var sa unix.RawSockaddrInet6
		sa.Family = unix.AF_INET6
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		sa.Addr = netip.MustParseAddr(a).As16()
		sa.Scope_id = scope
		return sa, unix.SizeofSockaddrInet6
	}
	tests := []struct {
		name    string
		sa      func() (unix.RawSockaddrInet6, uint32)
		want    string
		wantOK  bool
		wantZon string
	}{
		{"ipv4", func() (unix.RawSockaddrInet6, uint32) { return v4([4]byte{192, 0, 2, 7}, 5353) }, "192.0.2.7:5353", true, "192.0.2.7:5353"},
		{"ipv6", func() (unix.RawSockaddrInet6, uint32) { return v6("2001:db8::1", 53, 0) }, "[2001:db8::1]:53", true, "[2001:db8::1]:53"},
		{"mapped ipv4", func() (unix.RawSockaddrInet6, uint32) { return v6("::ffff:10.0.0.1", 40000, 0) }, "10.0.0.1:40000", true, "10.0.0.1:40000"},
		{"link-local scope", func() (unix.RawSockaddrInet6, uint32) { return v6("fe80::1", 1234, 3) }, "[fe80::1]:1234", true, "[fe80::1%3]:1234"},
		{"short ipv4", func() (unix.RawSockaddrInet6, uint32) { sa, _ := v4([4]byte{1, 2, 3, 4}, 1); return sa, 4 }, "", false, ""},
		{"short ipv6", func() (unix.RawSockaddrInet6, uint32) { sa, _ := v6("::1", 1, 0); return sa, 16 }, "", false, ""},
		{"unix family", func() (unix.RawSockaddrInet6, uint32) {
			var sa unix.RawSockaddrInet6
			sa.Family = unix.AF_UNIX
			return sa, unix.SizeofSockaddrInet6
		}, "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sa, l := tt.sa()
			got, ok := sockaddrAddrPort(&sa, l)
			if ok != tt.wantOK {
				t.Fatalf("ok: got %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			if got.String() != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			b := &udpBatcher{names: []unix.RawSockaddrInet6{sa}}
			if z := b.zoned(0, got); z.String() != tt.wantZon {
				t.Errorf("zoned: got %s, want %s", z, tt.wantZon)
			}
		})
	}
}

// TestUDPBatchAnswersEveryQuery sends waves of queries from several
// sockets without waiting, so that recvmmsg returns many at once, and
// checks that every one is answered once, with its own ID and name, over
// IPv4, IPv6 and a dual-stack socket (IPv4-mapped sources).
func TestUDPBatchAnswersEveryQuery(t *testing.T) {
	tests := []struct{ listen, dial string }{
		{"127.0.0.1:0", "127.0.0.1"},
		{"[::1]:0", "::1"},
		{"[::]:0", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.listen+" from "+tt.dial, func(t *testing.T) {
			if pc, err := net.ListenPacket("udp", tt.listen); err != nil {
				t.Skipf("listen %s: %v", tt.listen, err)
			} else {
				pc.Close()
			}
			cfg := testConfig()
			cfg.Listen = tt.listen
			s, _ := start(t, cfg)
			to := netip.AddrPortFrom(netip.MustParseAddr(tt.dial), s.Addr().Port())
			names := []string{"ingest.cloud.example.com.", "cloud.example.com."}
			types := []uint16{dns.TypeA, dns.TypeTXT}
			answers := []int{2, 1}
			const clients, waves, perWave = 4, 8, 16
			conns := make([]*net.UDPConn, clients)
			for c := range conns {
				conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
				if err != nil {
					t.Fatalf("dial %s: %v", to, err)
				}
				defer conn.Close()
				conns[c] = conn
			}
			buf := make([]byte, 1500)
			for w := range waves {
				for i := range perWave {
					for c, conn := range conns {
						m := new(dns.Msg)
						m.SetQuestion(names[i%len(names)], types[i%len(types)])
						m.Id = uint16(c<<12 | w<<8 | i)
						b, _ := m.Pack()
						if _, err := conn.Write(b); err != nil {
							t.Fatalf("write: %v", err)
						}
					}
				}
				for c, conn := range conns {
					seen := map[uint16]bool{}
					_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
					for len(seen) < perWave {
						n, err := conn.Read(buf)
						if err != nil {
							t.Fatalf("client %d wave %d: %d of %d answers: %v", c, w, len(seen), perWave, err)
						}
						r := new(dns.Msg)
						if err := r.Unpack(buf[:n]); err != nil {
							t.Fatalf("unpack: %v", err)
						}
						i := int(r.Id & 0xff)
						if int(r.Id>>12) != c || int(r.Id>>8&0xf) != w || i >= perWave || seen[r.Id] {
							t.Fatalf("client %d wave %d: got unexpected or repeated ID %#x", c, w, r.Id)
						}
						seen[r.Id] = true
						want := names[i%len(names)]
						if len(r.Question) != 1 || r.Question[0].Name != want || r.Question[0].Qtype != types[i%len(types)] ||
							r.Rcode != dns.RcodeSuccess || len(r.Answer) != answers[i%len(answers)] {
							t.Errorf("ID %#x: got %v rcode %s %d answers, want question %s, %d answers", r.Id, r.Question,
								dns.RcodeToString[r.Rcode], len(r.Answer), want, answers[i%len(answers)])
						}
					}
				}
			}
		})
	}
}
