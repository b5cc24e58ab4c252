package auth

import (
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.Local)
	tests := []struct {
		line string
		want Record
	}{
		{"Mar  1 10:00:01 web1 sshd[811]: Accepted publickey for alice from 10.0.0.5 port 52100 ssh2: ED25519 SHA256:abc",
			Record{Program: "sshd", PID: 811, Action: "ssh-login", Outcome: "success", User: "alice", SourceIP: "10.0.0.5", SourcePort: 52100, Method: "publickey"}},
		{"2025-03-01T10:00:02.123456+00:00 web1 sshd[812]: Failed password for invalid user bob from 2001:db8::1 port 4022 ssh2",
			Record{Program: "sshd", PID: 812, Action: "ssh-login-failed", Outcome: "failure", User: "bob", SourceIP: "2001:db8::1", SourcePort: 4022, Method: "password"}},
		{"Mar  1 10:00:03 web1 sshd[813]: Invalid user admin from 192.0.2.9 port 1111",
			Record{Program: "sshd", PID: 813, Action: "ssh-invalid-user", Outcome: "failure", User: "admin", SourceIP: "192.0.2.9", SourcePort: 1111}},
		{"Mar  1 10:00:04 web1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
			Record{Program: "sudo", Action: "sudo", Outcome: "success", User: "alice", TargetUser: "root", Command: "/usr/bin/systemctl restart nginx"}},
		{"Mar  1 10:00:05 web1 sudo:      bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/home/bob ; USER=root ; COMMAND=/bin/sh",
			Record{Program: "sudo", Action: "sudo-failed", Outcome: "failure", User: "bob", TargetUser: "root", Command: "/bin/sh"}},
		{"Mar  1 10:00:06 web1 su[900]: (to root) alice on pts/2",
			Record{Program: "su", PID: 900, Action: "su", Outcome: "success", User: "alice", TargetUser: "root"}},
		{"Mar  1 10:00:07 web1 su[901]: FAILED SU (to root) bob on pts/3",
			Record{Program: "su", PID: 901, Action: "su-failed", Outcome: "failure", User: "bob", TargetUser: "root"}},
		{"Mar  1 10:00:08 web1 su[902]: pam_unix(su:auth): authentication failure; logname=bob uid=1001 euid=0 tty=pts/3 ruser=bob rhost=  user=root",
			Record{Program: "su", PID: 902, Action: "su-failed", Outcome: "failure", User: "bob", TargetUser: "root"}},
	}
	for _, tt := range tests {
		got, ok := ParseLine(tt.line, now)
		if !ok {
			t.Errorf("%q: not parsed", tt.line)
			continue
		}
		if got.Time.IsZero() {
			t.Errorf("%q: no time", tt.line)
		}
		got.Time = time.Time{}
		if got != tt.want {
			t.Errorf("%q:\ngot  %+v\nwant %+v", tt.line, got, tt.want)
		}
	}
	for _, line := range []string{
		"",
		"Mar  1 10:00:09 web1 CRON[1]: pam_unix(cron:session): session opened for user root",
		"Mar  1 10:00:10 web1 sshd[2]: Connection closed by 10.0.0.1 port 22",
		"garbage",
	} {
		if r, ok := ParseLine(line, now); ok {
			t.Errorf("%q: got %+v, want no event", line, r)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add("Mar  1 10:00:01 web1 sshd[811]: Accepted publickey for alice from 10.0.0.5 port 52100 ssh2")
	f.Fuzz(func(t *testing.T, line string) {
		r, ok := ParseLine(line, time.Unix(0, 0))
		if ok && r.Action == "" {
			t.Errorf("event without action: %+v", r)
		}
	})
}
