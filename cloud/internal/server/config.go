package server

import (
	"errors"
	"fmt"
	"net"

	"github.com/gatehouse/gatehouse/internal/configfile"
)

// Config is gatehouse-cloud's YAML configuration.
type Config struct {
	// DataDir holds db/, identity/, tls/ and admin.token.
	DataDir string `yaml:"data_dir"`
	// Listen is the HTTPS relay API address.
	Listen string `yaml:"listen"`
	// AdminListen is the admin HTTP address (API, metrics, health).
	AdminListen string `yaml:"admin_listen"`
	// AdminTokenFile defaults to <data_dir>/admin.token.
	AdminTokenFile string `yaml:"admin_token_file"`
	// TLSHosts are extra names and IPs for the relay API certificate, on top
	// of localhost, 127.0.0.1, ::1 and the host name.
	TLSHosts []string `yaml:"tls_hosts"`
	Log      Log      `yaml:"log"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Default is the configuration used for keys a file leaves out.
func Default() Config {
	return Config{
		DataDir:     "/var/lib/gatehouse-cloud",
		Listen:      ":8443",
		AdminListen: "127.0.0.1:9200",
		TLSHosts:    []string{},
		Log:         Log{Level: "info", Format: "text"},
	}
}

// Load reads a config file over the defaults and validates it.
func Load(path string) (Config, error) {
	c := Default()
	if err := configfile.Load(path, &c); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required"))
	}
	for name, addr := range map[string]string{"listen": c.Listen, "admin_listen": c.AdminListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port", name, addr))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: want text or json", c.Log.Format))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}
