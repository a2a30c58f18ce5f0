package plugin

import (
	"context"
	"crypto"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/strictmodes"
)

// Defaults of Config.
const (
	DefaultCallTimeout    = 30 * time.Second
	DefaultStartTimeout   = 10 * time.Second
	DefaultMaxRestarts    = 5
	DefaultRestartBackoff = 50 * time.Millisecond
	DefaultMaxBackoff     = 5 * time.Second
	DefaultCoolDown       = 30 * time.Second
)

// Bounds on Config.
const (
	maxArgs    = 256
	maxEnv     = 256
	maxArgLen  = 4 << 10
	maxReplyUB = 64 << 20
)

// MaxPrivateDir bounds the length of Config.PrivateDir: go-plugin makes
// the plugin's socket at <PrivateDir>/plugin-dir<up to 10 digits>/plugin<up
// to 10 digits>, and Linux binds a Unix socket path of at most 107 bytes.
const MaxPrivateDir = 107 - len("/plugin-dir") - 10 - len("/plugin") - 10

// killGrace bounds the wait for a plugin to exit after it was asked to;
// then it is killed.
const killGrace = 5 * time.Second

// Config says which plugin Launch starts and how the client treats it.
type Config struct {
	// Path is the absolute path of the plugin binary (a relative path is
	// EINVAL). It must pass sshd-style StrictModes checks
	// (internal/strictmodes): the binary and every directory above it, up
	// to /, owned by root or the daemon's uid and not writable by group or
	// others, and no symbolic link anywhere on the path (EPERM otherwise,
	// naming the culprit).
	Path string
	// PrivateDir is the client's private directory: absolute, at most
	// MaxPrivateDir bytes (the plugin's Unix socket is made inside it),
	// owned by the daemon's uid with mode 0700; it is created (0700) if
	// missing, its parent must exist. Launch keeps the verified copy of
	// the binary (bin/), the plugin's working directory (work/) and its
	// socket there, and checks the directory again before every start of
	// the plugin. It belongs to one Client at a time: Launch removes
	// whatever it holds (what a daemon killed before Close left), and
	// Close empties it. keystored uses <state>/.plugins. Required.
	PrivateDir string
	// SHA256 is the hex SHA-256 of the binary, pinned by the caller
	// (from a trusted configuration; sha256sum prints it). Required. On a
	// mismatch Launch fails with EPERM naming both sums.
	SHA256 string
	// Args are the plugin's command-line arguments (argv[0] is the
	// binary's base name).
	Args []string
	// Env is the plugin's whole environment, as "NAME=value" entries:
	// nothing of the host's environment is passed on. Names starting with
	// "PLUGIN_" and Handshake.MagicCookieKey are go-plugin's and refused.
	Env []string
	// RestartEnv, when not nil, is the environment of every restart (every
	// start after the one Launch made), checked like Env. keystored uses
	// it to tell a restarted plugin that the state holds keys: whatever
	// the state held at Launch, keys may have been made since.
	RestartEnv []string
	// Logger receives go-plugin's messages and every line the plugin
	// writes to stderr or stdout. nil discards them.
	Logger *slog.Logger
	// CallTimeout bounds each call; a plugin that does not answer in time
	// yields EUNAVAILABLE. Default DefaultCallTimeout (30 s).
	CallTimeout time.Duration
	// StartTimeout bounds a start: the process launch, the go-plugin
	// handshake and the first Info call. Default DefaultStartTimeout
	// (10 s).
	StartTimeout time.Duration
	// MaxReply bounds the size of one reply message; a larger reply is
	// refused (EIO). Default DefaultMaxReply (provider.MaxSealed + 64 KiB).
	MaxReply int
	// MaxRestarts is how many consecutive failed starts or deaths the
	// client tolerates before it stops restarting the plugin for
	// CoolDown. Default DefaultMaxRestarts (5).
	MaxRestarts int
	// RestartBackoff is the wait before the first restart after a
	// failure; it doubles with each consecutive failure up to MaxBackoff.
	// Default DefaultRestartBackoff (50 ms).
	RestartBackoff time.Duration
	// MaxBackoff caps the wait between restarts. Default
	// DefaultMaxBackoff (5 s).
	MaxBackoff time.Duration
	// CoolDown is how long the client answers EUNAVAILABLE without trying
	// to start the plugin after MaxRestarts consecutive failures. Default
	// DefaultCoolDown (30 s).
	CoolDown time.Duration

	// rawOutput, for tests, receives a copy of every byte the plugin
	// writes to stderr and (after the handshake) to stdout.
	rawOutput io.Writer
}

