package server

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"net"
	"os"
	"sync"
	"time"
)

// Memory in flight. gRPC reads a whole request message before any handler
// or interceptor runs, and grants a stream as much flow-control window as
// the message's declared length, so without help every stream of every
// connection could hold a message of the server-wide maximum. The daemon
// therefore meters every connection it accepts (meteredConn):
//
//   - gRPC reads the connection frame by frame (grpc.ReadBufferSize(0)),
//     so when the transport's tap (Server.admit) runs for a new stream, the
//     last frame it read is that stream's HEADERS: the tap knows the
//     stream's ID;
//   - before handing over the end of a new stream's HEADERS, the
//     connection looks ahead (at most lookaheadBytes, lookaheadTime) for
//     the stream's first DATA bytes and reads the gRPC length prefix, so
//     the tap also knows the request's declared size;
//   - the tap refuses a request over its method's receive limit (EMSGSIZE)
//     or one whose memory does not fit in its uid's and the daemon's
//     budget of bytes in flight (EUNAVAILABLE), with a proper status and
//     an audit record, before a byte of its body is read; otherwise it
//     reserves the request's memory (reserveFor) for the stream (one
//     whose prefix the lookahead missed reserves its method's limit, and
//     its prefix is checked in its first DATA frame: checkPrefix);
//   - every DATA frame of the stream is charged against that reservation
//     at what it costs in memory (frameCost: the buffer gRPC allocates for
//     it, with per-frame overhead); a stream over its reservation (more
//     bytes than it declared, or a flood of tiny frames) closes the
//     connection;
//   - the reservation is released when the daemon has written the
//     stream's end (its trailers or a reset) to the socket, when the
//     client resets the stream, or when the connection closes: a client
//     that does not read its responses keeps its reservations, and so
//     cannot make the daemon queue unbounded responses either.

// Lookahead bounds: how far and how long a new stream's HEADERS wait for
// its length prefix. A gRPC client sends the prefix right behind the
// headers; a stream whose prefix is not there in time reserves its
// method's whole limit.
const (
	lookaheadBytes = 64 << 10
	lookaheadTime  = 100 * time.Millisecond
	// readChunk is the socket read size; the buffer grows past it only
	// while looking ahead.
	readChunk = 4 << 10
)

// HTTP/2 framing.
const (
	frameHeaderLen = 9
	frameData      = 0x0
	frameHeaders   = 0x1
	frameRST       = 0x3
	frameCont      = 0x9
	flagEndStream  = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	// maxFrame is the largest frame gRPC accepts (HTTP/2's default
	// SETTINGS_MAX_FRAME_SIZE); the lookahead never buffers a larger one.
	maxFrame = 16 << 10
	// clientPreface is the length of "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
	clientPreface = 24
	// grpcPrefix is the gRPC message prefix: a flag byte and a 4-byte
	// big-endian length.
	grpcPrefix = 5
)

// frameCost is what a DATA frame of n payload bytes costs in memory once
// gRPC has read it: a buffer of at most the next power of two (gRPC's
// buffer pool tiers and Go's size classes are no larger), plus the
// bookkeeping of one buffer in the stream's queue.
func frameCost(n int) int64 {
	if n <= 1 {
		return 64 + 1
	}
	return 64 + int64(1)<<bits.Len(uint(n-1))
}

// reserveFor is the memory a request whose message is n bytes may use
// while it is received: twice the message (frames that round up, and the
// decoded copy) plus slack for per-frame bookkeeping and for what the
// client may send within the initial stream window.
func reserveFor(n int64) int64 {
	return 2*(n+grpcPrefix) + (n+grpcPrefix)/16 + InitialWindowSize
}

// InitialWindowSize is the HTTP/2 flow-control window of every stream and
// connection (static: gRPC's dynamic window estimation is off), so that a
// stream can send at most this much before the daemon reads its request.
const InitialWindowSize = 64 << 10

// budget counts the bytes reserved by requests in flight, in all and per
// uid. Denied callers reserve only for the unary health probes (a
// request of at most 4 KiB, released when answered): admit refuses
// everything else of theirs before its body is read.
type budget struct {
	total, perUID int64

	mu       sync.Mutex
	used     int64
	byUID    map[uint32]int64
	released chan struct{} // closed (and replaced) by a release while waiters > 0
	waiters  int           // reserveWithin calls waiting for released
}

