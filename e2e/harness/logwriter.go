package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// LogWriter appends numbered lines to a log file as an application would,
// and remembers every line it wrote so tests can check each arrived once.
type LogWriter struct {
	Path   string
	prefix string

	mu    sync.Mutex
	n     int
	lines []string
}

// NewLogWriter writes lines "<prefix> line=<n>" to path.
func NewLogWriter(path, prefix string) (*LogWriter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return &LogWriter{Path: path, prefix: prefix}, nil
}

// Write appends n lines in one write.
func (w *LogWriter) Write(n int) error { return w.writeLines(n, 0) }

// writeLines appends n lines, each padded with " xxx..." to size bytes
// when size is longer than the line.
func (w *LogWriter) writeLines(n, size int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := os.OpenFile(w.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	var buf []byte
	for range n {
		w.n++
		line := fmt.Sprintf("%s line=%07d", w.prefix, w.n)
		if pad := size - len(line) - 1; pad > 0 {
			line += " " + strings.Repeat("x", pad)
		}
		w.lines = append(w.lines, line)
		buf = append(buf, line...)
		buf = append(buf, '\n')
	}
	_, err = f.Write(buf)
	return err
}

// Rotate renames the file to path.N as logrotate does; the next Write
// creates a fresh file.
func (w *LogWriter) Rotate(suffix string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return os.Rename(w.Path, w.Path+"."+suffix)
}

// Lines returns every line written so far.
func (w *LogWriter) Lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}