// normalize checks c and fills in defaults.
func (c Config) normalize() (Config, []byte, error) {
	bad := func(msg string) (Config, []byte, error) {
		return Config{}, nil, provider.Errorf(provider.EINVAL, "plugin config: %s", msg)
	}
	if c.Path == "" {
		return bad("no plugin path")
	}
	if !filepath.IsAbs(c.Path) {
		return bad("plugin path " + strconv.Quote(c.Path) + " is not absolute")
	}
	if c.SHA256 == "" {
		return bad("no SHA-256 pinned for plugin " + c.Path)
	}
	switch {
	case c.PrivateDir == "":
		return bad("no private directory for plugin " + c.Path)
	case !filepath.IsAbs(c.PrivateDir) || strings.IndexByte(c.PrivateDir, 0) >= 0:
		return bad("private directory " + strconv.Quote(c.PrivateDir) + " is not an absolute path")
	case len(filepath.Clean(c.PrivateDir)) > MaxPrivateDir:
		return bad("private directory " + c.PrivateDir + " is " + strconv.Itoa(len(filepath.Clean(c.PrivateDir))) +
			" bytes; the plugin's Unix socket inside it needs it to be at most " + strconv.Itoa(MaxPrivateDir) +
			" (use a shorter state directory path)")
	}
	c.PrivateDir = filepath.Clean(c.PrivateDir)
	pin, err := parsePin(c.SHA256)
	if err != nil {
		return Config{}, nil, provider.WithOp("plugin config", c.Path, err)
	}
	if len(c.Args) > maxArgs || len(c.Env) > maxEnv || len(c.RestartEnv) > maxEnv {
		return bad("more than " + strconv.Itoa(maxArgs) + " arguments or environment entries")
	}
	for _, a := range c.Args {
		if len(a) > maxArgLen || strings.IndexByte(a, 0) >= 0 {
			return bad("an argument is over " + strconv.Itoa(maxArgLen) + " bytes or holds a NUL byte")
		}
	}
	for _, e := range slices.Concat(c.Env, c.RestartEnv) {
		name, _, ok := strings.Cut(e, "=")
		switch {
		case !ok || name == "":
			return bad("environment entry is not NAME=value")
		case len(e) > maxArgLen || strings.IndexByte(e, 0) >= 0:
			return bad("environment entry " + strconv.Quote(name) + " is over " + strconv.Itoa(maxArgLen) + " bytes or holds a NUL byte")
		case strings.HasPrefix(name, "PLUGIN_") || name == Handshake.MagicCookieKey:
			return bad("environment variable " + strconv.Quote(name) + " is reserved for go-plugin")
		}
	}
	for _, d := range []time.Duration{c.CallTimeout, c.StartTimeout, c.RestartBackoff, c.MaxBackoff, c.CoolDown} {
		if d < 0 {
			return bad("negative duration")
		}
	}
	if c.MaxReply < 0 || c.MaxReply > maxReplyUB || c.MaxRestarts < 0 {
		return bad("MaxReply must be 0 to " + strconv.Itoa(maxReplyUB) + " and MaxRestarts at least 0")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.CallTimeout, DefaultCallTimeout)
	def(&c.StartTimeout, DefaultStartTimeout)
	def(&c.RestartBackoff, DefaultRestartBackoff)
	def(&c.MaxBackoff, DefaultMaxBackoff)
	def(&c.CoolDown, DefaultCoolDown)
	if c.MaxReply == 0 {
		c.MaxReply = DefaultMaxReply
	}
	if c.MaxRestarts == 0 {
		c.MaxRestarts = DefaultMaxRestarts
	}
	c.Args = append([]string(nil), c.Args...)
	c.Env = append([]string(nil), c.Env...)
	if c.RestartEnv != nil {
		c.RestartEnv = append([]string{}, c.RestartEnv...)
	}
	return c, pin, nil
}