func newBudget(total, perUID int64) *budget {
	return &budget{total: total, perUID: perUID, byUID: make(map[uint32]int64), released: make(chan struct{})}
}

// reserve takes n bytes for uid, or reports false without taking any.
func (b *budget) reserve(uid uint32, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reserveLocked(uid, n)
}

func (b *budget) reserveLocked(uid uint32, n int64) bool {
	if b.used+n > b.total || b.byUID[uid]+n > b.perUID {
		return false
	}
	b.used += n
	b.byUID[uid] += n
	return true
}

// releaseWait is how long a request that does not fit waits for
// reservations being released before it is refused. A reservation ends
// when the daemon has written the end of its stream, a moment after the
// client can read it: a client that sends its next large request at once
// (sequentially, within its budget) would otherwise be refused by a
// release that is still on its way.
const releaseWait = 100 * time.Millisecond

// reserveWithin is reserve, waiting up to wait for releases when n does
// not fit now (never when it cannot fit at all).
func (b *budget) reserveWithin(uid uint32, n int64, wait time.Duration) bool {
	if n > b.total || n > b.perUID {
		return false
	}
	if b.reserve(uid, n) {
		return true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		if b.reserveLocked(uid, n) {
			b.mu.Unlock()
			return true
		}
		released := b.released
		b.waiters++
		b.mu.Unlock()
		var expired bool
		select {
		case <-released:
		case <-timer.C:
			expired = true
		}
		b.mu.Lock()
		b.waiters--
		b.mu.Unlock()
		if expired {
			return b.reserve(uid, n)
		}
	}
}

func (b *budget) release(uid uint32, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.byUID[uid] -= n; b.byUID[uid] <= 0 {
		delete(b.byUID, uid)
	}
	if b.waiters > 0 {
		// Only then: a release per request would otherwise allocate a
		// channel per request.
		close(b.released)
		b.released = make(chan struct{})
	}
}

// inUse returns the bytes reserved now, in all.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// errOverReservation closes a connection one of whose streams sent more
// than it reserved.
var errOverReservation = errors.New("keystored: a stream sent more than its request declared; connection closed")

// stream is the accounting of one admitted stream. limit is its method's
// receive limit; check is set when its length prefix was not seen at
// admission, for the first DATA frame to check.
type stream struct {
	reserved, used int64
	limit          int64
	check          bool
	// call is the stream's request, finished when the daemon writes
	// the stream's end if no handler did (call.endUnanswered).
	call *call
}

// meteredConn is an accepted connection that meters its streams (see the
// comment at the top of this file). Read is called by gRPC's reader
// goroutine only, Write by its writer goroutine only; the stream table is
// shared with the tap (on the reader goroutine) and guarded by mu.
type meteredConn struct {
	*countedConn
	budget *budget
	over   func() // counts a connection closed for sending over its reservation

	// Reader side.
	buf      []byte // buffered socket bytes: buf[r:w]
	r, w     int
	rerr     error // the socket's read error, returned once buf is drained
	preface  bool  // the client preface has been handed over
	left     int   // bytes of the current frame (header included) still to hand over
	maxOpen  uint32
	newest   uint32           // the stream of the last new-stream HEADERS handed over
	declared map[uint32]int64 // looked-ahead message lengths, until the tap takes them

	// Writer side: the outbound frame being written.
	ohdr  [frameHeaderLen]byte
	ohdrN int
	oskip int

	mu      sync.Mutex
	streams map[uint32]*stream
	closed  bool
}

func newMeteredConn(c *countedConn, b *budget, over func()) *meteredConn {
	return &meteredConn{countedConn: c, budget: b, over: over, buf: make([]byte, readChunk),
		declared: make(map[uint32]int64), streams: make(map[uint32]*stream)}
}

// fill reads more from the socket; it returns false once the socket has
// failed (c.rerr).
func (c *meteredConn) fill() bool {
	if c.rerr != nil {
		return false
	}
	if c.r == c.w {
		c.r, c.w = 0, 0
		if cap(c.buf) > 4*readChunk {
			c.buf = make([]byte, readChunk) // drop a lookahead's large buffer
		}
	}
	if c.w == len(c.buf) {
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		} else {
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
		}
	}
	n, err := c.countedConn.Read(c.buf[c.w:])
	c.w += n
	if err != nil {
		c.rerr = err
	}
	return n > 0 || err == nil
}

