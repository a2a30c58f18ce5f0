package leak

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/internal/testbin"
	"github.com/nexus-os/keystored/providers/testseed"
)

// seedHex is the INSECURE seed of the test daemon: every private key of
// the run derives from it, so the test knows them all.
const seedHex = "6b657973746f7265642d6c65616b2d746573742d736565642d30303030303031"

// TestNoKeyMaterialInAnySink runs the workload against the real daemon on
// the testseed provider in process and as a plugin, then searches every
// sink for every private key, the KEK and the seed (0 hits), and the logs
// and the audit log for every canary (0 hits).
func TestNoKeyMaterialInAnySink(t *testing.T) {
	t.Run("in-process", func(t *testing.T) {
		runLeakTest(t, daemontest.InsecureSeed(seedHex), "WARNING: INSECURE")
	})
	t.Run("plugin", func(t *testing.T) {
		bin, sum := testseedPlugin(t)
		runLeakTest(t, []string{"--provider-plugin", bin, "--provider-sha256", sum,
			"--provider-arg", "--insecure", "--provider-arg", "--seed", "--provider-arg", seedHex,
			"--i-understand-this-is-insecure"},
			// The plugin's own start-up warning, forwarded into the daemon's log.
			"keystore-plugin-testseed: INSECURE provider")
	})
}

