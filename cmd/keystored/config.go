package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/BurntSushi/toml"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/internal/keksource"
	"github.com/nexus-os/keystored/server"
)

// maxConfigFile bounds the config file.
const maxConfigFile = 1 << 20

// fileConfig is the TOML config file (docs/operations.md, "Config file").
// Unknown keys are an error.
type fileConfig struct {
	// Apps maps uids (as TOML keys: "1001") to app IDs.
	Apps map[string]string `toml:"apps"`
	// Operators lists the operator uids.
	Operators []int64 `toml:"operators"`
	// Unmapped is "deny" (default) or "uid".
	Unmapped string `toml:"unmapped"`
	// SocketGroup is a group name or numeric gid whose members may connect.
	SocketGroup string `toml:"socket_group"`
	// AnchorsDir is the trust anchor directory (relative: to the config
	// file's directory).
	AnchorsDir string `toml:"anchors_dir"`
	// MetricsAddr is the metrics listen address (the flag wins).
	MetricsAddr string         `toml:"metrics_addr"`
	Audit       auditConfig    `toml:"audit"`
	Limits      limitsConfig   `toml:"limits"`
	Quotas      quotasConfig   `toml:"quotas"`
	KEK         kekConfig      `toml:"kek"`
	Rotation    rotationConfig `toml:"rotation"`
	Scheduler   schedConfig    `toml:"scheduler"`
	Counter     counterConfig  `toml:"counter"`
	Cache       cacheConfig    `toml:"cache"`
	Provider    providerConfig `toml:"provider"`
}

// cacheConfig is [cache]: how many keys the daemon keeps in memory.
type cacheConfig struct {
	// Keys bounds core's cache of key records (default
	// core.DefaultCacheSize).
	Keys int64 `toml:"keys"`
	// UnwrappedKeys bounds the built-in software provider's cache of
	// unwrapped keys (default softkey's 2^17).
	UnwrappedKeys int64 `toml:"unwrapped_keys"`
}

// maxUnwrappedKeys is the software provider's largest cache
// (providers/internal/softkey.MaxCacheSize).
const maxUnwrappedKeys = 1 << 20

// parse checks [cache]; 0 stands for a default.
func (c cacheConfig) parse() (cacheSettings, error) {
	if c.Keys < 0 || c.Keys > core.MaxCacheSize {
		return cacheSettings{}, fmt.Errorf("cache.keys: %d is not from 0 (the default) to %d", c.Keys, core.MaxCacheSize)
	}
	if c.UnwrappedKeys < 0 || c.UnwrappedKeys > maxUnwrappedKeys {
		return cacheSettings{}, fmt.Errorf("cache.unwrapped_keys: %d is not from 0 (the default) to %d", c.UnwrappedKeys, maxUnwrappedKeys)
	}
	return cacheSettings{keys: int(c.Keys), unwrapped: int(c.UnwrappedKeys)}, nil
}

// cacheSettings are the validated [cache] sizes (0: the default).
type cacheSettings struct {
	keys, unwrapped int
}

// providerConfig is [provider]: the daemon's policy for its provider.
type providerConfig struct {
	// VerifySignatures false stops the core from verifying every
	// signature the provider plugin returns (default true). Only for a
	// plugin, and only together with TrustedPluginSHA256.
	VerifySignatures *bool `toml:"verify_signatures"`
	// TrustedPluginSHA256 names the one plugin binary (its SHA-256, as
	// --provider-sha256 pins it) whose signatures go unverified: with
	// another pin the daemon refuses to start.
	TrustedPluginSHA256 string `toml:"trusted_plugin_sha256"`
}

