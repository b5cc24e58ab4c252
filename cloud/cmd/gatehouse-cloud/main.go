// Command gatehouse-cloud runs the Gatehouse cloud tier: the HTTPS API relays
// call, and the admin API, metrics and health endpoints.
package main

import (
	"context"
	"fmt"
	"github.com/gatehouse/gatehouse/internal/version"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/cloud/internal/server"
	"github.com/gatehouse/gatehouse/internal/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCommand(os.Stderr).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-cloud:", err)
		os.Exit(1)
	}
}

type flags struct {
	config, dataDir, listen, adminListen string
}

// loadConfig reads the config file (if any) and applies flag overrides.
func loadConfig(cmd *cobra.Command, f flags) (server.Config, error) {
	cfg := server.Default()
	var err error
	if f.config != "" {
		if cfg, err = server.Load(f.config); err != nil {
			return cfg, err
		}
	}
	if cmd.Flags().Changed("data-dir") {
		cfg.DataDir = f.dataDir
	}
	if cmd.Flags().Changed("listen") {
		cfg.Listen = f.listen
	}
	if cmd.Flags().Changed("admin-listen") {
		cfg.AdminListen = f.adminListen
	}
	return cfg, cfg.Validate()
}

func newCommand(logOut io.Writer) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:           "gatehouse-cloud",
		Short:         "Gatehouse cloud tier: relay API, admin API, event store",
		Version:       version.Version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, f)
			if err != nil {
				return err
			}
			log, err := logging.New(logOut, cfg.Log.Format, cfg.Log.Level)
			if err != nil {
				return err
			}
			srv, err := server.New(cfg, server.Deps{Logger: log})
			if err != nil {
				return err
			}
			defer srv.Close()
			return srv.Run(cmd.Context())
		},
	}
	def := server.Default()
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "YAML config file (default: built-in defaults)")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", def.DataDir, "data directory (overrides the config file)")
	cmd.Flags().StringVar(&f.listen, "listen", def.Listen, "HTTPS relay API address (overrides the config file)")
	cmd.Flags().StringVar(&f.adminListen, "admin-listen", def.AdminListen, "admin HTTP address (overrides the config file)")
	return cmd
}