// testseedPlugin builds cmd/keystore-plugin-testseed (into a directory
// the daemon's StrictModes checks accept) and returns its path and
// SHA-256.
func testseedPlugin(t *testing.T) (string, string) {
	t.Helper()
	pluginBin := testbin.Build(t, "github.com/nexus-os/keystored/cmd/keystore-plugin-testseed")
	data, err := os.ReadFile(pluginBin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return pluginBin, hex.EncodeToString(sum[:])
}

// writeConfig writes the daemon's config: this process's uid is app
// "leak", an operator or not; one trust anchor.
func writeConfig(t *testing.T, dir string, operator bool) string {
	t.Helper()
	anchors := filepath.Join(dir, "anchors")
	if err := os.MkdirAll(anchors, 0o700); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(anchorKey().Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(anchors, "release.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	uid := os.Getuid()
	ops := "[]"
	if operator {
		ops = fmt.Sprintf("[%d]", uid)
	}
	cfg := fmt.Sprintf("unmapped = \"deny\"\noperators = %s\nanchors_dir = %q\n\n[apps]\n%d = \"leak\"\n\n[audit]\nsync = \"every-record\"\n",
		ops, anchors, uid)
	path := filepath.Join(dir, "keystored.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runLeakTest runs the workload on a daemon started with providerArgs;
// wantLog is a line the provider writes to the daemon's log at every start
// (proof that the output searched is the output made).
func runLeakTest(t *testing.T, providerArgs []string, wantLog string) {
	seed, err := hex.DecodeString(seedHex)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	rec := &recorder{}
	var logs []string

	// Phase 1: an operator, every RPC over two apps.
	cfg := writeConfig(t, dir, true)
	args := append([]string{"--config", cfg, "--log-level", "debug"}, providerArgs...)
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state, Args: args})
	w := newWorkload(t, dialRecorded(t, d.Socket, rec))
	w.operatorPhase(t.Context())
	d.Stop()
	logs = append(logs, d.Logs())

	// Phase 2: the same uid as a plain app, after a restart.
	cfg = writeConfig(t, dir, false)
	d = daemontest.Start(t, daemontest.Options{Dir: dir, State: state, Args: args})
	w2 := newWorkload(t, dialRecorded(t, d.Socket, rec))
	w2.tracked, w2.sealed, w2.counter, w2.results, w2.hpke = w.tracked, w.sealed, w.counter, w.results, w.hpke
	w2.appPhase(t.Context())
	d.Stop()
	logs = append(logs, d.Logs())
	w.canaries = append(w.canaries, w2.canaries...)
	w.values = append(w.values, w2.values...)
	w.datakeys = append(w.datakeys, w2.datakeys...)
	if t.Failed() {
		t.FailNow()
	}
	// Every RPC of the four services was called.
	for _, sd := range []grpc.ServiceDesc{keystorev1.Keys_ServiceDesc, keystorev1.Store_ServiceDesc, keystorev1.TrustAnchors_ServiceDesc, keystorev1.Admin_ServiceDesc} {
		for _, m := range sd.Methods {
			if name := "/" + sd.ServiceName + "/" + m.MethodName; rec.methods[name] == 0 {
				t.Errorf("the workload never called %s", name)
			}
		}
	}

	// The secrets: every private key form of every version of every key,
	// the KEK, the seed, and the trust anchor's private key.
	refs := w.refs()
	var secrets []needle
	kek, err := testseed.InsecureKEK(seed)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, needle{"KEK", kek}, needle{"seed", seed},
		needle{"anchor private key", anchorKey()}, needle{"anchor seed", anchorKey().Seed()})
	provName := ""
	formsOf := map[provider.Algorithm]int{} // private key forms by algorithm
	var generated []provider.KeyRef         // testseed made their material; the others were imported
	for _, ref := range refs {
		provName = ref.Provider
		if w.isImported(ref) {
			continue
		}
		generated = append(generated, ref)
		known, err := testseed.InsecureKnownSecrets(seed, ref)
		if err != nil {
			t.Fatalf("secrets of %s: %v", ref, err)
		}
		for i, s := range known {
			secrets = append(secrets, needle{fmt.Sprintf("%s private form %d (%d bytes)", ref, i, len(s)), s})
		}
		formsOf[ref.Algorithm] += len(known)
	}
	if provName != testseed.Name {
		t.Fatalf("keys are served by provider %q, want %q", provName, testseed.Name)
	}
	// Every algorithm of the workload gives the search its private forms
	// (an HMAC key its key; ECDSA its scalar, SEC 1 and PKCS #8 DER; RSA
	// its PKCS #1 and PKCS #8 DER, d, p, q, dp, dq and the prime search's
	// key).
	var perAlg []string
	for _, a := range algorithms {
		if formsOf[a] == 0 {
			t.Errorf("no private key form of %s is searched for", a)
		}
		perAlg = append(perAlg, fmt.Sprintf("%s %d", a, formsOf[a]))
	}
	t.Logf("private key forms by algorithm (over its versions): %s", strings.Join(perAlg, ", "))
	checkSecretsAreReal(t, rec, generated, seed, w.macked)
	// Imported material (checked against the daemon's use of it by the
	// workload) and the import wrapping keys' (checked against their
	// public keys by wrapSecrets).
	wraps := wrapSecrets(t, seed, w.wraps, provName)
	if len(w.imported) == 0 || len(wraps) == 0 {
		t.Fatalf("%d imported material forms and %d wrapping key secrets to search for: want both", len(w.imported), len(wraps))
	}
	secrets = append(append(secrets, w.imported...), wraps...)
	t.Logf("issue 12: %d imported material forms, %d import wrapping key secrets (%d wrapping keys), %d data keys searched for",
		len(w.imported), len(wraps), len(w.wraps), len(w.datakeys))

	// The sinks.
	responses := rec.sinks()
	logSinks := map[string][]byte{"daemon log (operator run)": []byte(logs[0]), "daemon log (app run)": []byte(logs[1])}
	for i, l := range logs {
		if !strings.Contains(l, wantLog) {
			t.Errorf("daemon log %d lacks %q: was the output captured?", i, wantLog)
		}
		if !strings.Contains(l, "op=keys.sign") {
			t.Errorf("daemon log %d lacks the debug request lines: was --log-level debug applied?", i)
		}
	}
	files := stateFiles(t, state)
	auditLog := files["state file audit/audit.jsonl"]
	if bytes.Count(auditLog, []byte("\n")) < rec.calls/2 {
		t.Fatalf("audit log has %d lines for %d calls", bytes.Count(auditLog, []byte("\n")), rec.calls)
	}
	all := map[string][]byte{}
	for _, m := range []map[string][]byte{responses, logSinks, files} {
		for k, v := range m {
			all[k] = v
		}
	}
	s1 := search(t, "secret", secrets, all)

	// Canaries: never in a log or the audit log; plaintexts, AAD and
	// messages not in the state files either (Store values are stored as
	// they are, so they may be).
	logsAndAudit := map[string][]byte{"audit log": auditLog}
	for k, v := range logSinks {
		logsAndAudit[k] = v
	}
	s2 := search(t, "canary", append(append([]needle(nil), w.canaries...), w.values...), logsAndAudit)
	stateNoAudit := map[string][]byte{}
	for k, v := range files {
		if k != "state file audit/audit.jsonl" {
			stateNoAudit[k] = v
		}
	}
	s3 := search(t, "canary", w.canaries, stateNoAudit)
	// Data keys: handed out in responses, never logged, audited or stored.
	if len(w.datakeys) == 0 {
		t.Fatal("the workload made no data keys")
	}
	dkPlaces := map[string][]byte{}
	for _, m := range []map[string][]byte{logSinks, files} {
		for k, v := range m {
			dkPlaces[k] = v
		}
	}
	s4 := search(t, "data key", w.datakeys, dkPlaces)
	found := 0
	for _, v := range w.values {
		for _, f := range files {
			if bytes.Contains(f, v.b) {
				found++
				break
			}
		}
	}
	if found == 0 {
		t.Error("no Store value was found in the state files: is the state search looking at the right directory?")
	}

	t.Logf("workload: %d calls over %d methods, results %v; %d keys, %d key versions", rec.calls, len(rec.methods), w.results, len(w.tracked), len(refs))
	t.Logf("secrets: %d needles (%d private key forms + KEK + seed + anchor key, seed and private key) × %d forms %v × %d places (%d bytes: %d response kinds, 2 daemon logs, %d state files incl. the audit log) = %d searches, %d hits",
		s1.needles, s1.needles-4, len(formNames()), formNames(), s1.places, s1.bytes, len(responses), len(files), s1.searches, s1.hits)
	t.Logf("canaries in logs and audit: %d canaries (%d plaintext/AAD/message, %d Store values) × forms × %d places (%d bytes) = %d searches, %d hits",
		s2.needles, len(w.canaries), len(w.values), s2.places, s2.bytes, s2.searches, s2.hits)
	t.Logf("canaries (not Store values) in state files: %d × forms × %d files = %d searches, %d hits", s3.needles, s3.places, s3.searches, s3.hits)
	t.Logf("data keys in logs, audit and state files: %d × forms × %d places = %d searches, %d hits", s4.needles, s4.places, s4.searches, s4.hits)
}

// checkSecretsAreReal proves the computed secrets are the daemon's: the
// public key each signing version's computed private key gives must be
// the one the daemon returned, and the tag crypto/hmac computes with an
// HMAC version's computed key over a message the daemon MACed (macked,
// by "<key ID>@<version>") must be the one it returned (otherwise a
// search for wrong secrets would pass vacuously).
func checkSecretsAreReal(t *testing.T, rec *recorder, refs []provider.KeyRef, seed []byte, macked map[string][]byte) {
	t.Helper()
	bodies := rec.sinks()["response bodies"]
	checked, macs, hpkes := 0, 0, 0
	for _, ref := range refs {
		if ref.Use == provider.UseAsymmetricDecrypt {
			known, err := testseed.InsecureKnownSecrets(seed, ref)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := alg.Default().Lookup(ref.Algorithm)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := spec.NewDecrypter(known[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(bodies, dec.PublicKey()) {
				t.Errorf("%s: the public key of the computed HPKE private key is in no response: the computed secrets are not the daemon's", ref)
				continue
			}
			hpkes++
			continue
		}
		if ref.Use != provider.UseSign && ref.Use != provider.UseMAC {
			continue
		}
		known, err := testseed.InsecureKnownSecrets(seed, ref)
		if err != nil {
			t.Fatal(err)
		}
		if ref.Use == provider.UseMAC {
			msg, ok := macked[ref.ID.String()+"@"+strconv.FormatUint(uint64(ref.Version), 10)]
			if !ok {
				continue
			}
			h := map[provider.Algorithm]func() hash.Hash{provider.HMACSHA256: sha256.New, provider.HMACSHA384: sha512.New384, provider.HMACSHA512: sha512.New}[ref.Algorithm]
			if h == nil {
				t.Fatalf("%s: no independent HMAC for %s", ref, ref.Algorithm)
			}
			m := hmac.New(h, known[0])
			m.Write(msg)
			if !bytes.Contains(bodies, m.Sum(nil)) {
				t.Errorf("%s: the tag of the computed HMAC key is in no response: the computed secrets are not the daemon's", ref)
				continue
			}
			macs++
			continue
		}
		spec, err := alg.Default().Lookup(ref.Algorithm)
		if err != nil {
			t.Fatal(err)
		}
		s, err := spec.NewSigner(known[0], false)
		if err != nil {
			t.Fatal(err)
		}
		pub := s.PublicKey()
		if ref.Algorithm == provider.Ed25519 && !bytes.Equal(pub, ed25519.PrivateKey(known[1]).Public().(ed25519.PublicKey)) {
			t.Errorf("%s: the expanded private key does not match the seed", ref)
		}
		if !bytes.Contains(bodies, pub) {
			t.Errorf("%s: the public key of the computed private key is in no response: the computed secrets are not the daemon's", ref)
			continue
		}
		checked++
	}
	if checked == 0 || macs == 0 || hpkes == 0 {
		t.Fatalf("%d signing and %d HPKE key versions were checked against the daemon's public keys, %d HMAC key versions against its tags: want each", checked, hpkes, macs)
	}
	t.Logf("%d signing and %d HPKE key versions: computed private keys match the daemon's public keys; %d HMAC key versions: computed keys make the daemon's tags", checked, hpkes, macs)
}
