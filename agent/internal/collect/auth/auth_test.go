package auth

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/collect/collecttest"
	"github.com/gatehouse/gatehouse/agent/internal/ecs"
)

func TestAuthLogLineBecomesEvent(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "auth.log")
	if err := os.WriteFile(logPath, []byte("Mar  1 09:59:59 web1 CRON[1]: pam_unix(cron:session): session closed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := &collecttest.MemSink{}
	c := New(Options{
		Source: ecs.Source{Hostname: "h", AgentID: "a", Version: "test"}, Sink: sink,
		From: SourceAuto, Paths: []string{logPath}, DataDir: dir, Poll: 10 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("Mar  1 10:00:01 web1 sshd[811]: Failed password for root from 203.0.113.7 port 52100 ssh2\n")
	f.Close()
	deadline := time.Now().Add(20 * time.Second)
	for len(sink.Events()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	evs := sink.Events()
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	for path, want := range map[string]any{
		"event.action": "ssh-login-failed", "event.outcome": "failure", "event.provider": "sshd",
		"user.name": "root", "source.ip": "203.0.113.7", "source.port": float64(52100),
		"process.pid": float64(811), "authentication.method": "password",
	} {
		if got := collecttest.Get(evs[0], path); got != want {
			t.Errorf("%s: got %v, want %v", path, got, want)
		}
	}
}

func TestParseJournal(t *testing.T) {
	line := []byte(`{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1700000000000000","SYSLOG_IDENTIFIER":"sudo","MESSAGE":"alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id"}`)
	r, cursor, ok := ParseJournal(line)
	if !ok || cursor != "s=1;i=2" || r.Action != "sudo" || r.User != "alice" || r.TargetUser != "root" || !r.Time.Equal(time.UnixMicro(1700000000000000)) {
		t.Errorf("got %+v %q %v", r, cursor, ok)
	}
	// MESSAGE as a byte array (binary data) is skipped, its cursor kept.
	if _, cursor, ok := ParseJournal([]byte(`{"__CURSOR":"c","MESSAGE":[1,2]}`)); ok || cursor != "c" {
		t.Errorf("byte-array message: got ok=%v cursor=%q", ok, cursor)
	}
}
