// Package settings is the appliance's own configuration: the network, who
// may reach the admin and cluster ports, where updates come from, and the
// relay's configuration carried inside it. It arrives once (credential,
// seed volume or the console wizard) and is kept on the data partition.
package settings

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/internal/configfile"
)

// Paths on the appliance. The data partition is mounted at DataMount and
// survives updates; everything under /run is remade at each boot.
const (
	DataMount     = "/data"
	SettingsPath  = DataMount + "/appliance/appliance.yaml"
	TokenPath     = DataMount + "/appliance/enrollment-token"
	FailedPath    = DataMount + "/appliance/failed-versions"
	RelayConfig   = "/run/gatehouse/relay.yaml"
	RelayDataDir  = "/var/lib/gatehouse-relay"
	DefaultsPath  = "/usr/share/gatehouse/appliance-defaults.yaml"
	ReleasePath   = "/usr/share/gatehouse/release"
	UpdateKeyPath = "/usr/share/gatehouse/update-key.pub"
)

// Settings is appliance.yaml.
type Settings struct {
	Hostname string  `yaml:"hostname"`
	Network  Network `yaml:"network"`
	// Management networks may reach the relay's admin port (metrics,
	// health, status); nobody else may.
	Management []string `yaml:"management"`
	// ClusterPeers are the other members' addresses: only they reach the
	// cluster port, and the relay may connect to them.
	ClusterPeers []string `yaml:"cluster_peers"`
	// NTP servers the appliance may reach (UDP 123).
	NTP    []string `yaml:"ntp"`
	Update Update   `yaml:"update"`
	// Relay is the relay's configuration (docs/samples/relay.yaml); the
	// appliance sets data_dir and, when absent, admin_listen.
	Relay yaml.Node `yaml:"relay"`
}

// Network is the one interface's addressing.
type Network struct {
	Address string   `yaml:"address"` // "dhcp" or CIDR, e.g. 192.0.2.10/24
	Gateway string   `yaml:"gateway"`
	DNS     []string `yaml:"dns"`
}

// Update says where signed update bundles come from.
type Update struct {
	URL       string        `yaml:"url"`        // channel manifest; "" = updates only by hand
	Interval  time.Duration `yaml:"interval"`   // how often the manifest is read
	BootTries int           `yaml:"boot_tries"` // boots a new slot gets to prove itself
}

// RelayView is what the appliance reads from the relay's configuration:
// the ports the firewall opens and the hosts it lets the relay reach.
type RelayView struct {
	Listen      string `yaml:"listen"`
	AdminListen string `yaml:"admin_listen"`
	Cloud       struct {
		URL             string `yaml:"url"`
		Proxy           string `yaml:"proxy"`
		EnrollmentToken string `yaml:"enrollment_token"`
	} `yaml:"cloud"`
	Cluster struct {
		Bind string `yaml:"bind"`
	} `yaml:"cluster"`
	DNS struct {
		Enabled   bool     `yaml:"enabled"`
		Listen    string   `yaml:"listen"`
		Upstreams []string `yaml:"upstreams"`
	} `yaml:"dns"`
}

// Defaults of the relay keys the appliance depends on (as the relay's own).
const (
	defaultListen      = ":443"
	defaultAdminListen = ":9100"
	defaultClusterBind = ":7946"
	defaultDNSListen   = ":53"
)

// Default is the settings before the file: DHCP, hourly update checks,
// three boots for a new slot.
func Default() Settings {
	return Settings{
		Network: Network{Address: "dhcp"},
		Update:  Update{Interval: time.Hour, BootTries: 3},
	}
}

