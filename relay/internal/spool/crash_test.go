package spool

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

const crashEnv = "GATEHOUSE_SPOOL_CRASH_DIR"

// TestMain lets the crash test re-exec this binary as the writer child.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashChild appends forever from several writers and prints every acked
// (agent, seq) after Append returned Spooled. The parent kill -9s it.
func crashChild(dir string) {
	s, err := Open(Options{Dir: dir, MaxBytes: 1 << 30, Logger: quiet()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	go s.Run(context.Background())
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agent := fmt.Sprintf("crash-agent-%d", w)
			payload := string(make([]byte, 200+w*300)) // some above ValueThreshold
			for seq := uint64(1); ; seq++ {
				r, err := s.Append(context.Background(), batch(agent, seq, agentv1.Priority(1+w%3), payload))
				if err != nil || r != Spooled {
					fmt.Fprintln(os.Stderr, "append:", r, err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(out, "%s %d\n", agent, seq)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestCrashLosesNoAckedBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("re-execs the test binary")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		acked[sc.Text()] = true
		if len(acked) == 2000 {
			// Mid-stream: writers are still appending.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	// Lines printed before the kill landed are acked too.
	for sc.Scan() {
		acked[sc.Text()] = true
	}
	cmd.Wait()
	if len(acked) < 2000 {
		t.Fatalf("child acked only %d batches before dying", len(acked))
	}

	s := startSpool(t, dir, 1<<30)
	items, err := s.Peek(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, it := range items {
		have[fmt.Sprintf("%s %d", it.Batch.AgentId, it.Batch.Seq)] = true
	}
	for k := range acked {
		if !have[k] {
			t.Errorf("acked batch %q lost after kill -9", k)
		}
	}
	if got := s.Stats().Batches; got != int64(len(items)) {
		t.Fatalf("restored count: got %d, want %d", got, len(items))
	}
	t.Logf("acked %d, present %d after kill -9", len(acked), len(items))
}
