package isolate

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Pin names under the pin directory (the maps keep their C names: allow4,
// allow6, drops).
const (
	pinLinkIngress = "link_ingress"
	pinLinkEgress  = "link_egress"
	pinProgIngress = "prog_ingress"
	pinProgEgress  = "prog_egress"
)

// kernel owns the eBPF side: maps and programs pinned under pinDir, links
// attached to the cgroup and pinned, so enforcement outlives the process.
type kernel struct {
	pinDir string
	cgroup string

	allow4, allow6, drops *ebpf.Map
	ingress, egress       *ebpf.Program
}

// loadSpec returns the collection spec; with pinned false the maps are
// private to this process (tests through prog.Run).
func loadSpec(pinned bool) (*ebpf.CollectionSpec, error) {
	spec, err := loadIsolate()
	if err != nil {
		return nil, fmt.Errorf("load isolation eBPF spec: %w", err)
	}
	if !pinned {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	return spec, nil
}

// load opens the pinned maps (or creates and pins them) and loads the
// programs. fresh reports that the maps did not exist before.
func (k *kernel) load() (fresh bool, err error) {
	if k.allow4 != nil {
		return false, nil
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return false, fmt.Errorf("memlock: %w", err)
	}
	if err := ensureBPFFS(filepath.Dir(k.pinDir)); err != nil {
		return false, err
	}
	if err := os.MkdirAll(k.pinDir, 0o700); err != nil {
		return false, fmt.Errorf("create pin dir %s: %w", k.pinDir, err)
	}
	_, statErr := os.Stat(filepath.Join(k.pinDir, "allow4"))
	fresh = errors.Is(statErr, fs.ErrNotExist)
	spec, err := loadSpec(true)
	if err != nil {
		return false, err
	}
	var objs isolateObjects
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: k.pinDir}}
	err = spec.LoadAndAssign(&objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// Pins of another agent version: replace them.
		for _, name := range []string{"allow4", "allow6", "drops"} {
			os.Remove(filepath.Join(k.pinDir, name))
		}
		fresh = true
		err = spec.LoadAndAssign(&objs, opts)
	}
	if err != nil {
		return false, fmt.Errorf("load isolation eBPF objects: %w", err)
	}
	k.allow4, k.allow6, k.drops = objs.Allow4, objs.Allow6, objs.Drops
	k.ingress, k.egress = objs.IsolateIngress, objs.IsolateEgress
	return fresh, nil
}

// attached reports whether both links are pinned.
func (k *kernel) attached() bool {
	for _, p := range []string{pinLinkIngress, pinLinkEgress} {
		if _, err := os.Stat(filepath.Join(k.pinDir, p)); err != nil {
			return false
		}
	}
	return true
}

// enforce makes the allow-list maps hold exactly allowed, then attaches the
// programs (maps first: the first dropped packet already sees the list).
func (k *kernel) enforce(allowed []netip.Prefix) error {
	fresh, err := k.load()
	if err != nil {
		return err
	}
	if err := k.sync(allowed); err != nil {
		return err
	}
	if fresh && k.attached() {
		// Links left over from maps that are gone: re-attach to ours.
		k.detach()
	}
	if k.attached() {
		return nil
	}
	k.detach() // a half-attached state from a crash
	for _, a := range []struct {
		typ        ebpf.AttachType
		prog       *ebpf.Program
		link, pinP string
	}{
		{ebpf.AttachCGroupInetEgress, k.egress, pinLinkEgress, pinProgEgress},
		{ebpf.AttachCGroupInetIngress, k.ingress, pinLinkIngress, pinProgIngress},
	} {
		if err := a.prog.Pin(filepath.Join(k.pinDir, a.pinP)); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("pin isolation program %s: %w", a.pinP, err)
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: k.cgroup, Attach: a.typ, Program: a.prog})
		if err != nil {
			return fmt.Errorf("attach isolation to cgroup %s: %w", k.cgroup, err)
		}
		err = l.Pin(filepath.Join(k.pinDir, a.link))
		l.Close() // the pin holds the attachment
		if err != nil {
			return fmt.Errorf("pin isolation link %s: %w", a.link, err)
		}
	}
	return nil
}

