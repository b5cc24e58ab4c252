package framing

import (
	"log/slog"
	"time"

	"github.com/hashicorp/yamux"
)

// YamuxKeepAlive is how often each side of a TLS/TCP session pings the
// other. It must stay shorter than every idle timeout on the path: the
// relay's (its QUIC MaxIdleTimeout is 2 min; yamux has none of its own) and
// the NAT and HTTP CONNECT proxies between agent and relay, which commonly
// drop connections idle for 30-60 s. Both sides use the same value so a
// dead peer is noticed equally fast from either end; a ping every 15 s per
// agent is negligible load on the relay.
const YamuxKeepAlive = 15 * time.Second

// YamuxConfig is the yamux configuration of the agent's TLS/TCP sessions,
// used by both the agent (client) and the relay (server) so they cannot
// drift apart. Windows bound what one peer can make the other buffer, like
// the QUIC receive windows. Callers may tighten server-only settings
// (AcceptBacklog) on the returned copy.
func YamuxConfig(log *slog.Logger) *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = true
	c.KeepAliveInterval = YamuxKeepAlive
	c.ConnectionWriteTimeout = 30 * time.Second
	c.MaxStreamWindowSize = 1 << 20
	c.StreamOpenTimeout = 30 * time.Second
	c.StreamCloseTimeout = 30 * time.Second
	c.LogOutput = nil
	c.Logger = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	return c
}
