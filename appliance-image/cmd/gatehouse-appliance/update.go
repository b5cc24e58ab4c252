package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/appliance-image/internal/settings"
	"github.com/gatehouse/gatehouse/appliance-image/internal/slots"
)

// Channel is the document at update.url: the newest release and where its
// bundle is (relative to the channel's URL). It is only a hint: the
// bundle's signed manifest decides.
type Channel struct {
	Version string `json:"version"`
	Bundle  string `json:"bundle"`
}

func newUpdateCmd(log *slog.Logger) *cobra.Command {
	cmd := &cobra.Command{Use: "update", Short: "Signed A/B updates"}
	var noReboot bool
	apply := &cobra.Command{
		Use:   "apply FILE|URL",
		Short: "Verify a bundle and write it to the inactive slot, then reboot into it (on trial)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := savedSettings()
			if err != nil {
				return err
			}
			m, err := applyBundle(c.Context(), args[0], s.Update.BootTries)
			if err != nil {
				return err
			}
			return rebootInto(c.Context(), log, m.Version, noReboot)
		},
	}
	apply.Flags().BoolVar(&noReboot, "no-reboot", false, "write the slot, leave the reboot to the operator")
	watch := &cobra.Command{
		Use:   "watch",
		Short: "Read update.url every update.interval; install a newer release and reboot into it",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx := c.Context()
			s, err := savedSettings()
			if err != nil {
				return err
			}
			if s.Update.URL == "" {
				log.Info("update.url not set: updates only by `gatehouse-appliance update apply`")
				<-ctx.Done()
				return nil
			}
			for {
				if v, err := checkOnce(ctx, log, s); err != nil {
					log.Warn("update check", "err", err)
				} else if v != "" {
					return rebootInto(ctx, log, v, false)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(s.Update.Interval):
				}
			}
		},
	}
	cmd.AddCommand(apply, watch)
	return cmd
}

// checkOnce installs the channel's release if it is newer than the running
// one and did not fail before; it returns the installed version.
func checkOnce(ctx context.Context, log *slog.Logger, s settings.Settings) (string, error) {
	b, err := currentBoot()
	if err != nil {
		return "", err
	}
	if b.onTrial() {
		return "", nil // this boot is still being assessed: no update on top of it
	}
	ch, base, err := fetchChannel(ctx, s.Update.URL)
	if err != nil {
		return "", err
	}
	if slots.CompareVersions(ch.Version, b.version) <= 0 {
		return "", nil
	}
	failed, _ := failedVersions()
	if failed[ch.Version] {
		log.Info("channel offers a release that failed its boot tries here before; waiting for a newer one", "version", ch.Version)
		return "", nil
	}
	if other, ok, _ := b.esp.Entry(b.slot.Other()); ok && other.Version == ch.Version && other.Good() {
		return "", nil // already written, waiting for its reboot
	}
	ref, err := url.Parse(ch.Bundle)
	if err != nil {
		return "", fmt.Errorf("channel bundle %q: %w", ch.Bundle, err)
	}
	log.Info("installing update", "version", ch.Version, "slot", b.slot.Other())
	m, err := applyBundle(ctx, base.ResolveReference(ref).String(), s.Update.BootTries)
	if err != nil {
		return "", err
	}
	return m.Version, nil
}

func fetchChannel(ctx context.Context, raw string) (Channel, *url.URL, error) {
	base, err := url.Parse(raw)
	if err != nil {
		return Channel{}, nil, err
	}
	body, err := open(ctx, raw)
	if err != nil {
		return Channel{}, nil, err
	}
	defer body.Close()
	var ch Channel
	if err := json.NewDecoder(io.LimitReader(body, 1<<16)).Decode(&ch); err != nil {
		return Channel{}, nil, fmt.Errorf("update channel %s: %w", raw, err)
	}
	if ch.Version == "" || ch.Bundle == "" {
		return Channel{}, nil, fmt.Errorf("update channel %s: want {\"version\": ..., \"bundle\": ...}", raw)
	}
	return ch, base, nil
}

func open(ctx context.Context, src string) (io.ReadCloser, error) {
	u, err := url.Parse(src)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return os.Open(src)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", src, resp.Status)
	}
	return resp.Body, nil
}

// applyBundle writes a bundle to the slot not running.
func applyBundle(ctx context.Context, src string, tries int) (slots.Manifest, error) {
	b, err := currentBoot()
	if err != nil {
		return slots.Manifest{}, err
	}
	key, err := slots.LoadPublicKey(settings.UpdateKeyPath)
	if err != nil {
		return slots.Manifest{}, err
	}
	r, err := open(ctx, src)
	if err != nil {
		return slots.Manifest{}, err
	}
	defer r.Close()
	other := b.slot.Other()
	return slots.Apply(r, key, slots.Target{ESP: b.esp, Slot: other, Device: other.Device(), Running: b.version, BootTries: tries})
}

// rebootInto reboots after an update, when the relay's cluster can spare
// this member (see clusterCanSpare).
func rebootInto(ctx context.Context, log *slog.Logger, version string, noReboot bool) error {
	fmt.Printf("gatehouse: release %s written to the inactive slot\n", version)
	if noReboot {
		return nil
	}
	for {
		ok, why := clusterCanSpare(ctx)
		if ok {
			break
		}
		log.Info("update waits: the cluster cannot spare this member now", "why", why)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
		}
	}
	fmt.Printf("gatehouse: rebooting into release %s\n", version)
	return exec.CommandContext(ctx, "systemctl", "reboot").Run()
}

// clusterCanSpare guards a cluster's quorum through a rolling update: a
// member reboots only while the cluster has a leader and every member is a
// voter. It does not by itself stop two members rebooting at once: the
// rollout must release one member at a time (docs/appliance.md).
func clusterCanSpare(ctx context.Context) (bool, string) {
	s, err := savedSettings()
	if err != nil {
		return true, ""
	}
	v, err := s.View()
	if err != nil {
		return true, ""
	}
	u, _ := url.Parse(v.AdminHealthURL())
	u.Path = "/v1/cluster/status"
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return true, "" // the relay is down: this member counts for nothing now
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return true, "" // a relay alone
	default:
		return false, "cluster status: " + resp.Status
	}
	var st struct {
		LeaderID string `json:"leader_id"`
		Members  []struct {
			ID       string `json:"id"`
			Suffrage string `json:"suffrage"`
		} `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return false, "cluster status: " + err.Error()
	}
	if len(st.Members) <= 1 {
		return true, ""
	}
	if st.LeaderID == "" {
		return false, "no leader"
	}
	for _, m := range st.Members {
		if m.Suffrage != "Voter" {
			return false, "member " + m.ID + " is not a voter yet"
		}
	}
	return true, ""
}