// detach removes the pinned links, which detaches the programs.
func (k *kernel) detach() {
	for _, p := range []string{pinLinkEgress, pinLinkIngress} {
		path := filepath.Join(k.pinDir, p)
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			l.Unpin()
			l.Close()
		}
		os.Remove(path)
	}
}

// remove detaches everything and removes every pin and the pin directory.
func (k *kernel) remove() error {
	k.detach()
	k.close()
	if err := os.RemoveAll(k.pinDir); err != nil {
		return fmt.Errorf("remove isolation pins %s: %w", k.pinDir, err)
	}
	return nil
}

// close drops this process's references; pins stay.
func (k *kernel) close() {
	for _, m := range []*ebpf.Map{k.allow4, k.allow6, k.drops} {
		if m != nil {
			m.Close()
		}
	}
	for _, p := range []*ebpf.Program{k.ingress, k.egress} {
		if p != nil {
			p.Close()
		}
	}
	k.allow4, k.allow6, k.drops, k.ingress, k.egress = nil, nil, nil, nil, nil
}

// dropped sums the per-CPU drop counters; zeros when nothing is loaded.
func (k *kernel) dropped() (ingress, egress uint64) {
	m := k.drops
	if m == nil {
		var err error
		if m, err = ebpf.LoadPinnedMap(filepath.Join(k.pinDir, "drops"), nil); err != nil {
			return 0, 0
		}
		defer m.Close()
	}
	return sumDrops(m)
}

func sumDrops(m *ebpf.Map) (ingress, egress uint64) {
	for i, dst := range []*uint64{&ingress, &egress} {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			continue
		}
		for _, v := range per {
			*dst += v
		}
	}
	return ingress, egress
}

// sync makes the two LPM tries hold exactly the allowed prefixes.
func (k *kernel) sync(allowed []netip.Prefix) error {
	want4 := map[isolateKey4]bool{}
	want6 := map[isolateKey6]bool{}
	for _, p := range allowed {
		if p.Addr().Is4() {
			want4[key4(p)] = true
		} else {
			want6[key6(p)] = true
		}
	}
	if err := syncTrie(k.allow4, want4); err != nil {
		return fmt.Errorf("sync IPv4 allow-list: %w", err)
	}
	if err := syncTrie(k.allow6, want6); err != nil {
		return fmt.Errorf("sync IPv6 allow-list: %w", err)
	}
	return nil
}

func key4(p netip.Prefix) isolateKey4 {
	return isolateKey4{Prefixlen: uint32(p.Bits()), Addr: p.Masked().Addr().As4()}
}

func key6(p netip.Prefix) isolateKey6 {
	return isolateKey6{Prefixlen: uint32(p.Bits()), Addr: p.Masked().Addr().As16()}
}

func syncTrie[K comparable](m *ebpf.Map, want map[K]bool) error {
	var stale []K
	var k K
	var v uint8
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for k := range want {
		if err := m.Put(k, uint8(1)); err != nil {
			return err
		}
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// trieLen counts a trie's entries.
func trieLen[K any](m *ebpf.Map) int {
	var k K
	var v uint8
	n := 0
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	return n
}

// ensureBPFFS mounts a bpf filesystem on dir unless one is there.
func ensureBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs on %s: %w", dir, err)
	}
	return nil
}

// CgroupRoot returns where the cgroup v2 hierarchy is mounted (the
// production attach point: every socket of the host).
func CgroupRoot() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4], nil
			}
		}
	}
	return "", fmt.Errorf("find cgroup2: no cgroup v2 mount (isolation needs the unified hierarchy)")
}
