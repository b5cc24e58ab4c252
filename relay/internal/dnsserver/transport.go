package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpBatch is how many datagrams one recvmmsg/sendmmsg call moves.
const udpBatch = 64

// udpReadSize bounds a UDP query; longer ones are cut and then rejected.
const udpReadSize = 4096

// serveUDP is one reader per SO_REUSEPORT socket: read a batch (recvmmsg
// on Linux), answer inline (overrides, cache, refusals), send the answers
// in one batch (sendmmsg), hand upstream work to forwardUDP.
func (s *Server) serveUDP(ctx context.Context, conn *net.UDPConn) {
	type batcher interface {
		ReadBatch([]ipv4.Message, int) (int, error)
		WriteBatch([]ipv4.Message, int) (int, error)
	}
	var bc batcher = ipv4.NewPacketConn(conn)
	if la, ok := addrPortOf(conn.LocalAddr()); ok && !la.Addr().Unmap().Is4() {
		bc = ipv6.NewPacketConn(conn)
	}
	in := make([]ipv4.Message, udpBatch)
	outMsgs := make([]ipv4.Message, udpBatch)
	outBufs := make([][]byte, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpReadSize)}
		outBufs[i] = make([]byte, 0, 1500)
		outMsgs[i].Buffers = make([][]byte, 1)
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			s.log.Debug("dns udp read", "err", err)
			continue
		}
		nout := 0
		for i := range n {
			from, ok := addrPortOf(in[i].Addr)
			if !ok {
				continue
			}
			resp, job := s.handle(in[i].Buffers[0][:in[i].N], from.Addr().Unmap(), protoUDP, outBufs[i])
			if resp != nil {
				outMsgs[nout].Buffers[0] = resp
				outMsgs[nout].Addr = in[i].Addr
				nout++
			}
			if job != nil {
				s.forwardUDP(ctx, job, conn, from)
			}
		}
		for sent := 0; sent < nout; {
			k, err := bc.WriteBatch(outMsgs[sent:nout], 0)
			if err != nil {
				s.log.Debug("dns udp write", "err", err)
				if errors.Is(err, net.ErrClosed) {
					return
				}
				k = max(k, 1) // skip the datagram that failed
			}
			sent += k
		}
	}
}

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
