package netns

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// ProbeFunc answers one probe spec ("tcp ADDR", "udp ADDR", "icmp ADDR", or
// a test's own kinds).
type ProbeFunc func(proto, addr string) error

// RunProbes is the body of a helper process that tests start inside a
// namespace (and a cgroup): it runs every spec after "--" in os.Args and
// prints "PROBE <spec> => ok|<error>" lines for the parent to read.
func RunProbes(probe ProbeFunc) {
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	for _, spec := range args {
		proto, addr, _ := strings.Cut(spec, " ")
		verdict := "ok"
		if err := probe(proto, addr); err != nil {
			verdict = strings.ReplaceAll(err.Error(), "\n", " ")
		}
		fmt.Printf("PROBE %s => %s\n", spec, verdict)
	}
}

// Probe is one exchange with addr, bounded by timeout (a failure bound,
// not a timing assertion): "tcp" connects to port and reads a byte, "udp"
// sends to port and waits for an echo, "icmp" pings (the kernel answers).
func Probe(proto, addr string, port int, timeout time.Duration) error {
	hp := net.JoinHostPort(addr, fmt.Sprint(port))
	deadline := time.Now().Add(timeout)
	switch proto {
	case "tcp":
		c, err := net.DialTimeout("tcp", hp, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(deadline)
		_, err = io.ReadFull(c, make([]byte, 1))
		return err
	case "udp":
		c, err := net.Dial("udp", hp)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(deadline)
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		_, err = c.Read(make([]byte, 16))
		return err
	case "icmp":
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return err
		}
		network, typ, reply := "ip4:icmp", byte(8), byte(0)
		if a.Is6() {
			network, typ, reply = "ip6:ipv6-icmp", 128, 129
		}
		c, err := net.ListenPacket(network, "")
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(deadline)
		msg := []byte{typ, 0, 0, 0, 0x47, 0x48, 0, 1, 'g', 'h'}
		if a.Is4() {
			binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
		} // the kernel fills the ICMPv6 checksum
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: a.AsSlice()}); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return err
			}
			if n >= 8 && buf[0] == reply && buf[4] == 0x47 && buf[5] == 0x48 && from.String() == a.String() {
				return nil
			}
		}
	}
	return fmt.Errorf("unknown probe %q", proto)
}

// icmpChecksum is the Internet checksum (RFC 1071).
func icmpChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