// Client is a provider.Provider served by a plugin process that it
// supervises. See the package documentation for what it guarantees. It is
// safe for concurrent use. Close stops the plugin.
//
// A Client implements no optional interface of the contract itself:
// Provider returns it with those its plugin announces (a KEK rotation,
// provider.KEKRotator), which is what a daemon hands to the core.
type Client struct {
	cfg   Config
	pin   []byte      // the pinned SHA-256
	name  string      // the binary's base name
	label string      // "plugin <name>"
	dir   *privateDir // Config.PrivateDir, emptied by Close
	work  string      // the plugin's working directory
	log   *slog.Logger
	// rotates is whether the plugin announced kek_rotation at Launch;
	// every restarted plugin must announce the same.
	rotates bool
	// last is the plugin's Info as last read, by Launch, by a restart, or
	// after a step of a KEK rotation (the current instance's, when it was
	// replaced): a restarted plugin must announce the same but for its
	// KEKs, which must share one with these (checkRestarted).
	last atomic.Pointer[provider.Info]

	cur    atomic.Pointer[instance]
	closed atomic.Bool
	done   chan struct{} // closed by Close

	// gate is held (a token in the channel) while (re)starting or
	// closing; the fields below are guarded by it.
	gate        chan struct{}
	failures    int
	lastFailure time.Time
	coolUntil   time.Time

	// For Status, readable without the gate.
	restarts, failedStarts atomic.Uint64
	coolUntilNs            atomic.Int64
}

// State is the supervision state of a plugin (Client.Status). The zero
// value is invalid.
type State uint8

// The states of a plugin.
const (
	_ State = iota
	// StateRunning: a plugin process is up and takes calls.
	StateRunning
	// StateDown: no usable process (it exited or lost its connection);
	// the next call starts one, after the backoff.
	StateDown
	// StateCoolingDown: MaxRestarts consecutive failures; calls fail with
	// EUNAVAILABLE without a start until the cool-down ends.
	StateCoolingDown
	// StateClosed: Close was called.
	StateClosed
)

var stateNames = [...]string{StateRunning: "running", StateDown: "down", StateCoolingDown: "cooling-down", StateClosed: "closed"}

// States lists the valid states, in order.
func States() []State { return []State{StateRunning, StateDown, StateCoolingDown, StateClosed} }

// String returns "running", "down", "cooling-down" or "closed".
func (s State) String() string {
	if s >= StateRunning && s <= StateClosed {
		return stateNames[s]
	}
	return "invalid-state(" + strconv.Itoa(int(s)) + ")"
}

// Status is what the daemon exports about its plugin as metrics.
type Status struct {
	State State
	// Restarts counts the starts after the first that succeeded;
	// FailedStarts the starts that failed (the plugin did not come up,
	// or came up describing itself differently).
	Restarts, FailedStarts uint64
}

// Status returns the plugin's state and restart counts. It never waits
// for a start in progress.
func (c *Client) Status() Status {
	st := Status{Restarts: c.restarts.Load(), FailedStarts: c.failedStarts.Load()}
	in := c.cur.Load()
	switch {
	case c.closed.Load():
		st.State = StateClosed
	case in != nil && in.usable():
		st.State = StateRunning
	case time.Now().UnixNano() < c.coolUntilNs.Load():
		st.State = StateCoolingDown
	default:
		st.State = StateDown
	}
	return st
}

var _ provider.Provider = (*Client)(nil)

// instance is one running plugin process and its connection.
type instance struct {
	gp       *goplugin.Client
	run      *procRunner
	starting atomic.Bool // until the start is over: the plugin's stderr is logged at Info
	r        *remote
	served   atomic.Bool // a call succeeded on it
	lost     atomic.Bool // its connection failed
}

