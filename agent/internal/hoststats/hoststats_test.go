package hoststats

import (
	"encoding/json"
	"runtime"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/agent/internal/ecs"
)

func TestSampleAndEvent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	s, err := NewSampler()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := s.Sample(now); err != nil {
		t.Fatal(err)
	}
	hs, err := s.Sample(now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if hs.HostMemTotalBytes == 0 || hs.AgentRssBytes == 0 || hs.HostCpuPercent < 0 || hs.HostCpuPercent > 100 {
		t.Fatalf("got %+v, want memory totals and a CPU %% in 0..100", hs)
	}
	b, err := Event(ecs.Source{Hostname: "h", AgentID: "a", Version: "v"}, now, hs)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if got := doc["event"].(map[string]any)["dataset"]; got != "host.stats" {
		t.Fatalf("event.dataset: got %v, want host.stats", got)
	}
}
