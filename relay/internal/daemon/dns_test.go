package daemon

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/gatehouse/gatehouse/cluster"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
	"github.com/gatehouse/gatehouse/relay/internal/config"
	"github.com/gatehouse/gatehouse/relay/internal/dnsserver"
)

// A clustered relay with DNS on: the file's override is answered at once,
// and an override the cloud adds reaches the cluster's Raft state and is
// answered without a restart, winning over the file's record of the same
// name and type.
func TestClusteredRelayServesDNSOverrides(t *testing.T) {
	poll := &atomic.Pointer[cloudv1.ControlPollResponse]{}
	cloud := cloudStubWith(t, stubOptions{poll: poll})
	cfg := relayConfig(t, cloud, func(c *config.Config) {
		c.Name = "relay-a"
		c.Cluster.Bind = "127.0.0.1:0"
		withDNS(c)
		c.DNS.Overrides = []dnsserver.Record{
			{Name: "ingest.cloud.example.", Type: "A", Value: "192.0.2.10"},
			{Name: "api.cloud.example.", Type: "A", Value: "192.0.2.11"},
		}
	})
	if _, err := cluster.Init(cfg.Cluster.DataDir, cfg.Cluster.NodeID); err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	addr := d.dns.Addr().String()
	lookup := func(name string) string {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
		if err != nil || len(r.Answer) == 0 {
			return ""
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	waitFor(t, "file override answered", func() bool { return lookup("ingest.cloud.example.") == "192.0.2.10" })

	<-d.node.Started()
	waitFor(t, "cluster leader", func() bool {
		st, err := d.node.Status()
		return err == nil && st.LeaderID != ""
	})
	poll.Store(&cloudv1.ControlPollResponse{Version: 2, DnsOverrides: []*cloudv1.DnsOverride{{
		Name: "api.cloud.example.", Type: cloudv1.DnsType_DNS_TYPE_A, Values: []string{"198.51.100.7"}, TtlSeconds: 30,
	}}})
	waitFor(t, "the override in the Raft state", func() bool { return len(d.node.Store().DNSOverrides()) == 1 })
	waitFor(t, "cluster override answered", func() bool { return lookup("api.cloud.example.") == "198.51.100.7" })
	if got := lookup("ingest.cloud.example."); got != "192.0.2.10" {
		t.Fatalf("file override after cluster change: got %q, want 192.0.2.10", got)
	}
}