// parse checks [provider].
func (c providerConfig) parse() (providerSettings, error) {
	out := providerSettings{verifySignatures: true}
	if c.VerifySignatures != nil {
		out.verifySignatures = *c.VerifySignatures
	}
	pin := strings.ToLower(c.TrustedPluginSHA256)
	switch {
	case out.verifySignatures && pin != "":
		return providerSettings{}, errors.New("provider.trusted_plugin_sha256 applies only with provider.verify_signatures = false")
	case !out.verifySignatures && pin == "":
		return providerSettings{}, errors.New("provider.verify_signatures = false needs provider.trusted_plugin_sha256: the SHA-256 of the one plugin binary whose signatures go unverified")
	case pin != "" && !isSHA256Hex(pin):
		return providerSettings{}, fmt.Errorf("provider.trusted_plugin_sha256: %q is not 64 hex digits", c.TrustedPluginSHA256)
	}
	out.trustedPlugin = pin
	return out, nil
}

// isSHA256Hex reports whether s is 64 lowercase hex digits.
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// providerSettings is [provider], validated.
type providerSettings struct {
	// verifySignatures: the core verifies a plugin's signatures (the
	// default); false only with trustedPlugin.
	verifySignatures bool
	trustedPlugin    string // lowercase hex SHA-256; "" unless verifySignatures is false
}

// kekConfig is the built-in software provider's KEK source (the --kek-*
// flags win, field by field). Relative paths are relative to the config
// file's directory.
type kekConfig struct {
	File                 string `toml:"file"`
	PassphraseFile       string `toml:"passphrase_file"`
	PassphraseCredential string `toml:"passphrase_credential"`
	ParamsFile           string `toml:"params_file"`
}

// options returns the table as KEK options, paths made relative to
// baseDir.
func (k kekConfig) options(baseDir string) keksource.Options {
	path := func(v string) string {
		if v != "" && !filepath.IsAbs(v) {
			return filepath.Join(baseDir, v)
		}
		return v
	}
	return keksource.Options{
		File:                 keksource.Setting{Value: path(k.File), From: "[kek] file"},
		PassphraseFile:       keksource.Setting{Value: path(k.PassphraseFile), From: "[kek] passphrase_file"},
		PassphraseCredential: keksource.Setting{Value: k.PassphraseCredential, From: "[kek] passphrase_credential"},
		ParamsFile:           keksource.Setting{Value: path(k.ParamsFile), From: "[kek] params_file"},
	}
}

// rotationConfig is the [rotation] table.
type rotationConfig struct {
	// SweepInterval is how often the daemon sweeps for keys due for
	// rotation: a duration from 1m to 24h, or "0" for never (default 10m).
	SweepInterval string `toml:"sweep_interval"`
}

// parse checks [rotation] sweep_interval.
func (r rotationConfig) parse() (time.Duration, error) {
	switch r.SweepInterval {
	case "":
		return server.DefaultSweepInterval, nil
	case "0":
		return 0, nil
	}
	d, err := time.ParseDuration(r.SweepInterval)
	if err == nil {
		err = server.CheckSweepInterval(d)
	}
	if err != nil {
		return 0, fmt.Errorf("rotation.sweep_interval: %q is neither \"0\" (off) nor a duration from %s to %s", r.SweepInterval, server.MinSweepInterval, server.MaxSweepInterval)
	}
	return d, nil
}

// schedConfig is [scheduler]: the fair scheduling of provider work.
type schedConfig struct {
	// Workers is the number of provider calls that run at once
	// (default: GOMAXPROCS).
	Workers int64 `toml:"workers"`
	// MaxQueuedPerApp bounds one app's provider calls waiting for a
	// worker (default 1024).
	MaxQueuedPerApp int64 `toml:"max_queued_per_app"`
	// Nice is how much the threads of expensive provider calls raise
	// their nice value over the daemon's (default 2; 0: not at all).
	Nice *int64 `toml:"nice"`
}

// maxWorkers and maxQueuedPerApp bound [scheduler]'s values.
const (
	maxWorkers      = 4096
	maxQueuedPerApp = 1 << 20
)