// usable reports whether calls may go to in.
func (in *instance) usable() bool { return !in.lost.Load() && !in.run.done() }

// Launch checks the plugin binary named by cfg (StrictModes), copies it
// into the private directory while hashing it, starts the copy, and
// returns a client once the plugin has answered Info with a valid
// description. Every start, restarts included, opens the copy, hashes it
// again and executes that very descriptor, so what runs is what matched
// the pin. ctx bounds the start (as does cfg.StartTimeout); it is not
// kept.
//
// Errors: EINVAL for a bad Config; ENOENT for a missing binary; EPERM for
// a binary or private directory the checks refuse (symbolic link, owner,
// mode) or a checksum mismatch (the message names both sums);
// EUNAVAILABLE when the plugin does not start or complete the handshake
// (its stderr is in cfg.Logger); EIO for an invalid Info.
func Launch(ctx context.Context, cfg Config) (*Client, error) {
	cfg, pin, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	src, err := strictmodes.Open(cfg.Path, "plugin binary")
	if err != nil {
		return nil, err
	}
	defer src.Close()
	dir, err := openPrivateDir(cfg.PrivateDir)
	if err != nil {
		return nil, err
	}
	name := filepath.Base(cfg.Path)
	c := &Client{
		cfg:   cfg,
		pin:   pin,
		name:  name,
		label: "plugin " + name,
		dir:   dir,
		log:   cfg.Logger,
		done:  make(chan struct{}),
		gate:  make(chan struct{}, 1),
	}
	if c.log != nil {
		c.log = c.log.With("plugin", name)
	}
	stale, err := dir.clear()
	if err != nil {
		c.release()
		return nil, err
	}
	if len(stale) > 0 {
		c.logf(slog.LevelInfo, "removed what an earlier run left in the plugin's private directory", "dir", dir.path, "entries", strings.Join(stale, " "))
	}
	if _, err = dir.mkdir(binDirName); err == nil {
		c.work, err = dir.mkdir(workDirName)
	}
	if err == nil {
		err = dir.copyIn(src, name, pin)
	}
	if err != nil {
		c.release()
		return nil, err
	}
	in, err := c.start(ctx, cfg.Env)
	if err != nil {
		c.release()
		return nil, err
	}
	info := in.r.current()
	c.rotates = in.r.rotates
	c.last.Store(&info)
	c.cur.Store(in)
	c.logf(slog.LevelInfo, "plugin started", "provider", info.Name, "pid", in.run.processID())
	return c, nil
}

// release empties and closes the private directory after a failed
// Launch; a failure is logged, since the Launch error is what the caller
// needs.
func (c *Client) release() {
	if err := c.empty(); err != nil {
		c.logf(slog.LevelWarn, "could not empty the plugin's private directory", "dir", c.dir.path, "error", err.Error())
	}
}

// empty removes what the client put in its private directory and closes
// it.
func (c *Client) empty() error {
	_, err := c.dir.clear()
	if cerr := c.dir.close(); err == nil && cerr != nil {
		err = provider.Errorf(provider.EIO, "closing the plugin private directory: %w", cerr)
	}
	return err
}

func (c *Client) logf(level slog.Level, msg string, args ...any) {
	if c.log != nil {
		c.log.Log(context.Background(), level, msg, args...)
	}
}

