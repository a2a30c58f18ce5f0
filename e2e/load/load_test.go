package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// The load.
const (
	hammers          = 100 // concurrent clients, one connection each
	hammerRounds     = 20  // sign + seal + unseal rounds per hammer
	silentConns      = 10  // raw connections that never send the preface
	halfPrefaceConns = 5   // raw connections that send half the preface
	halfFrameConns   = 5   // raw connections that stop in the middle of a frame
	stalledClients   = 5   // gRPC clients that stop reading their responses
	stalledCalls     = 8   // 1 MiB unseals each stalled client leaves unread
	perUIDLimit      = 160 // max_connections_per_uid: above everything the test opens
	streamLimit      = 16  // max_concurrent_streams
	hangBound        = 30 * time.Second
	goroutineMargin  = 5 // the daemon's goroutines after the load ≤ baseline + this
	fdMargin         = 2 // and its open file descriptors ≤ baseline + this
	settleTimeout    = 45 * time.Second
	signKey, sealKey = "load/sig/k", "load/box/k"
	bigPlaintextSize = 1 << 20
)

// The HTTP/2 client preface and an empty SETTINGS frame.
var (
	preface       = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	emptySettings = []byte{0, 0, 0, 4, 0, 0, 0, 0, 0}
	// A HEADERS frame header announcing 1000 bytes on stream 1, then only
	// 10 of them.
	halfFrame = append([]byte{0, 0x03, 0xe8, 1, 4, 0, 0, 0, 1}, bytes.Repeat([]byte{0}, 10)...)
)

