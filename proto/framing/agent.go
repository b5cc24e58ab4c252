package framing

// ALPN is the TLS application protocol agents and relays speak, over QUIC and
// (later) over TLS on TCP.
const ALPN = "gatehouse-agent/1"

// Application error codes used when the relay closes an agent's connection.
// They mirror agentv1.Error codes the relay sends just before closing.
const (
	CloseNormal       = 0
	CloseProtocol     = 1 // malformed or oversized frame, or out-of-order message
	CloseUnknownAgent = 2
	CloseKeyInvalid   = 3
	CloseKeyExpired   = 4
	CloseUnavailable  = 5 // relay shutting down or unable to serve
)