// start starts one plugin process with the environment env, connects,
// and fetches its Info.
func (c *Client) start(ctx context.Context, env []string) (*instance, error) {
	in := &instance{}
	in.starting.Store(true)
	defer in.starting.Store(false)
	var raw io.Writer = io.Discard
	if c.cfg.rawOutput != nil {
		raw = c.cfg.rawOutput
	}
	gp := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: Handshake,
		VersionedPlugins: versionedPlugins(&grpcPlugin{stub: stubConfig{
			label:       c.label,
			callTimeout: c.cfg.CallTimeout,
			maxReply:    c.cfg.MaxReply,
			onLost:      func() { in.lost.Store(true) },
		}}),
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
			// cmd carries only go-plugin's variables (SkipHostEnv); the
			// caller's come first so that go-plugin's win.
			env := append(append([]string(nil), env...), cmd.Env...)
			exe := func() (*os.File, error) { return c.dir.openCopy(c.name, c.pin) }
			in.run = newProcRunner(c.name, exe, c.cfg.Args, env, c.work, c.dir.path)
			return in.run, nil
		},
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		StartTimeout:     c.cfg.StartTimeout,
		Logger:           newHCLogger(c.log, c.name, &in.starting),
		Stderr:           raw,
		SyncStdout:       stdioWriter(c.log, "stdout", c.cfg.rawOutput),
		SyncStderr:       stdioWriter(c.log, "stderr", c.cfg.rawOutput),
		UnixSocketConfig: &goplugin.UnixSocketConfig{TempDir: c.dir.path},
		// No retries by gRPC: a call reaches the plugin once or fails,
		// and the client (or its caller) decides what to do.
		GRPCDialOptions: []grpc.DialOption{grpc.WithDisableRetry()},
	})
	in.gp = gp

	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	type result struct {
		s   *stub
		err error
	}
	ch := make(chan result, 1)
	go func() {
		proto, err := gp.Client()
		if err != nil {
			ch <- result{err: err}
			return
		}
		d, err := proto.Dispense(pluginName)
		if err != nil {
			ch <- result{err: err}
			return
		}
		s, ok := d.(*stub)
		if !ok {
			ch <- result{err: provider.Errorf(provider.EIO, "unexpected plugin client type")}
			return
		}
		ch <- result{s: s}
	}()
	var res result
	pending := false
	select {
	case res = <-ch:
	case <-ctx.Done():
		res.err, pending = ctx.Err(), true
	case <-c.done:
		res.err, pending = provider.Errorf(provider.EUNAVAILABLE, "client closed"), true
	}
	if res.err != nil {
		if pending {
			go func() {
				// The start is still under way: wait for it, then kill.
				<-ch
				c.kill(in)
			}()
		} else {
			// Killing waits for go-plugin to have forwarded all of the
			// plugin's output, so the log explains the failure by the time
			// the caller sees it.
			c.kill(in)
		}
		return nil, provider.Errorf(provider.EUNAVAILABLE, "starting %s: %w", c.label, res.err)
	}
	info, rotates, err := res.s.fetchInfo(ctx)
	if err != nil {
		c.kill(in)
		if code, _ := provider.CodeOf(err); code == provider.EIO {
			return nil, err
		}
		return nil, provider.Errorf(provider.EUNAVAILABLE, "starting %s: Info: %w", c.label, err)
	}
	in.r = newRemote(res.s, info, rotates)
	return in, nil
}

// kill stops in at once: its process is killed (a plugin that failed to
// start or lost its connection cannot be asked to exit), then stop reaps
// it.
func (c *Client) kill(in *instance) {
	if in.run != nil {
		c.killProcess(in)
	}
	c.stop(in)
}

// stop asks in's plugin to exit: go-plugin asks and waits up to 2 s before
// killing it; if even that does not finish within killGrace (a stopped
// process), the process is killed directly.
func (c *Client) stop(in *instance) {
	done := make(chan struct{})
	go func() {
		in.gp.Kill()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(killGrace):
	}
	if in.run != nil {
		c.killProcess(in)
	}
	select {
	case <-done:
	case <-time.After(killGrace):
		// Something still holds the plugin's output pipes (a child
		// process of the plugin?): stop waiting for go-plugin.
		c.logf(slog.LevelWarn, "plugin killed, but its output did not close; no longer waiting for it")
	}
}

// killProcess sends SIGKILL to in's process; a failure (other than the
// process being gone already) is logged.
func (c *Client) killProcess(in *instance) {
	if err := in.run.Kill(context.Background()); err != nil {
		c.logf(slog.LevelError, "killing the plugin process failed", "pid", in.run.processID(), "error", err.Error())
	}
}

