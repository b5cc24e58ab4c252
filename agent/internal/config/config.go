// Package config is the agent's YAML configuration: defaults, strict
// decoding through internal/configfile, and validation.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/configfile"
	"github.com/gatehouse/gatehouse/internal/identity"
)

// Config is the whole agent configuration file.
type Config struct {
	DataDir           string        `yaml:"data_dir"`
	Relays            []string      `yaml:"relays"`
	RelayFingerprint  string        `yaml:"relay_fingerprint"`
	RegistrationKey   string        `yaml:"registration_key"`
	Hostname          string        `yaml:"hostname"`
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	StatsInterval     time.Duration `yaml:"stats_interval"`
	// StatusInterval: status.json is rewritten at once on a connection
	// state change, else at most this often while its counters move.
	StatusInterval time.Duration `yaml:"status_interval"`
	Ring           Ring          `yaml:"ring"`
	Batch          Batch         `yaml:"batch"`
	RedeliverAfter time.Duration `yaml:"redeliver_after"`
	Logs           []LogSource   `yaml:"logs"`
	Log            Log           `yaml:"log"`
	Collectors     `yaml:",inline"`
	Isolation      Isolation `yaml:"isolation"`
	// Proxy is an HTTP CONNECT proxy for TLS over TCP,
	// "http://user:pass@host:port"; empty: the HTTPS_PROXY/HTTP_PROXY and
	// NO_PROXY environment variables decide.
	Proxy     string    `yaml:"proxy"`
	Transport Transport `yaml:"transport"`
}

// Transport chooses how the agent reaches relays.
type Transport struct {
	Mode        string        `yaml:"mode"`         // auto (race QUIC and TCP), quic or tcp
	TCPDelay    time.Duration `yaml:"tcp_delay"`    // QUIC's head start in the race
	QUICReprobe time.Duration `yaml:"quic_reprobe"` // while on TCP, retry QUIC this often
}

// Ring bounds the on-disk buffer shared by all lanes.
type Ring struct {
	MaxBytes int64 `yaml:"max_bytes"`
	// SyncAfter: a batch without log checkpoints is fsynced this long after
	// it was written if no relay has spooled it by then (0: at once).
	SyncAfter time.Duration `yaml:"sync_after"`
}

// Batch bounds the bulk lane's batches; the security lane flushes at once.
type Batch struct {
	MaxEvents int           `yaml:"max_events"`
	MaxBytes  int           `yaml:"max_bytes"`
	MaxDelay  time.Duration `yaml:"max_delay"`
}

// LogSource is a set of log file globs (filepath.Match syntax, no "**").
type LogSource struct {
	Paths []string `yaml:"paths"`
	// MaxLineBytes: a longer line keeps its first MaxLineBytes bytes and is
	// flagged truncated; 0 means DefaultMaxLineBytes.
	MaxLineBytes int `yaml:"max_line_bytes"`
}

// DefaultMaxLineBytes is logs[].max_line_bytes when left out.
const DefaultMaxLineBytes = 1 << 20

// MaxMaxLineBytes bounds logs[].max_line_bytes: one line's event, escaped
// as JSON, must fit one 4 MiB frame with its batch.
const MaxMaxLineBytes = 2 << 20

// Log configures the agent's own logging.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Default returns the configuration used for keys the file leaves out.
func Default() Config {
	return Config{
		DataDir:           "/var/lib/gatehouse-agent",
		HeartbeatInterval: 5 * time.Minute,
		StatsInterval:     60 * time.Second,
		StatusInterval:    10 * time.Second,
		Ring:              Ring{MaxBytes: 100 << 20, SyncAfter: time.Second},
		Batch:             Batch{MaxEvents: 500, MaxBytes: 1 << 20, MaxDelay: time.Second},
		RedeliverAfter:    10 * time.Minute,
		Log:               Log{Level: "info", Format: "text"},
		Collectors:        DefaultCollectors(),
		Transport:         Transport{Mode: "auto", TCPDelay: 300 * time.Millisecond, QUICReprobe: 10 * time.Minute},
	}
}

// Load reads, decodes and validates the file at path, and fills in the
// hostname when the file leaves it empty.
func Load(path string) (Config, error) {
	c := Default()
	if err := configfile.Load(path, &c); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return Config{}, fmt.Errorf("hostname: %w", err)
		}
		c.Hostname = h
	}
	return c, nil
}