// parse checks [scheduler]: 0 (or absent) is the default, otherwise 1 to
// the bound.
func (c schedConfig) parse() (server.Scheduler, error) {
	switch {
	case c.Workers < 0 || c.Workers > maxWorkers:
		return server.Scheduler{}, fmt.Errorf("scheduler.workers: %d is out of range (1 to %d, or 0 for GOMAXPROCS)", c.Workers, maxWorkers)
	case c.MaxQueuedPerApp < 0 || c.MaxQueuedPerApp > maxQueuedPerApp:
		return server.Scheduler{}, fmt.Errorf("scheduler.max_queued_per_app: %d is out of range (1 to %d, or 0 for the default)", c.MaxQueuedPerApp, maxQueuedPerApp)
	}
	out := server.Scheduler{Workers: int(c.Workers), MaxQueuedPerApp: int(c.MaxQueuedPerApp)}
	if c.Nice != nil {
		switch n := *c.Nice; {
		case n < 0 || n > 19:
			return server.Scheduler{}, fmt.Errorf("scheduler.nice: %d is out of range (0 for none, 1 to 19)", n)
		case n == 0:
			out.Nice = -1
		default:
			out.Nice = int(n)
		}
	}
	return out, nil
}

type auditConfig struct {
	// Sync is "every-record" or a duration such as "100ms" (the default).
	Sync string `toml:"sync"`
	// SegmentSize is the size in bytes at which the current audit file is
	// sealed and a new one started (default 16 MiB).
	SegmentSize *int64 `toml:"segment_size"`
	// MaxSegments keeps at most that many audit files, removing the
	// oldest (default 0: keep all).
	MaxSegments *int64 `toml:"max_segments"`
	// CheckpointEvery is how many records a signed checkpoint covers at
	// most (default 1000; 0: only by time and at stop).
	CheckpointEvery *int64 `toml:"checkpoint_every"`
	// CheckpointInterval is the longest time between signed checkpoints
	// while records are written (default "60s"; "0": only by count and at
	// stop).
	CheckpointInterval string `toml:"checkpoint_interval"`
	// CheckpointFile is a file or named pipe every checkpoint line is also
	// appended to, for a shipper to take off the host ("": none).
	CheckpointFile string `toml:"checkpoint_file"`
	// CheckpointSyslog sends every checkpoint line to syslog: "local"
	// (the local syslog socket, which is the journal's on systemd hosts),
	// or "udp:HOST:PORT" ("": none).
	CheckpointSyslog string `toml:"checkpoint_syslog"`
}

// Checkpoint defaults and bounds ([audit] checkpoint_every,
// checkpoint_interval).
const (
	defaultCheckpointEvery    = 1000
	maxCheckpointEvery        = 1 << 30
	defaultCheckpointInterval = time.Minute
	minCheckpointInterval     = time.Second
	maxCheckpointInterval     = 24 * time.Hour
)

// checkpointSettings is [audit]'s signed-checkpoint part, validated.
type checkpointSettings struct {
	every    int
	interval time.Duration // 0: not by time
	file     string
	syslog   string // "", "local", or "udp:…"
}

// parseCheckpoints checks [audit]'s checkpoint_* keys.
func (a auditConfig) parseCheckpoints(baseDir string) (checkpointSettings, error) {
	c := checkpointSettings{every: defaultCheckpointEvery, interval: defaultCheckpointInterval}
	if a.CheckpointEvery != nil {
		n := *a.CheckpointEvery
		if n < 0 || n > maxCheckpointEvery {
			return checkpointSettings{}, fmt.Errorf("audit.checkpoint_every: %d is out of range (0 for none by count, 1 to %d)", n, maxCheckpointEvery)
		}
		c.every = int(n)
	}
	switch v := a.CheckpointInterval; v {
	case "":
	case "0":
		c.interval = 0
	default:
		d, err := time.ParseDuration(v)
		if err != nil || d < minCheckpointInterval || d > maxCheckpointInterval {
			return checkpointSettings{}, fmt.Errorf("audit.checkpoint_interval: %q is neither \"0\" (none by time) nor a duration from %s to %s", v, minCheckpointInterval, maxCheckpointInterval)
		}
		c.interval = d
	}
	if a.CheckpointFile != "" {
		c.file = a.CheckpointFile
		if !filepath.IsAbs(c.file) {
			c.file = filepath.Join(baseDir, c.file)
		}
	}
	switch v := a.CheckpointSyslog; {
	case v == "" || v == "local":
		c.syslog = v
	case strings.HasPrefix(v, "udp:"):
		// Not tcp: a stalled TCP peer would block the log's checkpoints.
		if _, _, err := net.SplitHostPort(v[4:]); err != nil {
			return checkpointSettings{}, fmt.Errorf("audit.checkpoint_syslog: %q: %v", v, err)
		}
		c.syslog = v
	default:
		return checkpointSettings{}, fmt.Errorf("audit.checkpoint_syslog: %q is neither \"local\" nor \"udp:HOST:PORT\" (tcp is not offered: a stalled peer would hold up the checkpoints; ship from the journal instead)", v)
	}
	return c, nil
}

