package adminserver

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"testing"

	api "github.com/gatehouse/gatehouse/cloud/adminapi"
	"github.com/gatehouse/gatehouse/cloud/internal/store"
)

// FuzzControlRequests feeds arbitrary bodies to the control-plane request
// decoders and the validators behind them (DNS records, allow-list, action
// payloads): a value or an invalid/bad-request error, never a panic.
func FuzzControlRequests(f *testing.F) {
	f.Add([]byte(`{"records":[{"name":"a.example.com","type":"A","values":["192.0.2.1"],"ttl":60}]}`))
	f.Add([]byte(`{"records":[{"name":"_x._tcp.example.com","type":"SRV","values":["1 1 443 r.example.com"]}]}`))
	f.Add([]byte(`{"cidrs":["10.0.0.0/8","::1"],"names":["x.example.com"]}`))
	f.Add([]byte(`{"type":"terminate_process","payload":{"pid":42}}`))
	f.Add([]byte(`{"agent_ids":["a"],"type":"set_proxy","payload":{"url":"http://p:3128"}}`))
	f.Add([]byte(`{"records":[{"name":"\u0000","type":"TXT","values":["\"x\""]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ok := func(what string, err error) {
			if err != nil && !errors.Is(err, errBadRequest) && !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("%s: unexpected error class: %v", what, err)
			}
		}
		var dnsReq api.SetDNSRequest
		err := decode(httptest.NewRequest("PUT", "/", bytes.NewReader(b)), &dnsReq)
		ok("dns decode", err)
		if err == nil {
			recs := make([]store.DNSRecord, len(dnsReq.Records))
			for i, r := range dnsReq.Records {
				recs[i] = store.DNSRecord(r)
			}
			out, err := store.CanonicalDNSRecords(recs)
			ok("dns records", err)
			if err == nil {
				// Canonical output is a fixed point.
				again, err := store.CanonicalDNSRecords(out)
				if err != nil || len(again) != len(out) {
					t.Fatalf("canonical records not stable: %v, %v -> %v", out, err, again)
				}
			}
		}
		var al api.SetAllowListRequest
		if err := decode(httptest.NewRequest("PUT", "/", bytes.NewReader(b)), &al); err == nil {
			_, err := store.CheckAllowList(al.CIDRs, al.Names)
			ok("allow-list", err)
		}
		var act api.CreateActionRequest
		if err := decode(httptest.NewRequest("POST", "/", bytes.NewReader(b)), &act); err == nil {
			_, err := store.CheckAction(act.Type, act.Payload)
			ok("action", err)
		}
		var bulk api.BulkActionRequest
		ok("bulk decode", decode(httptest.NewRequest("POST", "/", bytes.NewReader(b)), &bulk))
	})
}
