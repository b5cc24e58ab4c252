// Package status is the agent's <data_dir>/status.json: written by the
// running agent, read by "gatehouse-agent status".
package status

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gatehouse/gatehouse/internal/atomicfile"
)

// Ring summarises the disk ring.
type Ring struct {
	Batches        int    `json:"batches"`
	Bytes          int64  `json:"bytes"`
	MaxBytes       int64  `json:"max_bytes"`
	DroppedBatches uint64 `json:"dropped_batches"`
	DroppedBytes   uint64 `json:"dropped_bytes"`
}

// Logs counts the log collection (logs: in the config) since the agent started.
type Logs struct {
	Lines          uint64 `json:"lines"`           // lines queued as events
	TruncatedLines uint64 `json:"truncated_lines"` // of them, longer than max_line_bytes and cut
	LostFiles      uint64 `json:"lost_files"`      // removed or truncated while the agent was stopped before it read them to the end
}

// Status is the whole file.
type Status struct {
	AgentID            string    `json:"agent_id"`
	State              string    `json:"state"` // connecting | connected | error
	Relay              string    `json:"relay"`
	Transport          string    `json:"transport"` // quic | tcp | tcp+proxy while connected
	Proxy              string    `json:"proxy"`     // proxy host:port, never credentials
	LastError          string    `json:"last_error"`
	PolicyTier         string    `json:"policy_tier"` // server | workstation, as the collectors run now
	Ring               Ring      `json:"ring"`
	Logs               Logs      `json:"logs"`
	NextSeq            uint64    `json:"next_seq"`
	Pending            int       `json:"pending"`
	SpooledUndelivered int       `json:"spooled_undelivered"`
	DeliveredTotal     uint64    `json:"delivered_total"`
	RejectedTotal      uint64    `json:"rejected_total"`
	UpdatedAt          time.Time `json:"updated_at"`
}

// Write replaces the file atomically.
func Write(path string, s Status) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	// Rewritten every few seconds and only informational: atomic, not
	// fsynced (two fsyncs each time were a tenth of the agent's CPU).
	return atomicfile.Replace(path, append(b, '\n'), 0o644)
}

// Read reads the file.
func Read(path string) (Status, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Status{}, fmt.Errorf("read status: %w (is the agent running?)", err)
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("read status %s: %w", path, err)
	}
	return s, nil
}

// Text prints s for people.
func Text(w io.Writer, s Status, now time.Time) {
	lastErr := s.LastError
	if lastErr == "" {
		lastErr = "-"
	}
	relay := s.Relay
	if relay == "" {
		relay = "-"
	}
	fmt.Fprintf(w, "agent id:            %s\n", s.AgentID)
	fmt.Fprintf(w, "state:               %s\n", s.State)
	fmt.Fprintf(w, "relay:               %s\n", relay)
	fmt.Fprintf(w, "transport:           %s\n", dash(s.Transport))
	fmt.Fprintf(w, "proxy:               %s\n", dash(s.Proxy))
	fmt.Fprintf(w, "policy tier:         %s\n", dash(s.PolicyTier))
	fmt.Fprintf(w, "last error:          %s\n", lastErr)
	fmt.Fprintf(w, "ring:                %d batches, %d / %d bytes, %d dropped (%d bytes)\n",
		s.Ring.Batches, s.Ring.Bytes, s.Ring.MaxBytes, s.Ring.DroppedBatches, s.Ring.DroppedBytes)
	fmt.Fprintf(w, "log lines:           %d, %d truncated, %d files lost while stopped\n",
		s.Logs.Lines, s.Logs.TruncatedLines, s.Logs.LostFiles)
	fmt.Fprintf(w, "pending:             %d\n", s.Pending)
	fmt.Fprintf(w, "spooled undelivered: %d\n", s.SpooledUndelivered)
	fmt.Fprintf(w, "delivered total:     %d\n", s.DeliveredTotal)
	fmt.Fprintf(w, "rejected total:      %d\n", s.RejectedTotal)
	fmt.Fprintf(w, "next seq:            %d\n", s.NextSeq)
	fmt.Fprintf(w, "updated:             %s (%s ago)\n", s.UpdatedAt.Format(time.RFC3339), now.Sub(s.UpdatedAt).Round(time.Second))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
