// Package slots manages the two root slots A and B: their systemd-boot
// entries on the EFI system partition (with boot counting), and update
// bundles written to the inactive slot.
package slots

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Slot is "a" or "b".
type Slot string

// The slots, and their partitions by GPT label.
const (
	A Slot = "a"
	B Slot = "b"
)

// Other is the slot an update goes to.
func (s Slot) Other() Slot {
	if s == A {
		return B
	}
	return A
}

// Device is the slot's partition.
func (s Slot) Device() string { return "/dev/disk/by-partlabel/root-" + string(s) }

// ParseSlot accepts "a" or "b".
func ParseSlot(s string) (Slot, error) {
	switch Slot(s) {
	case A, B:
		return Slot(s), nil
	}
	return "", fmt.Errorf("slot %q: want a or b", s)
}

// Current is the slot the running system booted, from the kernel command
// line (gatehouse.slot=, set in each slot's boot entry).
func Current(cmdline string) (Slot, error) {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "gatehouse.slot="); ok {
			return ParseSlot(v)
		}
	}
	return "", errors.New("gatehouse.slot= missing from the kernel command line: not booted from a Gatehouse slot")
}

// ESP is the EFI system partition, mounted.
type ESP struct{ Dir string }

// entryRe matches gatehouse-<slot>[+left[-done]].conf (systemd-boot's
// boot counting names, https://systemd.io/AUTOMATIC_BOOT_ASSESSMENT/).
var entryRe = regexp.MustCompile(`^gatehouse-([ab])(?:\+(\d+)(?:-(\d+))?)?\.conf$`)

// Entry is a slot's boot entry.
type Entry struct {
	Slot    Slot
	File    string // file name under loader/entries
	Version string
	// Counting is true while the slot is on trial; Left is then the boots
	// it has left (0: it failed every one and systemd-boot skips it).
	Counting bool
	Left     int
	Done     int
}

// Good is true for a blessed entry (no counter) or one still on trial.
func (e Entry) Good() bool { return !e.Counting || e.Left > 0 }

func (e ESP) entries() string { return filepath.Join(e.Dir, "loader", "entries") }

// Entries lists the slots' boot entries.
func (e ESP) Entries() ([]Entry, error) {
	des, err := os.ReadDir(e.entries())
	if err != nil {
		return nil, fmt.Errorf("boot entries: %w", err)
	}
	var out []Entry
	for _, de := range des {
		m := entryRe.FindStringSubmatch(de.Name())
		if m == nil {
			continue
		}
		en := Entry{Slot: Slot(m[1]), File: de.Name()}
		if m[2] != "" {
			en.Counting = true
			en.Left, _ = strconv.Atoi(m[2])
			en.Done, _ = strconv.Atoi(m[3])
		}
		b, err := os.ReadFile(filepath.Join(e.entries(), de.Name()))
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "version "); ok {
				en.Version = strings.TrimSpace(v)
			}
		}
		out = append(out, en)
	}
	return out, nil
}

// Entry returns the slot's entry, if it has one.
func (e ESP) Entry(s Slot) (Entry, bool, error) {
	all, err := e.Entries()
	if err != nil {
		return Entry{}, false, err
	}
	for _, en := range all {
		if en.Slot == s {
			return en, true, nil
		}
	}
	return Entry{}, false, nil
}

// Remove deletes the slot's entries and files: a slot being rewritten must
// never be bootable.
func (e ESP) Remove(s Slot) error {
	all, err := e.Entries()
	if err != nil {
		return err
	}
	for _, en := range all {
		if en.Slot == s {
			if err := os.Remove(filepath.Join(e.entries(), en.File)); err != nil {
				return err
			}
		}
	}
	return syncDir(e.entries())
}

// KernelDir is where the slot's kernel and initrd live on the ESP.
func (e ESP) KernelDir(s Slot) string { return filepath.Join(e.Dir, "gatehouse", string(s)) }

// EntryText is a slot's systemd-boot entry. Entries sort by version, newest
// first, and systemd-boot boots the first whose tries are not used up, so
// a new slot boots until it fails all its tries, then the older one again.
func EntryText(s Slot, version, cmdline string) string {
	return fmt.Sprintf(`title Gatehouse appliance %[2]s (slot %[1]s)
sort-key gatehouse
version %[2]s
linux /gatehouse/%[1]s/vmlinuz
initrd /gatehouse/%[1]s/initrd.img
options root=PARTLABEL=root-%[1]s rw gatehouse.slot=%[1]s %[3]s
`, s, version, cmdline)
}

// DefaultCmdline is the rest of every slot's kernel command line: both
// consoles, and a reboot 10 s after a panic (an initrd that cannot mount
// its root counts as a failed boot too).
const DefaultCmdline = "console=tty1 console=ttyS0,115200 panic=10"

// Install writes the slot's entry; tries > 0 puts it on trial with that
// many boots, 0 writes it blessed (the image's first slot).
func (e ESP) Install(s Slot, version string, tries int) error {
	if err := os.MkdirAll(e.entries(), 0o755); err != nil {
		return err
	}
	name := fmt.Sprintf("gatehouse-%s.conf", s)
	if tries > 0 {
		name = fmt.Sprintf("gatehouse-%s+%d.conf", s, tries)
	}
	p := filepath.Join(e.entries(), name)
	if err := os.WriteFile(p+".tmp", []byte(EntryText(s, version, DefaultCmdline)), 0o644); err != nil {
		return err
	}
	if err := syncFile(p + ".tmp"); err != nil {
		return err
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return err
	}
	return syncDir(e.entries())
}

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// CompareVersions orders release versions by their dot-separated numeric
// parts (1.10 > 1.9), like systemd-boot's version sort for plain numbers.
func CompareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
