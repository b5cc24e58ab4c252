package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/quic-go/quic-go"

	"github.com/gatehouse/gatehouse/proto/framing"
)

// Transport names, the value of the metrics' transport label.
const (
	TransportQUIC = "quic"
	TransportTCP  = "tcp"
)

// maxStreams bounds the streams one agent keeps open at once (control and
// three lanes are all a well-behaved agent needs), over both transports.
const maxStreams = 16

// agentConn is what the agent protocol needs of a connection. QUIC
// connections and yamux sessions over TLS/TCP both provide it, so one
// protocol implementation serves both transports.
type agentConn interface {
	AcceptStream(ctx context.Context) (agentStream, error)
	// CloseWithError ends the connection. Over QUIC the code travels as the
	// application error code; over TCP only the Error frame sent before
	// carries it.
	CloseWithError(code uint64, msg string)
	TLS() tls.ConnectionState
	RemoteAddr() net.Addr
	Done() <-chan struct{}
	Transport() string
}

// agentStream is one bidirectional stream of an agentConn.
type agentStream interface {
	framing.Stream
	// Abort stops reading: a blocked Read returns.
	Abort()
}

// quicConn adapts *quic.Conn.
type quicConn struct{ c *quic.Conn }

func (q quicConn) AcceptStream(ctx context.Context) (agentStream, error) {
	st, err := q.c.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return quicStream{st}, nil
}

func (q quicConn) CloseWithError(code uint64, msg string) {
	q.c.CloseWithError(quic.ApplicationErrorCode(code), msg)
}
func (q quicConn) TLS() tls.ConnectionState { return q.c.ConnectionState().TLS }
func (q quicConn) RemoteAddr() net.Addr     { return q.c.RemoteAddr() }
func (q quicConn) Done() <-chan struct{}    { return q.c.Context().Done() }
func (q quicConn) Transport() string        { return TransportQUIC }

type quicStream struct{ *quic.Stream }

func (s quicStream) Abort() { s.CancelRead(0) }

// tcpConn is a yamux session over a TLS 1.3 connection. Streams beyond
// maxStreams open at once are refused (closed at once).
type tcpConn struct {
	tc   *tls.Conn
	sess *yamux.Session
	open atomic.Int64
}

func (t *tcpConn) AcceptStream(ctx context.Context) (agentStream, error) {
	for {
		st, err := t.sess.AcceptStreamWithContext(ctx)
		if err != nil {
			return nil, err
		}
		if t.open.Add(1) > maxStreams {
			t.open.Add(-1)
			st.Close()
			continue
		}
		return &tcpStream{Stream: st, c: t}, nil
	}
}

func (t *tcpConn) CloseWithError(uint64, string) { t.sess.Close() }
func (t *tcpConn) TLS() tls.ConnectionState      { return t.tc.ConnectionState() }
func (t *tcpConn) RemoteAddr() net.Addr          { return t.tc.RemoteAddr() }
func (t *tcpConn) Done() <-chan struct{}         { return t.sess.CloseChan() }
func (t *tcpConn) Transport() string             { return TransportTCP }

type tcpStream struct {
	*yamux.Stream
	c    *tcpConn
	once sync.Once
}

func (s *tcpStream) Close() error {
	s.once.Do(func() { s.c.open.Add(-1) })
	return s.Stream.Close()
}

func (s *tcpStream) Abort() { s.Stream.SetReadDeadline(time.Unix(1, 0)) }

// yamuxConfig is the shared session configuration; the relay also bounds
// the streams an agent may have waiting to be accepted.
func yamuxConfig(log *slog.Logger) *yamux.Config {
	c := framing.YamuxConfig(log)
	c.AcceptBacklog = maxStreams
	return c
}

// listen binds UDP (QUIC) and TCP on the same address. With port 0 the
// kernel picks the UDP port and TCP takes the same number, retrying when
// it is taken.
func listen(addr string, tc *tls.Config, qc *quic.Config) (*quic.Listener, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	var lastErr error
	for range 20 {
		ql, err := quic.ListenAddr(addr, tc, qc)
		if err != nil {
			return nil, nil, fmt.Errorf("listen quic %s: %w", addr, err)
		}
		udpPort := ql.Addr().(*net.UDPAddr).Port
		tl, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(udpPort)))
		if err == nil {
			return ql, tl, nil
		}
		ql.Close()
		lastErr = err
		if port != "0" && port != "" {
			break
		}
	}
	return nil, nil, fmt.Errorf("listen tcp %s: %w", addr, lastErr)
}

// tlsHandshakeTimeout bounds a TCP client's TLS handshake.
const tlsHandshakeTimeout = 10 * time.Second

// acceptTCP accepts TLS/TCP agents until the listener closes, handing each
// connection, once its TLS handshake is done, to serve.
func (s *Server) acceptTCP(ctx context.Context, wg *sync.WaitGroup) error {
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept tcp: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ac, err := s.handshakeTCP(ctx, c)
			if err != nil {
				s.h.m.rejects.WithLabelValues("tls_handshake").Inc()
				s.log.Debug("tcp agent handshake failed", "remote", c.RemoteAddr().String(), "err", err)
				c.Close()
				return
			}
			s.serveConn(ctx, ac)
		}()
	}
}

func (s *Server) handshakeTCP(ctx context.Context, c net.Conn) (agentConn, error) {
	tc := tls.Server(c, s.tlsConf)
	hctx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	// The config offers only framing.ALPN; a client naming none passes the
	// TLS layer, so insist here.
	if p := tc.ConnectionState().NegotiatedProtocol; p != s.tlsConf.NextProtos[0] {
		return nil, fmt.Errorf("alpn %q, want %q", p, s.tlsConf.NextProtos[0])
	}
	sess, err := yamux.Server(tc, yamuxConfig(s.log))
	if err != nil {
		return nil, fmt.Errorf("yamux: %w", err)
	}
	// Stop the session when the relay stops.
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	go func() { <-sess.CloseChan(); stop() }()
	return &tcpConn{tc: tc, sess: sess}, nil
}
