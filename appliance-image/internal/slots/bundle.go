package slots

import (
	"archive/tar"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"
)

// A bundle is an uncompressed tar: manifest.json, manifest.sig (the
// vendor's detached Ed25519 signature of manifest.json), then the files the
// manifest lists with their SHA-256: the kernel, the initrd and the root
// file system image (zstd). Nothing is written before the signature checks
// out, and a slot gets its boot entry only after every hash matched.
const (
	ManifestName  = "manifest.json"
	SignatureName = "manifest.sig"
	RootfsName    = "rootfs.img.zst"
	KernelName    = "vmlinuz"
	InitrdName    = "initrd.img"
)

// Manifest describes a release.
type Manifest struct {
	Version string          `json:"version"`
	Created time.Time       `json:"created"`
	Files   map[string]File `json:"files"` // by name in the bundle
}

// File is one payload of the bundle.
type File struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Errors an operator sees when a bundle is refused.
var (
	ErrBadSignature = errors.New("bundle signature does not verify against the vendor key: refusing it")
	ErrNotNewer     = errors.New("bundle is not newer than the running release")
)

// LoadPublicKey reads a PEM "ED25519 PUBLIC KEY" or raw 32-byte key file.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("update key: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("update key %s: want a %d-byte Ed25519 public key", path, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// LoadPrivateKey reads a PEM "ED25519 PRIVATE KEY" seed file.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || len(blk.Bytes) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key %s: want PEM with a %d-byte Ed25519 seed", path, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(blk.Bytes), nil
}

// GenerateKey writes a new signing key (seed, 0600) and its public key.
func GenerateKey(priv, pub string) error {
	pk, sk, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "ED25519 PRIVATE KEY", Bytes: sk.Seed()}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "ED25519 PUBLIC KEY", Bytes: pk}), 0o644)
}

// MakeBundle writes a signed bundle of a kernel, an initrd and a root file
// system image (compressed here) for release version.
func MakeBundle(out io.Writer, key ed25519.PrivateKey, version, kernel, initrd, rootfs string) error {
	tmp, err := os.CreateTemp(filepath.Dir(rootfs), ".rootfs-*.zst")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	src, err := os.Open(rootfs)
	if err != nil {
		return err
	}
	defer src.Close()
	enc, err := zstd.NewWriter(tmp, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return err
	}
	if _, err := io.Copy(enc, src); err != nil {
		return fmt.Errorf("compress %s: %w", rootfs, err)
	}
	if err := enc.Close(); err != nil {
		return err
	}
	paths := map[string]string{KernelName: kernel, InitrdName: initrd, RootfsName: tmp.Name()}
	m := Manifest{Version: version, Created: time.Now().UTC(), Files: map[string]File{}}
	for name, p := range paths {
		f, err := fileDigest(p)
		if err != nil {
			return err
		}
		m.Files[name] = f
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(out)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: m.Created}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := add(ManifestName, mb); err != nil {
		return err
	}
	if err := add(SignatureName, ed25519.Sign(key, mb)); err != nil {
		return err
	}
	for _, name := range []string{KernelName, InitrdName, RootfsName} {
		if err := addFile(tw, name, paths[name], m.Created); err != nil {
			return err
		}
	}
	return tw.Close()
}

func fileDigest(p string) (File, error) {
	f, err := os.Open(p)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, err
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func addFile(tw *tar.Writer, name, p string, mtime time.Time) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: st.Size(), ModTime: mtime}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// Target is where Apply writes: the inactive slot's partition (or an image
// file in tests), the ESP, and the release it must be newer than.
type Target struct {
	ESP       ESP
	Slot      Slot
	Device    string // the slot's partition
	Running   string // version of the running release
	BootTries int
}

// Apply reads a bundle, checks its signature, writes it to the target slot
// and gives the slot a boot entry on trial. It returns the manifest.
func Apply(r io.Reader, key ed25519.PublicKey, t Target) (Manifest, error) {
	tr := tar.NewReader(r)
	mb, err := readSmall(tr, ManifestName)
	if err != nil {
		return Manifest{}, err
	}
	sig, err := readSmall(tr, SignatureName)
	if err != nil {
		return Manifest{}, err
	}
	if !ed25519.Verify(key, mb, sig) {
		return Manifest{}, ErrBadSignature
	}
	var m Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return Manifest{}, fmt.Errorf("bundle manifest: %w", err)
	}
	if m.Version == "" {
		return Manifest{}, errors.New("bundle manifest has no version")
	}
	if CompareVersions(m.Version, t.Running) <= 0 {
		return m, fmt.Errorf("%w: bundle %s, running %s", ErrNotNewer, m.Version, t.Running)
	}
	// From here on the slot is being overwritten: it must not be bootable.
	if err := t.ESP.Remove(t.Slot); err != nil {
		return m, fmt.Errorf("remove slot %s boot entry: %w", t.Slot, err)
	}
	kdir := t.ESP.KernelDir(t.Slot)
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return m, err
	}
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("read bundle: %w", err)
		}
		want, ok := m.Files[hdr.Name]
		if !ok {
			return m, fmt.Errorf("bundle file %q is not in the signed manifest", hdr.Name)
		}
		h := sha256.New()
		src := io.TeeReader(io.LimitReader(tr, want.Size+1), h)
		switch hdr.Name {
		case RootfsName:
			err = writeRootfs(src, t.Device)
		case KernelName, InitrdName:
			err = writeFile(src, filepath.Join(kdir, hdr.Name+".new"))
		}
		if err != nil {
			return m, fmt.Errorf("write %s: %w", hdr.Name, err)
		}
		if err := checkDigest(h, hdr.Name, want); err != nil {
			return m, err
		}
		seen[hdr.Name] = true
	}
	for _, name := range []string{KernelName, InitrdName, RootfsName} {
		if !seen[name] {
			return m, fmt.Errorf("bundle lacks %s", name)
		}
	}
	for _, name := range []string{KernelName, InitrdName} {
		if err := os.Rename(filepath.Join(kdir, name+".new"), filepath.Join(kdir, name)); err != nil {
			return m, err
		}
	}
	if err := syncDir(kdir); err != nil {
		return m, err
	}
	if err := t.ESP.Install(t.Slot, m.Version, t.BootTries); err != nil {
		return m, fmt.Errorf("boot entry for slot %s: %w", t.Slot, err)
	}
	return m, nil
}

func checkDigest(h hash.Hash, name string, want File) error {
	if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 {
		return fmt.Errorf("bundle file %s: SHA-256 %s, the signed manifest says %s: corrupt or tampered, refusing it", name, got, want.SHA256)
	}
	return nil
}

func readSmall(tr *tar.Reader, name string) ([]byte, error) {
	hdr, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w: not a Gatehouse update bundle", err)
	}
	if hdr.Name != name {
		return nil, fmt.Errorf("bundle starts with %q, want %s: not a Gatehouse update bundle", hdr.Name, name)
	}
	if hdr.Size > 1<<20 {
		return nil, fmt.Errorf("bundle %s is %d bytes: too large", name, hdr.Size)
	}
	return io.ReadAll(tr)
}

func writeFile(r io.Reader, p string) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	return copySync(f, r)
}

// copySync copies r to f, syncs and closes f.
func copySync(f *os.File, r io.Reader) error {
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeRootfs decompresses the image onto the slot's partition, then
// drains what the decoder did not need, so the digest covers every byte.
func writeRootfs(r io.Reader, dev string) error {
	dec, err := zstd.NewReader(r)
	if err != nil {
		return err
	}
	defer dec.Close()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := copySync(f, dec); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, r)
	return err
}