// need makes n bytes available at buf[r:]; false if the socket ends first.
func (c *meteredConn) need(n int) bool {
	for c.w-c.r < n {
		if !c.fill() {
			return false
		}
	}
	return true
}

type frameHeader struct {
	length int
	typ    byte
	flags  byte
	id     uint32
}

func parseHeader(b []byte) frameHeader {
	return frameHeader{
		length: int(b[0])<<16 | int(b[1])<<8 | int(b[2]),
		typ:    b[3], flags: b[4],
		id: binary.BigEndian.Uint32(b[5:9]) & 0x7fffffff,
	}
}

// Read hands gRPC the connection's bytes, never past the end of the
// current frame, and does the inbound accounting at each frame's start.
func (c *meteredConn) Read(p []byte) (int, error) {
	if c.left == 0 {
		if err := c.startFrame(); err != nil {
			return 0, err
		}
	}
	if c.r == c.w && !c.fill() && c.r == c.w {
		return 0, c.rerr
	}
	n := copy(p, c.buf[c.r:min(c.w, c.r+c.left)])
	c.r += n
	c.left -= n
	return n, nil
}

// startFrame begins handing over the next frame (or the preface).
func (c *meteredConn) startFrame() error {
	if !c.preface {
		c.preface = true
		c.left = clientPreface
		return nil
	}
	if !c.need(frameHeaderLen) {
		if c.r < c.w {
			c.left = c.w - c.r // a torn frame: gRPC reports it
			return nil
		}
		return c.rerr
	}
	h := parseHeader(c.buf[c.r:])
	c.left = frameHeaderLen + h.length
	switch h.typ {
	case frameHeaders:
		if h.id%2 == 1 && h.id > c.maxOpen {
			c.maxOpen = h.id
			c.newest = h.id
			if h.flags&flagEndHeaders != 0 {
				c.lookahead(h.id, c.r+c.left)
			}
		}
	case frameCont:
		if h.id == c.newest && h.flags&flagEndHeaders != 0 {
			c.lookahead(h.id, c.r+c.left)
		}
	case frameData:
		if !c.charge(h.id, frameCost(h.length)) {
			c.over()
			return errOverReservation
		}
		c.checkPrefix(h)
	case frameRST:
		if st := c.release(h.id); st != nil && st.call != nil {
			st.call.abandon()
		}
	}
	return nil
}

// lookahead reads ahead, within its bounds, for the first DATA bytes of
// new stream id after the header block that ends at buffer offset end,
// and records the declared message length it finds.
func (c *meteredConn) lookahead(id uint32, end int) {
	start := c.r
	if end-start > frameHeaderLen+maxFrame {
		return // gRPC refuses the frame
	}
	deadline := time.Now().Add(lookaheadTime)
	timed := false
	defer func() {
		if timed {
			if err := c.countedConn.SetReadDeadline(time.Time{}); err != nil && c.rerr == nil {
				c.rerr = err
			}
		}
	}()
	// more reads from the socket until buf holds n bytes from start
	// (buffer offsets move when fill compacts: keep them relative).
	more := func(n int) bool {
		for c.w-start < n {
			if n > lookaheadBytes+(end-start) {
				return false
			}
			if !timed {
				timed = true
				if err := c.countedConn.SetReadDeadline(deadline); err != nil {
					return false
				}
			}
			r0 := c.r
			ok := c.fill()
			start -= r0 - c.r
			if errors.Is(c.rerr, os.ErrDeadlineExceeded) {
				c.rerr = nil
				return false
			}
			if !ok {
				return false
			}
		}
		return true
	}
	q := end - start
	var prefix []byte
	for len(prefix) < grpcPrefix {
		if !more(q + frameHeaderLen) {
			return
		}
		h := parseHeader(c.buf[start+q:])
		if h.length > maxFrame || h.id == id && h.typ == frameRST {
			return
		}
		if h.id == id && h.typ == frameData {
			if !more(q + frameHeaderLen + h.length) {
				return
			}
			payload := c.buf[start+q+frameHeaderLen : start+q+frameHeaderLen+h.length]
			if h.flags&flagPadded != 0 {
				if len(payload) == 0 || int(payload[0]) >= len(payload) {
					return
				}
				payload = payload[1 : len(payload)-int(payload[0])]
			}
			prefix = append(prefix, payload[:min(len(payload), grpcPrefix-len(prefix))]...)
			if len(prefix) < grpcPrefix && h.flags&flagEndStream != 0 {
				return
			}
		}
		q += frameHeaderLen + h.length
	}
	c.declared[id] = int64(binary.BigEndian.Uint32(prefix[1:]))
}

