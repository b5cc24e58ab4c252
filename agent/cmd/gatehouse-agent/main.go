// Command gatehouse-agent is the Gatehouse endpoint agent.
package main

import (
	"encoding/json"
	"fmt"
	"github.com/gatehouse/gatehouse/internal/version"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/agent"
	"github.com/gatehouse/gatehouse/agent/internal/config"
	"github.com/gatehouse/gatehouse/agent/internal/status"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/internal/logging"
	"github.com/spf13/cobra"
)

// memoryLimit keeps the agent small: the GC works harder before it grows.
const memoryLimit = 32 << 20

const defaultConfig = "/etc/gatehouse-agent/agent.yaml"

func main() {
	if err := newRoot().Execute(); err != nil {
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "gatehouse-agent",
		Short:         "Gatehouse endpoint agent",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.AddCommand(newRun(), newStatus(), newID())
	return root
}

func newRun() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent until SIGINT or SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			log, err := logging.New(os.Stderr, cfg.Log.Format, cfg.Log.Level)
			if err != nil {
				return err
			}
			debug.SetMemoryLimit(memoryLimit)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := agent.New(cfg, log, version.Version)
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", defaultConfig, "agent YAML config file")
	return cmd
}

func newStatus() *cobra.Command {
	var cfgPath, output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the running agent's status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			st, err := status.Read(cfg.StatusPath())
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			case "text", "":
				status.Text(cmd.OutOrStdout(), st, time.Now())
				return nil
			default:
				return fmt.Errorf("output %q: want text or json", output)
			}
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", defaultConfig, "agent YAML config file")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newID() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "id",
		Short: "Print the agent id, creating the identity if needed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			id, err := identity.LoadOrCreate(cfg.IdentityDir())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), id.ID())
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", defaultConfig, "agent YAML config file")
	return cmd
}