// Validate reports every problem in c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: required"))
	}
	if len(c.Relays) == 0 {
		errs = append(errs, errors.New("relays: at least one host:port required"))
	}
	for _, r := range c.Relays {
		if host, port, err := net.SplitHostPort(r); err != nil || host == "" || port == "" {
			errs = append(errs, fmt.Errorf("relays: %q: want host:port", r))
		}
	}
	if c.RelayFingerprint != "" {
		fp, err := identity.NormalizeFingerprint(c.RelayFingerprint)
		if err != nil {
			errs = append(errs, fmt.Errorf("relay_fingerprint: %w", err))
		} else {
			c.RelayFingerprint = fp
		}
	}
	if c.HeartbeatInterval < time.Second {
		errs = append(errs, fmt.Errorf("heartbeat_interval: %s, want at least 1s", c.HeartbeatInterval))
	}
	if c.StatusInterval < time.Second || c.StatusInterval > 5*time.Minute {
		errs = append(errs, fmt.Errorf("status_interval: %s, want 1s..5m", c.StatusInterval))
	}
	if c.StatsInterval < time.Second {
		errs = append(errs, fmt.Errorf("stats_interval: %s, want at least 1s", c.StatsInterval))
	}
	if c.Ring.SyncAfter < 0 || c.Ring.SyncAfter > time.Minute {
		errs = append(errs, fmt.Errorf("ring.sync_after: %s, want 0..1m", c.Ring.SyncAfter))
	}
	if c.Ring.MaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("ring.max_bytes: %d, want at least 1048576", c.Ring.MaxBytes))
	}
	if c.Batch.MaxEvents < 1 {
		errs = append(errs, fmt.Errorf("batch.max_events: %d, want at least 1", c.Batch.MaxEvents))
	}
	// A batch must fit a frame with room for its envelope.
	if c.Batch.MaxBytes < 1024 || c.Batch.MaxBytes > 2<<20 {
		errs = append(errs, fmt.Errorf("batch.max_bytes: %d, want 1024..2097152", c.Batch.MaxBytes))
	}
	if c.Ring.MaxBytes > 0 && int64(c.Batch.MaxBytes) > c.Ring.MaxBytes/4 {
		errs = append(errs, fmt.Errorf("batch.max_bytes: %d, want at most a quarter of ring.max_bytes", c.Batch.MaxBytes))
	}
	if c.Batch.MaxDelay < 0 {
		errs = append(errs, fmt.Errorf("batch.max_delay: %s, want >= 0", c.Batch.MaxDelay))
	}
	if c.RedeliverAfter < time.Second {
		errs = append(errs, fmt.Errorf("redeliver_after: %s, want at least 1s", c.RedeliverAfter))
	}
	for i, src := range c.Logs {
		if len(src.Paths) == 0 {
			errs = append(errs, fmt.Errorf("logs[%d].paths: at least one glob required", i))
		}
		for _, p := range src.Paths {
			if err := ValidateGlob(p); err != nil {
				errs = append(errs, fmt.Errorf("logs[%d].paths: %w", i, err))
			}
		}
		if n := src.MaxLineBytes; n != 0 && (n < 1024 || n > MaxMaxLineBytes) {
			errs = append(errs, fmt.Errorf("logs[%d].max_line_bytes: %d, want 1024..%d (0: %d)", i, n, MaxMaxLineBytes, DefaultMaxLineBytes))
		} else if c.Ring.MaxBytes > 0 && int64(src.MaxLine()) > c.Ring.MaxBytes/4 {
			errs = append(errs, fmt.Errorf("logs[%d].max_line_bytes: %d, want at most a quarter of ring.max_bytes (%d)", i, src.MaxLine(), c.Ring.MaxBytes))
		}
	}
	switch c.Transport.Mode {
	case "auto", "quic", "tcp":
	default:
		errs = append(errs, fmt.Errorf("transport.mode: %q, want auto, quic or tcp", c.Transport.Mode))
	}
	if c.Transport.TCPDelay < 0 || c.Transport.TCPDelay > 10*time.Second {
		errs = append(errs, fmt.Errorf("transport.tcp_delay: %s, want 0..10s", c.Transport.TCPDelay))
	}
	if c.Transport.QUICReprobe < 10*time.Second {
		errs = append(errs, fmt.Errorf("transport.quic_reprobe: %s, want at least 10s", c.Transport.QUICReprobe))
	}
	if c.Proxy != "" {
		if _, err := c.ProxyURL(); err != nil {
			errs = append(errs, err)
		} else if c.Transport.Mode == "quic" {
			errs = append(errs, errors.New("proxy: set, but transport.mode quic never uses it (a proxy carries TCP only)"))
		}
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q, want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q, want text or json", c.Log.Format))
	}
	errs = append(errs, c.ValidateCollectors()...)
	return errors.Join(errs...)
}

// MaxLine is MaxLineBytes with its default applied.
func (s LogSource) MaxLine() int {
	if s.MaxLineBytes == 0 {
		return DefaultMaxLineBytes
	}
	return s.MaxLineBytes
}

// ValidateGlob accepts absolute filepath.Match patterns ("*", "?", "[a-z]")
// and refuses "**", which filepath.Match does not mean recursively.
func ValidateGlob(p string) error {
	if strings.Contains(p, "**") {
		return fmt.Errorf("glob %q: \"**\" is not supported, use one \"*\" per directory level", p)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("glob %q: want an absolute path", p)
	}
	if _, err := filepath.Match(p, ""); err != nil {
		return fmt.Errorf("glob %q: %w", p, err)
	}
	return nil
}

// ProxyURL parses Proxy; nil when it is empty. Errors never show the
// password.
func (c *Config) ProxyURL() (*url.URL, error) {
	if c.Proxy == "" {
		return nil, nil
	}
	u, err := url.Parse(c.Proxy)
	if err != nil {
		return nil, errors.New("proxy: not a URL, want http://user:pass@host:port")
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("proxy: scheme %q, want http (http://user:pass@host:port)", u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("proxy: %s: want host and port", u.Redacted())
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("proxy: %s: want no path or query", u.Redacted())
	}
	return u, nil
}

// IdentityDir is where the agent's Ed25519 key lives.
func (c *Config) IdentityDir() string { return filepath.Join(c.DataDir, "identity") }

// RingDir is the disk ring's directory.
func (c *Config) RingDir() string { return filepath.Join(c.DataDir, "ring") }

// StatusPath is the status file the status command prints.
func (c *Config) StatusPath() string { return filepath.Join(c.DataDir, "status.json") }
