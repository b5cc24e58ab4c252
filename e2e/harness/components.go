package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/cloud/adminapi"
)

func writeYAML(path string, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func ready(ctx context.Context, hc *http.Client, adminAddr, path string) (bool, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+path, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// waitReady waits until the process's /readyz answers 200, failing early if
// the process exits.
func waitReady(ctx context.Context, p *Proc, hc *http.Client, adminAddr string, timeout time.Duration) error {
	return waitReadyPath(ctx, p, hc, adminAddr, "/readyz", timeout)
}

// waitReadyPath is waitReady on another readiness path (with a query).
func waitReadyPath(ctx context.Context, p *Proc, hc *http.Client, adminAddr, path string, timeout time.Duration) error {
	return WaitFor(ctx, timeout, p.Name+" ready", func() (bool, error) {
		if !p.Running() {
			return false, fmt.Errorf("%s exited: %v\n%s", p.Name, p.ExitErr(), p.Tail(30))
		}
		return ready(ctx, hc, adminAddr, path)
	})
}

// Cloud is a running gatehouse-cloud.
type Cloud struct {
	*Proc
	DataDir   string
	Listen    string // host:port of the relay API
	AdminAddr string
	Admin     *adminapi.Client
	Place     Place
	hc        *http.Client
}

// URL is the relay API's base URL.
func (c *Cloud) URL() string { return "https://" + c.Listen }

// CAFile is the cloud certificate relays trust.
func (c *Cloud) CAFile() string { return filepath.Join(c.DataDir, "tls", "cert.pem") }

// StartCloud starts a cloud on loopback with its data under dir and waits
// until ready.
func StartCloud(ctx context.Context, bin, dir string) (*Cloud, error) {
	return StartCloudAt(ctx, bin, dir, Place{})
}

// StartCloudAt starts a cloud at a place: in a namespace it serves relays
// on IP:443 (its certificate names IP) and admin on 127.0.0.1:9100 there.
func StartCloudAt(ctx context.Context, bin, dir string, at Place) (*Cloud, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cloud{DataDir: filepath.Join(dir, "data"), Place: at, hc: at.httpClient()}
	conf := map[string]any{
		"data_dir": c.DataDir,
		"log":      map[string]any{"level": "info"},
	}
	if at.In() {
		c.Listen = net.JoinHostPort(at.IP, fmt.Sprint(ServicePort))
		c.AdminAddr = net.JoinHostPort("127.0.0.1", fmt.Sprint(AdminPort))
		conf["tls_hosts"] = []string{at.IP}
	} else {
		lp, err := FreePort()
		if err != nil {
			return nil, err
		}
		ap, err := FreePort()
		if err != nil {
			return nil, err
		}
		c.Listen, c.AdminAddr = fmt.Sprintf("127.0.0.1:%d", lp), fmt.Sprintf("127.0.0.1:%d", ap)
	}
	conf["listen"], conf["admin_listen"] = c.Listen, c.AdminAddr
	cfg := filepath.Join(dir, "cloud.yaml")
	if err := writeYAML(cfg, conf); err != nil {
		return nil, err
	}
	c.Proc = NewProc("cloud", filepath.Join(bin, "gatehouse-cloud"), []string{"--config", cfg}, filepath.Join(dir, "cloud.log"))
	c.Proc.Netns = at.Netns
	if err := c.Restart(ctx); err != nil {
		return nil, err
	}
	tok, err := os.ReadFile(filepath.Join(c.DataDir, "admin.token"))
	if err != nil {
		return nil, fmt.Errorf("cloud admin token: %w", err)
	}
	c.Admin = adminapi.NewClient("http://"+c.AdminAddr, strings.TrimSpace(string(tok)))
	c.Admin.HTTP = c.hc
	return c, nil
}

// Restart starts the cloud again (same ports and data) and waits until ready.
func (c *Cloud) Restart(ctx context.Context) error {
	if err := c.Start(); err != nil {
		return err
	}
	return waitReady(ctx, c.Proc, c.hc, c.AdminAddr, 30*time.Second)
}

// Site is what Bootstrap made in the cloud for one customer site.
type Site struct {
	TenantID        string
	SiteID          string
	GroupID         string
	RegistrationKey string
}

// Bootstrap creates a tenant, a site, a group and a registration key.
func (c *Cloud) Bootstrap(ctx context.Context, name string) (*Site, error) {
	t, err := c.Admin.CreateTenant(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("create tenant: %w", err)
	}
	s, err := c.Admin.CreateSite(ctx, t.ID, name+"-site")
	if err != nil {
		return nil, fmt.Errorf("create site: %w", err)
	}
	g, err := c.Admin.CreateGroup(ctx, t.ID, "default")
	if err != nil {
		return nil, fmt.Errorf("create group: %w", err)
	}
	k, err := c.Admin.CreateRegistrationKey(ctx, t.ID, g.ID, 0)
	if err != nil {
		return nil, fmt.Errorf("create registration key: %w", err)
	}
	return &Site{TenantID: t.ID, SiteID: s.ID, GroupID: g.ID, RegistrationKey: k.Key}, nil
}

// EnrollmentToken makes a one-time relay enrollment token for the site.
func (c *Cloud) EnrollmentToken(ctx context.Context, s *Site) (string, error) {
	tok, err := c.Admin.CreateEnrollmentToken(ctx, s.TenantID, s.SiteID, 0)
	if err != nil {
		return "", fmt.Errorf("create enrollment token: %w", err)
	}
	return tok.Token, nil
}

// Messages returns how many times each event `message` reached the cloud for
// the tenant, paging through every stored event.
func (c *Cloud) Messages(ctx context.Context, tenantID string) (map[string]int, error) {
	got := map[string]int{}
	err := c.eachEvent(ctx, tenantID, func(agentID string, seq uint64, raw []byte) error {
		var ev struct {
			Message string `json:"message"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("event %s/%d: %w", agentID, seq, err)
		}
		if ev.Message != "" {
			got[ev.Message]++
		}
		return nil
	})
	return got, err
}
