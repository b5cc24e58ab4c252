package isolate

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// loadPrivate loads the programs with unpinned maps, or skips.
func loadPrivate(t *testing.T) *isolateObjects {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load eBPF programs")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("no BPF: memlock: %v", err)
	}
	spec, err := loadSpec(false)
	if err != nil {
		t.Fatal(err)
	}
	var objs isolateObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		t.Skipf("no BPF: load programs: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

func eth(ethertype uint16, l3 []byte) []byte {
	b := make([]byte, 14, 14+len(l3))
	binary.BigEndian.PutUint16(b[12:], ethertype)
	return append(b, l3...)
}

func ipv4(src, dst string, proto byte, payload []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = 64
	h[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return eth(0x0800, append(h, payload...))
}

func ipv6(src, dst string, next byte, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6] = next
	h[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return eth(0x86dd, append(h, payload...))
}

func TestProgramsVerdicts(t *testing.T) {
	objs := loadPrivate(t)
	k := &kernel{allow4: objs.Allow4, allow6: objs.Allow6, drops: objs.Drops}
	allowed := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("10.0.0.0/24"),
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("2001:db8::/32"),
	}
	if err := k.sync(allowed); err != nil {
		t.Fatal(err)
	}
	// A second sync with fewer prefixes deletes the stale one.
	if err := k.sync(allowed[:4]); err != nil {
		t.Fatal(err)
	}
	if err := k.sync(allowed); err != nil {
		t.Fatal(err)
	}
	if got, want := trieLen[isolateKey4](objs.Allow4), 3; got != want {
		t.Fatalf("IPv4 trie entries: got %d, want %d", got, want)
	}
	local4, local6 := "198.51.100.1", "2001:db9::1"
	tcp := make([]byte, 20)
	ns := []byte{135, 0, 0, 0, 0, 0, 0, 0}
	echo6 := []byte{128, 0, 0, 0, 0, 1, 0, 1}
	tests := []struct {
		name string
		prog *ebpf.Program
		pkt  []byte
		want uint32
	}{
		{"egress v4 allowed /24", objs.IsolateEgress, ipv4(local4, "10.0.0.9", 6, tcp), 1},
		{"egress v4 allowed /32", objs.IsolateEgress, ipv4(local4, "192.0.2.7", 17, tcp), 1},
		{"egress v4 denied", objs.IsolateEgress, ipv4(local4, "10.0.1.9", 6, tcp), 0},
		{"egress v4 denied neighbour of /32", objs.IsolateEgress, ipv4(local4, "192.0.2.8", 1, tcp), 0},
		{"egress v4 loopback", objs.IsolateEgress, ipv4("127.0.0.1", "127.0.0.53", 17, tcp), 1},
		{"ingress v4 from allowed", objs.IsolateIngress, ipv4("10.0.0.9", local4, 6, tcp), 1},
		{"ingress v4 from denied", objs.IsolateIngress, ipv4("10.0.1.9", "10.0.0.9", 6, tcp), 0},
		{"egress v6 allowed", objs.IsolateEgress, ipv6(local6, "2001:db8::5", 6, tcp), 1},
		{"egress v6 denied", objs.IsolateEgress, ipv6("2001:db8::5", local6, 6, tcp), 0},
		{"ingress v6 from allowed", objs.IsolateIngress, ipv6("2001:db8::5", local6, 17, tcp), 1},
		{"ingress v6 from denied", objs.IsolateIngress, ipv6(local6, "2001:db8::5", 17, tcp), 0},
		{"egress v6 neighbour solicitation", objs.IsolateEgress, ipv6("fe80::1", "ff02::1:ff00:1", 58, ns), 1},
		{"ingress v6 neighbour solicitation", objs.IsolateIngress, ipv6("fe80::2", "fe80::1", 58, ns), 1},
		{"egress v6 echo denied", objs.IsolateEgress, ipv6(local6, "2001:db9::2", 58, echo6), 0},
		{"egress v6 loopback", objs.IsolateEgress, ipv6("::1", "::1", 6, tcp), 1},
		// Truncated IP headers cannot be tested: BPF_PROG_TEST_RUN refuses
		// them (EINVAL), as the stack never hands them to these hooks.
		{"not IP passes", objs.IsolateEgress, eth(0x0806, make([]byte, 28)), 1},
	}
	var wantIn, wantEg uint64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.prog.Run(&ebpf.RunOptions{Data: tt.pkt})
			if err != nil {
				t.Fatalf("prog.Run: %v", err)
			}
			if got != tt.want {
				t.Errorf("verdict: got %d, want %d", got, tt.want)
			}
		})
		if tt.want == 0 {
			if tt.prog == objs.IsolateIngress {
				wantIn++
			} else {
				wantEg++
			}
		}
	}
	in, eg := sumDrops(objs.Drops)
	if in != wantIn || eg != wantEg {
		t.Errorf("drop counters: got ingress %d egress %d, want %d and %d", in, eg, wantIn, wantEg)
	}
}
