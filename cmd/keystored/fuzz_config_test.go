package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nexus-os/keystored/server"
)

// tomlBlock matches a ```toml fenced block of a Markdown file.
var tomlBlock = regexp.MustCompile("(?s)```toml\n(.*?)```")

// docConfigs returns every TOML block of the docs and the README: the
// config files operators copy.
func docConfigs(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		tb.Fatal(err)
	}
	files = append(files, "../../README.md")
	var out []string
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatalf("reading %s for seeds: %v", p, err)
		}
		for _, m := range tomlBlock.FindAllSubmatch(data, -1) {
			out = append(out, string(m[1]))
		}
	}
	return out
}

// numericGroup makes a config's socket group numeric (gid 0 exists on
// every machine; a group name may not).
var numericGroup = regexp.MustCompile(`(?m)^socket_group = .*$`)

// TestDocConfigsLoad: every config file of the documentation loads (with
// its socket group made numeric). An operator copies these.
func TestDocConfigsLoad(t *testing.T) {
	docs := docConfigs(t)
	if len(docs) == 0 {
		t.Fatal("no ```toml block in docs/*.md or README.md")
	}
	for i, d := range docs {
		path := filepath.Join(t.TempDir(), "keystored.toml")
		if err := os.WriteFile(path, []byte(numericGroup.ReplaceAllString(d, `socket_group = "0"`)), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadConfig(path); err != nil {
			t.Errorf("documented config %d does not load: %v\n%s", i, err, d)
		}
	}
}

// FuzzConfigFromDocs: the config parser, seeded with the config files of
// the documentation (and each with its socket group made numeric, so that
// it loads on any machine): no input panics it, and whatever it accepts
// is within the documented ranges of docs/operations.md.
func FuzzConfigFromDocs(f *testing.F) {
	docs := docConfigs(f)
	if len(docs) == 0 {
		f.Fatal("empty seed set: no ```toml block in docs/*.md or README.md")
	}
	for _, d := range docs {
		f.Add(d)
		f.Add(numericGroup.ReplaceAllString(d, `socket_group = "0"`))
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "keystored.toml")
	f.Fuzz(func(t *testing.T, body string) {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := loadConfig(path)
		if err != nil {
			if msg := err.Error(); len(msg) > 4096 || strings.Contains(msg, "\x00") {
				t.Fatalf("error message of %d bytes (or with NUL): bound what is quoted", len(msg))
			}
			return
		}
		l := s.limits
		switch {
		case l.MaxConnections < 1 || l.MaxConnections > 1<<20,
			l.MaxConnectionsPerUID < 1 || l.MaxConnectionsPerUID > 1<<20,
			l.MaxConcurrentStreams < 1 || l.MaxConcurrentStreams > 1<<16,
			l.IdleTimeout < time.Second || l.IdleTimeout > 24*time.Hour,
			l.HandshakeTimeout < 100*time.Millisecond || l.HandshakeTimeout > time.Minute,
			s.shutdownTimeout < 0 || s.shutdownTimeout > 10*time.Minute:
			t.Fatalf("accepted limits out of range: %+v, shutdown %v", l, s.shutdownTimeout)
		}
		if sc := s.scheduler; sc.Workers < 0 || sc.Workers > maxWorkers || sc.MaxQueuedPerApp < 0 || sc.MaxQueuedPerApp > maxQueuedPerApp || sc.Nice < -1 || sc.Nice > 19 {
			t.Fatalf("accepted scheduler settings out of range: %+v", sc)
		}
		if err := s.quotas.Check(); err != nil {
			t.Fatalf("accepted quotas that core refuses: %v", err)
		}
		if err := server.CheckSweepInterval(s.sweepInterval); err != nil {
			t.Fatalf("accepted a sweep interval the server refuses: %v", err)
		}
		for _, app := range append([]string{"any-app"}, mapKeys(s.quotas.Apps)...) {
			q := s.quotas.For(app)
			if q.Keys < 1 || q.VersionsPerKey < 1 || q.StoreValues < 1 || q.StoreBytes < 1 {
				t.Fatalf("quota of %s has a field below 1: %+v", app, q)
			}
		}
		if s.socketGID < -1 {
			t.Fatalf("socket gid %d", s.socketGID)
		}
		if s.metricsAddr != "" {
			if _, _, err := net.SplitHostPort(s.metricsAddr); err != nil {
				t.Fatalf("accepted metrics address %q: %v", s.metricsAddr, err)
			}
		}
		for _, uid := range []uint32{0, 1, 1001, 4294967294} {
			c := s.identity.Resolve(server.PeerInfo{UID: uid})
			if !c.Denied && c.App == "" {
				t.Fatalf("uid %d resolves to no app", uid)
			}
		}
	})
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
