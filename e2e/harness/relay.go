package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RelayOptions tune a test relay.
type RelayOptions struct {
	SpoolMaxBytes  int64    // 0: the relay's default
	MaxUploadBytes int64    // 0: the relay's default
	MaxUploadAge   string   // "" : the relay's default
	MaxBackoff     string   // "" : 2s, so tests see recovery quickly
	Place          Place    // where it runs; zero: loopback
	CloudProxy     string   // cloud.proxy, http://user:pass@host:port; "": none
	Env            []string // extra environment, e.g. HTTPS_PROXY=...
	// ClusterBind, when set, gives the relay a cluster port there (host:port)
	// with short Raft timeouts; ClusterInit/ClusterJoin then make it a member.
	ClusterBind string
	// DNS turns on the relay's DNS server on a free loopback port (DNSAddr),
	// answering 127.0.0.0/8 and refusing names it does not hold.
	DNS bool
	// SpoolMinFreeBytes is spool.min_free_bytes; 0: the relay's default.
	SpoolMinFreeBytes int64
	// DataDir puts the relay's data there (e.g. on a small tmpfs); "": <dir>/data.
	DataDir string
}

// Relay is a running gatehouse-relay.
type Relay struct {
	*Proc
	DataDir   string
	Addr      string // agents' address (UDP for QUIC, TCP for TLS)
	AdminAddr string
	Config    string // its YAML file
	// ClusterAddr is the cluster (Raft) port, when RelayOptions.ClusterBind set one.
	ClusterAddr string
	// DNSAddr is the DNS server's address when RelayOptions.DNS is set.
	DNSAddr string
	Place   Place
	conf    map[string]any
	hc      *http.Client
}

// RelayStatus is the relay's GET /v1/status.
type RelayStatus struct {
	RelayID         string `json:"relay_id"`
	AgentsConnected int    `json:"agents_connected"`
	Spool           struct {
		Batches  int64 `json:"batches"`
		Bytes    int64 `json:"bytes"`
		MaxBytes int64 `json:"max_bytes"`
		Full     bool  `json:"full"`
	} `json:"spool"`
	Uplink struct {
		UploadedBatches int64  `json:"uploaded_batches"`
		LastError       string `json:"last_error"`
		CloudReachable  bool   `json:"cloud_reachable"`
		LastContact     string `json:"last_contact"`
		LastErrorAt     string `json:"last_error_at"`
	} `json:"uplink"`
	ReceiptsPending int64 `json:"receipts_pending"`
}

