// Package install puts the agent on a host as a systemd service and takes
// it off again: binary under <root>/opt/gatehouse, configuration in
// <root>/etc/gatehouse/agent.yaml, unit gatehouse-agent.service. With a
// root other than "/" nothing touches the running system (no systemctl),
// so tests install into a temporary directory.
package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/agent/internal/config"
	"github.com/gatehouse/gatehouse/agent/internal/isolate"
	"github.com/gatehouse/gatehouse/internal/atomicfile"
	"github.com/gatehouse/gatehouse/internal/configfile"
)

// Paths on the target system (relative to the root).
const (
	BinaryPath = "/opt/gatehouse/gatehouse-agent"
	ConfigPath = "/etc/gatehouse/agent.yaml"
	UnitPath   = "/etc/systemd/system/gatehouse-agent.service"
	UnitName   = "gatehouse-agent.service"
	LogPath    = "/var/log/gatehouse/agent.log"
	DataDir    = "/var/lib/gatehouse-agent"
)

// Options are the install command's flags.
type Options struct {
	Root              string // "/" for the real system
	Binary            string // the binary to install (the running one)
	RegistrationKey   string
	Relay             string // host:port
	RelayFingerprint  string
	Proxy             string
	DisableAutoUpdate bool
	Systemctl         string // default "systemctl"; used only when Root is "/"
}

func (o *Options) path(p string) string { return filepath.Join(o.Root, p) }

// Unit is the systemd unit.
func Unit() string {
	return `[Unit]
Description=Gatehouse endpoint agent
Documentation=https://github.com/gatehouse/gatehouse/blob/main/docs/agent.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=` + BinaryPath + ` run --config ` + ConfigPath + ` --log-file ` + LogPath + `
Restart=always
RestartSec=5
Environment=GOMEMLIMIT=24MiB
LimitMEMLOCK=infinity
OOMScoreAdjust=-500
Nice=5

[Install]
WantedBy=multi-user.target
`
}

