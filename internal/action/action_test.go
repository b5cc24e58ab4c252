package action

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	agentv1 "github.com/gatehouse/gatehouse/proto/gatehouse/agent/v1"
)

// The names are the admin API's and the stored actions': they never change.
func TestNames(t *testing.T) {
	want := []string{"isolate", "cancel_isolation", "quarantine_file", "restore_file", "terminate_process",
		"retrieve_file", "retrieve_support_bundle", "set_proxy", "clear_proxy", "heartbeat_now"}
	if got := Names(); !slices.Equal(got, want) {
		t.Fatalf("Names: got %v, want %v", got, want)
	}
	for _, n := range want {
		if typ, ok := Parse(n); !ok || Name(typ) != n {
			t.Errorf("Parse(%q): got %v %v", n, typ, ok)
		}
	}
	for _, n := range []string{"", "unspecified", "ISOLATE", "format_disk"} {
		if _, ok := Parse(n); ok {
			t.Errorf("Parse(%q): got ok", n)
		}
	}
}

func TestParseJSON(t *testing.T) {
	for _, tt := range []struct {
		typ, payload, canon string
		ok                  bool
	}{
		{"isolate", ``, `{}`, true},
		{"isolate", `{"allow_cidrs":["10.0.0.0/8"]}`, ``, false}, // the allow-list is the tenant's
		{"quarantine_file", `{"path":"/tmp/x"}`, `{"path":"/tmp/x"}`, true},
		{"quarantine_file", `{"path":"rel"}`, ``, false},
		{"restore_file", `{"quarantine_id":"q1"}`, `{"quarantine_id":"q1"}`, true},
		{"restore_file", `{}`, ``, false},
		{"terminate_process", `{"pid":42}`, `{"pid":42}`, true},
		{"terminate_process", `{"pid":1}`, ``, false},
		{"set_proxy", `{"url":"http://p:3128"}`, `{"url":"http://p:3128"}`, true},
		{"set_proxy", `{"url":"socks5://p:1"}`, ``, false},
		{"heartbeat_now", `{} `, `{}`, true},
		{"heartbeat_now", `{}{}`, ``, false},
		{"format_disk", `{}`, ``, false},
	} {
		a, err := ParseJSON(tt.typ, []byte(tt.payload))
		if (err == nil) != tt.ok {
			t.Errorf("%s %s: got err %v, want ok=%v", tt.typ, tt.payload, err, tt.ok)
			continue
		}
		if err != nil {
			continue
		}
		if b, _ := JSON(a); string(b) != tt.canon {
			t.Errorf("%s %s: canonical %s, want %s", tt.typ, tt.payload, b, tt.canon)
		}
	}
}

func TestValidate(t *testing.T) {
	iso := func(cidrs ...string) *agentv1.Action {
		return &agentv1.Action{Type: agentv1.ActionType_ACTION_TYPE_ISOLATE, Payload: &agentv1.Action_Isolate{Isolate: &agentv1.IsolatePayload{
			AllowList: &agentv1.IsolationAllowList{Cidrs: cidrs, Names: []string{"a.example."}},
		}}}
	}
	for _, tt := range []struct {
		name string
		a    *agentv1.Action
		want string
	}{
		{"nil", nil, "action type"},
		{"unknown type", &agentv1.Action{Type: 99}, "action type"},
		{"payload of another type", &agentv1.Action{Type: agentv1.ActionType_ACTION_TYPE_SET_PROXY, Payload: &agentv1.Action_ClearProxy{ClearProxy: &agentv1.EmptyPayload{}}}, "payload is clear_proxy's"},
		{"no payload", &agentv1.Action{Type: agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW}, "payload is unspecified's"},
		{"wide allow-list", iso("0.0.0.0/1", "128.0.0.0/1"), "is wider than /"},
		{"bad prefix", iso("nope"), "allow_cidrs"},
		{"allow-list", iso("10.0.0.0/8", "2001:db8::/32"), ""},
	} {
		err := Validate(tt.a)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
}

// FuzzDecodePayload feeds arbitrary admin API payloads to every type's JSON
// decoder: what decodes is valid and survives its canonical form.
func FuzzDecodePayload(f *testing.F) {
	for _, s := range []string{`{}`, ``, `{"path":"/etc/passwd"}`, `{"quarantine_id":"0123456789abcdef0123456789abcdef"}`,
		`{"pid":4242}`, `{"url":"http://p:3128"}`, `{"allow_cidrs":["10.0.0.0/8"],"allow_names":["a.example"]}`, `{"pid":1e99}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, n := range Names() {
			a, err := ParseJSON(n, b)
			if err != nil {
				continue
			}
			if err := Validate(a); err != nil {
				t.Fatalf("%s: ParseJSON accepted what Validate refuses: %v", n, err)
			}
			canon, err := JSON(a)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseJSON(n, canon)
			if err != nil || !proto.Equal(a, again) {
				t.Fatalf("%s: canonical %s does not parse back: %v", n, canon, err)
			}
		}
	})
}

// FuzzAction feeds arbitrary bytes, as the agent receives them from a relay,
// to the Action decoder and Validate: whatever validates keeps the rules the
// executor relies on.
func FuzzAction(f *testing.F) {
	for _, a := range []*agentv1.Action{
		New(agentv1.ActionType_ACTION_TYPE_HEARTBEAT_NOW),
		{Type: agentv1.ActionType_ACTION_TYPE_QUARANTINE_FILE, Payload: &agentv1.Action_QuarantineFile{QuarantineFile: &agentv1.PathPayload{Path: "/tmp/x"}}},
		{Type: agentv1.ActionType_ACTION_TYPE_ISOLATE, Payload: &agentv1.Action_Isolate{Isolate: &agentv1.IsolatePayload{AllowList: &agentv1.IsolationAllowList{Cidrs: []string{"10.0.0.0/8"}}}}},
		{Type: agentv1.ActionType_ACTION_TYPE_TERMINATE_PROCESS, Payload: &agentv1.Action_TerminateProcess{TerminateProcess: &agentv1.TerminateProcessPayload{Pid: 42}}},
	} {
		b, _ := proto.Marshal(a)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a := &agentv1.Action{}
		if proto.Unmarshal(b, a) != nil || Validate(a) != nil {
			return
		}
		switch a.GetType() {
		case agentv1.ActionType_ACTION_TYPE_QUARANTINE_FILE:
			if p := a.GetQuarantineFile().GetPath(); p == "" || p[0] != '/' {
				t.Fatalf("path %q validated", p)
			}
		case agentv1.ActionType_ACTION_TYPE_TERMINATE_PROCESS:
			if pid := a.GetTerminateProcess().GetPid(); pid <= 1 {
				t.Fatalf("pid %d validated", pid)
			}
		}
		if _, err := JSON(a); err != nil {
			t.Fatal(err)
		}
	})
}
