package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

// rawStream opens a raw HTTP/2 connection and one stream of method that
// declares a message of size bytes; it returns the framer.
func rawStream(t *testing.T, sock, method string, size int) (*http2.Framer, net.Conn) {
	return rawStreamAfter(t, sock, method, size, 0)
}

// rawStreamAfter is rawStream with a pause between the headers and the
// length prefix.
func rawStreamAfter(t *testing.T, sock, method string, size int, pause time.Duration) (*http2.Framer, net.Conn) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // the daemon may have closed it: that is the point
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method},
		{":authority", "localhost"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(pause)
	prefix := make([]byte, 5)
	binary.BigEndian.PutUint32(prefix[1:], uint32(size))
	if err := fr.WriteData(1, false, prefix); err != nil {
		t.Fatal(err)
	}
	return fr, c
}

// A stream that declares a Sign within its limit but sends it as 1-byte
// DATA frames (each costs gRPC ~80 bytes of memory: a 60 KiB message
// would hold ~5 MB) runs over its reservation, and the daemon closes the
// connection long before the message is complete.
func TestOverrunClosesConnection(t *testing.T) {
	e := newEnv(t, envOpts{})
	const size = 60 << 10
	fr, c := rawStream(t, e.sock, keystorev1.Keys_Sign_FullMethodName, size)
	go func() { // drain the daemon's frames so it never blocks writing
		for {
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	sent := 0
	var werr error
	for ; sent < size-1; sent++ {
		if werr = fr.WriteData(1, false, []byte{0}); werr != nil {
			break
		}
	}
	if werr == nil {
		// The last writes may sit in the socket buffer: the closed
		// connection shows on the next read or write.
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		for werr == nil {
			werr = fr.WriteData(1, false, []byte{0})
			sent++
		}
	}
	if errors.Is(werr, io.ErrShortWrite) || sent >= size+1<<20 {
		t.Fatalf("the daemon took %d one-byte frames of a %d-byte message without closing the connection (%v)", sent, size, werr)
	}
	var m dto.Metric
	if err := e.srv.metrics.refusedRequests.WithLabelValues(refusedOverrun).Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Errorf("overrun metric %v, want 1", got)
	}
	if sent >= size-1 {
		t.Errorf("the connection closed only after %d frames, the whole message", sent)
	}
}

// frameCost and reserveFor: a message sent in the usual 16 KiB frames
// fits in its reservation however its frames are cut.
func TestReservationFitsOrdinaryFraming(t *testing.T) {
	for _, n := range []int64{0, 1, 1000, 64 << 10, 1 << 20, 8 << 20} {
		for _, frame := range []int64{1025, 4 << 10, 16 << 10} {
			var cost int64
			for left := n + grpcPrefix; left > 0; left -= frame {
				cost += frameCost(int(min(left, frame)))
			}
			if r := reserveFor(n); cost > r {
				t.Errorf("message %d in %d-byte frames costs %d, over its reservation %d", n, frame, cost, r)
			}
		}
	}
}

// The lookahead's fallback: a stream whose length prefix arrives after the
// lookahead gave up, declaring a Sign over the method's limit, is refused
// by gRPC's size check before its body is read (RESOURCE_EXHAUSTED, read
// as EMSGSIZE, audited as EMSGSIZE), and the connection stays up.
func TestLatePrefixOverLimit(t *testing.T) {
	e := newEnv(t, envOpts{})
	n := e.audit.count()
	fr, _ := rawStreamAfter(t, e.sock, keystorev1.Keys_Sign_FullMethodName, 1<<20, 3*lookaheadTime)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	status := ""
	for status == "" {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("the daemon closed the connection (%v), want the stream refused", err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 && f.StreamEnded() {
				status = f.PseudoValue("status") + " grpc-status=" + headerValue(f, "grpc-status")
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if status != "200 grpc-status=8" {
		t.Fatalf("stream ended with %s, want gRPC status 8 (RESOURCE_EXHAUSTED)", status)
	}
	recs := e.audit.waitFor(t, n+1)
	if r := recs[len(recs)-1]; len(recs) != n+1 || r.Op != "keys.sign" || r.Result != "EMSGSIZE" {
		t.Fatalf("records %+v, want one keys.sign EMSGSIZE", recs[n:])
	}
	waitReleased(t, e)
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.Fields {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// reserveWithin: a request that does not fit waits for a release (a
// sequential client's previous reservation still on its way back) and
// then fits; one that cannot fit at all, or still does not fit when the
// wait is over, is refused.
func TestReserveWithinWaitsForRelease(t *testing.T) {
	b := newBudget(100, 60)
	if !b.reserve(1, 50) {
		t.Fatal("the first reservation did not fit")
	}
	if b.reserveWithin(1, 61, time.Hour) {
		t.Fatal("a reservation over the per-uid budget was taken")
	}
	if b.reserveWithin(1, 20, 0) {
		t.Fatal("a reservation that does not fit was taken without a release")
	}
	done := make(chan bool)
	go func() { done <- b.reserveWithin(1, 20, time.Hour) }()
	b.release(2, 0) // another uid's release: still no room for uid 1
	b.release(1, 50)
	if !<-done {
		t.Fatal("the waiting reservation was refused after the release")
	}
	if got := b.inUse(); got != 20 {
		t.Fatalf("in use %d, want 20", got)
	}
}
