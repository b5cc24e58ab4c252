package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"
)

// udpBatch is how many datagrams one recvmmsg/sendmmsg call moves.
const udpBatch = 64

// udpReadSize bounds a UDP query; longer ones are cut and then rejected.
const udpReadSize = 4096

// serveTCP accepts connections, at most maxTCPConns at once.
func (s *Server) serveTCP(ctx context.Context) {
	slots := make(chan struct{}, maxTCPConns)
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			s.log.Debug("dns tcp accept", "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			c.Close()
			continue
		}
		s.connMu.Lock()
		select {
		case <-s.closed:
			s.connMu.Unlock()
			c.Close()
			<-slots
			return
		default:
		}
		s.conns[c] = struct{}{}
		s.connMu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-slots }()
			s.serveConn(ctx, c)
			s.connMu.Lock()
			delete(s.conns, c)
			s.connMu.Unlock()
			c.Close()
		}()
	}
}

// serveConn answers length-prefixed queries in order until the client
// closes, idles out or sends a bad frame.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	from, ok := addrPortOf(c.RemoteAddr())
	if !ok {
		return
	}
	client := from.Addr().Unmap()
	var lenBuf [2]byte
	buf := make([]byte, maxTCPSize)
	out := make([]byte, 2, maxTCPSize+2)
	for ctx.Err() == nil {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		resp, job := s.handle(buf[:n], client, protoTCP, out[2:2])
		if job != nil {
			resp = s.resolve(ctx, job, out[2:2])
		}
		if resp == nil {
			continue
		}
		frame := append(out[:0], byte(len(resp)>>8), byte(len(resp)))
		frame = append(frame, resp...)
		_ = c.SetWriteDeadline(time.Now().Add(tcpIdle))
		if _, err := c.Write(frame); err != nil {
			return
		}
	}
}

func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort(), true
	case *net.UDPAddr:
		return a.AddrPort(), true
	}
	return netip.AddrPort{}, false
}