// get returns a usable instance, restarting the plugin when needed.
func (c *Client) get(ctx context.Context) (*instance, error) {
	if in := c.cur.Load(); in != nil && in.usable() {
		return in, nil
	}
	return c.restart(ctx)
}

// backoff returns the wait before the start that follows n consecutive
// failures.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.RestartBackoff
	for i := 1; i < n && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.cfg.MaxBackoff)
}

// restart replaces a dead instance, one caller at a time.
func (c *Client) restart(ctx context.Context) (*instance, error) {
	select {
	case c.gate <- struct{}{}:
	case <-ctx.Done():
		return nil, provider.Errorf(provider.EUNAVAILABLE, "waiting for %s to restart: %w", c.label, ctx.Err())
	case <-c.done:
		return nil, c.closedErr()
	}
	defer func() { <-c.gate }()
	if c.closed.Load() {
		return nil, c.closedErr()
	}
	old := c.cur.Load()
	if old != nil && old.usable() {
		return old, nil // restarted by another caller
	}
	if old != nil {
		// Its KEKs as last read (a KEK rotation may have changed them).
		was := old.r.current()
		c.last.Store(&was)
		c.cur.Store(nil)
		c.kill(old)
		if old.served.Load() {
			c.failures = 1
		} else {
			c.failures++
		}
		c.fail(time.Now())
		c.logf(slog.LevelWarn, "plugin exited or lost its connection; restarting it", "failures", c.failures)
	}
	now := time.Now()
	if now.Before(c.coolUntil) {
		return nil, provider.Errorf(provider.EUNAVAILABLE, "%s failed %d times; next attempt after %s (in %s)", c.label, c.failures, c.coolUntil.UTC().Format(time.RFC3339), c.coolUntil.Sub(now).Round(time.Millisecond))
	}
	if c.failures > 0 {
		wait := time.Until(c.lastFailure.Add(c.backoff(c.failures)))
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, provider.Errorf(provider.EUNAVAILABLE, "waiting for %s to restart: %w", c.label, ctx.Err())
			case <-c.done:
				t.Stop()
				return nil, c.closedErr()
			}
		}
	}
	env := c.cfg.Env
	if c.cfg.RestartEnv != nil {
		env = c.cfg.RestartEnv
	}
	in, err := c.start(ctx, env)
	if err == nil {
		if cerr := checkRestarted(*c.last.Load(), in.r.current(), c.rotates, in.r.rotates); cerr != nil {
			c.kill(in)
			err = provider.Errorf(provider.EUNAVAILABLE, "refusing restarted %s: %w", c.label, cerr)
		}
	}
	if err != nil && ctx.Err() != nil {
		// The caller gave up: not the plugin's failure.
		return nil, provider.WithOp("restart", c.label, err)
	}
	if err != nil {
		c.failures++
		c.failedStarts.Add(1)
		c.fail(time.Now())
		c.logf(slog.LevelError, "plugin restart failed", "failures", c.failures, "error", err.Error())
		return nil, provider.WithOp("restart", c.label, err)
	}
	info := in.r.current()
	if was := c.last.Load(); !slices.Equal(was.KEKs, info.KEKs) {
		c.logf(slog.LevelInfo, "restarted plugin holds other KEKs (a KEK rotation was under way)", "was", strings.Join(was.KEKs, " "), "now", strings.Join(info.KEKs, " "))
	}
	c.last.Store(&info)
	c.cur.Store(in)
	c.restarts.Add(1)
	c.logf(slog.LevelInfo, "plugin restarted", "pid", in.run.processID())
	return in, nil
}

// fail records a failure at now; at MaxRestarts consecutive failures the
// cool-down starts.
func (c *Client) fail(now time.Time) {
	c.lastFailure = now
	if c.failures >= c.cfg.MaxRestarts {
		c.coolUntil = now.Add(c.cfg.CoolDown)
		c.coolUntilNs.Store(c.coolUntil.UnixNano())
	}
}

