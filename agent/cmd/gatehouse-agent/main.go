// Command gatehouse-agent is the Gatehouse endpoint agent.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gatehouse/gatehouse/internal/version"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/agent"
	"github.com/gatehouse/gatehouse/agent/internal/config"
	"github.com/gatehouse/gatehouse/agent/internal/install"
	"github.com/gatehouse/gatehouse/agent/internal/status"
	"github.com/gatehouse/gatehouse/internal/dirlock"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/internal/logging"
	"github.com/spf13/cobra"
)

// memoryLimit keeps the agent small: the GC works harder before it grows.
const memoryLimit = 24 << 20

const defaultConfig = "/etc/gatehouse/agent.yaml"

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
	root.AddCommand(newRun(), newStatus(), newID(), newInstall(), newUninstall(), newUpdate())
	return root
}

func newRun() *cobra.Command {
	var cfgPath, logFile string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent until SIGINT or SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			// One agent per data directory: two would share the ring and
			// the identity and corrupt both.
			lock, err := dirlock.Acquire(cfg.DataDir, "gatehouse-agent")
			if err != nil {
				return err
			}
			defer lock.Release()
			log, err := logging.New(logWriter(logFile), cfg.Log.Format, cfg.Log.Level)
			if err != nil {
				return err
			}
			debug.SetMemoryLimit(memoryLimit)
			if os.Getenv("GOGC") == "" {
				// Half the default heap growth: about 2 MB less resident
				// at 100 events/s for no measurable CPU.
				debug.SetGCPercent(50)
			}
			if os.Getenv("GOMAXPROCS") == "" {
				// One P: the agent has no parallel work, and a second P
				// costs thread wake-ups (idle Ps spinning for work) at
				// every event burst: about a fifth of its CPU at 100 events/s.
				runtime.GOMAXPROCS(1)
			}
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
	cmd.Flags().StringVar(&logFile, "log-file", "", "log to this file, rotated (default: stderr)")
	return cmd
}

func newStatus() *cobra.Command {
	var cfgPath, output, root string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the running agent's status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			packaged := filepath.Join(root, install.ConfigPath)
			if root != "/" && !cmd.Flags().Changed("config") {
				cfgPath = packaged
			}
			// An agent run by hand (run --config FILE) is not the
			// packaged service: show the paths of its own config.
			byHand := cmd.Flags().Changed("config") && filepath.Clean(cfgPath) != packaged
			if output != "json" && !byHand {
				inst, err := install.Status(cmd.Context(), install.Options{Root: root})
				if err != nil {
					return err
				}
				fmt.Fprint(cmd.OutOrStdout(), inst)
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			stPath := cfg.StatusPath()
			if root != "/" && !byHand {
				stPath = filepath.Join(root, stPath)
			}
			if output != "json" && byHand {
				for _, p := range []string{cfgPath, cfg.DataDir, stPath} {
					state := "present"
					if _, err := os.Stat(p); err != nil {
						state = "missing"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%-45s %s\n", p, state)
				}
			}
			st, err := status.Read(stPath)
			if err != nil {
				if output != "json" && errors.Is(err, os.ErrNotExist) {
					fmt.Fprintln(cmd.OutOrStdout(), "agent: not running (no status file yet)")
					return nil
				}
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
	cmd.Flags().StringVar(&cfgPath, "config", defaultConfig, "agent YAML config file (an agent run by hand: its run --config)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&root, "root", "/", "installation root")
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