// counterConfig is [counter]: the external monotonic counter that makes a
// rollback of the whole state directory, audit log included, visible
// (docs/security.md, "Rollback detection").
type counterConfig struct {
	// Type is "" (none), "file" or "tpm".
	Type string `toml:"type"`
	// Path is the file counter's file: on another file system or device
	// than the state directory (relative: to the config file's directory).
	Path string `toml:"path"`
	// Device is the TPM's device (default /dev/tpmrm0).
	Device string `toml:"device"`
	// NVIndex is the TPM NV index of the counter, e.g. "0x01500016".
	NVIndex string `toml:"nv_index"`
}

// counterSettings is [counter], validated.
type counterSettings struct {
	kind    string // "", "file", "tpm"
	path    string
	device  string
	nvIndex uint32 // 0: the package default
}

// defaultTPMDevice is the kernel's TPM resource manager.
const defaultTPMDevice = "/dev/tpmrm0"

// parse checks [counter].
func (c counterConfig) parse(baseDir string) (counterSettings, error) {
	switch c.Type {
	case "":
		if c.Path != "" || c.Device != "" || c.NVIndex != "" {
			return counterSettings{}, fmt.Errorf("counter: path, device and nv_index need type = \"file\" or \"tpm\"")
		}
		return counterSettings{}, nil
	case "file":
		if c.Path == "" {
			return counterSettings{}, fmt.Errorf("counter: type = \"file\" needs path (a file outside the state directory, on another file system or device)")
		}
		if c.Device != "" || c.NVIndex != "" {
			return counterSettings{}, fmt.Errorf("counter: device and nv_index are for type = \"tpm\"")
		}
		p := c.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		return counterSettings{kind: "file", path: filepath.Clean(p)}, nil
	case "tpm":
		if c.Path != "" {
			return counterSettings{}, fmt.Errorf("counter: path is for type = \"file\"")
		}
		out := counterSettings{kind: "tpm", device: c.Device}
		if out.device == "" {
			out.device = defaultTPMDevice
		}
		if c.NVIndex != "" {
			n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(c.NVIndex), "0x"), 16, 32)
			if err != nil || !strings.HasPrefix(strings.ToLower(c.NVIndex), "0x") {
				return counterSettings{}, fmt.Errorf("counter.nv_index: %q is not a hex NV index such as \"0x01500016\"", c.NVIndex)
			}
			out.nvIndex = uint32(n)
		}
		return out, nil
	default:
		return counterSettings{}, fmt.Errorf("counter.type: %q is none of \"file\", \"tpm\"", c.Type)
	}
}

type limitsConfig struct {
	MaxConnections       int64  `toml:"max_connections"`
	MaxConnectionsPerUID int64  `toml:"max_connections_per_uid"`
	MaxConcurrentStreams int64  `toml:"max_concurrent_streams"`
	IdleTimeout          string `toml:"idle_timeout"`
	HandshakeTimeout     string `toml:"handshake_timeout"`
	ShutdownTimeout      string `toml:"shutdown_timeout"`
	InFlightBytes        int64  `toml:"inflight_bytes"`
	InFlightBytesPerUID  int64  `toml:"inflight_bytes_per_uid"`
	RatePerUID           int64  `toml:"rate_per_uid"`
	BurstPerUID          int64  `toml:"burst_per_uid"`
	DeniedRate           int64  `toml:"denied_rate"`
	DeniedBurst          int64  `toml:"denied_burst"`
	RefusalInterval      string `toml:"refusal_interval"`
}

