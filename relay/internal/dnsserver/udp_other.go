//go:build !linux

package dnsserver

import (
	"context"
	"errors"
	"net"
)

// serveUDP reads, answers and writes one datagram at a time (no
// recvmmsg/sendmmsg outside Linux).
func (s *Server) serveUDP(ctx context.Context, conn *net.UDPConn) {
	buf := make([]byte, udpReadSize)
	out := make([]byte, 0, 1500)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			s.log.Debug("dns udp read", "err", err)
			continue
		}
		resp, job := s.handle(buf[:n], from.Addr().Unmap(), protoUDP, out)
		if len(resp) > 0 {
			if _, err := conn.WriteToUDPAddrPort(resp, from); err != nil {
				s.log.Debug("dns udp write", "err", err)
			}
		}
		if job != nil {
			s.forwardUDP(ctx, job, conn, from)
		}
	}
}
