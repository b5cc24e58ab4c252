// Package isolate enforces host isolation with eBPF: cgroup_skb programs on
// the root cgroup v2 drop every IPv4 and IPv6 packet, both directions,
// whose remote address is not in an allow-list (the site's relays, the DNS
// servers, loopback, the tenant's CIDRs and names). Programs, links and
// maps are pinned under /sys/fs/bpf/gatehouse so isolation outlives the
// agent (kill -9); the desired state is kept in <data_dir>/isolation.json
// and re-applied by Restore at start, before any connection. Cancelling
// detaches the programs and removes every pin. See docs/isolation.md.
package isolate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// DefaultPinDir is where programs, links and maps are pinned.
const DefaultPinDir = "/sys/fs/bpf/gatehouse"

// Options configures an Isolator.
type Options struct {
	PinDir    string // default DefaultPinDir (a bpffs is mounted on its parent if needed)
	StateFile string // required: <data_dir>/isolation.json
	// CgroupPath is the cgroup v2 the programs attach to; default the root
	// of the unified hierarchy (the whole host). Tests use a child cgroup.
	CgroupPath string
	// Relays are the site's relays ("host:port", "host" or an IP); always
	// allowed while isolated. SetRelays replaces them.
	Relays []string
	// DNSServers are always allowed; default the name servers of
	// ResolvConf, read at each Apply.
	DNSServers []netip.Addr
	ResolvConf string          // default /etc/resolv.conf
	Resolver   Resolver        // default DNSResolver{ResolvConf}
	Clock      clockwork.Clock // the name refresher's; nil: the real clock
	Logger     *slog.Logger
}

// Status is what the isolator holds and enforces.
type Status struct {
	Isolated   bool           `json:"isolated"` // desired
	Enforced   bool           `json:"enforced"` // programs attached (pinned links present)
	AllowCIDRs []netip.Prefix `json:"allow_cidrs,omitempty"`
	AllowNames []string       `json:"allow_names,omitempty"`
	Relays     []string       `json:"relays,omitempty"`
	// Allowed is every prefix in the kernel's allow-list.
	Allowed        []netip.Prefix          `json:"allowed,omitempty"`
	Resolved       map[string][]netip.Addr `json:"resolved,omitempty"`
	DroppedIngress uint64                  `json:"dropped_ingress"`
	DroppedEgress  uint64                  `json:"dropped_egress"`
	LastError      string                  `json:"last_error,omitempty"`
}

// Isolator applies a Policy to the kernel. Its methods are safe for
// concurrent use.
type Isolator struct {
	opts Options
	log  *slog.Logger
	kick chan struct{}

	mu      sync.Mutex
	state   stateFile
	names   *names
	kern    *kernel
	allowed []netip.Prefix
	lastErr string
	closed  bool
	// enforcing: this process isolated the host; saidOff: the start-up
	// "not isolated" was logged (later confirmations are debug).
	enforcing, saidOff bool
}

// New checks the options; it starts nothing and touches neither the kernel
// nor the disk.
func New(opts Options) (*Isolator, error) {
	if opts.StateFile == "" {
		return nil, errors.New("isolate: StateFile is required")
	}
	if opts.PinDir == "" {
		opts.PinDir = DefaultPinDir
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = "/etc/resolv.conf"
	}
	if opts.Resolver == nil {
		opts.Resolver = DNSResolver{ResolvConf: opts.ResolvConf}
	}
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Isolator{
		opts:  opts,
		log:   opts.Logger,
		kick:  make(chan struct{}, 1),
		state: stateFile{Relays: slices.Clone(opts.Relays)},
		names: newNames(opts.Resolver),
		kern:  &kernel{pinDir: opts.PinDir, cgroup: opts.CgroupPath},
	}, nil
}

// Restore re-applies the persisted desired state: call it at start, before
// the agent connects anywhere. Without a state file, leftover pins (from a
// crash during a cancel) are removed.
func (i *Isolator) Restore(ctx context.Context) error {
	s, ok, err := readState(i.opts.StateFile)
	if err != nil {
		return err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if ok {
		if len(s.Relays) == 0 {
			s.Relays = i.state.Relays
		}
		i.state = s
	}
	return i.convergeLocked(ctx)
}

// Apply persists p as the desired state and converges the kernel to it.
func (i *Isolator) Apply(ctx context.Context, p Policy) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	s := i.state
	s.Policy = p.Normalize()
	if err := writeState(i.opts.StateFile, s); err != nil {
		return err
	}
	i.state = s
	return i.convergeLocked(ctx)
}

// Policy returns the desired policy.
func (i *Isolator) Policy() Policy {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.state.Policy
}

// SetRelays replaces the site's relay addresses (HelloReply.relays) and
// re-enforces when isolated.
func (i *Isolator) SetRelays(ctx context.Context, relays []string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	relays = slices.Clone(relays)
	slices.Sort(relays)
	relays = slices.Compact(relays)
	if slices.Equal(relays, i.state.Relays) {
		return nil
	}
	s := i.state
	s.Relays = relays
	if err := writeState(i.opts.StateFile, s); err != nil {
		return err
	}
	i.state = s
	return i.convergeLocked(ctx)
}

