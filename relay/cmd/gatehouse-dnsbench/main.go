// Command gatehouse-dnsbench serves N synthetic A overrides
// (host<i>.bench.gatehouse.internal -> 10.<i>) with the relay's DNS server,
// for scripts/dns-bench.sh to measure against unbound.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/gatehouse/gatehouse/relay/internal/dnsserver"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:15353", "UDP/TCP address")
	n := flag.Int("overrides", 1000, "number of A overrides")
	workers := flag.Int("workers", 0, "UDP sockets (0: one per CPU)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile (pprof) of the whole run to this file")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := dnsserver.Default()
	cfg.Listen = *listen
	cfg.AllowNetworks = []string{"127.0.0.0/8"}
	cfg.RefuseUnknown = true
	cfg.RateLimit.QPS = 0
	cfg.Workers = *workers
	for i := range *n {
		cfg.Overrides = append(cfg.Overrides, dnsserver.Record{
			Name:  fmt.Sprintf("host%d.bench.gatehouse.internal", i),
			Type:  "A",
			Value: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
		})
	}
	s, err := dnsserver.New(cfg, dnsserver.Deps{Logger: log})
	if err != nil {
		log.Error("start", "err", err)
		os.Exit(1)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Error("cpu profile", "err", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Error("cpu profile", "err", err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.Run(ctx); err != nil {
		log.Error("run", "err", err)
	}
}
