package netns

import (
	"fmt"
	"testing"
)

// Proxy credentials of the standard site.
const (
	ProxyUser = "gatehouse"
	ProxyPass = "s3cret-pw"
	ProxyPort = 8888
)

// SiteOptions shape the standard topology.
type SiteOptions struct {
	Relays int // relay hosts in the DMZ; default 1
	Agents int // agent hosts; default 1
}

// Site is the standard DMZ topology every system test starts from:
//
//	agent-N (198.51.100.0/24) ── router (nftables) ── relay-N, proxy (192.0.2.0/24)
//	                                   │
//	                                 cloud (203.0.113.0/24)
//
// The proxy host runs tinyproxy with basic credentials (ProxyUser,
// ProxyPass) on ProxyPort, allowed to CONNECT to 443. The firewall starts
// Open.
type Site struct {
	*Topology
	Agents    []*Host
	Relays    []*Host
	ProxyHost *Host
	Proxy     *Proxy
	Cloud     *Host
	policy    Policy
}

// NewSite builds the standard topology; it skips without root.
func NewSite(t testing.TB, o SiteOptions) *Site {
	t.Helper()
	if o.Relays <= 0 {
		o.Relays = 1
	}
	if o.Agents <= 0 {
		o.Agents = 1
	}
	s := &Site{Topology: New(t), policy: Open}
	for i := 1; i <= o.Agents; i++ {
		s.Agents = append(s.Agents, s.AddHost(Agents, fmt.Sprintf("agent-%d", i)))
	}
	for range o.Relays {
		s.AddRelayHost()
	}
	s.ProxyHost = s.AddHost(DMZ, "proxy")
	s.Cloud = s.AddHost(Cloud, "cloud")
	s.Proxy = StartProxy(t, ProxyOptions{
		Netns: s.ProxyHost.Netns, Listen: s.ProxyHost.IP.String(), Port: ProxyPort,
		User: ProxyUser, Pass: ProxyPass, ConnectPorts: []int{443},
	})
	return s
}

// Agent is the first agent host.
func (s *Site) Agent() *Host { return s.Agents[0] }

// Relay is the first relay host.
func (s *Site) Relay() *Host { return s.Relays[0] }

// AddRelayHost adds one more relay host to the DMZ (relay-2, relay-3, ...).
func (s *Site) AddRelayHost() *Host {
	s.t.Helper()
	h := s.AddHost(DMZ, fmt.Sprintf("relay-%d", len(s.Relays)+1))
	s.Relays = append(s.Relays, h)
	return h
}

// SetPolicy switches the router's firewall to a preset, at once, while
// everything runs. Connections the new policy denies stall silently.
func (s *Site) SetPolicy(p Policy) {
	s.t.Helper()
	ap := s.Proxy.AddrPort()
	rs, err := p.Ruleset(&ap)
	if err == nil {
		err = s.Nft(rs)
	}
	if err != nil {
		s.t.Fatalf("firewall %s: %v", p.Name, err)
	}
	s.policy = p
}

// Policy is the firewall preset in force.
func (s *Site) Policy() Policy { return s.policy }
