package cloudclient

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	cloudv1 "github.com/gatehouse/gatehouse/proto/gatehouse/cloud/v1"
)

// A peer that takes the TCP connection and never answers the TLS handshake
// (a middlebox swallowing it) fails after the connect timeout, not the
// request timeout, with a message naming the address and the phase.
func TestConnectTimeoutNamesTheCause(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 64) // held open, never answered
	t.Cleanup(func() {
		ln.Close()
		for len(held) > 0 {
			(<-held).Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case held <- c:
			default:
				c.Close()
			}
		}
	}()
	c, err := New(Options{URL: "https://" + ln.Addr().String(), Timeout: time.Hour, ConnectTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.SetCredentials("r", "s")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = c.Poll(ctx, &cloudv1.ControlPollRequest{})
	want := "connect to cloud " + ln.Addr().String() + ": TLS handshake not finished in 200ms"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error containing %q", err, want)
	}
	if !Unreachable(err) || !Retryable(err) {
		t.Fatalf("%v: want unreachable and retryable", err)
	}
}
