package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/quic-go/quic-go"

	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
)

// Transport names, as status.json and transport.json report them.
const (
	TransportQUIC     = "quic"
	TransportTCP      = "tcp"
	TransportTCPProxy = "tcp+proxy"
)

// conn is a multiplexed connection to a relay: a QUIC connection, or a
// yamux session over TLS on TCP (direct or through an HTTP CONNECT proxy).
// Every stream is a separate flow, so lanes keep their priorities.
type conn interface {
	OpenStream(ctx context.Context) (framing.Stream, error)
	Close()
	Transport() string
}

// quicConn is a QUIC connection whose stream writes are timed (writeClock),
// so that a path that stopped answering is noticed (stall.go).
type quicConn struct {
	c *quic.Conn
	w *writeClock
}

func (q *quicConn) OpenStream(ctx context.Context) (framing.Stream, error) {
	st, err := q.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return quicStream{st, q.w}, nil
}
func (q *quicConn) Close()            { q.c.CloseWithError(framing.CloseNormal, "") }
func (q *quicConn) Transport() string { return TransportQUIC }

type quicStream struct {
	*quic.Stream
	w *writeClock
}

func (s quicStream) Write(p []byte) (int, error) {
	s.w.wrote()
	return s.Stream.Write(p)
}

type tcpConn struct {
	sess *yamux.Session
	kind string
}

func (t tcpConn) OpenStream(ctx context.Context) (framing.Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := t.sess.OpenStream()
	if err != nil {
		return nil, err
	}
	return st, nil
}
func (t tcpConn) Close()            { t.sess.Close() }
func (t tcpConn) Transport() string { return t.kind }

// pinCheck verifies the relay's key during one TLS handshake and
// remembers what it saw.
type pinCheck struct {
	pin, source string
	site        []string // keys of the site's other relays, told by a pinned relay
	tofu        bool
	seen        string
	err         error
}

func (p *pinCheck) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("relay sent no certificate")
	}
	leaf, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("relay certificate: %w", err)
	}
	p.seen = identity.Fingerprint(leaf)
	if p.tofu {
		return nil
	}
	if err := identity.VerifyPinned(append([]string{p.pin}, p.site...)...)(raw, nil); err != nil {
		p.err = fmt.Errorf("%w: got sha256:%s, a TLS-inspecting proxy or the wrong relay (pinned sha256:%s from %s)",
			ErrPinMismatch, p.seen, p.pin, p.source)
		return p.err
	}
	return nil
}

// tlsConfig returns a TLS config for one dial attempt, with its own pin check.
func (c *Client) tlsConfig() (*tls.Config, *pinCheck, error) {
	pc := &pinCheck{pin: c.opts.Fingerprint, source: "relay_fingerprint"}
	if pc.pin == "" {
		var err error
		if pc.pin, err = loadPin(c.opts.DataDir); err != nil {
			return nil, nil, err
		}
		pc.source = pinFile
		pc.tofu = pc.pin == ""
	}
	if !pc.tofu {
		pc.site = c.siteFingerprints()
	}
	cert, err := c.opts.Identity.Certificate(c.opts.Identity.ID(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("agent certificate: %w", err)
	}
	return &tls.Config{
		Certificates:          []tls.Certificate{cert},
		InsecureSkipVerify:    true, // the pin replaces CA validation
		VerifyPeerCertificate: pc.verify,
		MinVersion:            tls.VersionTLS13,
		NextProtos:            []string{framing.ALPN},
	}, pc, nil
}

// dialErr prefers the pin mismatch over the TLS alert it caused.
func dialErr(pc *pinCheck, addr, kind string, err error) error {
	if pc.err != nil {
		return pc.err
	}
	var pe *ProxyError
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("dial relay %s over %s: %w", addr, kind, err)
}

func (c *Client) dialQUIC(ctx context.Context, addr string) (conn, *pinCheck, error) {
	tc, pc, err := c.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	qc, err := quic.DialAddr(dctx, addr, tc, &quic.Config{
		// A relay that dies without closing (kill -9, power loss) is noticed
		// after MaxIdleTimeout; the agent then moves to another of the site.
		KeepAlivePeriod:      time.Second,
		MaxIdleTimeout:       3 * time.Second,
		HandshakeIdleTimeout: c.opts.DialTimeout,
	})
	if err != nil {
		return nil, nil, dialErr(pc, addr, TransportQUIC, err)
	}
	w := newWriteClock(c.opts.Clock.Now)
	w.conn = qc
	return &quicConn{c: qc, w: w}, pc, nil
}

// dialTCP dials TLS over TCP, through the proxy when one applies to addr.
func (c *Client) dialTCP(ctx context.Context, addr string) (conn, *pinCheck, error) {
	tc, pc, err := c.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	proxy, err := c.proxyFor(addr)
	if err != nil {
		return nil, nil, err
	}
	kind := TransportTCP
	var raw net.Conn
	if proxy != nil {
		kind = TransportTCPProxy
		raw, err = dialConnect(dctx, proxy, addr)
	} else {
		var d net.Dialer
		raw, err = d.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return nil, nil, dialErr(pc, addr, kind, err)
	}
	tlsc := tls.Client(raw, tc)
	if err := tlsc.HandshakeContext(dctx); err != nil {
		raw.Close()
		return nil, nil, dialErr(pc, addr, kind, err)
	}
	sess, err := yamux.Client(tlsc, framing.YamuxConfig(c.log))
	if err != nil {
		tlsc.Close()
		return nil, nil, fmt.Errorf("relay %s: yamux: %w", addr, err)
	}
	return tcpConn{sess: sess, kind: kind}, pc, nil
}

// savePinOnFirstUse pins the key seen in a trust-on-first-use handshake.
func (c *Client) savePinOnFirstUse(pc *pinCheck, addr string) error {
	if !pc.tofu || pc.seen == "" {
		return nil
	}
	if err := savePin(c.opts.DataDir, pc.seen); err != nil {
		return fmt.Errorf("save relay pin: %w", err)
	}
	c.log.Warn("trusting relay key on first use; pinned it", "relay", addr, "fingerprint", pc.seen, "pin_file", pinFile)
	return nil
}
