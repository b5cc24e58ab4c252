//go:build linux

package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr: Go pads it to the alignment of Msghdr, as C
// does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// udpBatcher moves datagrams with recvmmsg/sendmmsg on preallocated
// headers, buffers and socket addresses: nothing is allocated per packet.
// The syscalls are non-blocking raw syscalls made inside the socket's
// RawConn, so an idle socket parks its goroutine in the netpoller like
// any Go socket, while a busy one never enters the scheduler's
// syscall path (no P hand-off, no sysmon retake, no thread wake-up).
type udpBatcher struct {
	rc     syscall.RawConn
	in     []mmsghdr
	out    []mmsghdr
	names  []unix.RawSockaddrInet6 // source of in[i], destination of its answer
	inIov  []unix.Iovec
	outIov []unix.Iovec
	bufs   [][]byte

	// results of the last raw call
	n     int
	errno syscall.Errno
	nout  int
	off   int

	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

// readSpins is how many empty non-blocking reads a busy reader makes before
// it parks (each about a microsecond).
const readSpins = 24

func newUDPBatcher(conn *net.UDPConn, size int) (*udpBatcher, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &udpBatcher{
		rc:     rc,
		in:     make([]mmsghdr, size),
		out:    make([]mmsghdr, size),
		names:  make([]unix.RawSockaddrInet6, size),
		inIov:  make([]unix.Iovec, size),
		outIov: make([]unix.Iovec, size),
		bufs:   make([][]byte, size),
	}
	for i := range b.in {
		b.bufs[i] = make([]byte, udpReadSize)
		b.inIov[i].Base = &b.bufs[i][0]
		b.inIov[i].SetLen(udpReadSize)
		b.in[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.in[i].hdr.Iov = &b.inIov[i]
		b.in[i].hdr.SetIovlen(1)
		b.out[i].hdr.Iov = &b.outIov[i]
		b.out[i].hdr.SetIovlen(1)
	}
	b.readFn = func(fd uintptr) bool {
		for spins := 0; ; {
			r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.in[0])),
				uintptr(len(b.in)), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				// Under load the next datagram is usually microseconds away:
				// a few more tries beat parking in the netpoller and being
				// woken again, which is where the latency tail came from.
				if spins < readSpins {
					spins++
					continue
				}
				return false // wait in the netpoller
			}
			b.n, b.errno = int(r), e
			return true
		}
	}
	b.writeFn = func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.off])),
				uintptr(b.nout-b.off), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			b.n, b.errno = int(r), e
			return true
		}
	}
	return b, nil
}

// read receives up to len(b.in) datagrams, waiting for the first.
func (b *udpBatcher) read() (int, error) {
	for i := range b.in {
		b.in[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.in[i].hdr.Flags = 0
		b.in[i].n = 0
	}
	if err := b.rc.Read(b.readFn); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, b.errno
	}
	return b.n, nil
}

// packet is the i-th datagram read and its source (unzoned, unmapped).
func (b *udpBatcher) packet(i int) ([]byte, netip.AddrPort, bool) {
	// A datagram longer than the buffer arrives cut (MSG_TRUNC), as a
	// plain read would have it, and is then rejected by handle.
	n := min(int(b.in[i].n), udpReadSize)
	from, ok := sockaddrAddrPort(&b.names[i], b.in[i].hdr.Namelen)
	return b.bufs[i][:n], from, ok
}

// zoned is the source of the i-th datagram with its IPv6 scope, for
// replies sent outside the batch.
func (b *udpBatcher) zoned(i int, ap netip.AddrPort) netip.AddrPort {
	sa := &b.names[i]
	if sa.Family == unix.AF_INET6 && sa.Scope_id != 0 {
		return netip.AddrPortFrom(ap.Addr().WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10)), ap.Port())
	}
	return ap
}

// queue adds an answer to the i-th datagram to the next write.
func (b *udpBatcher) queue(i int, resp []byte) {
	o := &b.out[b.nout]
	o.hdr.Name = b.in[i].hdr.Name
	o.hdr.Namelen = b.in[i].hdr.Namelen
	b.outIov[b.nout].Base = &resp[0]
	b.outIov[b.nout].SetLen(len(resp))
	b.nout++
}

// flush sends the queued answers; a datagram that fails is skipped.
func (b *udpBatcher) flush() error {
	defer func() { b.nout = 0 }()
	for b.off = 0; b.off < b.nout; {
		if err := b.rc.Write(b.writeFn); err != nil {
			return err
		}
		k := b.n
		if b.errno != 0 {
			k = 1 // skip the datagram that failed
		}
		b.off += max(k, 1)
	}
	return nil
}

// sockaddrAddrPort decodes a sockaddr_in or sockaddr_in6 written by the
// kernel, without the IPv6 zone and with IPv4-mapped addresses unmapped.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6, namelen uint32) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET:
		if namelen < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}, false
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port), true
	case unix.AF_INET6:
		if namelen < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}, false
		}
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port), true
	}
	return netip.AddrPort{}, false
}

// serveUDP is one reader per SO_REUSEPORT socket: read a batch
// (recvmmsg), answer inline (overrides, cache, refusals), send the answers
// in one batch (sendmmsg), hand upstream work to forwardUDP.
func (s *Server) serveUDP(ctx context.Context, conn *net.UDPConn) {
	b, err := newUDPBatcher(conn, udpBatch)
	if err != nil {
		s.log.Error("dns udp socket", "err", err)
		return
	}
	outBufs := make([][]byte, udpBatch)
	for i := range outBufs {
		outBufs[i] = make([]byte, 0, 1500)
	}
	for {
		n, err := b.read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			s.log.Debug("dns udp read", "err", err)
			continue
		}
		for i := range n {
			p, from, ok := b.packet(i)
			if !ok {
				continue
			}
			resp, job := s.handle(p, from.Addr(), protoUDP, outBufs[i])
			if len(resp) > 0 {
				b.queue(i, resp)
			}
			if job != nil {
				s.forwardUDP(ctx, job, conn, b.zoned(i, from))
			}
		}
		if err := b.flush(); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("dns udp write", "err", err)
		}
	}
}