func writeConfig(t *testing.T, dir string) string {
	t.Helper()
	cfg := fmt.Sprintf(`unmapped = "deny"
operators = [%d]

[apps]
%d = "load"

[limits]
max_connections = 1024
max_connections_per_uid = %d
max_concurrent_streams = %d
idle_timeout = "1s"
handshake_timeout = "200ms"
shutdown_timeout = "5s"
# One uid plays every client here, and the stalled ones keep their 1 MiB
# unseals' memory reserved (their responses are never read): room for
# that, so this test is about connections; e2e/dos tests the budgets.
inflight_bytes = 536870912
inflight_bytes_per_uid = 536870912
`, os.Getuid(), os.Getuid(), perUIDLimit, streamLimit)
	path := filepath.Join(dir, "keystored.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func dial(t *testing.T, socket string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4 << 20))}, opts...)
	c, err := grpc.NewClient("unix://"+socket, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stallConn is a client connection that reads normally until stall is
// called, and then reads nothing more (a client that stops reading its
// responses) until it is closed.
type stallConn struct {
	net.Conn
	stalled   atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *stallConn) stall() { c.stalled.Store(true) }

func (c *stallConn) Read(p []byte) (int, error) {
	if c.stalled.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *stallConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestLoadAndSlowClients: 100 clients hammer sign/seal/unseal while slow
// clients hold connections open; a well-behaved client is served
// throughout; afterwards the daemon's goroutines and file descriptors
// return to their baseline.
func TestLoadAndSlowClients(t *testing.T) {
	dir := t.TempDir()
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: filepath.Join(dir, "state"),
		Args: []string{"--config", writeConfig(t, dir), "--metrics-addr", "127.0.0.1:0"}})
	sc := newScraper(metricsURL(t, d))
	ctx := t.Context()

	setup := dial(t, d.Socket)
	keys := keystorev1.NewKeysClient(setup)
	if _, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: signKey, Algorithm: "ed25519"}); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: sealKey, Algorithm: "xchacha20-poly1305"}); err != nil {
		t.Fatal(err)
	}
	big, err := keys.Seal(ctx, &keystorev1.SealRequest{Key: sealKey, Plaintext: make([]byte, bigPlaintextSize)})
	if err != nil {
		t.Fatal(err)
	}
	if err := setup.Close(); err != nil {
		t.Fatal(err)
	}

	const (
		gGoroutines = "go_goroutines"
		gFDs        = "process_open_fds"
		gConns      = "keystored_connections_open"
	)
	noConns := func(g map[string]float64) bool { return g[gConns] == 0 }
	sc.settle(t, "no connections before the load", settleTimeout, noConns, gConns)
	// The baseline: the lowest of a few quiet readings.
	base := map[string]float64{gGoroutines: 1e9, gFDs: 1e9}
	for i := 0; i < 5; i++ {
		g, err := sc.gauges(gGoroutines, gFDs)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{gGoroutines, gFDs} {
			base[n] = min(base[n], g[n])
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The well-behaved client: sign, seal, unseal in a loop until the
	// load is over; every call must succeed within the hang bound.
	var (
		goodCalls, goodFails atomic.Int64
		goodErr              atomic.Value
		loadDone             = make(chan struct{})
		goodWG               sync.WaitGroup
	)
	good := dial(t, d.Socket)
	goodKeys := keystorev1.NewKeysClient(good)
	goodWG.Add(1)
	go func() {
		defer goodWG.Done()
		for i := 0; ; i++ {
			if err := roundTrip(ctx, goodKeys, []byte(fmt.Sprintf("good %d", i))); err != nil {
				goodFails.Add(1)
				goodErr.Store(fmt.Errorf("%w", err))
			}
			goodCalls.Add(3)
			select {
			case <-loadDone:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	// Slow raw connections.
	type rawResult struct {
		kind string
		err  error
		took time.Duration
	}
	rawDone := make(chan rawResult, silentConns+halfPrefaceConns+halfFrameConns)
	var raws []net.Conn
	openRaw := func(kind string, send []byte) {
		c, err := net.Dial("unix", d.Socket)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, c)
		if len(send) > 0 {
			if _, err := c.Write(send); err != nil {
				t.Fatal(err)
			}
		}
		go func() {
			start := time.Now()
			if err := c.SetReadDeadline(start.Add(hangBound)); err != nil {
				rawDone <- rawResult{kind, err, 0}
				return
			}
			_, err := io.Copy(io.Discard, c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				rawDone <- rawResult{kind, fmt.Errorf("the daemon kept a %s connection open for %v", kind, hangBound), time.Since(start)}
				return
			}
			rawDone <- rawResult{kind, nil, time.Since(start)}
		}()
	}
	for i := 0; i < silentConns; i++ {
		openRaw("silent (no preface)", nil)
	}
	for i := 0; i < halfPrefaceConns; i++ {
		openRaw("half preface", preface[:len(preface)/2])
	}
	for i := 0; i < halfFrameConns; i++ {
		openRaw("half frame", append(append(append([]byte(nil), preface...), emptySettings...), halfFrame...))
	}

	// Stalled gRPC clients: each makes one call, stops reading, then
	// leaves 1 MiB unseals unanswered.
	var stalledWG sync.WaitGroup
	stalledCtx, cancelStalled := context.WithCancel(ctx)
	var stalledConns []*grpc.ClientConn
	var stalledRaw []*stallConn
	var stalledMu sync.Mutex
	for i := 0; i < stalledClients; i++ {
		c := dial(t, d.Socket, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var nd net.Dialer
			raw, err := nd.DialContext(ctx, "unix", d.Socket)
			if err != nil {
				return nil, err
			}
			sc := &stallConn{Conn: raw, closed: make(chan struct{})}
			stalledMu.Lock()
			stalledRaw = append(stalledRaw, sc)
			stalledMu.Unlock()
			return sc, nil
		}))
		stalledConns = append(stalledConns, c)
		k := keystorev1.NewKeysClient(c)
		if _, err := k.Sign(ctx, &keystorev1.SignRequest{Key: signKey, Message: []byte("before stalling")}); err != nil {
			t.Fatalf("stalled client %d, first call: %v", i, err)
		}
		stalledMu.Lock()
		for _, s := range stalledRaw {
			s.stall()
		}
		stalledMu.Unlock()
		for j := 0; j < stalledCalls; j++ {
			stalledWG.Add(1)
			go func() {
				defer stalledWG.Done()
				// Never answered (the client does not read); ends when the
				// client leaves.
				_, err := k.Unseal(stalledCtx, &keystorev1.UnsealRequest{Key: sealKey, Sealed: big.GetSealed()})
				if err == nil {
					t.Errorf("a stalled client got an answer it could not have read")
				}
			}()
		}
	}

	// Sample the daemon while the load runs.
	peak := map[string]float64{}
	samplerDone, samplerStopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(samplerStopped)
		for {
			if g, err := sc.gauges(gGoroutines, gFDs, gConns); err == nil {
				for n, v := range g {
					peak[n] = max(peak[n], v)
				}
			}
			select {
			case <-samplerDone:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	// The hammers.
	var (
		hammerWG    sync.WaitGroup
		hammerCalls atomic.Int64
		hammerFails atomic.Int64
		hammerErr   atomic.Value
	)
	start := time.Now()
	for i := 0; i < hammers; i++ {
		c := dial(t, d.Socket)
		hammerWG.Add(1)
		go func() {
			defer hammerWG.Done()
			defer func() {
				if err := c.Close(); err != nil {
					hammerErr.Store(fmt.Errorf("%w", err))
				}
			}()
			k := keystorev1.NewKeysClient(c)
			for r := 0; r < hammerRounds; r++ {
				if err := roundTrip(ctx, k, []byte(fmt.Sprintf("hammer %d round %d", i, r))); err != nil {
					hammerFails.Add(1)
					hammerErr.Store(fmt.Errorf("%w", err))
				}
				hammerCalls.Add(3)
			}
		}()
	}
	hammerWG.Wait()
	hammerTook := time.Since(start)

	// While the hammers are gone, the slow clients are still there:
	// the raw ones must have been cut by the daemon by now or soon.
	close(samplerDone)
	<-samplerStopped
	cut := map[string]time.Duration{}
	for range silentConns + halfPrefaceConns + halfFrameConns {
		r := <-rawDone
		if r.err != nil {
			t.Errorf("%s: %v", r.kind, r.err)
		}
		cut[r.kind] = max(cut[r.kind], r.took)
	}

	// The well-behaved client is still served with the stalled clients
	// holding their streams; then everyone leaves.
	if err := roundTrip(ctx, goodKeys, []byte("last")); err != nil {
		t.Errorf("well-behaved client after the load: %v", err)
	}
	close(loadDone)
	goodWG.Wait()
	cancelStalled()
	for _, c := range stalledConns {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}
	stalledWG.Wait()
	for _, c := range raws {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}
	if err := good.Close(); err != nil {
		t.Error(err)
	}

	if n := goodFails.Load(); n > 0 {
		t.Errorf("well-behaved client: %d of %d calls failed; last: %v", n, goodCalls.Load(), goodErr.Load())
	}
	if goodCalls.Load() < 3 {
		t.Errorf("well-behaved client made %d calls", goodCalls.Load())
	}
	if n := hammerFails.Load(); n > 0 {
		t.Errorf("hammers: %d of %d rounds failed; last: %v", n, hammerCalls.Load()/3, hammerErr.Load())
	}

	after := sc.settle(t, "goroutines and file descriptors back to the baseline", settleTimeout, func(g map[string]float64) bool {
		return g[gConns] == 0 && g[gGoroutines] <= base[gGoroutines]+goroutineMargin && g[gFDs] <= base[gFDs]+fdMargin
	}, gGoroutines, gFDs, gConns)

	t.Logf("load: %d hammer connections × %d rounds (sign+seal+unseal) = %d calls in %v; well-behaved client: %d calls, %d failed",
		hammers, hammerRounds, hammerCalls.Load(), hammerTook.Round(time.Millisecond), goodCalls.Load(), goodFails.Load())
	t.Logf("slow clients: %d silent, %d half-preface, %d half-frame raw connections, all cut by the daemon (slowest cut per kind: %v); %d stalled gRPC clients × %d unread 1 MiB unseals",
		silentConns, halfPrefaceConns, halfFrameConns, cut, stalledClients, stalledCalls)
	t.Logf("daemon: goroutines %v → peak %v → %v; open fds %v → peak %v → %v; connections at peak %v",
		base[gGoroutines], peak[gGoroutines], after[gGoroutines], base[gFDs], peak[gFDs], after[gFDs], peak[gConns])
}

// roundTrip signs, seals and unseals once, each call bounded by the hang
// bound.
func roundTrip(ctx context.Context, k keystorev1.KeysClient, msg []byte) error {
	call := func(f func(context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, hangBound)
		defer cancel()
		return f(cctx)
	}
	if err := call(func(ctx context.Context) error {
		_, err := k.Sign(ctx, &keystorev1.SignRequest{Key: signKey, Message: msg})
		return err
	}); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	var sealed []byte
	if err := call(func(ctx context.Context) error {
		r, err := k.Seal(ctx, &keystorev1.SealRequest{Key: sealKey, Plaintext: msg, Aad: []byte("load")})
		sealed = r.GetSealed()
		return err
	}); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	return call(func(ctx context.Context) error {
		r, err := k.Unseal(ctx, &keystorev1.UnsealRequest{Key: sealKey, Sealed: sealed, Aad: []byte("load")})
		if err == nil && !bytes.Equal(r.GetPlaintext(), msg) {
			return errors.New("unseal: wrong plaintext")
		}
		return err
	})
}