// convergeLocked makes the kernel match i.state: first with the addresses
// already known (so isolation starts at once), then again after resolving
// the names that are due.
func (i *Isolator) convergeLocked(ctx context.Context) error {
	if i.closed {
		return errors.New("isolate: closed")
	}
	if !i.state.Isolated {
		i.names.set(nil)
		i.allowed = nil
		pins, _ := os.ReadDir(i.opts.PinDir) // left by an isolated run that crashed or was cancelled while stopped
		if err := i.kern.remove(); err != nil {
			i.lastErr = err.Error()
			return err
		}
		i.lastErr = ""
		// Not being isolated is the normal state, re-sent on every
		// connect: only a change is worth more than one calm line.
		switch {
		case i.enforcing:
			i.log.Info("isolation cancelled: host released, all traffic allowed, pins removed")
		case len(pins) > 0:
			i.log.Info("isolation: not isolated; removed the pins a previous isolation left, all traffic allowed", "pin_dir", i.opts.PinDir)
		case !i.saidOff:
			i.log.Info("isolation: not isolated")
		default:
			i.log.Debug("isolation: not isolated")
		}
		i.enforcing, i.saidOff = false, true
		return nil
	}
	i.names.set(i.wantNames())
	if err := i.enforceLocked(); err != nil {
		i.lastErr = err.Error()
		return err
	}
	rerr := i.refreshLocked(ctx)
	select {
	case i.kick <- struct{}{}:
	default:
	}
	i.enforcing = true
	i.log.Info("host isolated", "allowed_prefixes", len(i.allowed), "names", len(i.state.AllowNames), "relays", len(i.state.Relays))
	if rerr != nil {
		i.log.Warn("isolation: some allowed names did not resolve", "err", rerr)
	}
	return nil
}

// refreshLocked resolves the due names and re-syncs the maps on a change.
func (i *Isolator) refreshLocked(ctx context.Context) error {
	changed, rerr := i.names.refresh(ctx, i.opts.Clock.Now())
	if changed && i.state.Isolated {
		if err := i.enforceLocked(); err != nil {
			i.lastErr = err.Error()
			return err
		}
	}
	return rerr
}

func (i *Isolator) enforceLocked() error {
	allowed := i.allowList()
	if err := i.kern.enforce(allowed); err != nil {
		return fmt.Errorf("enforce isolation: %w", err)
	}
	i.allowed = allowed
	i.lastErr = ""
	return nil
}

// wantNames is every name to resolve: allowed names and relay host names.
func (i *Isolator) wantNames() []string {
	out := slices.Clone(i.state.AllowNames)
	for _, r := range i.state.Relays {
		h := relayHost(r)
		if _, err := netip.ParseAddr(h); err != nil && h != "" {
			out = append(out, h)
		}
	}
	return out
}

func relayHost(r string) string {
	if h, _, err := net.SplitHostPort(r); err == nil {
		return h
	}
	return r
}

// allowList is every prefix the kernel must let through.
func (i *Isolator) allowList() []netip.Prefix {
	out := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
	}
	host := func(a netip.Addr) {
		a = a.Unmap().WithZone("")
		if a.IsValid() {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	dns := i.opts.DNSServers
	if dns == nil {
		var err error
		if dns, err = Servers(i.opts.ResolvConf); err != nil {
			i.log.Warn("isolation: DNS servers unknown", "err", err)
		}
	}
	for _, a := range dns {
		host(a)
	}
	for _, r := range i.state.Relays {
		if a, err := netip.ParseAddr(relayHost(r)); err == nil {
			host(a)
		}
	}
	for _, a := range i.names.addrs() {
		host(a)
	}
	out = append(out, i.state.AllowCIDRs...)
	return Policy{AllowCIDRs: out}.Normalize().AllowCIDRs
}

// Run re-resolves allowed names when their TTL runs out and updates the
// kernel's allow-list, until ctx ends.
func (i *Isolator) Run(ctx context.Context) error {
	for {
		i.mu.Lock()
		due, ok := i.names.due()
		now := i.opts.Clock.Now()
		i.mu.Unlock()
		var wait <-chan time.Time
		if ok {
			wait = i.opts.Clock.After(max(due.Sub(now), 0))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-i.kick:
			continue
		case <-wait:
		}
		i.mu.Lock()
		if !i.closed {
			if err := i.refreshLocked(ctx); err != nil {
				i.log.Warn("isolation: refresh allowed names", "err", err)
			}
		}
		i.mu.Unlock()
	}
}

// Status returns the desired and enforced state and the drop counters.
func (i *Isolator) Status() Status {
	i.mu.Lock()
	defer i.mu.Unlock()
	s := Status{
		Isolated:   i.state.Isolated,
		Enforced:   i.kern.attached(),
		AllowCIDRs: slices.Clone(i.state.AllowCIDRs),
		AllowNames: slices.Clone(i.state.AllowNames),
		Relays:     slices.Clone(i.state.Relays),
		Allowed:    slices.Clone(i.allowed),
		Resolved:   i.names.resolved(),
		LastError:  i.lastErr,
	}
	s.DroppedIngress, s.DroppedEgress = i.kern.dropped()
	return s
}

// Close releases this process's handles. It never unpins: an isolated
// host stays isolated after the agent stops. Idempotent.
func (i *Isolator) Close() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return nil
	}
	i.closed = true
	i.kern.close()
	return nil
}

// RemovePins detaches the isolation programs pinned under dir (default
// DefaultPinDir) and removes the pins: what uninstall does, since pinned
// links outlive the agent and would keep an uninstalled host isolated.
func RemovePins(dir string) error {
	if dir == "" {
		dir = DefaultPinDir
	}
	return (&kernel{pinDir: dir}).remove()
}

// Pinned reports whether any isolation pin exists under dir (for a
// diagnostic: "gatehouse-agent status" without a running agent).
func Pinned(dir string) bool {
	if dir == "" {
		dir = DefaultPinDir
	}
	_, err := os.Stat(filepath.Join(dir, pinLinkEgress))
	return err == nil
}
