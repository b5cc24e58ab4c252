// Command gatehouse-appliance runs the appliance around the relay: first
// boot settings, firewall, health check and boot assessment, signed A/B
// updates, and the console. `bundle` and `keygen` are for the vendor's
// build machine.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	root := &cobra.Command{
		Use:           "gatehouse-appliance",
		Short:         "The Gatehouse appliance: settings, firewall, health, A/B updates, console",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newSetupCmd(log), newFirewallCmd(log), newHealthCmd(log), newBootCheckCmd(),
		newUpdateCmd(log), newBundleCmd(), newKeygenCmd(), newConsoleCmd(), newEntryCmd())
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-appliance:", err)
		os.Exit(1)
	}
}
