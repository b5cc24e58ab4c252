package harness

import (
	"context"
	"net"
	"net/http"
	"time"
)

// Place is where a component runs: the test's own network namespace (the
// zero value: loopback addresses, free ports) or a network namespace of a
// system-test topology (internal/netns), where it listens on IP with the
// standard ports and its admin port on the namespace's own loopback.
type Place struct {
	Netns string // network namespace; "" = the test's own
	IP    string // the component's address for its peers; "" = 127.0.0.1
	// Dial reaches addresses inside Netns (its loopback included), for the
	// harness's admin and status calls. Needed when Netns is set.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// In reports whether the place is a namespace of its own.
func (p Place) In() bool { return p.Netns != "" }

// Ports used inside a namespace, where every component has the host to itself.
const (
	ServicePort = 443  // cloud relay API; relay agent port (UDP and TCP)
	AdminPort   = 9100 // admin HTTP, on the namespace's 127.0.0.1
)

// httpClient is a client for the component's admin HTTP from the test.
func (p Place) httpClient() *http.Client {
	if p.Dial == nil {
		return &http.Client{Timeout: time.Minute}
	}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: p.Dial, MaxIdleConnsPerHost: 2}}
}