// Config builds the agent configuration: the config.yaml beside the binary
// when there is one, else the defaults, with the flags on top.
func Config(o Options) ([]byte, error) {
	cfg := config.Default()
	beside := filepath.Join(filepath.Dir(o.Binary), "config.yaml")
	if b, err := os.ReadFile(beside); err == nil {
		if err := configfile.Decode(b, &cfg); err != nil {
			return nil, fmt.Errorf("starting config %s: %w", beside, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("starting config %s: %w", beside, err)
	}
	if o.Relay != "" {
		cfg.Relays = []string{o.Relay}
	}
	if o.RegistrationKey != "" {
		cfg.RegistrationKey = o.RegistrationKey
	}
	if o.RelayFingerprint != "" {
		cfg.RelayFingerprint = o.RelayFingerprint
	}
	if o.Proxy != "" {
		cfg.Proxy = o.Proxy
	}
	if o.DisableAutoUpdate {
		cfg.AutoUpdate = false
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("install config: %w", err)
	}
	b, err := yaml.Marshal(&cfg)
	if err != nil {
		return nil, fmt.Errorf("install config: %w", err)
	}
	return append([]byte("# Written by gatehouse-agent install; see docs/agent.md.\n"), b...), nil
}

// Install copies the binary, writes the configuration and the unit and,
// on the real system, enables and starts the service.
func Install(ctx context.Context, o Options) error {
	if o.RegistrationKey == "" || o.Relay == "" {
		return errors.New("install: --registration-key and --relay are required")
	}
	cfg, err := Config(o)
	if err != nil {
		return err
	}
	if err := copyBinary(o.Binary, o.path(BinaryPath)); err != nil {
		return err
	}
	for _, d := range []string{filepath.Dir(o.path(ConfigPath)), filepath.Dir(o.path(LogPath)), o.path(DataDir), filepath.Dir(o.path(UnitPath))} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("install: %w", err)
		}
	}
	if err := atomicfile.Write(o.path(ConfigPath), cfg, 0o600); err != nil {
		return fmt.Errorf("install: write config: %w", err)
	}
	if err := atomicfile.Write(o.path(UnitPath), []byte(Unit()), 0o644); err != nil {
		return fmt.Errorf("install: write unit: %w", err)
	}
	if !o.real() {
		return nil
	}
	for _, args := range [][]string{{"daemon-reload"}, {"enable", "--now", UnitName}} {
		if err := o.systemctl(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

func (o *Options) real() bool { return filepath.Clean(o.Root) == "/" }

func (o *Options) systemctl(ctx context.Context, args ...string) error {
	bin := o.Systemctl
	if bin == "" {
		bin = "systemctl"
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Uninstall stops the service, releases the host from isolation and removes
// the unit, binary, configuration, data and logs. The collectors' eBPF
// programs go with the agent's process; the isolation programs are pinned
// (enforcement outlives a restart), so their pins are removed here or an
// isolated host would stay isolated with no agent to release it.
func Uninstall(ctx context.Context, o Options) error {
	var errs []error
	if o.real() {
		if err := o.systemctl(ctx, "disable", "--now", UnitName); err != nil {
			errs = append(errs, err)
		}
	}
	pinDir := isolate.DefaultPinDir
	if cfg, err := config.Load(o.path(ConfigPath)); err == nil && cfg.Isolation.PinDir != "" {
		pinDir = cfg.Isolation.PinDir
	}
	if err := isolate.RemovePins(o.path(pinDir)); err != nil {
		errs = append(errs, fmt.Errorf("uninstall: %w", err))
	}
	for _, p := range []string{UnitPath, filepath.Dir(BinaryPath), filepath.Dir(ConfigPath), DataDir, filepath.Dir(LogPath)} {
		if err := os.RemoveAll(o.path(p)); err != nil {
			errs = append(errs, fmt.Errorf("uninstall: %w", err))
		}
	}
	if o.real() {
		if err := o.systemctl(ctx, "daemon-reload"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Update replaces the installed binary with the file or http(s) URL src,
// keeping the configuration, and restarts the service on the real system.
func Update(ctx context.Context, o Options, src string) error {
	if _, err := os.Stat(o.path(BinaryPath)); err != nil {
		return fmt.Errorf("update: agent not installed: %w", err)
	}
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		f, err := download(ctx, src, filepath.Dir(o.path(BinaryPath)))
		if err != nil {
			return err
		}
		defer os.Remove(f)
		src = f
	}
	if err := copyBinary(src, o.path(BinaryPath)); err != nil {
		return err
	}
	if o.real() {
		return o.systemctl(ctx, "restart", UnitName)
	}
	return nil
}

// Status describes the installation.
func Status(ctx context.Context, o Options) (string, error) {
	var sb strings.Builder
	for _, p := range []string{BinaryPath, ConfigPath, UnitPath} {
		state := "present"
		if _, err := os.Stat(o.path(p)); err != nil {
			state = "missing"
		}
		fmt.Fprintf(&sb, "%-45s %s\n", o.path(p), state)
	}
	if o.real() {
		bin := o.Systemctl
		if bin == "" {
			bin = "systemctl"
		}
		out, _ := exec.CommandContext(ctx, bin, "is-active", UnitName).Output()
		fmt.Fprintf(&sb, "%-45s %s\n", UnitName, strings.TrimSpace(string(out)))
	}
	return sb.String(), nil
}

// copyBinary writes src to dst atomically with mode 0755.
func copyBinary(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read binary %s: %w", src, err)
	}
	if len(b) < 4 || string(b[:4]) != "\x7fELF" {
		return fmt.Errorf("binary %s: not an ELF executable", src)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("install binary: %w", err)
	}
	if err := atomicfile.Write(dst, b, 0o755); err != nil {
		return fmt.Errorf("install binary %s: %w", dst, err)
	}
	return nil
}

func download(ctx context.Context, url, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: %s", url, resp.Status)
	}
	f, err := os.CreateTemp(dir, ".download-*")
	if err != nil {
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	defer f.Close()
	if _, err := io.Copy(f, io.LimitReader(resp.Body, 512<<20)); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	return f.Name(), nil
}
