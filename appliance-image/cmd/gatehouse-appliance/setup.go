package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/appliance-image/internal/console"
	"github.com/gatehouse/gatehouse/appliance-image/internal/firewall"
	"github.com/gatehouse/gatehouse/appliance-image/internal/firstboot"
	"github.com/gatehouse/gatehouse/appliance-image/internal/settings"
	"github.com/gatehouse/gatehouse/internal/atomicfile"
)

// Files setup writes under /run at every boot.
const (
	networkFile = "/run/systemd/network/10-gatehouse.network"
	resolvConf  = "/run/gatehouse/resolv.conf"
)

func newSetupCmd(log *slog.Logger) *cobra.Command {
	var consoles []string
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Find the settings (credential, seed volume, saved, or the console wizard) and configure network, relay and firewall",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx := c.Context()
			s, token, err := loadOrAsk(ctx, log, consoles)
			if err != nil {
				return err
			}
			return configure(ctx, log, s, token)
		},
	}
	cmd.Flags().StringSliceVar(&consoles, "console", []string{"/dev/tty1", "/dev/ttyS0"}, "consoles the wizard asks on when nothing else supplies the settings")
	return cmd
}

// loadOrAsk returns the settings and token, saving what a source supplied
// on the data partition: a credential or seed wins over what was saved (the
// hypervisor's word is the latest), the wizard runs only when nothing is.
func loadOrAsk(ctx context.Context, log *slog.Logger, consoles []string) (settings.Settings, string, error) {
	found, ok, err := firstboot.System(ctx).Find(ctx)
	if err != nil {
		return settings.Settings{}, "", err
	}
	var raw []byte
	var token string
	switch {
	case ok:
		log.Info("settings found", "source", found.Source)
		raw, token = found.Settings, found.Token
	default:
		if b, err := os.ReadFile(settings.SettingsPath); err == nil {
			raw = b
			if t, err := os.ReadFile(settings.TokenPath); err == nil {
				token = strings.TrimSpace(string(t))
			}
			log.Info("settings from the data partition", "path", settings.SettingsPath)
		} else {
			log.Info("no settings from any source: asking on the consoles", "consoles", consoles)
			raw, token, err = askConsoles(ctx, consoles)
			if err != nil {
				return settings.Settings{}, "", err
			}
		}
	}
	s, err := settings.Parse(raw)
	if err != nil {
		return settings.Settings{}, "", fmt.Errorf("%w (fix the credential, seed volume or %s)", err, settings.SettingsPath)
	}
	if err := os.MkdirAll(filepath.Dir(settings.SettingsPath), 0o700); err != nil {
		return settings.Settings{}, "", err
	}
	if err := atomicfile.Write(settings.SettingsPath, raw, 0o600); err != nil {
		return settings.Settings{}, "", err
	}
	if token != "" {
		if err := atomicfile.Write(settings.TokenPath, []byte(token+"\n"), 0o600); err != nil {
			return settings.Settings{}, "", err
		}
	}
	return s, token, nil
}

// askConsoles runs the wizard on every console at once; the first to
// finish wins and the others are told so.
func askConsoles(ctx context.Context, consoles []string) ([]byte, string, error) {
	defaults, _ := os.ReadFile(settings.DefaultsPath)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		raw   []byte
		token string
		err   error
	}
	done := make(chan result, len(consoles))
	var wg sync.WaitGroup
	var files []*os.File
	for _, p := range consoles {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		files = append(files, f)
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw, tok, err := console.Wizard(ctx, f, f, defaults)
			done <- result{raw, tok, err}
		}()
	}
	if len(files) == 0 {
		return nil, "", errors.New("no settings and no console to ask on: pass them as a credential or a seed volume (docs/appliance.md)")
	}
	var r result
	for range files {
		r = <-done
		if r.err == nil {
			break
		}
	}
	cancel()
	for _, f := range files {
		fmt.Fprint(f, "\r\nSettings saved; starting the relay.\r\n")
		f.Close() // unblocks the other wizards' reads
	}
	wg.Wait()
	return r.raw, r.token, r.err
}

// configure writes what the boot needs from the settings: the network,
// the resolver, the relay's configuration and the firewall.
func configure(ctx context.Context, log *slog.Logger, s settings.Settings, token string) error {
	for _, d := range []string{filepath.Dir(networkFile), filepath.Dir(resolvConf), filepath.Join(settings.DataMount, "relay")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := atomicfile.Write(networkFile, []byte(networkUnit(s)), 0o644); err != nil {
		return err
	}
	var rc strings.Builder
	for _, d := range s.Network.DNS {
		fmt.Fprintf(&rc, "nameserver %s\n", d)
	}
	if err := atomicfile.Write(resolvConf, []byte(rc.String()), 0o644); err != nil {
		return err
	}
	if s.Hostname != "" {
		if err := os.WriteFile("/proc/sys/kernel/hostname", []byte(s.Hostname), 0o644); err != nil {
			log.Warn("set host name", "err", err)
		}
	}
	relay, err := s.RelayYAML(token)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(settings.RelayConfig, relay, 0o600); err != nil {
		return err
	}
	return refreshFirewall(ctx, log, s, 5*time.Second)
}

// networkUnit is the systemd-networkd file for the appliance's interface.
func networkUnit(s settings.Settings) string {
	var b strings.Builder
	b.WriteString("# Written at boot by gatehouse-appliance setup.\n[Match]\nName=en* eth*\n\n[Network]\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n")
	if s.Network.Address == "dhcp" {
		b.WriteString("DHCP=ipv4\n")
	} else {
		fmt.Fprintf(&b, "Address=%s\n", s.Network.Address)
		if s.Network.Gateway != "" {
			fmt.Fprintf(&b, "Gateway=%s\n", s.Network.Gateway)
		}
	}
	return b.String()
}

func refreshFirewall(ctx context.Context, log *slog.Logger, s settings.Settings, resolveTimeout time.Duration) error {
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	plan, err := firewall.Render(rctx, s, firewall.SystemResolver)
	if err != nil {
		return err
	}
	if len(plan.Unresolved) > 0 {
		log.Warn("firewall: names not resolved yet; their outbound rules wait for the next refresh", "names", plan.Unresolved)
	}
	if err := firewall.Apply(ctx, plan.Ruleset); err != nil {
		return err
	}
	return atomicfile.Write("/run/gatehouse/nftables.conf", []byte(plan.Ruleset), 0o644)
}

func newFirewallCmd(log *slog.Logger) *cobra.Command {
	var print bool
	cmd := &cobra.Command{
		Use:   "firewall",
		Short: "Render the nftables ruleset from the saved settings (resolving host names again) and load it",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := savedSettings()
			if err != nil {
				return err
			}
			if print {
				plan, err := firewall.Render(c.Context(), s, firewall.SystemResolver)
				if err != nil {
					return err
				}
				fmt.Print(plan.Ruleset)
				return nil
			}
			return refreshFirewall(c.Context(), log, s, 20*time.Second)
		},
	}
	cmd.Flags().BoolVar(&print, "print", false, "print the ruleset instead of loading it")
	return cmd
}

func savedSettings() (settings.Settings, error) {
	b, err := os.ReadFile(settings.SettingsPath)
	if err != nil {
		return settings.Settings{}, fmt.Errorf("%w: the appliance is not set up yet", err)
	}
	return settings.Parse(b)
}
