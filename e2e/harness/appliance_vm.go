package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/netns"
)

// ApplianceLab is a network namespace with a tap device the appliance VM
// is plugged into: the host side is HostIP (the cloud, agents, the update
// server and the management network) and OtherIP (a second address
// outside the management network), the guest is GuestIP. Nothing leaves
// the machine.
type ApplianceLab struct {
	Netns   string
	HostIP  string
	OtherIP string
	GuestIP string
	Prefix  int
}

// NewApplianceLab makes the namespace and tap; Close removes them.
func NewApplianceLab() (*ApplianceLab, error) {
	var b [3]byte
	rand.Read(b[:])
	l := &ApplianceLab{Netns: "ghapp" + hex.EncodeToString(b[:]), HostIP: "192.168.77.1", OtherIP: "192.168.77.3", GuestIP: "192.168.77.2", Prefix: 24}
	steps := [][]string{
		{"ip", "netns", "add", l.Netns},
		{"ip", "-n", l.Netns, "link", "set", "lo", "up"},
		{"ip", "-n", l.Netns, "tuntap", "add", "dev", "tap0", "mode", "tap"},
		{"ip", "-n", l.Netns, "addr", "add", l.HostIP + "/24", "dev", "tap0"},
		{"ip", "-n", l.Netns, "addr", "add", l.OtherIP + "/24", "dev", "tap0"},
		{"ip", "-n", l.Netns, "link", "set", "tap0", "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			l.Close()
			return nil, fmt.Errorf("%v: %v: %s", s, err, out)
		}
	}
	return l, nil
}

// Close deletes the namespace (and the tap in it).
func (l *ApplianceLab) Close() { _ = exec.Command("ip", "netns", "del", l.Netns).Run() }

// Place is where host-side components run in the lab.
func (l *ApplianceLab) Place() Place {
	return Place{Netns: l.Netns, IP: l.HostIP, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return netns.DialIn(ctx, l.Netns, network, addr)
	}}
}

// DialFrom dials from a given source address of the lab's host side.
func (l *ApplianceLab) DialFrom(ctx context.Context, src, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(l.Netns, func() error {
		d := net.Dialer{Timeout: timeout}
		if src != "" {
			switch network {
			case "tcp":
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
			case "udp":
				d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(src)}
			}
		}
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ScanTCP connects to the given TCP ports of the guest (nil: every port)
// from src and returns those that answered. A dropped SYN times out; a port that answers is
// found within the timeout even on a loaded machine (the kernel answers
// SYNs, not the guest's services).
func (l *ApplianceLab) ScanTCP(ctx context.Context, src string, only []int, timeout time.Duration) []int {
	var mu sync.Mutex
	var open []int
	ports := make(chan int)
	var wg sync.WaitGroup
	for range 1024 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range ports {
				c, err := l.DialFrom(ctx, src, "tcp", net.JoinHostPort(l.GuestIP, fmt.Sprint(p)), timeout)
				if err == nil {
					c.Close()
					mu.Lock()
					open = append(open, p)
					mu.Unlock()
				}
			}
		}()
	}
	if only == nil {
		for p := 1; p <= 65535; p++ {
			only = append(only, p)
		}
	}
	for _, p := range only {
		if ctx.Err() != nil {
			break
		}
		ports <- p
	}
	close(ports)
	wg.Wait()
	sort.Ints(open)
	return open
}

// UpdateServer serves a channel document and bundles from the lab's host
// side, as a vendor's update server would.
type UpdateServer struct {
	URL string
	mu  sync.Mutex
	doc []byte
	srv *http.Server
	dir string
}

// ServeUpdates starts the update server on HostIP:port.
func (l *ApplianceLab) ServeUpdates(port int, bundleDir string) (*UpdateServer, error) {
	ln, err := netns.ListenIn(l.Netns, "tcp", net.JoinHostPort(l.HostIP, fmt.Sprint(port)))
	if err != nil {
		return nil, err
	}
	u := &UpdateServer{URL: fmt.Sprintf("http://%s:%d/channel.json", l.HostIP, port), dir: bundleDir}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /channel.json", func(w http.ResponseWriter, _ *http.Request) {
		u.mu.Lock()
		doc := u.doc
		u.mu.Unlock()
		if doc == nil {
			http.NotFound(w, nil)
			return
		}
		w.Write(doc)
	})
	mux.Handle("GET /bundles/", http.StripPrefix("/bundles/", http.FileServer(http.Dir(bundleDir))))
	u.srv = &http.Server{Handler: mux}
	go u.srv.Serve(ln)
	return u, nil
}

// Offer publishes a release: its version and bundle file (under bundleDir).
func (u *UpdateServer) Offer(version, bundle string) {
	b, _ := json.Marshal(map[string]string{"version": version, "bundle": "bundles/" + bundle})
	u.mu.Lock()
	u.doc = b
	u.mu.Unlock()
}