// settings is what the daemon takes from its config file (or the defaults
// without one), validated.
type settings struct {
	identity        server.Identity
	socketGID       int // -1: no group
	socketGroup     string
	anchorsDir      string
	metricsAddr     string
	auditSync       audit.SyncMode
	auditSegment    int64 // bytes; 0: audit.DefaultSegmentSize
	auditMaxSegs    int   // 0: keep every segment
	limits          server.Limits
	shutdownTimeout time.Duration
	quotas          core.Quotas
	kek             keksource.Options // [kek]; the flags win
	sweepInterval   time.Duration     // 0: no scheduled sweep
	scheduler       server.Scheduler
	provider        providerSettings
	checkpoints     checkpointSettings
	counter         counterSettings
	cache           cacheSettings
}

// defaultShutdownTimeout bounds the graceful stop.
const defaultShutdownTimeout = 10 * time.Second

// defaultSettings are the settings without a config file: uid N is app
// "uid-N", uid 0 is an operator, no socket group.
func defaultSettings() settings {
	return settings{identity: server.DefaultIdentity(), socketGID: -1, shutdownTimeout: defaultShutdownTimeout,
		sweepInterval: server.DefaultSweepInterval, provider: providerSettings{verifySignatures: true},
		checkpoints: checkpointSettings{every: defaultCheckpointEvery, interval: defaultCheckpointInterval}}
}

// loadConfig reads and validates the config file at path.
func loadConfig(path string) (settings, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return settings{}, err
	}
	var fc fileConfig
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&fc)
	if err != nil {
		// The parser quotes the offending input, control bytes included
		// (a NUL at end of file): keep the message printable.
		return settings{}, fmt.Errorf("config %s: %s", path, printable(err.Error()))
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, 0, len(und))
		for _, k := range und {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		return settings{}, fmt.Errorf("config %s: unknown key(s): %s", path, strings.Join(keys, ", "))
	}
	s, err := fc.settings(filepath.Dir(path))
	if err != nil {
		return settings{}, fmt.Errorf("config %s: %w", path, err)
	}
	return s, nil
}

// readConfigFile reads the config file, refusing one that is not a regular
// file, is writable by group or others, is owned by someone other than the
// daemon's user or root, or is larger than maxConfigFile.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("config %s: is a symlink; name the file itself", path)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("config %s: not a regular file", path)
	case fi.Mode().Perm()&0o022 != 0:
		return nil, fmt.Errorf("config %s: writable by group or others (mode %04o); chmod go-w it", path, fi.Mode().Perm())
	case fi.Size() > maxConfigFile:
		return nil, fmt.Errorf("config %s: larger than %d bytes", path, maxConfigFile)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != uint32(os.Geteuid()) && st.Uid != 0 {
		return nil, fmt.Errorf("config %s: owned by uid %d, not by the daemon's user or root", path, st.Uid)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxConfigFile {
		return nil, fmt.Errorf("config %s: larger than %d bytes", path, maxConfigFile)
	}
	return data, nil
}

// parseUID parses a uid: a decimal number from 0 to 4294967294
// (4294967295 is the kernel's "no uid").
func parseUID(what string, v int64) (uint32, error) {
	if v < 0 || v >= 1<<32-1 {
		return 0, fmt.Errorf("%s: uid %d is out of range (0 to 4294967294)", what, v)
	}
	return uint32(v), nil
}

