package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/internal/keksource"
	"github.com/nexus-os/keystored/server"
)

// exampleConfig is the example of docs/operations.md.
const exampleConfig = `# keystored config
unmapped = "deny"
operators = [0]
socket_group = "4242"
anchors_dir = "anchors"
metrics_addr = ":9464"

[apps]
1001 = "billing"
1002 = "web"

[audit]
sync = "every-record"

[limits]
max_connections = 512
max_connections_per_uid = 32
max_concurrent_streams = 100
idle_timeout = "10m"
handshake_timeout = "3s"
shutdown_timeout = "20s"
inflight_bytes = 67108864
inflight_bytes_per_uid = 8388608
rate_per_uid = 500
burst_per_uid = 50
denied_rate = 2
denied_burst = 4
refusal_interval = "5s"

[rotation]
sweep_interval = "30m"
`

func writeConfig(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keystored.toml")
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfigExample(t *testing.T) {
	path := writeConfig(t, exampleConfig, 0o640)
	s, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.identity.Resolve(server.PeerInfo{UID: 1001}); got.App != "billing" || got.Operator || got.Denied {
		t.Errorf("uid 1001 → %+v", got)
	}
	if got := s.identity.Resolve(server.PeerInfo{UID: 0}); got.App != "uid-0" || !got.Operator {
		t.Errorf("uid 0 → %+v", got)
	}
	if got := s.identity.Resolve(server.PeerInfo{UID: 1003}); !got.Denied {
		t.Errorf("unmapped uid 1003 → %+v, want denied", got)
	}
	if s.socketGID != 4242 {
		t.Errorf("socket gid = %d", s.socketGID)
	}
	if want := filepath.Join(filepath.Dir(path), "anchors"); s.anchorsDir != want {
		t.Errorf("anchors_dir = %q, want %q (relative to the config file)", s.anchorsDir, want)
	}
	if s.metricsAddr != "127.0.0.1:9464" {
		t.Errorf("metrics_addr = %q", s.metricsAddr)
	}
	if s.auditSync != audit.SyncEveryRecord {
		t.Errorf("audit sync = %v", s.auditSync)
	}
	want := server.Limits{MaxConnections: 512, MaxConnectionsPerUID: 32, MaxConcurrentStreams: 100, IdleTimeout: 10 * time.Minute, HandshakeTimeout: 3 * time.Second,
		InFlightBytes: 64 << 20, InFlightBytesPerUID: 8 << 20, RatePerUID: 500, BurstPerUID: 50, DeniedRate: 2, DeniedBurst: 4, RefusalInterval: 5 * time.Second}
	if s.limits != want || s.shutdownTimeout != 20*time.Second {
		t.Errorf("limits = %+v, shutdown %v", s.limits, s.shutdownTimeout)
	}
	if s.sweepInterval != 30*time.Minute {
		t.Errorf("rotation.sweep_interval = %v, want 30m", s.sweepInterval)
	}
}

func TestLoadConfigSweepInterval(t *testing.T) {
	for body, want := range map[string]time.Duration{
		"":                                       server.DefaultSweepInterval,
		"[rotation]\n":                           server.DefaultSweepInterval,
		"[rotation]\nsweep_interval = \"0\"\n":   0,
		"[rotation]\nsweep_interval = \"1m\"\n":  time.Minute,
		"[rotation]\nsweep_interval = \"24h\"\n": 24 * time.Hour,
	} {
		s, err := loadConfig(writeConfig(t, body, 0o600))
		if err != nil || s.sweepInterval != want {
			t.Errorf("%q: sweep interval %v, %v; want %v", body, s.sweepInterval, err, want)
		}
	}
	if defaultSettings().sweepInterval != server.DefaultSweepInterval {
		t.Errorf("without a config file the sweep interval is %v, want %v", defaultSettings().sweepInterval, server.DefaultSweepInterval)
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	s, err := loadConfig(writeConfig(t, "", 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.identity.Resolve(server.PeerInfo{UID: 5}); !got.Denied {
		t.Errorf("with a config file, unmapped defaults to deny; got %+v", got)
	}
	if got := s.identity.Resolve(server.PeerInfo{UID: 0}); !got.Denied {
		t.Errorf("with a config file, uid 0 is an operator only if listed; got %+v", got)
	}
	if s.socketGID != -1 || s.anchorsDir != "" || s.metricsAddr != "" || s.shutdownTimeout != defaultShutdownTimeout {
		t.Errorf("defaults = %+v", s)
	}
	if s.auditSync != audit.SyncInterval(audit.DefaultSyncInterval) {
		t.Errorf("audit sync = %v", s.auditSync)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	cases := map[string]struct{ body, want string }{
		"unknown key":          {"colour = \"blue\"\n", "unknown key(s): colour"},
		"unknown nested key":   {"[limits]\nmax_conns = 3\n", "limits.max_conns"},
		"zero rate":            {"[limits]\nrate_per_uid = -1\n", "limits.rate_per_uid"},
		"bad refusal interval": {"[limits]\nrefusal_interval = \"1ns\"\n", "limits.refusal_interval"},
		"syntax":               {"apps = [\n", "config"},
		"wrong type":           {"operators = \"0\"\n", "operators"},
		"uid not a number":     {"[apps]\nalice = \"a\"\n", "not a uid"},
		"uid with sign":        {"[apps]\n\"+5\" = \"a\"\n", "not a uid"},
		"uid out of range":     {"[apps]\n4294967295 = \"a\"\n", "out of range"},
		"negative operator":    {"operators = [-1]\n", "out of range"},
		"bad app":              {"[apps]\n1001 = \"Billing App\"\n", "app ID of uid 1001"},
		"bad unmapped":         {"unmapped = \"allow\"\n", "unmapped"},
		"operator twice":       {"operators = [1, 1]\n", "twice"},
		"unknown group":        {"socket_group = \"no-such-group-xyz\"\n", "socket_group"},
		"bad metrics":          {"metrics_addr = \"localhost:http\"\n", "metrics_addr"},
		"bad audit sync":       {"[audit]\nsync = \"sometimes\"\n", "audit.sync"},
		"audit sync too long":  {"[audit]\nsync = \"1h\"\n", "audit.sync"},
		"bad limit":            {"[limits]\nmax_connections = -5\n", "limits.max_connections"},
		"bad duration":         {"[limits]\nidle_timeout = \"soon\"\n", "limits.idle_timeout"},
		"generated name":       {"unmapped = \"uid\"\n[apps]\n1002 = \"uid-1005\"\n", `app ID "uid-1005" of uid 1002 is refused`},
		"root's name":          {"operators = [0]\n[apps]\n1004 = \"uid-0\"\n", "uid 0 would use uid 1004's keys"},
		"unknown kek key":      {"[kek]\npassphrase = \"x\"\n", "kek.passphrase"},
		"two KEK sources":      {"[kek]\nfile = \"/k\"\npassphrase_file = \"/pw\"\n", "[kek] file and [kek] passphrase_file both name a KEK source"},
		"two passphrases":      {"[kek]\npassphrase_file = \"/pw\"\npassphrase_credential = \"pw\"\n", "both name the KEK passphrase"},
		"bad credential":       {"[kek]\npassphrase_credential = \"../pw\"\n", "is not a credential name"},
		"sweep too often":      {"[rotation]\nsweep_interval = \"59s\"\n", "rotation.sweep_interval"},
		"sweep too rarely":     {"[rotation]\nsweep_interval = \"25h\"\n", "rotation.sweep_interval"},
		"sweep negative":       {"[rotation]\nsweep_interval = \"-10m\"\n", "rotation.sweep_interval"},
		"sweep not a duration": {"[rotation]\nsweep_interval = \"often\"\n", "rotation.sweep_interval"},
		"sweep as a number":    {"[rotation]\nsweep_interval = 600\n", "sweep_interval"},
		"unknown rotation key": {"[rotation]\nperiod = \"1h\"\n", "rotation.period"},
	}
	for name, c := range cases {
		_, err := loadConfig(writeConfig(t, c.body, 0o600))
		if err == nil {
			t.Errorf("%s: loadConfig succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not mention %q", name, err, c.want)
		}
	}
}

func TestConfigFileChecks(t *testing.T) {
	if _, err := loadConfig(writeConfig(t, "", 0o666)); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable config: %v", err)
	}
	if _, err := loadConfig(writeConfig(t, "", 0o620)); err == nil || !strings.Contains(err.Error(), "writable") {
		t.Errorf("group-writable config: %v", err)
	}
	target := writeConfig(t, "", 0o600)
	link := filepath.Join(t.TempDir(), "link.toml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(link); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("symlinked config: %v", err)
	}
	if _, err := loadConfig(filepath.Join(t.TempDir(), "missing.toml")); err == nil {
		t.Error("missing config accepted")
	}
	if _, err := loadConfig(t.TempDir()); err == nil {
		t.Error("a directory accepted as config")
	}
	big := writeConfig(t, "# "+strings.Repeat("x", maxConfigFile)+"\n", 0o600)
	if _, err := loadConfig(big); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("oversized config: %v", err)
	}
}

// FuzzLoadConfig: no input panics the config parser; whatever it accepts
// is a valid identity map.
func FuzzLoadConfig(f *testing.F) {
	f.Add(exampleConfig)
	f.Add("[apps]\n1 = \"a\"\n")
	f.Add("unmapped = \"uid\"\noperators = [0, 1]\n")
	f.Add("[limits]\nmax_connections = 1\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body string) {
		path := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := loadConfig(path)
		if err != nil {
			return
		}
		c := s.identity.Resolve(server.PeerInfo{UID: 1})
		if !c.Denied && c.App == "" {
			t.Fatalf("accepted config maps uid 1 to an empty app: %q", body)
		}
	})
}

func TestLoadConfigQuotas(t *testing.T) {
	s, err := loadConfig(writeConfig(t, `
[quotas]
keys = 50
store_bytes = 65536

[quotas.apps.billing]
keys = 5000
versions_per_key = 7
`, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	want := core.Quotas{Default: core.Quota{Keys: 50, StoreBytes: 65536}, Apps: map[string]core.Quota{"billing": {Keys: 5000, VersionsPerKey: 7}}}
	if s.quotas.Default != want.Default || len(s.quotas.Apps) != 1 || s.quotas.Apps["billing"] != want.Apps["billing"] {
		t.Fatalf("quotas = %+v, want %+v", s.quotas, want)
	}
	if got := s.quotas.For("billing"); got != (core.Quota{Keys: 5000, VersionsPerKey: 7, StoreValues: core.DefaultQuotaStoreValues, StoreBytes: 65536}) {
		t.Fatalf("billing's quota = %+v", got)
	}
	if got := s.quotas.For("web"); got != (core.Quota{Keys: 50, VersionsPerKey: core.DefaultQuotaVersionsPerKey, StoreValues: core.DefaultQuotaStoreValues, StoreBytes: 65536}) {
		t.Fatalf("web's quota = %+v", got)
	}
	d, err := loadConfig(writeConfig(t, "", 0o600))
	if err != nil || d.quotas.For("x") != core.DefaultQuota() {
		t.Fatalf("no [quotas]: %+v, %v", d.quotas.For("x"), err)
	}
	for body, want := range map[string]string{
		"[quotas]\nkeys = 0\n":                   "quotas.keys: 0 is out of range (1 to 16777216)",
		"[quotas]\nstore_bytes = -1\n":           "quotas.store_bytes: -1 is out of range",
		"[quotas]\nversions_per_key = 1048577\n": "quotas.versions_per_key: 1048577 is out of range",
		"[quotas.apps.Web]\nkeys = 3\n":          `quotas.apps: "Web" is not an app ID`,
		"[quotas.apps.web]\nstore_values = 0\n":  "quotas.apps.web.store_values: 0 is out of range",
		"[quotas.apps.web]\nbytes = 3\n":         "unknown key(s): quotas.apps.web.bytes",
		"[quotas]\nkeys = \"many\"\n":            "quotas.keys",
	} {
		_, err := loadConfig(writeConfig(t, body, 0o600))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", body, err, want)
		}
	}
}

func TestLoadConfigAuditSegments(t *testing.T) {
	s, err := loadConfig(writeConfig(t, "[audit]\nsegment_size = 1048576\nmax_segments = 30\n", 0o600))
	if err != nil || s.auditSegment != 1<<20 || s.auditMaxSegs != 30 {
		t.Fatalf("segments = %d, %d, %v", s.auditSegment, s.auditMaxSegs, err)
	}
	d, err := loadConfig(writeConfig(t, "[audit]\nmax_segments = 0\n", 0o600))
	if err != nil || d.auditSegment != 0 || d.auditMaxSegs != 0 {
		t.Fatalf("defaults = %d, %d, %v", d.auditSegment, d.auditMaxSegs, err)
	}
	for body, want := range map[string]string{
		"[audit]\nsegment_size = 4095\n":      "audit.segment_size: 4095 is out of range (4096 to 1099511627776 bytes)",
		"[audit]\nsegment_size = 0\n":         "audit.segment_size: 0 is out of range",
		"[audit]\nmax_segments = 1\n":         "audit.max_segments: 1 is out of range",
		"[audit]\nmax_segments = -2\n":        "audit.max_segments: -2 is out of range",
		"[audit]\nsegment_size = \"64MiB\"\n": "audit.segment_size",
	} {
		_, err := loadConfig(writeConfig(t, body, 0o600))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", body, err, want)
		}
	}
}

// TestLoadConfigKEK: the [kek] table, relative paths from the config
// file's directory; flags win field by field over it.
func TestLoadConfigKEK(t *testing.T) {
	path := writeConfig(t, "[kek]\npassphrase_credential = \"kek-pass\"\nparams_file = \"params/kek.params\"\n", 0o600)
	s, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(filepath.Dir(path), "params", "kek.params")
	if s.kek.PassphraseCredential.Value != "kek-pass" || s.kek.ParamsFile.Value != want || s.kek.File.Set() || s.kek.PassphraseFile.Set() {
		t.Errorf("[kek] = %+v, want the credential and params file %s", s.kek, want)
	}
	o, err := parseFlags([]string{"--state", "/st", "--kek-params-file", "/elsewhere/p"}, &bytes.Buffer{}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	src, err := keksource.Resolve(o.kek.Over(s.kek), keksource.Defaults{File: "/st/kek", Params: "/st/kek.params"},
		env(map[string]string{"CREDENTIALS_DIRECTORY": "/run/credentials/keystored.service"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := (keksource.Source{PassphraseFile: "/run/credentials/keystored.service/kek-pass", Credential: "kek-pass", ParamsFile: "/elsewhere/p"}); src != want {
		t.Errorf("flags over [kek] = %+v, want %+v", src, want)
	}
	if _, err := parseFlags([]string{"--kek-file", "/k"}, &bytes.Buffer{}, env(nil)); err != nil {
		t.Errorf("--kek-file alone: %v", err)
	}
}

func TestLoadConfigScheduler(t *testing.T) {
	s, err := loadConfig(writeConfig(t, "[scheduler]\nworkers = 3\nmax_queued_per_app = 64\nnice = 5\n", 0o600))
	if err != nil || s.scheduler != (server.Scheduler{Workers: 3, MaxQueuedPerApp: 64, Nice: 5}) {
		t.Fatalf("scheduler = %+v, %v", s.scheduler, err)
	}
	d, err := loadConfig(writeConfig(t, "", 0o600))
	if err != nil || d.scheduler != (server.Scheduler{}) {
		t.Fatalf("no [scheduler]: %+v, %v", d.scheduler, err)
	}
	off, err := loadConfig(writeConfig(t, "[scheduler]\nnice = 0\n", 0o600))
	if err != nil || off.scheduler.Nice != -1 {
		t.Fatalf("nice = 0: %+v, %v (want Nice -1: no low-priority threads)", off.scheduler, err)
	}
	for body, want := range map[string]string{
		"[scheduler]\nworkers = -1\n":            "scheduler.workers: -1 is out of range",
		"[scheduler]\nworkers = 4097\n":          "scheduler.workers: 4097 is out of range",
		"[scheduler]\nmax_queued_per_app = -2\n": "scheduler.max_queued_per_app: -2 is out of range",
		"[scheduler]\nnice = 20\n":               "scheduler.nice: 20 is out of range",
		"[scheduler]\nnice = -5\n":               "scheduler.nice: -5 is out of range",
		"[scheduler]\nthreads = 2\n":             "unknown key(s): scheduler.threads",
	} {
		_, err := loadConfig(writeConfig(t, body, 0o600))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", body, err, want)
		}
	}
}

// TestDefaultWorkers: without $GOMAXPROCS the daemon keeps one P more
// than its provider workers (the CPUs); with it, GOMAXPROCS - 1, at least
// one.
func TestDefaultWorkers(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	if w := reserveTransportProc(false); w != startProcs || runtime.GOMAXPROCS(0) != startProcs+1 {
		t.Fatalf("workers %d, GOMAXPROCS %d; want %d and %d", w, runtime.GOMAXPROCS(0), startProcs, startProcs+1)
	}
	if w := reserveTransportProc(false); w != startProcs || runtime.GOMAXPROCS(0) != startProcs+1 {
		t.Fatalf("a second call changed it: workers %d, GOMAXPROCS %d", w, runtime.GOMAXPROCS(0))
	}
	runtime.GOMAXPROCS(1)
	if w := reserveTransportProc(true); w != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("GOMAXPROCS=1 from the environment: workers %d, GOMAXPROCS %d; want 1 and 1", w, runtime.GOMAXPROCS(0))
	}
	runtime.GOMAXPROCS(5)
	if w := reserveTransportProc(true); w != 4 {
		t.Fatalf("GOMAXPROCS=5 from the environment: workers %d, want 4", w)
	}
	if got := withWorkers(server.Scheduler{}, 4); got.Workers != 4 {
		t.Fatalf("default workers not applied: %+v", got)
	}
	if got := withWorkers(server.Scheduler{Workers: 7}, 4); got.Workers != 7 {
		t.Fatalf("configured workers replaced: %+v", got)
	}
}

// TestLoadConfigTamper: [audit]'s checkpoint keys and [counter], with
// their defaults, relative paths from the config file's directory, and
// every bound.
func TestLoadConfigTamper(t *testing.T) {
	d, err := loadConfig(writeConfig(t, "", 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if want := (checkpointSettings{every: defaultCheckpointEvery, interval: defaultCheckpointInterval}); d.checkpoints != want || d.counter != (counterSettings{}) {
		t.Fatalf("defaults %+v %+v", d.checkpoints, d.counter)
	}
	if n := defaultSettings(); n.checkpoints != d.checkpoints {
		t.Fatalf("no config file: %+v, with an empty one: %+v", n.checkpoints, d.checkpoints)
	}
	path := writeConfig(t, "[audit]\ncheckpoint_every = 0\ncheckpoint_interval = \"5s\"\ncheckpoint_file = \"ship/cp\"\ncheckpoint_syslog = \"udp:127.0.0.1:514\"\n"+
		"[counter]\ntype = \"file\"\npath = \"ctr\"\n", 0o600)
	s, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	if want := (checkpointSettings{every: 0, interval: 5 * time.Second, file: filepath.Join(dir, "ship/cp"), syslog: "udp:127.0.0.1:514"}); s.checkpoints != want {
		t.Errorf("checkpoints %+v, want %+v", s.checkpoints, want)
	}
	if want := (counterSettings{kind: "file", path: filepath.Join(dir, "ctr")}); s.counter != want {
		t.Errorf("counter %+v, want %+v", s.counter, want)
	}
	tpm, err := loadConfig(writeConfig(t, "[counter]\ntype = \"tpm\"\nnv_index = \"0x01500020\"\n", 0o600))
	if err != nil || tpm.counter != (counterSettings{kind: "tpm", device: defaultTPMDevice, nvIndex: 0x01500020}) {
		t.Errorf("tpm counter %+v, %v", tpm.counter, err)
	}
	for body, want := range map[string]string{
		"[audit]\ncheckpoint_every = -1\n":                                "audit.checkpoint_every: -1 is out of range",
		"[audit]\ncheckpoint_every = 1073741825\n":                        "audit.checkpoint_every",
		"[audit]\ncheckpoint_interval = \"999ms\"\n":                      "audit.checkpoint_interval",
		"[audit]\ncheckpoint_interval = \"25h\"\n":                        "audit.checkpoint_interval",
		"[audit]\ncheckpoint_interval = \"soon\"\n":                       "audit.checkpoint_interval",
		"[audit]\ncheckpoint_syslog = \"remote\"\n":                       "audit.checkpoint_syslog",
		"[audit]\ncheckpoint_syslog = \"udp:nohost\"\n":                   "audit.checkpoint_syslog",
		"[counter]\ntype = \"disk\"\n":                                    "counter.type",
		"[counter]\ntype = \"file\"\n":                                    "needs path",
		"[counter]\npath = \"/x\"\n":                                      "need type",
		"[counter]\ntype = \"file\"\npath = \"/x\"\nnv_index = \"0x1\"\n": "for type = \"tpm\"",
		"[counter]\ntype = \"tpm\"\npath = \"/x\"\n":                      "for type = \"file\"",
		"[counter]\ntype = \"tpm\"\nnv_index = \"01500016\"\n":            "counter.nv_index",
		"[counter]\ntype = \"tpm\"\nnv_index = \"0xzz\"\n":                "counter.nv_index",
		"[apps]\n1001 = \"keystored\"\n":                                  "the daemon's own namespace",
	} {
		_, err := loadConfig(writeConfig(t, body, 0o600))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", body, err, want)
		}
	}
}

// TestCounterInsideStateRefused: a file counter in the state directory
// would be restored with it, and a checkpoint file there is no copy at
// all: both are refused.
func TestCounterInsideStateRefused(t *testing.T) {
	state := t.TempDir()
	_, err := openCounter(context.Background(), counterSettings{kind: "file", path: filepath.Join(state, "sub", "counter")}, state)
	if err == nil || !strings.Contains(err.Error(), "inside the state directory") {
		t.Fatalf("counter inside the state: %v", err)
	}
	if _, err := openSinks(checkpointSettings{file: filepath.Join(state, "checkpoints")}, state); err == nil || !strings.Contains(err.Error(), "inside the state directory") {
		t.Fatalf("checkpoint file inside the state: %v", err)
	}
	c, err := openCounter(context.Background(), counterSettings{kind: "file", path: filepath.Join(t.TempDir(), "counter")}, state)
	if err != nil || c == nil {
		t.Fatalf("counter outside the state: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// [cache] sizes: the defaults (0), a value taken, and the bounds refused;
// a change needs a restart.
func TestCacheConfig(t *testing.T) {
	d, err := loadConfig(writeConfig(t, "[cache]\nkeys = 500000\nunwrapped_keys = 200000\n", 0o600))
	if err != nil || d.cache != (cacheSettings{keys: 500000, unwrapped: 200000}) {
		t.Fatalf("cache = %+v, %v", d.cache, err)
	}
	for body, want := range map[string]string{
		"[cache]\nkeys = -1\n":                "cache.keys: -1 is not from 0 (the default) to 16777216",
		"[cache]\nkeys = 16777217\n":          "cache.keys: 16777217",
		"[cache]\nunwrapped_keys = 1048577\n": "cache.unwrapped_keys: 1048577 is not from 0 (the default) to 1048576",
		"[cache]\nsize = 1\n":                 "size",
	} {
		_, err := loadConfig(writeConfig(t, body, 0o600))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", body, err, want)
		}
	}
	r := &reloader{running: d}
	if got := r.needsRestart(settings{cache: cacheSettings{keys: 1}}); !slices.Contains(got, "cache") {
		t.Errorf("a cache change needs no restart? %v", got)
	}
}

// TestProviderVerifyPolicy: [provider] verify_signatures = false is
// accepted only with trusted_plugin_sha256, and the daemon then relaxes
// the verification only for a plugin pinned with that very SHA-256;
// by default a plugin's signatures are verified, an in-process
// provider's not.
func TestProviderVerifyPolicy(t *testing.T) {
	pin := strings.Repeat("ab", 32)
	other := strings.Repeat("cd", 32)
	d, err := loadConfig(writeConfig(t, "", 0o600))
	if err != nil || !d.provider.verifySignatures || d.provider.trustedPlugin != "" {
		t.Fatalf("no [provider]: %+v, %v (want verify)", d.provider, err)
	}
	if !defaultSettings().provider.verifySignatures {
		t.Fatal("without a config file the plugin's signatures are not verified")
	}
	relaxed, err := loadConfig(writeConfig(t, "[provider]\nverify_signatures = false\ntrusted_plugin_sha256 = \""+strings.ToUpper(pin)+"\"\n", 0o600))
	if err != nil || relaxed.provider != (providerSettings{verifySignatures: false, trustedPlugin: pin}) {
		t.Fatalf("relaxed: %+v, %v", relaxed.provider, err)
	}
	for body, want := range map[string]string{
		"[provider]\nverify_signatures = false\n":                                                "needs provider.trusted_plugin_sha256",
		"[provider]\ntrusted_plugin_sha256 = \"" + pin + "\"\n":                                  "applies only with provider.verify_signatures = false",
		"[provider]\nverify_signatures = false\ntrusted_plugin_sha256 = \"abc\"\n":               "is not 64 hex digits",
		"[provider]\nverify_signatures = false\ntrusted_plugin_sha256 = \"" + pin[:63] + "g\"\n": "is not 64 hex digits",
		"[provider]\nverify = false\n":                                                           "unknown key(s): provider.verify",
	} {
		_, err := loadConfig(writeConfig(t, body, 0o600))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", body, err, want)
		}
	}
	for _, tc := range []struct {
		name    string
		o       options
		ps      providerSettings
		want    bool
		wantErr string
	}{
		{"plugin, default", options{pluginPath: "/p", pluginSHA256: pin}, d.provider, true, ""},
		{"software, default", options{}, d.provider, false, ""},
		{"plugin, relaxed for it", options{pluginPath: "/p", pluginSHA256: strings.ToUpper(pin)}, relaxed.provider, false, ""},
		{"plugin, relaxed for another binary", options{pluginPath: "/p", pluginSHA256: other}, relaxed.provider, false, "but --provider-sha256 pins " + other},
		{"software, relaxed", options{}, relaxed.provider, false, "applies only to a provider plugin"},
	} {
		got, err := checkSignatures(&tc.o, tc.ps)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("%s: checkSignatures = %v, %v, want %v", tc.name, got, err, tc.want)
		}
	}
}

// TestPluginDefaultWorkers: with a plugin provider the scheduler runs
// pluginWorkers calls at once by default (they wait on the plugin), with
// an in-process one as many as the CPUs; a configured number wins.
func TestPluginDefaultWorkers(t *testing.T) {
	if got := defaultWorkers(kindPlugin, 2); got != pluginWorkers {
		t.Errorf("plugin, 2 CPUs: %d workers, want %d", got, pluginWorkers)
	}
	if got := defaultWorkers(kindPlugin, 100); got != 100 {
		t.Errorf("plugin, 100 CPUs: %d workers, want 100", got)
	}
	if got := defaultWorkers(kindSoftware, 2); got != 2 {
		t.Errorf("software, 2 CPUs: %d workers, want 2", got)
	}
	if got := withWorkers(server.Scheduler{Workers: 3}, defaultWorkers(kindPlugin, 2)); got.Workers != 3 {
		t.Errorf("configured 3 with a plugin: %d workers", got.Workers)
	}
}
