package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/proto/framing"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// TestLoad drives a running relay with many agents. It is a measurement,
// not a test: it runs only with GATEHOUSE_LOAD_ADDR (relay host:port),
// GATEHOUSE_LOAD_FP (relay fingerprint) and GATEHOUSE_LOAD_KEY
// (registration key) set; GATEHOUSE_LOAD_AGENTS and _BATCHES size it.
func TestLoad(t *testing.T) {
	addr := os.Getenv("GATEHOUSE_LOAD_ADDR")
	if addr == "" {
		t.Skip("set GATEHOUSE_LOAD_ADDR, GATEHOUSE_LOAD_FP, GATEHOUSE_LOAD_KEY to run")
	}
	agents, _ := strconv.Atoi(os.Getenv("GATEHOUSE_LOAD_AGENTS"))
	batches, _ := strconv.Atoi(os.Getenv("GATEHOUSE_LOAD_BATCHES"))
	agents, batches = max(agents, 1), max(batches, 1)
	event := []byte(`{"@timestamp":"2026-11-21T10:00:00Z","event":{"kind":"event","category":["process"],"type":["start"],"action":"exec"},"host":{"hostname":"web-01"},"process":{"pid":4242,"executable":"/usr/bin/curl","args":["curl","-s","https://example.com"]}}`)
	events := make([][]byte, 20)
	for i := range events {
		events[i] = event
	}
	var acked, other atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for a := 0; a < agents; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, _ := identity.LoadOrCreate(t.TempDir())
			cert, _ := id.Certificate("agent", nil)
			tc := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{framing.ALPN}, InsecureSkipVerify: true,
				VerifyPeerCertificate: identity.VerifyPinned(os.Getenv("GATEHOUSE_LOAD_FP"))}
			ctx := context.Background()
			conn, err := quic.DialAddr(ctx, addr, tc, &quic.Config{KeepAlivePeriod: 10 * time.Second})
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.CloseWithError(0, "")
			ctrl, _ := conn.OpenStreamSync(ctx)
			framing.Write(ctrl, &agentv1.Frame{Body: &agentv1.Frame_Hello{Hello: &agentv1.Hello{Hostname: "load", RegistrationKey: os.Getenv("GATEHOUSE_LOAD_KEY")}}})
			f := &agentv1.Frame{}
			if err := framing.NewReader(ctrl, 0).Next(f); err != nil || f.GetHelloReply() == nil {
				t.Errorf("hello: %v %v", f, err)
				return
			}
			lane, _ := conn.OpenStreamSync(ctx)
			go func() {
				for seq := 1; seq <= batches; seq++ {
					framing.Write(lane, &agentv1.Frame{Body: &agentv1.Frame_EventBatch{EventBatch: &agentv1.EventBatch{
						AgentId: id.ID(), Seq: uint64(seq), Priority: agentv1.Priority_PRIORITY_BULK, Events: events}}})
				}
			}()
			lr := framing.NewReader(lane, 0)
			for seq := 1; seq <= batches; seq++ {
				f := &agentv1.Frame{}
				if err := lr.Next(f); err != nil {
					t.Error(err)
					return
				}
				if f.GetBatchAck().GetStatus() == agentv1.BatchAck_STATUS_SPOOLED {
					acked.Add(1)
				} else {
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	n := acked.Load()
	fmt.Printf("agents=%d batches=%d spooled=%d other=%d in %v: %.0f batches/s, %.0f events/s\n",
		agents, agents*batches, n, other.Load(), el.Round(time.Millisecond), float64(n)/el.Seconds(), float64(n*20)/el.Seconds())
}