func (fc *fileConfig) settings(baseDir string) (settings, error) {
	s := defaultSettings()
	apps := make(map[uint32]string, len(fc.Apps))
	for k, app := range fc.Apps {
		n, err := strconv.ParseInt(k, 10, 64)
		if err != nil || strconv.FormatInt(n, 10) != k {
			return settings{}, fmt.Errorf("apps: key %q is not a uid (a decimal number)", k)
		}
		uid, err := parseUID("apps", n)
		if err != nil {
			return settings{}, err
		}
		apps[uid] = app
	}
	ops := make([]uint32, 0, len(fc.Operators))
	for _, v := range fc.Operators {
		uid, err := parseUID("operators", v)
		if err != nil {
			return settings{}, err
		}
		ops = append(ops, uid)
	}
	unmapped := server.UnmappedDeny
	if fc.Unmapped != "" {
		u, err := server.ParseUnmapped(fc.Unmapped)
		if err != nil {
			return settings{}, err
		}
		unmapped = u
	}
	id, err := server.NewIdentity(apps, ops, unmapped)
	if err != nil {
		// The messages name the app ID and uid ([apps] entry) or the
		// operator uid at fault.
		return settings{}, err
	}
	s.identity = id
	if fc.SocketGroup != "" {
		gid, err := lookupGroup(fc.SocketGroup)
		if err != nil {
			return settings{}, err
		}
		s.socketGID, s.socketGroup = gid, fc.SocketGroup
	}
	if fc.AnchorsDir != "" {
		s.anchorsDir = fc.AnchorsDir
		if !filepath.IsAbs(s.anchorsDir) {
			s.anchorsDir = filepath.Join(baseDir, s.anchorsDir)
		}
	}
	if fc.MetricsAddr != "" {
		addr, err := metricsAddr(fc.MetricsAddr)
		if err != nil {
			return settings{}, fmt.Errorf("metrics_addr: %w", err)
		}
		s.metricsAddr = addr
	}
	if s.auditSync, err = parseAuditSync(fc.Audit.Sync); err != nil {
		return settings{}, err
	}
	if s.auditSegment, s.auditMaxSegs, err = fc.Audit.parseSegments(); err != nil {
		return settings{}, err
	}
	if s.checkpoints, err = fc.Audit.parseCheckpoints(baseDir); err != nil {
		return settings{}, err
	}
	if s.counter, err = fc.Counter.parse(baseDir); err != nil {
		return settings{}, err
	}
	if s.limits, s.shutdownTimeout, err = fc.Limits.parse(); err != nil {
		return settings{}, err
	}
	if s.quotas, err = fc.Quotas.parse(); err != nil {
		return settings{}, err
	}
	s.kek = fc.KEK.options(baseDir)
	if err := keksource.CheckConflicts(s.kek); err != nil {
		return settings{}, err // within the table; the rest is checked at start, with the flags
	}
	if s.sweepInterval, err = fc.Rotation.parse(); err != nil {
		return settings{}, err
	}
	if s.provider, err = fc.Provider.parse(); err != nil {
		return settings{}, err
	}
	if s.scheduler, err = fc.Scheduler.parse(); err != nil {
		return settings{}, err
	}
	if s.cache, err = fc.Cache.parse(); err != nil {
		return settings{}, err
	}
	return s, nil
}

// lookupGroup resolves a group name or a numeric gid.
func lookupGroup(g string) (int, error) {
	if n, err := strconv.ParseUint(g, 10, 32); err == nil && n < 1<<32-1 {
		return int(n), nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return -1, fmt.Errorf("socket_group: %w", err)
	}
	n, err := strconv.ParseUint(grp.Gid, 10, 32)
	if err != nil {
		return -1, fmt.Errorf("socket_group %q: gid %q is not a number", g, grp.Gid)
	}
	return int(n), nil
}

// parseAuditSync parses [audit] sync: "every-record", or a duration
// between 1ms and 10s (the background fsync interval; default 100ms).
func parseAuditSync(v string) (audit.SyncMode, error) {
	switch v {
	case "":
		return audit.SyncInterval(audit.DefaultSyncInterval), nil
	case "every-record":
		return audit.SyncEveryRecord, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Millisecond || d > 10*time.Second {
		return 0, fmt.Errorf("audit.sync: %q is neither \"every-record\" nor a duration from 1ms to 10s", v)
	}
	return audit.SyncInterval(d), nil
}

// parseSegments checks [audit] segment_size (4 KiB to 1 TiB) and
// max_segments (0: keep all, or 2 to 1048576).
func (a auditConfig) parseSegments() (int64, int, error) {
	var size int64
	if a.SegmentSize != nil {
		size = *a.SegmentSize
		if size < audit.MinSegmentSize || size > audit.MaxSegmentSize {
			return 0, 0, fmt.Errorf("audit.segment_size: %d is out of range (%d to %d bytes)", size, audit.MinSegmentSize, int64(audit.MaxSegmentSize))
		}
	}
	var keep int
	if a.MaxSegments != nil {
		n := *a.MaxSegments
		if n != 0 && (n < audit.MinMaxSegments || n > audit.MaxMaxSegments) {
			return 0, 0, fmt.Errorf("audit.max_segments: %d is out of range (0 to keep every segment, or %d to %d)", n, audit.MinMaxSegments, audit.MaxMaxSegments)
		}
		keep = int(n)
	}
	return size, keep, nil
}

func parseDuration(key, v string, lo, hi, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		return 0, fmt.Errorf("limits.%s: %q is not a duration from %s to %s", key, v, lo, hi)
	}
	return d, nil
}

