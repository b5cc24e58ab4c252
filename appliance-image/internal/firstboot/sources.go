// Package firstboot finds the appliance's settings and enrollment token at
// boot: systemd credentials (passed by the hypervisor through SMBIOS or
// qemu's fw_cfg), VMware OVF properties, a seed volume, or what an earlier
// boot saved on the data partition.
package firstboot

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Credential names (docs/appliance.md).
const (
	CredSettings = "gatehouse.appliance"
	CredToken    = "gatehouse.enrollment-token"
	SeedLabel    = "GH-SEED"
)

// Found is what one source supplied.
type Found struct {
	Source   string
	Settings []byte // appliance.yaml
	Token    string
}

// Sources says where to look; the zero fields take the real system paths.
type Sources struct {
	CredDirs  []string // directories of system credentials
	DMIDir    string   // /sys/firmware/dmi/entries
	FwCfgDir  string   // /sys/firmware/qemu_fw_cfg/by_name/opt/io.systemd.credentials
	OVFEnv    func(ctx context.Context) ([]byte, error)
	SeedDev   string // the seed volume's device
	SeedMount func(ctx context.Context, dev string) (dir string, unmount func(), err error)
}

// System is the real system's sources. The kernel modules that expose SMBIOS
// and fw_cfg are loaded first: systemd 252 reads them only if present then.
func System(ctx context.Context) Sources {
	for _, m := range []string{"dmi-sysfs", "qemu_fw_cfg"} {
		_ = exec.CommandContext(ctx, "modprobe", "-q", m).Run() // absent on other hypervisors
	}
	dirs := []string{"/run/credentials/@system"}
	if d := os.Getenv("CREDENTIALS_DIRECTORY"); d != "" {
		dirs = append([]string{d}, dirs...)
	}
	return Sources{
		CredDirs:  dirs,
		DMIDir:    "/sys/firmware/dmi/entries",
		FwCfgDir:  "/sys/firmware/qemu_fw_cfg/by_name/opt/io.systemd.credentials",
		OVFEnv:    vmwareOVFEnv,
		SeedDev:   "/dev/disk/by-label/" + SeedLabel,
		SeedMount: mountRO,
	}
}

// Find returns the first source holding the settings, in order:
// credentials, SMBIOS, fw_cfg, OVF properties, seed volume. ok is false
// when none does (the console wizard asks then).
func (s Sources) Find(ctx context.Context) (Found, bool, error) {
	type source struct {
		name string
		get  func(name string) ([]byte, error)
	}
	dmi, err := s.dmiCredentials()
	if err != nil {
		return Found{}, false, err
	}
	ovf := map[string][]byte{}
	if s.OVFEnv != nil {
		if env, err := s.OVFEnv(ctx); err == nil {
			ovf, err = ovfProperties(env)
			if err != nil {
				return Found{}, false, err
			}
		}
	}
	srcs := []source{}
	for _, d := range s.CredDirs {
		d := d
		srcs = append(srcs, source{"credential " + d, func(n string) ([]byte, error) { return os.ReadFile(filepath.Join(d, n)) }})
	}
	srcs = append(srcs,
		source{"SMBIOS credential", func(n string) ([]byte, error) { return lookup(dmi, n) }},
		source{"fw_cfg credential", func(n string) ([]byte, error) { return os.ReadFile(filepath.Join(s.FwCfgDir, n, "raw")) }},
		source{"OVF property", func(n string) ([]byte, error) { return lookup(ovf, n) }},
	)
	for _, src := range srcs {
		b, err := src.get(CredSettings)
		if err != nil || len(b) == 0 {
			continue
		}
		f := Found{Source: src.name, Settings: b}
		if t, err := src.get(CredToken); err == nil {
			f.Token = strings.TrimSpace(string(t))
		}
		return f, true, nil
	}
	if s.SeedDev != "" && s.SeedMount != nil {
		if _, err := os.Stat(s.SeedDev); err == nil {
			dir, unmount, err := s.SeedMount(ctx, s.SeedDev)
			if err != nil {
				return Found{}, false, fmt.Errorf("seed volume %s: %w", s.SeedDev, err)
			}
			defer unmount()
			b, err := os.ReadFile(filepath.Join(dir, "appliance.yaml"))
			if err != nil {
				return Found{}, false, fmt.Errorf("seed volume %s: %w (want appliance.yaml and enrollment-token at its top)", s.SeedDev, err)
			}
			f := Found{Source: "seed volume " + SeedLabel, Settings: b}
			if t, err := os.ReadFile(filepath.Join(dir, "enrollment-token")); err == nil {
				f.Token = strings.TrimSpace(string(t))
			}
			return f, true, nil
		}
	}
	return Found{}, false, nil
}

