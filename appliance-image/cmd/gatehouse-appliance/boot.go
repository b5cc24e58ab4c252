package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/appliance-image/internal/settings"
	"github.com/gatehouse/gatehouse/appliance-image/internal/slots"
)

// espDir is where the EFI system partition is mounted (fstab).
const espDir = "/efi"

// bootState is the running slot, its release and its boot entry.
type bootState struct {
	slot     slots.Slot
	version  string
	entry    slots.Entry
	hasEntry bool
	esp      slots.ESP
}

func currentBoot() (bootState, error) {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return bootState{}, err
	}
	s, err := slots.Current(string(cmdline))
	if err != nil {
		return bootState{}, err
	}
	v, err := os.ReadFile(settings.ReleasePath)
	if err != nil {
		return bootState{}, fmt.Errorf("release: %w", err)
	}
	st := bootState{slot: s, version: strings.TrimSpace(string(v)), esp: slots.ESP{Dir: espDir}}
	st.entry, st.hasEntry, err = st.esp.Entry(s)
	return st, err
}

// onTrial is true while this boot is being assessed: its entry still counts.
func (b bootState) onTrial() bool { return b.hasEntry && b.entry.Counting }

func newHealthCmd(log *slog.Logger) *cobra.Command {
	var timeout time.Duration
	var maxRestarts int
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Wait until the relay is ready; on a boot under trial, reboot (towards rollback) if it never is",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx := c.Context()
			s, err := savedSettings()
			if err != nil {
				return err
			}
			v, err := s.View()
			if err != nil {
				return err
			}
			herr := waitRelayReady(ctx, v.AdminHealthURL(), timeout, maxRestarts)
			b, berr := currentBoot()
			if herr == nil {
				fmt.Printf("gatehouse: relay ready on slot %s, release %s\n", b.slot, b.version)
				return nil
			}
			if berr == nil && b.onTrial() {
				fmt.Printf("gatehouse: health check failed on slot %s release %s (%v): rebooting, %d tries left before rollback\n", b.slot, b.version, herr, b.entry.Left)
				log.Error("health check failed on a slot under trial: rebooting", "slot", b.slot, "err", herr)
				_ = exec.Command("systemctl", "reboot").Run()
			}
			return fmt.Errorf("relay health: %w", herr)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long the relay has to become ready")
	cmd.Flags().IntVar(&maxRestarts, "max-restarts", 3, "fail as soon as the relay has restarted this often")
	return cmd
}

func waitRelayReady(ctx context.Context, url string, timeout time.Duration, maxRestarts int) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: 5 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		out, _ := exec.CommandContext(ctx, "systemctl", "show", "-p", "NRestarts", "--value", "gatehouse-relay.service").Output()
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n >= maxRestarts {
			return fmt.Errorf("gatehouse-relay restarted %d times without becoming ready", n)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("relay not ready at %s after %s", url, timeout)
		case <-time.After(2 * time.Second):
		}
	}
}

func newBootCheckCmd() *cobra.Command {
	var report bool
	cmd := &cobra.Command{
		Use:   "boot-check",
		Short: "Say on the console which slot and release booted; remember releases whose slot used up its boot tries",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			b, err := currentBoot()
			if err != nil {
				return err
			}
			all, err := b.esp.Entries()
			if err != nil {
				return err
			}
			for _, e := range all {
				if e.Good() || e.Slot == b.slot {
					continue
				}
				fmt.Printf("gatehouse: release %s in slot %s failed all its boots: rolled back to slot %s release %s\n", e.Version, e.Slot, b.slot, b.version)
				if err := rememberFailed(e.Version); err != nil {
					return err
				}
			}
			state := "good"
			if b.onTrial() {
				state = fmt.Sprintf("trial (%d tries left)", b.entry.Left)
			}
			if report {
				fp, _ := os.ReadFile(settings.RelayDataDir + "/identity/fingerprint")
				fmt.Printf("GATEHOUSE-STATUS slot=%s version=%s boot=%s relay-fingerprint=%s\n", b.slot, b.version, strings.Fields(state)[0], strings.TrimSpace(string(fp)))
				return nil
			}
			fmt.Printf("gatehouse: booted slot %s, release %s, boot %s\n", b.slot, b.version, state)
			return nil
		},
	}
	cmd.Flags().BoolVar(&report, "report", false, "print one machine-readable status line (after boot assessment)")
	return cmd
}

// rememberFailed records a release that failed its boots, so the updater
// does not install it again.
func rememberFailed(version string) error {
	failed, _ := failedVersions()
	if failed[version] {
		return nil
	}
	f, err := os.OpenFile(settings.FailedPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, version)
	return err
}

func failedVersions() (map[string]bool, error) {
	b, err := os.ReadFile(settings.FailedPath)
	out := map[string]bool{}
	for _, l := range strings.Fields(string(b)) {
		out[l] = true
	}
	return out, err
}