// admitStream is called by the tap, on the reader goroutine, for the
// stream whose HEADERS gRPC has just read. It returns the stream's ID and
// its declared message length (-1 if the lookahead did not find it).
func (c *meteredConn) admitStream() (id uint32, declared int64) {
	id = c.newest
	declared, ok := c.declared[id]
	if !ok {
		declared = -1
	}
	clear(c.declared)
	return id, declared
}

// register records the reservation of an admitted stream; false if the
// connection is closed already (the caller then releases it).
func (c *meteredConn) register(id uint32, n, limit int64, checked bool, call *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.streams[id] = &stream{reserved: n, limit: limit, check: !checked, call: call}
	return true
}

// checkPrefix is the fallback for a stream whose length prefix the
// lookahead did not see: at its first DATA frame (not yet handed over),
// a declared length over the method's limit is raised past gRPC's own
// maximum, so that gRPC refuses the message (RESOURCE_EXHAUSTED, which
// clients read as EMSGSIZE; audited as EMSGSIZE when the call ends)
// before reading its body. A prefix split across frames is not checked:
// the stream's reservation still bounds it.
func (c *meteredConn) checkPrefix(h frameHeader) {
	c.mu.Lock()
	st := c.streams[h.id]
	check := st != nil && st.check
	if check {
		st.check = false
	}
	c.mu.Unlock()
	if !check {
		return
	}
	off := frameHeaderLen
	if h.flags&flagPadded != 0 {
		if h.length < 1 || !c.need(off+1) {
			return
		}
		if int(c.buf[c.r+off])+1+grpcPrefix > h.length {
			return
		}
		off++
	} else if h.length < grpcPrefix {
		return
	}
	if !c.need(off + grpcPrefix) {
		return
	}
	length := c.buf[c.r+off+1 : c.r+off+grpcPrefix]
	if int64(binary.BigEndian.Uint32(length)) > st.limit {
		copy(length, []byte{0xff, 0xff, 0xff, 0xff})
	}
}

// charge counts a DATA frame of stream id; false if it takes the stream
// over its reservation. Frames of streams that were not admitted (gRPC
// refused them, or they ended) are dropped by gRPC and cost nothing.
func (c *meteredConn) charge(id uint32, cost int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[id]
	if st == nil {
		return true
	}
	st.used += cost
	return st.used <= st.reserved
}

// release gives back a stream's reservation (once) and returns the
// stream, nil if it had none.
func (c *meteredConn) release(id uint32) *stream {
	c.mu.Lock()
	st := c.streams[id]
	delete(c.streams, id)
	c.mu.Unlock()
	if st != nil {
		c.budget.release(c.info.UID, st.reserved)
	}
	return st
}

// Write passes gRPC's bytes on, and releases a stream's reservation once
// its end (END_STREAM or RST_STREAM) has been written.
func (c *meteredConn) Write(p []byte) (int, error) {
	n, err := c.countedConn.Write(p)
	for b := p[:n]; len(b) > 0; {
		if c.oskip > 0 {
			k := min(c.oskip, len(b))
			c.oskip -= k
			b = b[k:]
			continue
		}
		k := copy(c.ohdr[c.ohdrN:], b)
		c.ohdrN += k
		b = b[k:]
		if c.ohdrN < frameHeaderLen {
			break
		}
		c.ohdrN = 0
		h := parseHeader(c.ohdr[:])
		c.oskip = h.length
		if h.typ == frameRST || (h.typ == frameHeaders || h.typ == frameData) && h.flags&flagEndStream != 0 {
			if st := c.release(h.id); st != nil && st.call != nil {
				st.call.endUnanswered()
			}
		}
	}
	return n, err
}

// Close releases every reservation of the connection.
func (c *meteredConn) Close() error {
	c.mu.Lock()
	c.closed = true
	streams := c.streams
	c.streams = map[uint32]*stream{}
	c.mu.Unlock()
	for _, st := range streams {
		c.budget.release(c.info.UID, st.reserved)
		if st.call != nil {
			st.call.abandon()
		}
	}
	return c.countedConn.Close()
}

var _ net.Conn = (*meteredConn)(nil)