// Parse decodes appliance.yaml strictly over the defaults and validates.
func Parse(b []byte) (Settings, error) {
	s := Default()
	if err := configfile.Decode(b, &s); err != nil {
		return Settings{}, fmt.Errorf("appliance settings: %w", err)
	}
	if err := s.Validate(); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// View reads the relay keys the appliance uses, with the relay's defaults.
func (s *Settings) View() (RelayView, error) {
	var v RelayView
	if s.Relay.Kind != 0 {
		if err := s.Relay.Decode(&v); err != nil {
			return RelayView{}, fmt.Errorf("relay settings: %w", err)
		}
	}
	if v.Listen == "" {
		v.Listen = defaultListen
	}
	if v.AdminListen == "" {
		v.AdminListen = s.defaultAdminListen()
	}
	if v.Cluster.Bind == "" {
		v.Cluster.Bind = defaultClusterBind
	}
	if v.DNS.Listen == "" {
		v.DNS.Listen = defaultDNSListen
	}
	return v, nil
}

// Validate reports every invalid setting at once, each saying what to fix.
func (s *Settings) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.Network.Address != "dhcp" {
		if _, err := netip.ParsePrefix(s.Network.Address); err != nil {
			bad("network.address %q: want \"dhcp\" or an address with its prefix length, e.g. 192.0.2.10/24", s.Network.Address)
		}
		if s.Network.Gateway != "" {
			if _, err := netip.ParseAddr(s.Network.Gateway); err != nil {
				bad("network.gateway %q: want an IP address", s.Network.Gateway)
			}
		}
	}
	for _, d := range s.Network.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			bad("network.dns %q: want an IP address", d)
		}
	}
	for _, m := range s.Management {
		if _, err := ParsePrefixOrAddr(m); err != nil {
			bad("management %q: want a network (10.0.0.0/24) or an address", m)
		}
	}
	for _, p := range s.ClusterPeers {
		if _, err := netip.ParseAddr(p); err != nil {
			bad("cluster_peers %q: want the member's IP address", p)
		}
	}
	for _, n := range s.NTP {
		if _, err := netip.ParseAddr(n); err != nil {
			bad("ntp %q: want an IP address", n)
		}
	}
	if s.Update.URL != "" {
		if u, err := url.Parse(s.Update.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("update.url %q: want http(s)://host[:port]/path (bundles are signed, so plain http is allowed)", s.Update.URL)
		}
	}
	if s.Update.Interval <= 0 {
		bad("update.interval must be positive")
	}
	if s.Update.BootTries < 1 || s.Update.BootTries > 9 {
		bad("update.boot_tries %d: want 1 to 9", s.Update.BootTries)
	}
	if s.Relay.Kind != 0 && s.Relay.Kind != yaml.MappingNode {
		bad("relay: want the relay's configuration as a mapping")
	}
	v, err := s.View()
	if err != nil {
		errs = append(errs, err)
	} else {
		if v.Cloud.URL == "" {
			bad("relay.cloud.url is required: the cloud this relay enrolls with")
		} else if _, _, err := HostPort(v.Cloud.URL); err != nil {
			bad("relay.cloud.url: %v", err)
		}
		for _, a := range []struct{ key, addr string }{{"relay.listen", v.Listen}, {"relay.admin_listen", v.AdminListen}, {"relay.cluster.bind", v.Cluster.Bind}, {"relay.dns.listen", v.DNS.Listen}} {
			if _, err := Port(a.addr); err != nil {
				bad("%s %q: %v", a.key, a.addr, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ParsePrefixOrAddr accepts 10.0.0.0/24 or a single address.
func ParsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Port is the port of a listen address like ":443" or "10.0.0.1:443".
func Port(addr string) (uint16, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q: want 1 to 65535", p)
	}
	return uint16(n), nil
}

// HostPort is the host and port an http(s) URL connects to.
func HostPort(raw string) (string, uint16, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", 0, fmt.Errorf("%q: want scheme://host[:port]", raw)
	}
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		default:
			return "", 0, fmt.Errorf("%q: unknown scheme %q", raw, u.Scheme)
		}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("%q: bad port", raw)
	}
	return u.Hostname(), uint16(n), nil
}

// RelayYAML is the relay's configuration file as the appliance runs it:
// the given relay section with data_dir fixed to the data partition's
// state directory, admin_listen on every address when management networks
// are set (the firewall limits who reaches it), and the enrollment token.
func (s *Settings) RelayYAML(token string) ([]byte, error) {
	m := map[string]any{}
	if s.Relay.Kind != 0 {
		if err := s.Relay.Decode(&m); err != nil {
			return nil, fmt.Errorf("relay settings: %w", err)
		}
	}
	m["data_dir"] = RelayDataDir
	if _, ok := m["admin_listen"]; !ok {
		m["admin_listen"] = s.defaultAdminListen()
	}
	if _, ok := m["name"]; !ok && s.Hostname != "" {
		m["name"] = s.Hostname
	}
	if token != "" {
		cloud, _ := m["cloud"].(map[string]any)
		if cloud == nil {
			cloud = map[string]any{}
		}
		cloud["enrollment_token"] = token
		m["cloud"] = cloud
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append([]byte("# Written at boot by gatehouse-appliance from "+SettingsPath+"; edits here are lost.\n"), b...), nil
}

// defaultAdminListen opens the admin port to the network only when some
// management network may reach it.
func (s *Settings) defaultAdminListen() string {
	if len(s.Management) > 0 {
		return defaultAdminListen
	}
	return "127.0.0.1" + defaultAdminListen
}

// AdminHealthURL is where the relay's /readyz answers on this machine.
func (v RelayView) AdminHealthURL() string {
	host, port, _ := net.SplitHostPort(v.AdminListen)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz"
}