func lookup(m map[string][]byte, n string) ([]byte, error) {
	if b, ok := m[n]; ok {
		return b, nil
	}
	return nil, os.ErrNotExist
}

// dmiCredentials reads SMBIOS type 11 (OEM strings) entries of the form
// io.systemd.credential:NAME=VALUE and io.systemd.credential.binary:NAME=BASE64,
// as qemu's -smbios type=11,value=... passes them.
func (s Sources) dmiCredentials() (map[string][]byte, error) {
	out := map[string][]byte{}
	if s.DMIDir == "" {
		return out, nil
	}
	ents, err := filepath.Glob(filepath.Join(s.DMIDir, "11-*", "raw"))
	if err != nil {
		return nil, err
	}
	for _, p := range ents {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, str := range smbiosStrings(raw) {
			if v, ok := strings.CutPrefix(str, "io.systemd.credential:"); ok {
				if name, val, ok := strings.Cut(v, "="); ok {
					out[name] = []byte(val)
				}
			} else if v, ok := strings.CutPrefix(str, "io.systemd.credential.binary:"); ok {
				if name, val, ok := strings.Cut(v, "="); ok {
					b, err := base64.StdEncoding.DecodeString(val)
					if err != nil {
						return nil, fmt.Errorf("SMBIOS credential %s: bad base64: %w", name, err)
					}
					out[name] = b
				}
			}
		}
	}
	return out, nil
}

// smbiosStrings returns the string set of one raw SMBIOS structure: after
// the formatted area (its length is byte 1), NUL-terminated strings ending
// with an empty one.
func smbiosStrings(raw []byte) []string {
	if len(raw) < 2 || int(raw[1]) > len(raw) {
		return nil
	}
	var out []string
	for _, s := range bytes.Split(raw[raw[1]:], []byte{0}) {
		if len(s) == 0 {
			break
		}
		out = append(out, string(s))
	}
	return out
}

// ovfProperties parses the OVF environment VMware passes to the guest
// (guestinfo.ovfEnv): property values are base64 for settings (YAML has
// newlines) and plain for the token.
func ovfProperties(env []byte) (map[string][]byte, error) {
	var doc struct {
		Props []struct {
			Key   string `xml:"key,attr"`
			Value string `xml:"value,attr"`
		} `xml:"PropertySection>Property"`
	}
	if err := xml.Unmarshal(env, &doc); err != nil {
		return nil, fmt.Errorf("OVF environment: %w", err)
	}
	out := map[string][]byte{}
	for _, p := range doc.Props {
		switch p.Key {
		case CredSettings:
			b, err := base64.StdEncoding.DecodeString(p.Value)
			if err != nil {
				return nil, fmt.Errorf("OVF property %s: want base64 of appliance.yaml: %w", p.Key, err)
			}
			out[p.Key] = b
		case CredToken:
			out[p.Key] = []byte(p.Value)
		}
	}
	return out, nil
}

func vmwareOVFEnv(ctx context.Context) ([]byte, error) {
	if _, err := exec.LookPath("vmware-rpctool"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "vmware-rpctool", "info-get guestinfo.ovfEnv").Output()
	if err != nil || len(out) == 0 {
		return nil, errors.New("no OVF environment")
	}
	return out, nil
}

func mountRO(ctx context.Context, dev string) (string, func(), error) {
	dir, err := os.MkdirTemp("/run", "gatehouse-seed-")
	if err != nil {
		return "", nil, err
	}
	if out, err := exec.CommandContext(ctx, "mount", "-o", "ro,nosuid,nodev,noexec", dev, dir).CombinedOutput(); err != nil {
		os.Remove(dir)
		return "", nil, fmt.Errorf("mount: %v: %s", err, out)
	}
	return dir, func() { _ = exec.Command("umount", dir).Run(); os.Remove(dir) }, nil
}