// Close stops the server.
func (u *UpdateServer) Close() { u.srv.Close() }

// VM is the appliance under qemu (TCG), its serial console in a file.
type VM struct {
	*Proc
	Disk   string
	Serial string
}

// VMOptions describe one appliance VM.
type VMOptions struct {
	Image       string            // the raw image; copied (sparse) into Dir
	Dir         string            // the VM's files
	Credentials map[string][]byte // systemd credentials through SMBIOS type 11
	MemoryMB    int
}

// StartVM boots a copy of the image in the lab with UEFI (OVMF, with its
// own variable store so boot counting works) and the tap's network.
func (l *ApplianceLab) StartVM(opt VMOptions) (*VM, error) {
	v := &VM{Disk: filepath.Join(opt.Dir, "disk.raw"), Serial: filepath.Join(opt.Dir, "serial.log")}
	if out, err := exec.Command("cp", "--sparse=always", opt.Image, v.Disk).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy image: %v: %s", err, out)
	}
	vars := filepath.Join(opt.Dir, "OVMF_VARS.fd")
	if out, err := exec.Command("cp", "/usr/share/OVMF/OVMF_VARS_4M.fd", vars).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("OVMF variables (apt-get install ovmf): %v: %s", err, out)
	}
	mem := opt.MemoryMB
	if mem == 0 {
		mem = 1536
	}
	args := []string{
		"-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", fmt.Sprint(mem),
		"-nodefaults", "-display", "none", "-vga", "none",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-drive", "file=" + v.Disk + ",format=raw,if=virtio,cache=writeback",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:67:68:02",
		"-device", "virtio-rng-pci",
		"-serial", "file:" + v.Serial,
	}
	names := make([]string, 0, len(opt.Credentials))
	for n := range opt.Credentials {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		args = append(args, "-smbios", "type=11,value=io.systemd.credential.binary:"+n+"="+base64.StdEncoding.EncodeToString(opt.Credentials[n]))
	}
	v.Proc = NewProc("qemu", "qemu-system-x86_64", args, filepath.Join(opt.Dir, "qemu.log"))
	v.Proc.Netns = l.Netns
	if err := v.Start(); err != nil {
		return nil, err
	}
	return v, nil
}

// SerialText is everything the guest wrote on its serial console so far.
func (v *VM) SerialText() string {
	b, _ := os.ReadFile(v.Serial)
	return string(b)
}

// WaitSerial waits until the serial console shows want after offset and
// returns the offset just past it.
func (v *VM) WaitSerial(ctx context.Context, timeout time.Duration, offset int, want string) (int, error) {
	end := -1
	err := WaitFor(ctx, timeout, fmt.Sprintf("%q on the appliance's console", want), func() (bool, error) {
		if !v.Running() {
			return false, fmt.Errorf("qemu exited: %v\n%s", v.ExitErr(), v.Tail(20))
		}
		s := v.SerialText()
		if offset > len(s) {
			return false, nil
		}
		if i := strings.Index(s[offset:], want); i >= 0 {
			end = offset + i + len(want)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w\nconsole tail:\n%s", err, TailLines(v.SerialText(), 40))
	}
	return end, nil
}

// TailLines is the last n lines of s.
func TailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// StatusLine returns the fields of the last GATEHOUSE-STATUS line after offset.
func (v *VM) StatusLine(offset int) map[string]string {
	s := v.SerialText()
	if offset > len(s) {
		return nil
	}
	i := strings.LastIndex(s[offset:], "GATEHOUSE-STATUS ")
	if i < 0 {
		return nil
	}
	line := s[offset+i:]
	if j := strings.IndexAny(line, "\r\n"); j >= 0 {
		line = line[:j]
	}
	out := map[string]string{}
	for _, f := range strings.Fields(line)[1:] {
		if k, val, ok := strings.Cut(f, "="); ok {
			out[k] = val
		}
	}
	return out
}

// ESPEntries lists the boot entries on the disk's ESP (read with mtools;
// stop the VM first for a consistent view). The ESP starts at 1 MiB.
func (v *VM) ESPEntries() ([]string, error) {
	cmd := exec.Command("mdir", "-b", "-i", v.Disk+"@@1M", "::/loader/entries")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mdir: %v: %s", err, out)
	}
	var names []string
	for _, l := range strings.Split(string(bytes.TrimSpace(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			names = append(names, filepath.Base(l))
		}
	}
	return names, nil
}

// RelayStatus asks the appliance's relay over its admin port, from the
// management address.
func (l *ApplianceLab) RelayStatus(ctx context.Context) (RelayStatus, error) {
	var st RelayStatus
	err := getJSON(ctx, l.Place().httpClient(), "http://"+net.JoinHostPort(l.GuestIP, fmt.Sprint(AdminPort))+"/v1/status", &st)
	return st, err
}
