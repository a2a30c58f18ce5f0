package dos

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/rpcerr"
)

// The test binary becomes an attacker when $envAttack is set: it runs as
// another uid (SysProcAttr.Credential), so the daemon sees that uid.
const envAttack = "KEYSTORED_DOS_ATTACK"

// attackSpec is what one attacker process does.
type attackSpec struct {
	Socket string `json:"socket"`
	// Stall: Conns connections, each opening Streams streams; stream i
	// calls Methods[i%len] declaring Sizes[i%len] bytes and sends all but
	// the last byte, then stalls until the process is killed.
	Conns   int      `json:"conns"`
	Streams int      `json:"streams"`
	Methods []string `json:"methods"`
	Sizes   []int    `json:"sizes"`
	// Flood: Calls unary calls of FloodMethod on Conns connections as
	// fast as the daemon answers; the process prints how many ended with
	// each keystored reason, then exits.
	Flood       int    `json:"flood"`
	FloodMethod string `json:"flood_method"`
	// Batch flood: SignBatch calls of BatchItems items with a new
	// BatchAlgorithm key, Streams at a time on each of Conns connections,
	// until the process is killed (batchFlood).
	BatchItems     int    `json:"batch_items"`
	BatchAlgorithm string `json:"batch_algorithm"`
}

// attackMain runs the attacker described by $envAttack.
func attackMain() int {
	var spec attackSpec
	if err := json.Unmarshal([]byte(os.Getenv(envAttack)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		return 2
	}
	if spec.Flood > 0 {
		return flood(spec)
	}
	if spec.BatchItems > 0 {
		return batchFlood(spec)
	}
	var wg sync.WaitGroup
	for range spec.Conns {
		wg.Go(func() {
			if err := stall(spec); err != nil {
				fmt.Fprintln(os.Stderr, "attacker:", err)
			}
		})
	}
	fmt.Println("ready")
	// Hold everything until the test kills us (or closes stdin).
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// h2conn is a raw HTTP/2 client connection that honours flow control.
type h2conn struct {
	mu     sync.Mutex
	cond   *sync.Cond
	fr     *http2.Framer
	conn   int64            // connection send window
	win    map[uint32]int64 // stream send windows
	ended  map[uint32]bool  // streams the daemon ended or reset
	closed bool
	initW  int64
}

func (h *h2conn) read() {
	defer func() {
		h.mu.Lock()
		h.closed = true
		h.cond.Broadcast()
		h.mu.Unlock()
	}()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return
		}
		h.mu.Lock()
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
					d := int64(v) - h.initW
					h.initW = int64(v)
					for id := range h.win {
						h.win[id] += d
					}
				}
				err = h.fr.WriteSettingsAck()
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				h.conn += int64(f.Increment)
			} else {
				h.win[f.StreamID] += int64(f.Increment)
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				err = h.fr.WritePing(true, f.Data)
			}
		case *http2.RSTStreamFrame:
			h.ended[f.StreamID] = true
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				h.ended[f.StreamID] = true
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				h.ended[f.StreamID] = true
			}
		case *http2.GoAwayFrame:
			err = io.EOF
		}
		h.cond.Broadcast()
		h.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// stall opens one connection of stalled streams and returns when the
// daemon closes it.
func stall(spec attackSpec) error {
	c, err := net.Dial("unix", spec.Socket)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		return err
	}
	h := &h2conn{fr: http2.NewFramer(c, c), conn: 65535, initW: 65535, win: map[uint32]int64{}, ended: map[uint32]bool{}}
	h.cond = sync.NewCond(&h.mu)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.mu.Lock()
	err = h.fr.WriteSettings()
	h.mu.Unlock()
	if err != nil {
		return err
	}
	go h.read()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	type pending struct {
		id   uint32
		left int // body bytes still to send (prefix included)
		sent int
		size int
	}
	var streams []*pending
	h.mu.Lock()
	for i := range spec.Streams {
		id := uint32(2*i + 1)
		hb.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", spec.Methods[i%len(spec.Methods)]},
			{":authority", "localhost"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
			if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
				h.mu.Unlock()
				return err
			}
		}
		if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
			h.mu.Unlock()
			return err
		}
		h.win[id] = h.initW
		size := spec.Sizes[i%len(spec.Sizes)]
		streams = append(streams, &pending{id: id, left: 5 + size - 1, size: size})
	}
	// Send every stream's body as the windows allow, all but its last byte.
	chunk := make([]byte, 16<<10)
	for {
		progress := false
		for _, s := range streams {
			if s.left == 0 || h.ended[s.id] {
				continue
			}
			n := min(int64(s.left), int64(len(chunk)), h.conn, h.win[s.id])
			if n <= 0 {
				continue
			}
			b := chunk[:n]
			clear(b)
			if s.sent == 0 {
				b[0] = 0
				binary.BigEndian.PutUint32(b[1:5], uint32(s.size))
			}
			if err := h.fr.WriteData(s.id, false, b); err != nil {
				h.mu.Unlock()
				return err
			}
			s.sent += int(n)
			s.left -= int(n)
			h.conn -= n
			h.win[s.id] -= n
			progress = true
		}
		if h.closed {
			h.mu.Unlock()
			return nil
		}
		if !progress {
			h.cond.Wait() // for window updates; forever once all stall
		}
	}
}

// rawCodec sends a request's wire bytes as they are.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// flood makes spec.Flood calls and prints {reason: count}.
func flood(spec attackSpec) int {
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan struct{}, spec.Flood)
	for range spec.Flood {
		next <- struct{}{}
	}
	close(next)
	for range spec.Conns {
		conn, err := grpc.NewClient("unix://"+spec.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fmt.Fprintln(os.Stderr, "attacker:", err)
			return 2
		}
		defer conn.Close()
		for range 16 {
			wg.Go(func() {
				req, out := []byte{0x0a, 0x05, 's', 'i', 'g', '/', 'k'}, []byte(nil)
				for range next {
					err := conn.Invoke(context.Background(), spec.FloodMethod, &req, &out, grpc.ForceCodecV2(rawCodec{}))
					reason := "ok"
					if err != nil {
						reason = "untyped"
						if c, ok := provider.CodeOf(rpcerr.FromStatus(err)); ok {
							reason = c.String()
						}
					}
					mu.Lock()
					counts[reason]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	b, err := json.Marshal(counts)
	if err != nil {
		return 2
	}
	fmt.Println(string(b))
	return 0
}

// itoa is strconv.Itoa for config building.
func itoa(n int) string { return strconv.Itoa(n) }
