package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gatehouse/gatehouse/cloud/internal/store"
	"github.com/gatehouse/gatehouse/internal/identity"
	"github.com/gatehouse/gatehouse/internal/testkit"
	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// TestMain lets the test binary act as a cloud server process for the
// kill -9 test.
func TestMain(m *testing.M) {
	if dir := os.Getenv("GATEHOUSE_CLOUD_CHILD"); dir != "" {
		cfg := Default()
		cfg.DataDir, cfg.Listen, cfg.AdminListen = dir, "127.0.0.1:0", "127.0.0.1:0"
		s, err := New(cfg, Deps{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.WriteFile(filepath.Join(dir, "addr.tmp"), []byte(s.RelayAddr()), 0o600)
		os.Rename(filepath.Join(dir, "addr.tmp"), filepath.Join(dir, "addr"))
		s.Run(context.Background())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestAckedUploadSurvivesKill9 acks uploads from a child process, kills it
// with SIGKILL and checks every acknowledged event is in the store.
func TestAckedUploadSurvivesKill9(t *testing.T) {
	dir := t.TempDir()
	// Prepare tenant, key and enrollment token before the child starts.
	st, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	tn, _ := st.CreateTenant("acme")
	grp, _ := st.CreateGroup(tn.ID, "g")
	site, _ := st.CreateSite(tn.ID, "hq")
	key, _ := st.CreateRegistrationKey(tn.ID, grp.ID, 0)
	tok, _, err := st.CreateEnrollmentToken(tn.ID, site.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GATEHOUSE_CLOUD_CHILD="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var addr []byte
	testkit.WaitFor(t, "child address", func() bool {
		addr, err = os.ReadFile(filepath.Join(dir, "addr"))
		return err == nil
	})
	rc := newRelayClientAt(t, dir, strings.TrimSpace(string(addr)))

	var er cloudv1.EnrollResponse
	if code := rc.call("/v1/relay/enroll", &cloudv1.EnrollRequest{EnrollmentToken: tok}, &er, false); code != 200 {
		t.Fatalf("enroll: got %d", code)
	}
	rc.cred = er.RelayId + "." + er.RelaySecret
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	agentID := identity.AgentID(pub)
	if code := rc.call("/v1/agents/register", &cloudv1.RegisterAgentRequest{AgentId: agentID, PublicKey: pub, RegistrationKey: key.Key}, nil, false); code != 200 {
		t.Fatalf("register: got %d", code)
	}
	acked := 0
	for seq := uint64(1); seq <= 50; seq++ {
		b := &agentv1.EventBatch{AgentId: agentID, Seq: seq}
		for i := range 20 {
			b.Events = append(b.Events, fmt.Appendf(nil, `{"seq":%d,"i":%d}`, seq, i))
		}
		var ack cloudv1.UploadAck
		if code := rc.call("/v1/ingest/upload", &cloudv1.UploadRequest{UploadId: fmt.Sprint(seq), Batches: []*agentv1.EventBatch{b}}, &ack, true); code != 200 || ack.Accepted != 1 {
			t.Fatalf("upload %d: got %d %v", seq, code, &ack)
		}
		acked += 20
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	st, err = store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, err := st.CountEvents(tn.ID, agentID)
	if err != nil || n != uint64(acked) {
		t.Fatalf("after kill -9: got %d events, %v, want %d", n, err, acked)
	}
	evs, _, err := st.QueryEvents(tn.ID, agentID, 0, 10000)
	if err != nil || len(evs) != acked {
		t.Fatalf("after kill -9: query got %d, %v, want %d", len(evs), err, acked)
	}
}
