package actions

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"regexp"
	"time"
)

// retrieveFile returns a regular file of at most MaxRetrieveBytes as JSON
// {path, size, sha256, content (base64)}.
func (e *Executor) retrieveFile(path string) Result {
	f, err := os.Open(path)
	if err != nil {
		return fail("retrieve %s: %v", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail("retrieve %s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fail("retrieve %s: not a regular file", path)
	}
	max := e.deps.MaxRetrieveBytes
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return fail("retrieve %s: %v", path, err)
	}
	if int64(len(b)) > max {
		return fail("retrieve %s: %d bytes, over the %d byte cap (chunked file transfer is not there yet)", path, fi.Size(), max)
	}
	sum := sha256.Sum256(b)
	out, _ := json.Marshal(map[string]any{"path": path, "size": len(b), "sha256": hex.EncodeToString(sum[:]), "content": b})
	return Result{OK: true, Output: out}
}

// Bundle bounds: the whole bundle must fit the cloud's 1 MiB output.
const maxBundleLog = 512 << 10

// supportBundle returns a tar.gz of the agent's log (its last 512 KiB),
// its config with secrets redacted, status.json and MANIFEST.json.
func (e *Executor) supportBundle() Result {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	now := e.deps.Clock.Now()
	manifest := map[string]string{}
	add := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: now, Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	for _, f := range []struct {
		name, path string
		tail       int64
		redact     bool
	}{
		{"agent.log", e.deps.LogFile, maxBundleLog, false},
		{"config.yaml", e.deps.ConfigFile, 256 << 10, true},
		{"status.json", e.deps.StatusFile, 256 << 10, false},
	} {
		if f.path == "" {
			manifest[f.name] = "not configured"
			continue
		}
		b, err := readTail(f.path, f.tail)
		if err != nil {
			manifest[f.name] = "missing: " + err.Error()
			continue
		}
		if f.redact {
			b = Redact(b)
		}
		manifest[f.name] = f.path
		add(f.name, b)
	}
	m, _ := json.MarshalIndent(map[string]any{"created_at": now.UTC().Format(time.RFC3339), "files": manifest}, "", "  ")
	add("MANIFEST.json", m)
	if err := tw.Close(); err != nil {
		return fail("support bundle: %v", err)
	}
	if err := gz.Close(); err != nil {
		return fail("support bundle: %v", err)
	}
	return Result{OK: true, Output: buf.Bytes()}
}

// readTail reads the last max bytes of a file.
func readTail(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > max {
		if _, err := f.Seek(fi.Size()-max, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, max))
}

var (
	secretKey   = regexp.MustCompile(`(?im)^(\s*-?\s*"?[a-z0-9_]*(key|secret|token|password|passwd|credential)[a-z0-9_]*"?\s*:\s*)(\S.*)$`)
	urlUserinfo = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://)[^/@\s"']+@`)
)

// Redact replaces the values of secret-looking YAML keys (registration_key,
// *_secret, *token*, *password*) and the user:password of URLs.
func Redact(b []byte) []byte {
	b = secretKey.ReplaceAll(b, []byte(`${1}"[REDACTED]"`))
	return urlUserinfo.ReplaceAll(b, []byte(`${1}[REDACTED]@`))
}
