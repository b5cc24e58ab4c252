// Package config is the relay's YAML configuration: defaults, strict
// decoding and validation.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse/gatehouse/cluster"
	"github.com/gatehouse/gatehouse/internal/configfile"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/relay/internal/cloudclient"
	"github.com/gatehouse/gatehouse/relay/internal/dnsserver"
)

// Config is the whole relay configuration file.
type Config struct {
	Name              string        `yaml:"name"`
	DataDir           string        `yaml:"data_dir"`
	Listen            string        `yaml:"listen"`
	Advertise         string        `yaml:"advertise"`
	AdminListen       string        `yaml:"admin_listen"`
	Log               Log           `yaml:"log"`
	Cloud             Cloud         `yaml:"cloud"`
	Spool             Spool         `yaml:"spool"`
	Uplink            Uplink        `yaml:"uplink"`
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// Cluster is used once `gatehouse-relay cluster init` or `join` has put
	// credentials in cluster.data_dir; until then the relay runs alone.
	Cluster cluster.Config `yaml:"cluster"`
	DNS     DNS            `yaml:"dns"`
}

// DNS is the relay's resolver for agents (docs/dns.md); off unless enabled.
type DNS struct {
	Enabled          bool `yaml:"enabled"`
	dnsserver.Config `yaml:",inline"`
}

// Log selects the logger.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Cloud says where the cloud tier is and how to trust it.
type Cloud struct {
	URL             string `yaml:"url"`
	CAFile          string `yaml:"ca_file"`
	Fingerprint     string `yaml:"fingerprint"`
	EnrollmentToken string `yaml:"enrollment_token"`
	// Proxy is the outbound HTTP CONNECT proxy to the cloud,
	// http://[user:pass@]host:port. Empty: HTTPS_PROXY/NO_PROXY decide.
	Proxy string `yaml:"proxy"`
}

// Spool bounds the durable batch store.
type Spool struct {
	// MaxBytes bounds what the spool's batches take on disk.
	MaxBytes   int64         `yaml:"max_bytes"`
	RetryAfter time.Duration `yaml:"retry_after"`
	// MinFreeBytes is the free space the spool leaves on its filesystem:
	// batches that would leave less are refused with SPOOL_FULL.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
}

// Uplink tunes uploads to the cloud.
type Uplink struct {
	MaxUploadBytes int           `yaml:"max_upload_bytes"`
	MaxUploadAge   time.Duration `yaml:"max_upload_age"`
	MinBackoff     time.Duration `yaml:"min_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// ConnectTimeout bounds a new connection to the cloud (TCP and TLS) and
	// the answer to a keep-alive ping: a silently dropped path is reported
	// after this long, not after request_timeout.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// Default returns the configuration used for keys the file leaves out.
func Default() Config {
	return Config{
		DataDir:     "/var/lib/gatehouse-relay",
		Listen:      ":443",
		AdminListen: "127.0.0.1:9100",
		Log:         Log{Level: "info", Format: "text"},
		Spool:       Spool{MaxBytes: 1 << 30, RetryAfter: 2 * time.Second, MinFreeBytes: 96 << 20},
		Uplink: Uplink{
			MaxUploadBytes: 4 << 20,
			MaxUploadAge:   time.Second,
			MinBackoff:     250 * time.Millisecond,
			MaxBackoff:     30 * time.Second,
			RequestTimeout: 30 * time.Second,
			ConnectTimeout: cloudclient.DefaultConnectTimeout,
		},
		HeartbeatInterval: 5 * time.Minute,
		Cluster:           cluster.Default(),
		DNS:               DNS{Config: dnsserver.Default()},
	}
}

// Load reads path over Default(), fills derived defaults and validates.
func Load(path string) (Config, error) {
	c := Default()
	if err := configfile.Load(path, &c); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Finish fills values derived from others (name from the host name,
// advertise from listen). Call it after flag overrides, before Validate.
func (c *Config) Finish() {
	if c.Name == "" {
		if h, err := os.Hostname(); err == nil {
			c.Name = h
		}
	}
	if c.Advertise == "" {
		c.Advertise = c.Listen
	}
	if c.Cluster.DataDir == "" {
		c.Cluster.DataDir = filepath.Join(c.DataDir, "cluster")
	}
	if c.Cluster.NodeID == "" {
		c.Cluster.NodeID = c.Name
	}
	if c.Cluster.Name == "" {
		c.Cluster.Name = c.Name
	}
	if c.Cluster.AgentAddr == "" {
		c.Cluster.AgentAddr = c.Advertise
	}
}

// Validate reports every invalid setting at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.DataDir == "" {
		bad("data_dir is required")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
			bad("advertise %q: %v", c.Advertise, err)
		}
	}
	if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
		bad("admin_listen %q: %v", c.AdminListen, err)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format %q: want text or json", c.Log.Format)
	}
	if c.Cloud.URL == "" {
		bad("cloud.url is required")
	} else if u, err := url.Parse(c.Cloud.URL); err != nil || u.Scheme != "https" || u.Host == "" {
		bad("cloud.url %q: want https://host[:port]", c.Cloud.URL)
	}
	if c.Cloud.Fingerprint != "" {
		if _, err := identity.NormalizeFingerprint(c.Cloud.Fingerprint); err != nil {
			bad("cloud.fingerprint: %v", err)
		}
	}
	if c.Cloud.Proxy != "" {
		if _, err := cloudclient.ParseProxyURL(c.Cloud.Proxy); err != nil {
			bad("cloud.proxy: %v", err)
		}
	}
	if err := c.Cluster.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.DNS.Enabled {
		if err := c.DNS.Config.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Spool.MaxBytes <= 0 {
		bad("spool.max_bytes must be positive")
	}
	if c.Spool.MinFreeBytes < 4<<20 {
		bad("spool.min_free_bytes %d: want at least 4 MiB (4194304), room for the spool's index", c.Spool.MinFreeBytes)
	}
	if c.Spool.RetryAfter <= 0 {
		bad("spool.retry_after must be positive")
	}
	if c.Uplink.MaxUploadBytes <= 0 {
		bad("uplink.max_upload_bytes must be positive")
	}
	if c.Uplink.MaxUploadAge <= 0 {
		bad("uplink.max_upload_age must be positive")
	}
	if c.Uplink.MinBackoff <= 0 || c.Uplink.MaxBackoff < c.Uplink.MinBackoff {
		bad("uplink backoff: want 0 < min_backoff <= max_backoff")
	}
	if c.Uplink.RequestTimeout <= 0 {
		bad("uplink.request_timeout must be positive")
	}
	if c.Uplink.ConnectTimeout <= 0 || c.Uplink.ConnectTimeout > c.Uplink.RequestTimeout {
		bad("uplink.connect_timeout %s: want 0 < connect_timeout <= request_timeout (%s)", c.Uplink.ConnectTimeout, c.Uplink.RequestTimeout)
	}
	if c.HeartbeatInterval <= 0 {
		bad("heartbeat_interval must be positive")
	}
	return errors.Join(errs...)
}
