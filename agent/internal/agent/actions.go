package agent

import (
	"context"
	"net/url"
	"path/filepath"

	"github.com/gatehouse/gatehouse/agent/internal/actions"
	"github.com/gatehouse/gatehouse/agent/internal/isolate"
	"github.com/gatehouse/gatehouse/agent/internal/transport"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// newActions makes the isolator and the action executor. Isolation needs
// root and eBPF; without them the agent runs, and isolate actions fail with
// the reason.
func (a *Agent) newActions() error {
	iso, err := isolate.New(isolate.Options{
		PinDir: a.cfg.Isolation.PinDir, CgroupPath: a.cfg.Isolation.Cgroup,
		StateFile: filepath.Join(a.cfg.DataDir, "isolation.json"),
		Relays:    a.cfg.Relays, Logger: a.log.With("component", "isolate"),
	})
	deps := actions.Deps{
		DataDir: a.cfg.DataDir, StatusFile: a.cfg.StatusPath(),
		Logger:       a.log.With("component", "actions"),
		HeartbeatNow: func() { a.client.HeartbeatNow() },
		ProxyChanged: a.proxyChanged,
	}
	if err != nil {
		a.log.Warn("host isolation unavailable", "err", err)
	} else {
		a.iso = iso
		deps.Isolator = iso
	}
	a.exec, err = actions.New(deps)
	return err
}

// restoreIsolation re-applies a persisted isolation before the agent makes
// any connection, so a rebooted host comes back isolated.
func (a *Agent) restoreIsolation(ctx context.Context) {
	if a.iso == nil {
		return
	}
	if err := a.iso.Restore(ctx); err != nil {
		a.log.Error("restore isolation", "err", err)
	}
}

// onCommand runs one server-initiated action.
func (a *Agent) onCommand(ctx context.Context, cmd *agentv1.Command) *agentv1.CommandResult {
	r := a.exec.Execute(ctx, cmd)
	a.log.Info("action", "id", cmd.GetId(), "type", cmd.GetAction().GetType().String(), "ok", r.GetOk(), "reason", r.GetReason())
	return r
}

// proxyChanged applies a set_proxy / clear_proxy action's proxy from the
// next connection on ("" goes back to the configured one).
func (a *Agent) proxyChanged(raw string) {
	if raw == "" {
		a.client.SetProxyOverride(nil)
		a.log.Info("proxy override cleared")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		a.log.Error("proxy override", "err", err)
		return
	}
	a.client.SetProxyOverride(u)
	a.log.Info("proxy override set", "proxy", transport.ProxyHost(u))
}

// loadProxyOverride re-applies a set_proxy action's proxy after a restart.
func (a *Agent) loadProxyOverride() {
	p, ok, err := actions.ReadProxyOverride(a.cfg.DataDir)
	if err != nil {
		a.log.Warn("ignoring the proxy override", "err", err)
		return
	}
	if ok {
		a.proxyChanged(p.URL)
	}
}
