package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// fuzzConn is a net.Conn whose peer sends in (in reads of at most chunk
// bytes) and then hangs up; what the daemon writes is discarded.
type fuzzConn struct {
	in    []byte
	chunk int
}

func (c *fuzzConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.in)
	c.in = c.in[n:]
	return n, nil
}
func (c *fuzzConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *fuzzConn) Close() error                       { return nil }
func (c *fuzzConn) LocalAddr() net.Addr                { return &net.UnixAddr{Name: "fuzz", Net: "unix"} }
func (c *fuzzConn) RemoteAddr() net.Addr               { return &net.UnixAddr{Name: "fuzz", Net: "unix"} }
func (c *fuzzConn) SetDeadline(t time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

// fuzzFrame appends an HTTP/2 frame.
func fuzzFrame(b []byte, typ, flags byte, id uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags)
	b = binary.BigEndian.AppendUint32(b, id)
	return append(b, payload...)
}

// FuzzMeteredConn feeds arbitrary client bytes (after the preface) through
// the connection meter the way gRPC's reader consumes them, admitting
// every new stream as the tap does, and the daemon's own frames (out)
// through its write side. The meter is attacker-facing: whatever arrives,
// it never panics, hands gRPC exactly the bytes that came (only a
// declared length it raises to 0xffffffff may differ), never hands over
// more than asked, and once the connection closes every byte it reserved
// is back in the budget.
func FuzzMeteredConn(f *testing.F) {
	preface := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	var ok []byte
	ok = fuzzFrame(ok, 0x4, 0, 0, nil)                                // SETTINGS
	ok = fuzzFrame(ok, frameHeaders, flagEndHeaders, 1, []byte{0x82}) // HEADERS
	msg := append([]byte{0, 0, 0, 0, 3}, 1, 2, 3)
	ok = fuzzFrame(ok, frameData, flagEndStream, 1, msg)
	f.Add(ok, []byte{}, uint16(4096), int64(1<<20))
	var late []byte // headers, then the prefix split across two frames
	late = fuzzFrame(late, frameHeaders, 0, 3, []byte{0x82})
	late = fuzzFrame(late, frameCont, flagEndHeaders, 3, nil)
	late = fuzzFrame(late, frameData, flagPadded, 3, []byte{2, 0, 0, 0xff, 0, 0})
	late = fuzzFrame(late, frameData, 0, 3, []byte{0xff, 0xff, 9})
	late = fuzzFrame(late, frameRST, 0, 3, []byte{0, 0, 0, 8})
	f.Add(late, fuzzFrame(nil, frameHeaders, flagEndStream|flagEndHeaders, 3, nil), uint16(1), int64(100))
	var tiny []byte // a flood of one-byte frames
	tiny = fuzzFrame(tiny, frameHeaders, flagEndHeaders, 5, nil)
	tiny = fuzzFrame(tiny, frameData, 0, 5, []byte{0, 0, 0, 0, 200})
	for range 50 {
		tiny = fuzzFrame(tiny, frameData, 0, 5, []byte{7})
	}
	f.Add(tiny, []byte{}, uint16(7), int64(64<<10))
	f.Fuzz(func(t *testing.T, in, out []byte, chunk uint16, limit int64) {
		if len(in) > 1<<20 || len(out) > 1<<20 {
			return
		}
		limit = max(0, min(limit, 16<<20))
		sent := append(append([]byte(nil), preface...), in...)
		b := newBudget(64<<20, 32<<20)
		cc := &countedConn{Conn: &fuzzConn{in: sent, chunk: int(chunk)%8192 + 1}, info: PeerInfo{UID: 1000}, release: func() {}}
		mc := newMeteredConn(cc, b, func() {})

		var got []byte
		p := make([]byte, 4096)
		admitted := uint32(0)
		writes := 0
		for range 4*len(sent) + 16 {
			n, err := mc.Read(p[:1+len(got)%len(p)])
			if n < 0 || n > 1+len(got)%len(p) {
				t.Fatalf("Read returned %d bytes for a %d-byte buffer", n, 1+len(got)%len(p))
			}
			got = append(got, p[:n]...)
			if mc.newest != admitted { // the tap runs for a new stream
				id, declared := mc.admitStream()
				checked := declared >= 0
				if declared > limit {
					admitted = mc.newest
					continue // refused
				}
				if !checked {
					declared = limit
				}
				need := reserveFor(declared)
				if b.reserve(cc.info.UID, need) && !mc.register(id, need, limit, checked, nil) {
					b.release(cc.info.UID, need)
				}
				admitted = mc.newest
			}
			if writes < len(out) { // the daemon answers, a piece at a time
				k := min(len(out)-writes, 1+int(chunk)%64)
				if _, err := mc.Write(out[writes : writes+k]); err != nil {
					t.Fatalf("Write: %v", err)
				}
				writes += k
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, errOverReservation) {
					t.Fatalf("Read: unexpected error %v", err)
				}
				break
			}
		}
		if len(got) > len(sent) {
			t.Fatalf("handed over %d bytes of %d", len(got), len(sent))
		}
		for i := range got {
			if got[i] != sent[i] && got[i] != 0xff {
				t.Fatalf("byte %d changed from %#x to %#x", i, sent[i], got[i])
			}
		}
		if !bytes.Equal(got[:min(len(got), len(preface))], preface[:min(len(got), len(preface))]) {
			t.Fatal("the preface was changed")
		}
		if err := mc.Close(); err != nil {
			t.Fatal(err)
		}
		if u := b.inUse(); u != 0 {
			t.Fatalf("%d bytes still reserved after the connection closed", u)
		}
		if len(b.byUID) != 0 {
			t.Fatalf("per-uid reservations left after close: %v", b.byUID)
		}
	})
}
