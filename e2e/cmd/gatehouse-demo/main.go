// Command gatehouse-demo runs the whole system on loopback: a cloud, one
// relay and three agents with data under a temporary directory, writes log
// lines for the agents to collect, and prints the counts until Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/e2e/harness"
)

func main() {
	bin := flag.String("bin", "", "directory holding the built binaries (default: next to this one)")
	agents := flag.Int("agents", 3, "agents to run")
	rate := flag.Int("rate", 20, "log lines per second each agent's application writes")
	keep := flag.Bool("keep", false, "keep the data directory after exit")
	every := flag.Duration("every", 2*time.Second, "how often to print the counts")
	flag.Parse()
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		*bin = filepath.Dir(exe)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *agents, *rate, *every, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, nAgents, rate int, every time.Duration, keep bool) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	dir, err := os.MkdirTemp("", "gatehouse-demo-")
	if err != nil {
		return err
	}
	if keep {
		log.Info("data kept after exit", "dir", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	var procs []*harness.Proc
	defer func() {
		// Stop in reverse: agents, then the relay, then the cloud.
		for i := len(procs) - 1; i >= 0; i-- {
			if err := procs[i].Stop(10 * time.Second); err != nil {
				log.Warn("stop", "proc", procs[i].Name, "err", err)
			}
		}
		log.Info("stopped everything")
	}()
	// Setup must not hang forever, but Ctrl-C must still cancel it.
	setup, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	cloud, err := harness.StartCloud(setup, bin, filepath.Join(dir, "cloud"))
	if cloud != nil && cloud.Proc != nil {
		procs = append(procs, cloud.Proc)
	}
	if err != nil {
		return err
	}
	site, err := cloud.Bootstrap(setup, "demo")
	if err != nil {
		return err
	}
	tok, err := cloud.EnrollmentToken(setup, site)
	if err != nil {
		return err
	}
	relay, err := harness.StartRelay(setup, bin, filepath.Join(dir, "relay-1"), cloud, tok, harness.RelayOptions{})
	if relay != nil && relay.Proc != nil {
		procs = append(procs, relay.Proc)
	}
	if err != nil {
		return err
	}
	fp, err := relay.Fingerprint()
	if err != nil {
		return err
	}
	log.Info("cloud and relay up", "cloud_admin", "http://"+cloud.AdminAddr, "relay", relay.Addr,
		"relay_fingerprint", fp, "tenant", site.TenantID, "logs", dir)

	var writers []*harness.LogWriter
	for i := 1; i <= nAgents; i++ {
		name := fmt.Sprintf("agent-%d", i)
		adir := filepath.Join(dir, name)
		w, err := harness.NewLogWriter(filepath.Join(adir, "logs", "app.log"), name)
		if err != nil {
			return err
		}
		a, err := harness.StartAgent(setup, bin, adir, harness.AgentOptions{
			Relays:          []string{relay.Addr},
			Fingerprint:     fp,
			RegistrationKey: site.RegistrationKey,
			LogGlobs:        []string{filepath.Join(adir, "logs", "*.log")},
		})
		if a != nil && a.Proc != nil {
			procs = append(procs, a.Proc)
		}
		if err != nil {
			return err
		}
		writers = append(writers, w)
	}
	fmt.Printf("demo running: %d agents, %d lines/s each; Ctrl-C to stop\n", nAgents, rate)

	write := time.NewTicker(100 * time.Millisecond)
	defer write.Stop()
	report := time.NewTicker(every)
	defer report.Stop()
	perTick := max(1, rate/10)
	for {
		select {
		case <-ctx.Done():
			fmt.Println("stopping")
			return nil
		case <-write.C:
			for _, w := range writers {
				if err := w.Write(perTick); err != nil {
					return err
				}
			}
		case <-report.C:
			printCounts(ctx, cloud, relay, site, writers)
		}
	}
}

func printCounts(ctx context.Context, cloud *harness.Cloud, relay *harness.Relay, site *harness.Site, ws []*harness.LogWriter) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	written := 0
	for _, w := range ws {
		written += len(w.Lines())
	}
	delivered, spooled, agents := "?", "?", "?"
	if n, err := cloud.Admin.CountEvents(ctx, site.TenantID, ""); err == nil {
		delivered = fmt.Sprint(n)
	}
	if st, err := relay.Status(ctx); err == nil {
		spooled = fmt.Sprint(st.Spool.Batches)
		agents = fmt.Sprint(st.AgentsConnected)
	}
	fmt.Printf("%s delivered=%s spooled=%s agents=%s written=%d\n",
		time.Now().Format("15:04:05"), delivered, spooled, agents, written)
}