func (c *Client) closedErr() error {
	return provider.Errorf(provider.EUNAVAILABLE, "%s client is closed", c.label)
}

// Close stops the plugin (asking it to exit, then killing it) and empties
// the private directory. Calls in flight fail with EUNAVAILABLE; later
// calls too. Close is idempotent.
func (c *Client) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(c.done)
	c.gate <- struct{}{}
	in := c.cur.Swap(nil)
	<-c.gate
	if in != nil {
		c.stop(in)
	}
	if err := c.empty(); err != nil {
		return provider.WithOp("close", c.label, err)
	}
	return nil
}

// String returns "plugin <binary name>".
func (c *Client) String() string { return c.label }

// pid returns the process ID of the running plugin, 0 if none (tests).
func (c *Client) pid() int {
	if in := c.cur.Load(); in != nil && in.run != nil {
		return in.run.processID()
	}
	return 0
}

// Info returns the Info the plugin announced at Launch, with the KEKs it
// announced last: a KEK rotation changes them (read again after each
// Begin and Commit the client forwards, and at each restart). A restarted
// plugin must announce the same Info but for its KEKs, which must share
// one with those it announced last (docs/providers.md, Restarts).
func (c *Client) Info(context.Context) (provider.Info, error) {
	return copyInfo(c.known()), nil
}

// known returns the plugin's Info as last read: the current instance's,
// or the last one's.
func (c *Client) known() provider.Info {
	if in := c.cur.Load(); in != nil {
		return in.r.current()
	}
	return *c.last.Load()
}

// Provider returns c as the provider.Provider to give the core: c itself,
// or, when the plugin announced kek_rotation, c with provider.KEKRotator
// over the plugin's KEK rotation RPCs. The capability is fixed at Launch
// (a restarted plugin must announce the same), so the core asks the
// plugin to rotate only when it can: for a plugin without it, a rotation
// is ENOTSUP before anything is done.
func (c *Client) Provider() provider.Provider {
	if c.rotates {
		return rotatingClient{c}
	}
	return c
}

// served marks in as having answered a call: a success, or an error of
// the provider's own (anything but EUNAVAILABLE) over a live connection.
func served(in *instance, err error) {
	if in.served.Load() || in.lost.Load() {
		return
	}
	if code, _ := provider.CodeOf(err); err == nil || code != provider.EUNAVAILABLE {
		in.served.Store(true)
	}
}

// Generate implements provider.Provider.
func (c *Client) Generate(ctx context.Context, ref provider.KeyRef) (provider.Generated, error) {
	in, err := c.get(ctx)
	if err != nil {
		return provider.Generated{}, provider.WithOp("generate", ref.String(), err)
	}
	g, err := in.r.Generate(ctx, ref)
	served(in, err)
	return g, err
}

// Sign implements provider.Provider.
func (c *Client) Sign(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	in, err := c.get(ctx)
	if err != nil {
		return nil, provider.WithOp("sign", ref.String(), err)
	}
	sig, err := in.r.Sign(ctx, ref, h, msg)
	served(in, err)
	return sig, err
}

// SignDigest implements provider.Provider. A plugin built before
// SignDigest answers ENOTSUP.
func (c *Client) SignDigest(ctx context.Context, ref provider.KeyRef, h provider.Handle, hash crypto.Hash, digest []byte) ([]byte, error) {
	in, err := c.get(ctx)
	if err != nil {
		return nil, provider.WithOp("sign digest", ref.String(), err)
	}
	sig, err := in.r.SignDigest(ctx, ref, h, hash, digest)
	served(in, err)
	return sig, err
}

// MAC implements provider.Provider. A plugin built before MAC answers
// ENOTSUP.
func (c *Client) MAC(ctx context.Context, ref provider.KeyRef, h provider.Handle, msg []byte) ([]byte, error) {
	in, err := c.get(ctx)
	if err != nil {
		return nil, provider.WithOp("mac", ref.String(), err)
	}
	tag, err := in.r.MAC(ctx, ref, h, msg)
	served(in, err)
	return tag, err
}

