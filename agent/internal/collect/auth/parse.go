// Package auth turns authentication log lines (sshd logins and failures,
// sudo, su) from /var/log/auth.log (or /var/log/secure) or from journald
// into ECS authentication events.
package auth

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Record is one parsed authentication line.
type Record struct {
	Time       time.Time // zero when the line has none
	Program    string    // sshd, sudo, su
	PID        int
	Action     string // ssh-login, ssh-login-failed, ssh-invalid-user, sudo, sudo-failed, su, su-failed
	Outcome    string // success, failure
	User       string
	TargetUser string
	SourceIP   string
	SourcePort int
	Method     string // password, publickey, ...
	Command    string // sudo's COMMAND
}

// MaxLine bounds what the parser looks at.
const MaxLine = 8 << 10

var (
	// "Jan  2 03:04:05 host prog[pid]: msg" or "2024-01-02T03:04:05.123+00:00 host prog[pid]: msg"
	syslogRe = regexp.MustCompile(`^(?:([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)|(\d{4}-\d\d-\d\dT\S+)) \S+ ([\w.@/-]+?)(?:\[(\d+)\])?: (.*)$`)

	sshAccepted = regexp.MustCompile(`^Accepted (\S+) for (\S+) from (\S+) port (\d+)`)
	sshFailed   = regexp.MustCompile(`^Failed (\S+) for (?:invalid user )?(\S+) from (\S+) port (\d+)`)
	sshInvalid  = regexp.MustCompile(`^Invalid user (\S*) from (\S+)(?: port (\d+))?`)
	sudoCmd     = regexp.MustCompile(`^\s*(\S+) : (?:(\d+) incorrect password attempts? ; )?(?:.*?; )?USER=(\S+) ; COMMAND=(.*)$`)
	sudoAuthErr = regexp.MustCompile(`^pam_unix\(sudo:auth\): authentication failure;.*?ruser=(\S*).*? user=(\S+)`)
	suOK        = regexp.MustCompile(`^(?:\(to (\S+)\) (\S+) on|Successful su for (\S+) by (\S+))`)
	suFailed    = regexp.MustCompile(`^(?:FAILED SU \(to (\S+)\) (\S+) on|FAILED su for (\S+) by (\S+))`)
	suPamFail   = regexp.MustCompile(`^pam_unix\(su(?:-l)?:auth\): authentication failure;.*?ruser=(\S*).*? user=(\S+)`)
)

// ParseLine parses a syslog-format line; ok is false for lines that are not
// authentication events. now supplies the year of year-less timestamps.
func ParseLine(line string, now time.Time) (Record, bool) {
	if len(line) > MaxLine {
		line = line[:MaxLine]
	}
	m := syslogRe.FindStringSubmatch(line)
	if m == nil {
		return Record{}, false
	}
	pid, _ := strconv.Atoi(m[4])
	r, ok := ParseMessage(m[3], pid, m[5])
	if !ok {
		return Record{}, false
	}
	switch {
	case m[1] != "":
		if t, err := time.ParseInLocation("Jan _2 15:04:05", m[1], time.Local); err == nil {
			t = t.AddDate(now.Year(), 0, 0)
			if t.After(now.Add(24 * time.Hour)) { // December's line read in January
				t = t.AddDate(-1, 0, 0)
			}
			r.Time = t
		}
	case m[2] != "":
		if t, err := time.Parse(time.RFC3339Nano, m[2]); err == nil {
			r.Time = t
		}
	}
	return r, true
}

// ParseMessage parses the message of a program (as journald gives it).
func ParseMessage(program string, pid int, msg string) (Record, bool) {
	if len(msg) > MaxLine {
		msg = msg[:MaxLine]
	}
	r := Record{Program: program, PID: pid}
	switch program {
	case "sshd", "sshd-session":
		r.Program = "sshd"
		if m := sshAccepted.FindStringSubmatch(msg); m != nil {
			r.Action, r.Outcome, r.Method, r.User, r.SourceIP = "ssh-login", "success", m[1], m[2], m[3]
			r.SourcePort, _ = strconv.Atoi(m[4])
			return r, true
		}
		if m := sshFailed.FindStringSubmatch(msg); m != nil {
			r.Action, r.Outcome, r.Method, r.User, r.SourceIP = "ssh-login-failed", "failure", m[1], m[2], m[3]
			r.SourcePort, _ = strconv.Atoi(m[4])
			return r, true
		}
		if m := sshInvalid.FindStringSubmatch(msg); m != nil {
			r.Action, r.Outcome, r.User, r.SourceIP = "ssh-invalid-user", "failure", m[1], m[2]
			r.SourcePort, _ = strconv.Atoi(m[3])
			return r, true
		}
	case "sudo":
		if m := sudoCmd.FindStringSubmatch(msg); m != nil {
			r.User, r.TargetUser, r.Command = m[1], m[3], strings.TrimSpace(m[4])
			r.Action, r.Outcome = "sudo", "success"
			if m[2] != "" || strings.Contains(msg, "command not allowed") || strings.Contains(msg, "NOT in sudoers") {
				r.Action, r.Outcome = "sudo-failed", "failure"
			}
			return r, true
		}
		if m := sudoAuthErr.FindStringSubmatch(msg); m != nil {
			r.Action, r.Outcome, r.User, r.TargetUser = "sudo-failed", "failure", m[1], m[2]
			return r, true
		}
	case "su":
		if m := suFailed.FindStringSubmatch(msg); m != nil {
			r.Action, r.Outcome = "su-failed", "failure"
			r.TargetUser, r.User = first(m[1], m[3]), first(m[2], m[4])
			return r, true
		}
		if m := suOK.FindStringSubmatch(msg); m != nil {
			r.Action, r.Outcome = "su", "success"
			r.TargetUser, r.User = first(m[1], m[3]), first(m[2], m[4])
			return r, true
		}
		if m := suPamFail.FindStringSubmatch(msg); m != nil {
			r.Action, r.Outcome, r.User, r.TargetUser = "su-failed", "failure", m[1], m[2]
			return r, true
		}
	}
	return Record{}, false
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
