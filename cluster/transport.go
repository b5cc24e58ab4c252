package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The first byte a dialer writes on a cluster-port connection after the TLS
// handshake says what the connection carries.
const (
	connRaft byte = 1 // raft.NetworkTransport RPCs; CA-signed client cert required
	connRPC  byte = 2 // one RpcRequest/RpcResponse; CA-signed cert required except for Certify
)

const handshakeTimeout = 10 * time.Second

var errPartitioned = errors.New("cluster transport partitioned (test hook)")

// streamLayer is raft's StreamLayer over mutual TLS 1.3, sharing the port
// with the cluster RPC.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	pki       *pki
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	log       *slog.Logger
	handleRPC func(c *tls.Conn, verified bool)

	raftCh    chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once

	mu          sync.Mutex
	conns       map[*trackedConn]struct{}
	partitioned bool
	wg          sync.WaitGroup
}

var _ raft.StreamLayer = (*streamLayer)(nil)

type trackedConn struct {
	net.Conn
	sl   *streamLayer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.sl.mu.Lock()
		delete(c.sl.conns, c)
		c.sl.mu.Unlock()
	})
	return c.Conn.Close()
}

func (s *streamLayer) track(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.partitioned {
		c.Close()
		return nil, errPartitioned
	}
	t := &trackedConn{Conn: c, sl: s}
	s.conns[t] = struct{}{}
	return t, nil
}

// setPartitioned cuts (or restores) this node off the network: every live
// connection is closed and new ones are refused both ways. Tests only.
func (s *streamLayer) setPartitioned(on bool) {
	s.mu.Lock()
	s.partitioned = on
	var live []*trackedConn
	if on {
		for c := range s.conns {
			live = append(live, c)
		}
	}
	s.mu.Unlock()
	for _, c := range live {
		c.Close()
	}
}

// serve accepts connections until the listener is closed.
func (s *streamLayer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handshake(c)
		}()
	}
}

func (s *streamLayer) handshake(raw net.Conn) {
	c, err := s.track(raw)
	if err != nil {
		return
	}
	tc := tls.Server(c, s.pki.serverTLS())
	_ = tc.SetDeadline(time.Now().Add(handshakeTimeout))
	var kind [1]byte
	if err := tc.Handshake(); err != nil {
		s.log.Debug("cluster port: handshake failed", "remote", raw.RemoteAddr(), "err", err)
		tc.Close()
		return
	}
	if _, err := io.ReadFull(tc, kind[:]); err != nil {
		tc.Close()
		return
	}
	verified := len(tc.ConnectionState().VerifiedChains) > 0
	switch kind[0] {
	case connRaft:
		if !verified {
			s.log.Warn("cluster port: raft connection without a site certificate refused", "remote", raw.RemoteAddr())
			tc.Close()
			return
		}
		_ = tc.SetDeadline(time.Time{})
		select {
		case s.raftCh <- tc:
		case <-s.closed:
			tc.Close()
		}
	case connRPC:
		s.handleRPC(tc, verified)
	default:
		s.log.Warn("cluster port: unknown connection type", "remote", raw.RemoteAddr(), "type", kind[0])
		tc.Close()
	}
}

// Accept hands raft the next inbound raft connection.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.raftCh:
		return c, nil
	case <-s.closed:
		return nil, ErrClosed
	}
}

// Close stops accepting; idempotent. Live connections are closed too.
func (s *streamLayer) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.ln.Close()
		s.mu.Lock()
		var live []*trackedConn
		for c := range s.conns {
			live = append(live, c)
		}
		s.mu.Unlock()
		for _, c := range live {
			c.Close()
		}
	})
	return nil
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial opens a raft connection to a peer.
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dialKind(ctx, string(addr), connRaft, s.pki.clientTLS())
}

func (s *streamLayer) dialKind(ctx context.Context, addr string, kind byte, cfg *tls.Config) (net.Conn, error) {
	select {
	case <-s.closed:
		return nil, ErrClosed
	default:
	}
	raw, err := s.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial cluster node %s: %w", addr, err)
	}
	c, err := s.track(raw)
	if err != nil {
		return nil, fmt.Errorf("dial cluster node %s: %w", addr, err)
	}
	return clientHandshake(ctx, c, addr, kind, cfg)
}

func clientHandshake(ctx context.Context, c net.Conn, addr string, kind byte, cfg *tls.Config) (net.Conn, error) {
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		tc.Close()
		return nil, fmt.Errorf("tls handshake with cluster node %s: %w", addr, err)
	}
	if _, err := tc.Write([]byte{kind}); err != nil {
		tc.Close()
		return nil, fmt.Errorf("cluster node %s: %w", addr, err)
	}
	return tc, nil
}
