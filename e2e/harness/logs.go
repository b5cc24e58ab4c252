package harness

import (
	"context"
	"encoding/json"
	"fmt"
)

// LogEvent is what the log-file collector put into one event.
type LogEvent struct {
	Message string
	Path    string
	Offset  int64
	Flags   []string // ECS log.flags ("truncated")
}

// LogEvents returns every log-line event the cloud stored for the tenant,
// in the order stored.
func (c *Cloud) LogEvents(ctx context.Context, tenantID string) ([]LogEvent, error) {
	var out []LogEvent
	err := c.eachEvent(ctx, tenantID, func(agentID string, seq uint64, raw []byte) error {
		var ev struct {
			Event struct {
				Action string `json:"action"`
			} `json:"event"`
			Message string `json:"message"`
			Log     struct {
				File struct {
					Path string `json:"path"`
				} `json:"file"`
				Offset int64    `json:"offset"`
				Flags  []string `json:"flags"`
			} `json:"log"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("event %s/%d: %w", agentID, seq, err)
		}
		if ev.Event.Action == "log-line" {
			out = append(out, LogEvent{Message: ev.Message, Path: ev.Log.File.Path, Offset: ev.Log.Offset, Flags: ev.Log.Flags})
		}
		return nil
	})
	return out, err
}

// eachEvent calls fn with every event stored for the tenant, paging
// through them.
func (c *Cloud) eachEvent(ctx context.Context, tenantID string, fn func(agentID string, seq uint64, raw []byte) error) error {
	var after uint64
	for {
		page, err := c.Admin.QueryEvents(ctx, tenantID, "", after, 10000)
		if err != nil {
			return err
		}
		for _, e := range page.Events {
			if err := fn(e.AgentID, e.Seq, e.Event); err != nil {
				return err
			}
		}
		if len(page.Events) == 0 || page.Next <= after {
			return nil
		}
		after = page.Next
	}
}
