// Command gatehouse-relay is the Gatehouse edge relay daemon.
package main

import (
	"context"
	"fmt"
	"github.com/gatehouse/gatehouse/internal/version"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/logging"
	"github.com/gatehouse/gatehouse/relay/internal/config"
	"github.com/gatehouse/gatehouse/relay/internal/daemon"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	var cfgFile, dataDir, listen, adminListen string
	cmd := &cobra.Command{
		Use:           "gatehouse-relay",
		Short:         "Gatehouse edge relay: agents in over QUIC, durable spool, batches out to the cloud",
		Version:       version.Version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, cfgFile, dataDir, listen, adminListen)
			if err != nil {
				return err
			}
			log, err := logging.New(os.Stderr, cfg.Log.Format, cfg.Log.Level)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			d, err := daemon.New(cfg, log)
			if err != nil {
				return err
			}
			return d.Run(ctx)
		},
	}
	f := cmd.PersistentFlags()
	f.StringVarP(&cfgFile, "config", "c", "", "YAML config file")
	f.StringVar(&dataDir, "data-dir", "", "override data_dir")
	f.StringVar(&listen, "listen", "", "override listen: the agents' host:port, served on UDP (QUIC) and TCP (TLS) alike")
	f.StringVar(&adminListen, "admin-listen", "", "override admin_listen")
	cmd.AddCommand(newClusterCmd(func(c *cobra.Command) (config.Config, error) {
		return loadConfig(c, cfgFile, dataDir, listen, adminListen)
	}))
	return cmd
}

func loadConfig(cmd *cobra.Command, path, dataDir, listen, adminListen string) (config.Config, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return cfg, err
		}
	}
	if cmd.Flags().Changed("data-dir") {
		cfg.DataDir = dataDir
	}
	if cmd.Flags().Changed("listen") {
		cfg.Listen = listen
	}
	if cmd.Flags().Changed("admin-listen") {
		cfg.AdminListen = adminListen
	}
	cfg.Finish()
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}