// Decrypt implements provider.Provider.
func (c *Client) Decrypt(ctx context.Context, ref provider.KeyRef, h provider.Handle, enc, ciphertext, info, aad []byte) ([]byte, error) {
	in, err := c.get(ctx)
	if err != nil {
		return nil, provider.WithOp("decrypt", ref.String(), err)
	}
	out, err := in.r.Decrypt(ctx, ref, h, enc, ciphertext, info, aad)
	served(in, err)
	return out, err
}

// NewImportKey implements provider.Provider.
func (c *Client) NewImportKey(ctx context.Context, wrap provider.KeyRef) (provider.Generated, error) {
	in, err := c.get(ctx)
	if err != nil {
		return provider.Generated{}, provider.WithOp("new import key", wrap.String(), err)
	}
	g, err := in.r.NewImportKey(ctx, wrap)
	served(in, err)
	return g, err
}

// Import implements provider.Provider.
func (c *Client) Import(ctx context.Context, ref provider.KeyRef, wrap provider.KeyRef, wh provider.Handle, enc, wrapped []byte) (provider.Generated, error) {
	in, err := c.get(ctx)
	if err != nil {
		return provider.Generated{}, provider.WithOp("import", ref.String(), err)
	}
	g, err := in.r.Import(ctx, ref, wrap, wh, enc, wrapped)
	served(in, err)
	return g, err
}

// Seal implements provider.Provider.
func (c *Client) Seal(ctx context.Context, ref provider.KeyRef, h provider.Handle, plaintext, aad []byte) ([]byte, error) {
	in, err := c.get(ctx)
	if err != nil {
		return nil, provider.WithOp("seal", ref.String(), err)
	}
	out, err := in.r.Seal(ctx, ref, h, plaintext, aad)
	served(in, err)
	return out, err
}

// Open implements provider.Provider.
func (c *Client) Open(ctx context.Context, ref provider.KeyRef, h provider.Handle, sealed, aad []byte) ([]byte, error) {
	in, err := c.get(ctx)
	if err != nil {
		return nil, provider.WithOp("open", ref.String(), err)
	}
	out, err := in.r.Open(ctx, ref, h, sealed, aad)
	served(in, err)
	return out, err
}

// Destroy implements provider.Provider.
func (c *Client) Destroy(ctx context.Context, ref provider.KeyRef, h provider.Handle) error {
	in, err := c.get(ctx)
	if err != nil {
		return provider.WithOp("destroy", ref.String(), err)
	}
	err = in.r.Destroy(ctx, ref, h)
	served(in, err)
	return err
}

// rotatingClient is a Client whose plugin announced kek_rotation: it is a
// provider.KEKRotator. Begin and Commit read the plugin's Info again and
// the client adopts its new KEKs.
type rotatingClient struct{ *Client }

var _ provider.KEKRotator = rotatingClient{}

// BeginKEKRotation implements provider.KEKRotator.
func (c rotatingClient) BeginKEKRotation(ctx context.Context) (string, error) {
	in, err := c.get(ctx)
	if err != nil {
		return "", provider.WithOp("begin KEK rotation", "", err)
	}
	next, err := in.r.beginKEKRotation(ctx)
	served(in, err)
	return next, err
}

// RewrapHandle implements provider.KEKRotator.
func (c rotatingClient) RewrapHandle(ctx context.Context, ref provider.KeyRef, h provider.Handle) (provider.Handle, error) {
	in, err := c.get(ctx)
	if err != nil {
		return nil, provider.WithOp("rewrap handle", ref.String(), err)
	}
	nh, err := in.r.rewrapHandle(ctx, ref, h)
	served(in, err)
	return nh, err
}

// CommitKEKRotation implements provider.KEKRotator.
func (c rotatingClient) CommitKEKRotation(ctx context.Context) error {
	in, err := c.get(ctx)
	if err != nil {
		return provider.WithOp("commit KEK rotation", "", err)
	}
	err = in.r.commitKEKRotation(ctx)
	served(in, err)
	return err
}
