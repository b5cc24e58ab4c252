package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/gatehouse/gatehouse/agent/internal/install"
)

// logWriter is stderr, or the rotated log file when path is set.
func logWriter(path string) io.Writer {
	if path == "" {
		return os.Stderr
	}
	return &lumberjack.Logger{Filename: path, MaxSize: 20, MaxBackups: 5, Compress: true}
}

func newInstall() *cobra.Command {
	var o install.Options
	cmd := &cobra.Command{
		Use:   "install --registration-key KEY --relay HOST:PORT",
		Short: "Install the agent as the systemd service gatehouse-agent and start it",
		Long: "Copies this binary to /opt/gatehouse, writes /etc/gatehouse/agent.yaml (starting from a\n" +
			"config.yaml beside the binary when there is one) and the unit gatehouse-agent.service,\n" +
			"then enables and starts it. With --root DIR, installs under DIR and runs no systemctl.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Binary = exe
			if err := install.Install(cmd.Context(), o); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed %s under %s\n", install.UnitName, o.Root)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.RegistrationKey, "registration-key", "", "registration key of the tenant/group (required)")
	f.StringVar(&o.Relay, "relay", "", "relay HOST:PORT (required)")
	f.StringVar(&o.RelayFingerprint, "relay-fingerprint", "", "pin the relay's SHA-256 SPKI fingerprint (hex)")
	f.StringVar(&o.Proxy, "proxy", "", "HTTP CONNECT proxy URL, http://user:pass@host:port")
	f.BoolVar(&o.DisableAutoUpdate, "disable-auto-update", false, "do not update the agent automatically")
	f.StringVar(&o.Root, "root", "/", "install under this directory instead of /")
	cmd.MarkFlagRequired("registration-key")
	cmd.MarkFlagRequired("relay")
	return cmd
}

func newUninstall() *cobra.Command {
	var o install.Options
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Stop the service and remove its unit, binary, configuration, data and logs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := install.Uninstall(cmd.Context(), o); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "uninstalled")
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Root, "root", "/", "installation root")
	return cmd
}

func newUpdate() *cobra.Command {
	var o install.Options
	cmd := &cobra.Command{
		Use:   "update FILE|URL",
		Short: "Replace the installed binary (keeping the configuration) and restart the service",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := install.Update(cmd.Context(), o, args[0]); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "updated")
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Root, "root", "/", "installation root")
	return cmd
}