func (l limitsConfig) parse() (server.Limits, time.Duration, error) {
	var out server.Limits
	ints := []struct {
		key    string
		v, max int64
		setTo  func(int64)
		def    int64
	}{
		{"max_connections", l.MaxConnections, 1 << 20, func(n int64) { out.MaxConnections = int(n) }, server.DefaultMaxConnections},
		{"max_connections_per_uid", l.MaxConnectionsPerUID, 1 << 20, func(n int64) { out.MaxConnectionsPerUID = int(n) }, server.DefaultMaxConnectionsPerUID},
		{"max_concurrent_streams", l.MaxConcurrentStreams, 1 << 16, func(n int64) { out.MaxConcurrentStreams = uint32(n) }, server.DefaultMaxConcurrentStreams},
		{"inflight_bytes", l.InFlightBytes, 1 << 40, func(n int64) { out.InFlightBytes = n }, server.DefaultInFlightBytes},
		{"inflight_bytes_per_uid", l.InFlightBytesPerUID, 1 << 40, func(n int64) { out.InFlightBytesPerUID = n }, server.DefaultInFlightBytesPerUID},
		{"rate_per_uid", l.RatePerUID, 1 << 30, func(n int64) { out.RatePerUID = float64(n) }, server.DefaultRatePerUID},
		{"burst_per_uid", l.BurstPerUID, 1 << 30, func(n int64) { out.BurstPerUID = int(n) }, server.DefaultBurstPerUID},
		{"denied_rate", l.DeniedRate, 1 << 30, func(n int64) { out.DeniedRate = float64(n) }, server.DefaultDeniedRate},
		{"denied_burst", l.DeniedBurst, 1 << 30, func(n int64) { out.DeniedBurst = int(n) }, server.DefaultDeniedBurst},
	}
	for _, f := range ints {
		switch {
		case f.v == 0:
			f.setTo(f.def)
		case f.v < 1 || f.v > f.max:
			return server.Limits{}, 0, fmt.Errorf("limits.%s: %d is out of range (1 to %d)", f.key, f.v, f.max)
		default:
			f.setTo(f.v)
		}
	}
	var err error
	if out.IdleTimeout, err = parseDuration("idle_timeout", l.IdleTimeout, time.Second, 24*time.Hour, server.DefaultIdleTimeout); err != nil {
		return server.Limits{}, 0, err
	}
	if out.HandshakeTimeout, err = parseDuration("handshake_timeout", l.HandshakeTimeout, 100*time.Millisecond, time.Minute, server.DefaultHandshakeTimeout); err != nil {
		return server.Limits{}, 0, err
	}
	if out.RefusalInterval, err = parseDuration("refusal_interval", l.RefusalInterval, 10*time.Millisecond, time.Hour, server.DefaultRefusalInterval); err != nil {
		return server.Limits{}, 0, err
	}
	shutdown, err := parseDuration("shutdown_timeout", l.ShutdownTimeout, 0, 10*time.Minute, defaultShutdownTimeout)
	if err != nil {
		return server.Limits{}, 0, err
	}
	return out, shutdown, nil
}

// printable replaces control characters and invalid UTF-8 in s with '?',
// so a message quoting a config file is safe to print and log.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) && r != '\n' {
			return '?'
		}
		return r
	}, s)
}