// StartRelay starts a relay enrolled into the cloud with token, its data
// under dir, and waits until ready.
func StartRelay(ctx context.Context, bin, dir string, cloud *Cloud, token string, opt RelayOptions) (*Relay, error) {
	r, err := PrepareRelay(bin, dir, cloud, token, opt)
	if err != nil {
		return nil, err
	}
	if err := r.Restart(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// PrepareRelay writes a relay's config without starting it.
func PrepareRelay(bin, dir string, cloud *Cloud, token string, opt RelayOptions) (*Relay, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &Relay{DataDir: filepath.Join(dir, "data"), Config: filepath.Join(dir, "relay.yaml"), Place: opt.Place, hc: opt.Place.httpClient()}
	if opt.DataDir != "" {
		r.DataDir = opt.DataDir
	}
	if opt.Place.In() {
		r.Addr = net.JoinHostPort(opt.Place.IP, fmt.Sprint(ServicePort))
		r.AdminAddr = net.JoinHostPort("127.0.0.1", fmt.Sprint(AdminPort))
	} else {
		qp, err := FreePort()
		if err != nil {
			return nil, err
		}
		ap, err := FreePort()
		if err != nil {
			return nil, err
		}
		r.Addr, r.AdminAddr = fmt.Sprintf("127.0.0.1:%d", qp), fmt.Sprintf("127.0.0.1:%d", ap)
	}
	spool := map[string]any{"retry_after": "500ms"}
	if opt.SpoolMaxBytes > 0 {
		spool["max_bytes"] = opt.SpoolMaxBytes
	}
	if opt.SpoolMinFreeBytes > 0 {
		spool["min_free_bytes"] = opt.SpoolMinFreeBytes
	}
	uplink := map[string]any{"min_backoff": "100ms", "max_backoff": "2s"}
	if opt.MaxBackoff != "" {
		uplink["max_backoff"] = opt.MaxBackoff
	}
	if opt.MaxUploadBytes > 0 {
		uplink["max_upload_bytes"] = opt.MaxUploadBytes
	}
	if opt.MaxUploadAge != "" {
		uplink["max_upload_age"] = opt.MaxUploadAge
	}
	cloudConf := map[string]any{
		"url":              cloud.URL(),
		"ca_file":          cloud.CAFile(),
		"enrollment_token": token,
	}
	if opt.CloudProxy != "" {
		cloudConf["proxy"] = opt.CloudProxy
	}
	r.conf = map[string]any{
		"name":         filepath.Base(dir),
		"data_dir":     r.DataDir,
		"listen":       r.Addr,
		"admin_listen": r.AdminAddr,
		"cloud":        cloudConf,
		"spool":        spool,
		"uplink":       uplink,
	}
	if opt.ClusterBind != "" {
		r.ClusterAddr = opt.ClusterBind
		r.conf["cluster"] = map[string]any{
			"bind": opt.ClusterBind, "advertise": opt.ClusterBind,
			"heartbeat_timeout": "500ms", "election_timeout": "500ms", "leader_lease_timeout": "250ms",
		}
	}
	if opt.DNS {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		r.DNSAddr = fmt.Sprintf("127.0.0.1:%d", port)
		r.conf["dns"] = map[string]any{
			"enabled": true, "listen": r.DNSAddr, "allow_networks": []string{"127.0.0.0/8"}, "refuse_unknown": true,
			"strict_isolation": true,
		}
	}
	if err := writeYAML(r.Config, r.conf); err != nil {
		return nil, err
	}
	r.Proc = NewProc(filepath.Base(dir), filepath.Join(bin, "gatehouse-relay"), []string{"--config", r.Config}, filepath.Join(dir, "relay.log"))
	r.Proc.Netns = opt.Place.Netns
	r.Proc.Env = opt.Env
	return r, nil
}

// Restart starts the relay again on the same ports and data, waits until ready.
func (r *Relay) Restart(ctx context.Context) error {
	if err := r.Start(); err != nil {
		return err
	}
	return waitServing(ctx, r.Proc, r.hc, r.AdminAddr, 30*time.Second)
}

// Fingerprint is the relay key's pin, as agents configure it.
func (r *Relay) Fingerprint() (string, error) {
	b, err := os.ReadFile(filepath.Join(r.DataDir, "identity", "fingerprint"))
	if err != nil {
		return "", fmt.Errorf("relay fingerprint: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Status fetches the relay's status.
func (r *Relay) Status(ctx context.Context) (RelayStatus, error) {
	var s RelayStatus
	err := getJSON(ctx, r.hc, "http://"+r.AdminAddr+"/v1/status", &s)
	return s, err
}

// Metric returns the sum of every sample of a Prometheus metric family the
// relay exports whose labels contain all of match ("k=\"v\"" pairs).
func (r *Relay) Metric(ctx context.Context, name string, match ...string) (float64, error) {
	return scrapeMetric(ctx, r.hc, "http://"+r.AdminAddr+"/metrics", name, match...)
}

// SetCloudProxy rewrites cloud.proxy in the relay's config file ("" removes
// it); it takes effect at the next Restart.
func (r *Relay) SetCloudProxy(proxy string) error {
	c := r.conf["cloud"].(map[string]any)
	if proxy == "" {
		delete(c, "proxy")
	} else {
		c["proxy"] = proxy
	}
	return writeYAML(r.Config, r.conf)
}
