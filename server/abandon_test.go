package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// A call its client ends before a handler takes it is recorded once, by
// the transport (abandon); a handler that starts after that does
// nothing; a call a handler took is the handler's to record.
func TestAbandonedCallRecordedOnce(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.srv.newCall(keystorev1.Keys_Sign_FullMethodName, Caller{})
	c.abandon()
	if c.enter() {
		t.Fatal("a handler took a call the transport had finished")
	}
	c.abandon() // again: nothing more
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.audit.mu.Lock()
		n := len(e.audit.recs)
		e.audit.mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	r := e.audit.last(t)
	if r.Result != resultName(provider.EUNAVAILABLE) || r.Detail != "ended by the client before it was handled" {
		t.Fatalf("abandoned call recorded as %+v", r)
	}

	taken := e.srv.newCall(keystorev1.Keys_Sign_FullMethodName, Caller{})
	if !taken.enter() {
		t.Fatal("a fresh call refused its handler")
	}
	taken.abandon()
	taken.mu.Lock()
	done, abandoned := taken.done, taken.abandoned
	taken.mu.Unlock()
	if done || abandoned {
		t.Fatal("the transport finished a call its handler had taken")
	}
}

// Requests whose clients reset them at once, or close the connection
// with them unanswered — a compressed request (refused by gRPC before any
// handler) and a plain one — each leave exactly one audit record.
func TestResetRequestsAudited(t *testing.T) {
	e := newEnv(t, envOpts{})
	before := len(e.audit.recs)
	send := func(encoding string, reset bool) {
		conn, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(conn, conn)
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		fields := [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", keystorev1.Keys_Sign_FullMethodName},
			{":authority", "localhost"}, {"content-type", "application/grpc"}, {"te", "trailers"}}
		if encoding != "" {
			fields = append(fields, [2]string{"grpc-encoding", encoding})
		}
		for _, f := range fields {
			if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
				t.Fatal(err)
			}
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if reset {
			if err := fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := 0
	for _, encoding := range []string{"gzip", ""} {
		for _, reset := range []bool{true, false} {
			for range 20 {
				send(encoding, reset)
				cases++
			}
		}
	}
	want := before + cases
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		e.audit.mu.Lock()
		n := len(e.audit.recs)
		e.audit.mu.Unlock()
		if n >= want || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a second record of one call would show now
	e.audit.mu.Lock()
	defer e.audit.mu.Unlock()
	if n := len(e.audit.recs); n != want {
		t.Fatalf("%d requests ended by their clients left %d audit records, want one each", cases, n-before)
	}
}
