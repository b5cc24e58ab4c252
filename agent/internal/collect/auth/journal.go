package auth

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
)

type journal struct {
	c          *Collector
	cursorPath string
	cursor     string
	saved      time.Time
}

func (j *journal) follow(ctx context.Context, bin string, args []string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("journalctl: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start journalctl: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 16<<10), 256<<10)
	for sc.Scan() {
		r, cursor, ok := ParseJournal(sc.Bytes())
		if cursor != "" {
			j.cursor = cursor
		}
		if ok {
			if err := j.c.emit(r, nil); err != nil {
				j.c.log.Error("queue auth event", "err", err)
			}
		}
		j.save(false)
	}
	j.save(true)
	if err := cmd.Wait(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("journalctl: %w", err)
	}
	return nil
}

// save writes the cursor at most every few seconds (and at the end).
func (j *journal) save(force bool) {
	if j.cursorPath == "" || j.cursor == "" {
		return
	}
	now := time.Now()
	if !force && now.Sub(j.saved) < 5*time.Second {
		return
	}
	j.saved = now
	if err := atomicfile.Write(j.cursorPath, []byte(j.cursor), 0o600); err != nil {
		j.c.log.Warn("save journal cursor", "err", err)
	}
}
