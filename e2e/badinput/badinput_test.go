package badinput

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/e2e/internal/probe"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/server"
)

// outcome is how a request must end.
type outcome struct {
	// code is the error's code; 0 means the call succeeds.
	code provider.Code
	// items are, for a batch that succeeds, each item's code (0: the item
	// succeeds).
	items []provider.Code
	// transport marks a request gRPC's transport refuses before any
	// handler (a frame over the daemon's limit): its status carries no
	// keystored ErrorInfo, and the client maps the gRPC code to the
	// provider code.
	transport bool
	// check makes more checks of a success's response.
	check func(resp []byte) error
}

func ok() outcome                          { return outcome{} }
func fails(c provider.Code) outcome        { return outcome{code: c} }
func batch(c ...provider.Code) outcome     { return outcome{items: c} }
func checked(f func([]byte) error) outcome { return outcome{check: f} }

// request is one call of a class.
type request struct {
	note string
	call probe.Call
	want outcome
}

// class is one kind of bad input; build returns its requests against
// every RPC where it makes sense.
type class struct {
	name  string
	build func(e *env)
}

// env holds what the classes build requests from, and collects them.
type env struct {
	t *testing.T
	// sig and sig2 are signatures of msg by sig/k and sig/k2 (version 1);
	// anchorSig is one by the trust anchor "root".
	sig, sig2, anchorSig []byte
	// sealed is plaintext sealed by enc/k with aad; sealed2 by enc/k2;
	// sealedC by enc/c (chacha20-poly1305).
	sealed, sealed2, sealedC []byte
	// tag and tag2 are the tags of msg by mac/k and mac/k2 (hmac-sha256,
	// version 1); sigEC is a signature of msg by sig/ec (ECDSA P-256) and
	// digest msg's SHA-256, the digest sig/ec signs.
	tag, tag2, sigEC, digest []byte
	// hpkeEnc and hpkeCT are an HPKE message of plaintext to dec/k
	// (hpke-x25519, version 1) with info hpkeInfo and aad; hpkeCT2 one
	// to dec/old (revoked).
	hpkeEnc, hpkeCT, hpkeEnc2, hpkeCT2 []byte
	// imports are import parameters issued at setup, by key name: each
	// is spent by the import-input class.
	imports map[string]*keystorev1.GetImportParametersResponse
	reqs    []request
}

var (
	msg       = []byte("m")
	plaintext = []byte("payload")
	aad       = []byte("aad")
	hpkeInfo  = []byte("info")
)

// add adds a request built from a message.
func (e *env) add(note, method string, m proto.Message, want outcome) {
	e.t.Helper()
	c, err := probe.NewCall(method, m)
	if err != nil {
		e.t.Fatal(err)
	}
	e.reqs = append(e.reqs, request{note: note, call: c, want: want})
}

// raw adds a request given as wire bytes.
func (e *env) raw(note, method string, body []byte, want outcome) {
	e.reqs = append(e.reqs, request{note: note, call: probe.Call{Method: method, Request: body}, want: want})
}

// TestBadInput runs every class against a real daemon: each request ends
// as its outcome says (a typed error that errors.Is recognises, or the
// documented answer), the daemon keeps serving (a sign works after each
// class and its log never mentions a panic), the state directory does not
// change, and every request leaves exactly one audit record.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfg := writeConfig(t, dir)
	d := daemontest.Start(t, daemontest.Options{Dir: dir, State: state, Args: []string{"--config", cfg, "--log-level", "warn"}})
	conn, err := probe.Dial(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	})
	e := setup(t, conn)
	r := &runner{t: t, d: d, conn: conn, state: state, pairs: map[string]map[string]int{}, sent: map[string]int{}}
	r.off, r.setupRecords = r.auditOffset()
	for _, c := range classes {
		r.run(c, e)
	}

	// The summary: classes, (RPC, class) pairs, requests.
	var lines []string
	pairs, requests := 0, 0
	for _, c := range classes {
		m := r.pairs[c.name]
		var rpcs []string
		for rpc := range m {
			rpcs = append(rpcs, strings.TrimPrefix(rpc, "/keystore.v1."))
		}
		n := r.sent[c.name]
		sort.Strings(rpcs)
		pairs += len(m)
		requests += n
		lines = append(lines, fmt.Sprintf("%-20s %3d RPCs %5d requests  %s", c.name, len(m), n, strings.Join(rpcs, " ")))
	}
	t.Logf("bad-input table: %d classes, %d (RPC, class) pairs, %d requests\n%s", len(classes), pairs, requests, strings.Join(lines, "\n"))
	if len(classes) < minClasses || pairs < minPairs {
		t.Errorf("the table covers %d classes and %d (RPC, class) pairs, want at least %d and %d", len(classes), pairs, minClasses, minPairs)
	}
	rpcs := map[string]bool{}
	for _, m := range r.pairs {
		for rpc := range m {
			rpcs[rpc] = true
		}
	}
	for _, svc := range []grpc.ServiceDesc{keystorev1.Keys_ServiceDesc, keystorev1.Store_ServiceDesc, keystorev1.TrustAnchors_ServiceDesc, keystorev1.Admin_ServiceDesc} {
		for _, m := range svc.Methods {
			if full := "/" + svc.ServiceName + "/" + m.MethodName; !rpcs[full] {
				t.Errorf("no bad input sent to %s", full)
			}
		}
	}

	d.Stop()
	if strings.Contains(d.Stderr(), "panic") {
		t.Errorf("the daemon's log mentions a panic:\n%s", d.Stderr())
	}
	recs, err := probe.ReadAudit(state)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	recs = slices.DeleteFunc(recs, func(rec audit.Record) bool { return strings.HasPrefix(rec.Op, "audit.") })
	if want := r.setupRecords + r.requests; len(recs) != want {
		t.Errorf("audit log holds %d records besides its own checkpoints, want %d (%d for the setup, one per request)", len(recs), want, r.setupRecords)
	}
}

// Thresholds of the table's coverage.
const (
	minClasses = 25
	minPairs   = 400
)

// writeConfig writes the daemon's config: uid 0 an operator, one trust
// anchor "root".
func writeConfig(t *testing.T, dir string) string {
	anchors := filepath.Join(dir, "anchors")
	if err := os.Mkdir(anchors, 0o755); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(anchorKey().Public())
	if err != nil {
		t.Fatal(err)
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := os.WriteFile(filepath.Join(anchors, "root.pem"), pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "keystored.toml")
	body := fmt.Sprintf("operators = [0]\nunmapped = \"uid\"\nanchors_dir = %q\n", anchors)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// anchorKey is the trust anchor's key (a fixed test seed).
func anchorKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed([]byte("badinput test anchor seed, 32 by"))
}

// setup creates the keys and values the classes use and returns the env.
func setup(t *testing.T, conn *grpc.ClientConn) *env {
	e := &env{t: t}
	call := func(method string, req proto.Message, resp proto.Message) {
		t.Helper()
		c, err := probe.NewCall(method, req)
		if err != nil {
			t.Fatal(err)
		}
		r := probe.Invoke(context.Background(), conn, c)
		if !r.OK() {
			t.Fatalf("setup %s: %s (%s)", method, r.Message, r.Reason)
		}
		if resp != nil {
			if err := r.Decode(resp); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []struct{ name, alg, use string }{
		{"sig/k", "ed25519", ""}, {"sig/k2", "ed25519", ""}, {"sig/old", "ed25519", ""}, {"sig/ec", "ecdsa-p256-sha256", ""},
		{"enc/k", "", ""}, {"enc/k2", "", ""}, {"enc/c", "chacha20-poly1305", ""}, {"enc/old", "", ""},
		{"mac/k", "", "mac"}, {"mac/k2", "hmac-sha256", ""}, {"mac/old", "hmac-sha256", "mac"},
		{"dec/k", "hpke-x25519-sha256-chacha20poly1305", ""}, {"dec/old", "", "asymmetric-decrypt"},
	} {
		call(keystorev1.Keys_Create_FullMethodName, &keystorev1.CreateKeyRequest{Key: k.name, Algorithm: k.alg, Use: k.use}, nil)
	}
	var sig, sig2, sigEC keystorev1.SignResponse
	call(keystorev1.Keys_Sign_FullMethodName, &keystorev1.SignRequest{Key: "sig/k", Message: msg}, &sig)
	call(keystorev1.Keys_Sign_FullMethodName, &keystorev1.SignRequest{Key: "sig/k2", Message: msg}, &sig2)
	call(keystorev1.Keys_Sign_FullMethodName, &keystorev1.SignRequest{Key: "sig/ec", Message: msg}, &sigEC)
	e.sig, e.sig2, e.sigEC = sig.GetSignature(), sig2.GetSignature(), sigEC.GetSignature()
	d := sha256.Sum256(msg)
	e.digest = d[:]
	var tag, tag2 keystorev1.MacResponse
	call(keystorev1.Keys_Mac_FullMethodName, &keystorev1.MacRequest{Key: "mac/k", Message: msg}, &tag)
	call(keystorev1.Keys_Mac_FullMethodName, &keystorev1.MacRequest{Key: "mac/k2", Message: msg}, &tag2)
	e.tag, e.tag2 = tag.GetTag(), tag2.GetTag()
	if len(e.tag) != 32 || bytes.Equal(e.tag, e.tag2) {
		t.Fatalf("setup: tags %x and %x, want two different 32-byte tags", e.tag, e.tag2)
	}
	e.anchorSig = ed25519.Sign(anchorKey(), msg)
	var s1, s2, sc keystorev1.SealResponse
	call(keystorev1.Keys_Seal_FullMethodName, &keystorev1.SealRequest{Key: "enc/k", Plaintext: plaintext, Aad: aad}, &s1)
	call(keystorev1.Keys_Seal_FullMethodName, &keystorev1.SealRequest{Key: "enc/k2", Plaintext: plaintext, Aad: aad}, &s2)
	call(keystorev1.Keys_Seal_FullMethodName, &keystorev1.SealRequest{Key: "enc/c", Plaintext: plaintext, Aad: aad}, &sc)
	e.sealed, e.sealed2, e.sealedC = s1.GetSealed(), s2.GetSealed(), sc.GetSealed()
	var pub, pubOld keystorev1.PublicKeyResponse
	call(keystorev1.Keys_PublicKey_FullMethodName, &keystorev1.PublicKeyRequest{Key: "dec/k"}, &pub)
	call(keystorev1.Keys_PublicKey_FullMethodName, &keystorev1.PublicKeyRequest{Key: "dec/old"}, &pubOld)
	e.hpkeEnc, e.hpkeCT = hpkeSeal(t, pub.GetKemId(), pub.GetKdfId(), pub.GetAeadId(), pub.GetPublicKey(), hpkeInfo, aad, plaintext)
	e.hpkeEnc2, e.hpkeCT2 = hpkeSeal(t, pubOld.GetKemId(), pubOld.GetKdfId(), pubOld.GetAeadId(), pubOld.GetPublicKey(), hpkeInfo, aad, plaintext)
	for _, k := range []string{"sig/old", "enc/old", "mac/old", "dec/old"} {
		call(keystorev1.Keys_Revoke_FullMethodName, &keystorev1.RevokeKeyRequest{Key: k}, nil)
	}
	// An imported key, and import parameters for the import-input class
	// (tokens live in memory: the state directory does not change).
	e.imports = map[string]*keystorev1.GetImportParametersResponse{}
	for _, k := range []struct{ name, alg string }{{"imp/k", "aes-256-gcm"}, {"imp/a", "aes-256-gcm"}, {"imp/c", "aes-256-gcm"}, {"imp/d", "ed25519"}} {
		var p keystorev1.GetImportParametersResponse
		call(keystorev1.Keys_GetImportParameters_FullMethodName, &keystorev1.GetImportParametersRequest{Key: k.name, Algorithm: k.alg, WrappingAlgorithm: "hpke-x25519-sha256-chacha20poly1305"}, &p)
		e.imports[k.name] = &p
	}
	enc, wrapped := wrapTo(t, e.imports["imp/k"], bytes.Repeat([]byte{0x11}, 32))
	call(keystorev1.Keys_Import_FullMethodName, &keystorev1.ImportKeyRequest{Key: "imp/k", Token: e.imports["imp/k"].GetToken(), Enc: enc, Wrapped: wrapped}, nil)
	call(keystorev1.Store_Put_FullMethodName, &keystorev1.PutValueRequest{Name: "v", Value: []byte("value")}, nil)
	return e
}

// hpkeSeal seals pt to the raw public key of the suite with Go's
// crypto/hpke (base mode).
func hpkeSeal(t *testing.T, kemID, kdfID, aeadID uint32, pub, info, aad, pt []byte) (enc, ct []byte) {
	t.Helper()
	kem, err := hpke.NewKEM(uint16(kemID))
	if err != nil {
		t.Fatal(err)
	}
	kdf, err := hpke.NewKDF(uint16(kdfID))
	if err != nil {
		t.Fatal(err)
	}
	aead, err := hpke.NewAEAD(uint16(aeadID))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	enc, s, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		t.Fatal(err)
	}
	ct, err = s.Seal(aad, pt)
	if err != nil {
		t.Fatal(err)
	}
	return enc, ct
}

// wrapTo wraps key material to import parameters p (their info, no aad).
func wrapTo(t *testing.T, p *keystorev1.GetImportParametersResponse, material []byte) (enc, wrapped []byte) {
	t.Helper()
	return hpkeSeal(t, p.GetKemId(), p.GetKdfId(), p.GetAeadId(), p.GetPublicKey(), p.GetInfo(), nil, material)
}

// runner runs the classes and keeps the tally.
type runner struct {
	t     *testing.T
	d     *daemontest.Daemon
	conn  *grpc.ClientConn
	state string
	// off is the audit log's offset after the last class's records.
	off          int64
	setupRecords int
	requests     int                       // requests sent, sanity signs included
	pairs        map[string]map[string]int // class → RPC of keystore.v1 → requests
	sent         map[string]int            // class → requests
}

// auditOffset returns the audit log's size and record count now.
func (r *runner) auditOffset() (int64, int) {
	recs, off, err := probe.ReadAuditFrom(r.state, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	recs = slices.DeleteFunc(recs, func(rec audit.Record) bool { return strings.HasPrefix(rec.Op, "audit.") })
	return off, len(recs)
}

// run sends one class's requests and checks them.
func (r *runner) run(c class, e *env) {
	t := r.t
	e.reqs = nil
	c.build(e)
	n := len(e.reqs)
	if n == 0 {
		t.Errorf("class %s has no requests", c.name)
		return
	}
	before, err := probe.Snapshot(r.state)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	r.pairs[c.name] = m
	r.sent[c.name] = n
	var want []string
	bad := 0
	for _, req := range e.reqs {
		if server.OpName(req.call.Method) != "unknown" {
			m[req.call.Method]++
		}
		res := probe.Invoke(context.Background(), r.conn, req.call)
		if err := checkResult(req, res); err != nil {
			bad++
			if bad <= 10 {
				t.Errorf("%s: %s %s: %v", c.name, req.call.Method, req.note, err)
			}
		}
		want = append(want, expectedRecord(req, res))
	}
	if bad > 10 {
		t.Errorf("%s: %d requests in all ended wrong", c.name, bad)
	}
	// Still serving.
	sanity := request{note: "sign after the class", want: ok()}
	sanity.call, err = probe.NewCall(keystorev1.Keys_Sign_FullMethodName, &keystorev1.SignRequest{Key: "sig/k", Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	res := probe.Invoke(context.Background(), r.conn, sanity.call)
	if err := checkResult(sanity, res); err != nil {
		t.Fatalf("%s: the daemon no longer signs: %v\n%s", c.name, err, r.d.Logs())
	}
	want = append(want, expectedRecord(sanity, res))
	r.requests += len(e.reqs) + 1

	after, err := probe.Snapshot(r.state)
	if err != nil {
		t.Fatal(err)
	}
	if diff := probe.DiffSnapshots(before, after); len(diff) > 0 {
		t.Errorf("%s changed the state directory:\n%s", c.name, strings.Join(diff, "\n"))
	}
	r.checkAudit(c.name, want)
}

// checkAudit waits for the class's records (a request the transport
// refuses is audited when its stream ends, which may be just after the
// client has its answer) and compares them with the expected ones, as
// multisets of "op result items failed".
func (r *runner) checkAudit(name string, want []string) {
	t := r.t
	var got []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs, off, err := probe.ReadAuditFrom(r.state, r.off)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if strings.HasPrefix(rec.Op, "audit.") {
				continue // the log's own (a signed checkpoint every 1000 records)
			}
			got = append(got, recordKey(rec))
		}
		r.off = off
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: %d audit records, want %d (one per request); differences:\n%s", name, len(got), len(want), multisetDiff(want, got))
	}
}

func recordKey(rec audit.Record) string {
	return fmt.Sprintf("%s %s items=%d failed=%d", rec.Op, rec.Result, rec.Items, rec.Failed)
}

// expectedRecord is the audit record a request must leave.
func expectedRecord(req request, res probe.Result) string {
	result, items, failed := "ok", 0, 0
	if req.want.code != 0 {
		result = req.want.code.String()
	} else if req.want.items != nil {
		items = len(req.want.items)
		for _, c := range req.want.items {
			if c != 0 {
				failed++
			}
		}
	}
	return fmt.Sprintf("%s %s items=%d failed=%d", server.OpName(req.call.Method), result, items, failed)
}

func multisetDiff(want, got []string) string {
	count := map[string]int{}
	for _, w := range want {
		count[w]++
	}
	for _, g := range got {
		count[g]--
	}
	var out []string
	for k, n := range count {
		switch {
		case n > 0:
			out = append(out, fmt.Sprintf("  missing %d× %s", n, k))
		case n < 0:
			out = append(out, fmt.Sprintf("  extra   %d× %s", -n, k))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// checkResult checks one request's result against its outcome.
func checkResult(req request, res probe.Result) error {
	w := req.want
	if w.code == 0 {
		if !res.OK() {
			return fmt.Errorf("got %s (%q), want success", res.Reason, res.Message)
		}
		if w.items != nil {
			items, err := probe.BatchErrors(req.call.Method, res.Response)
			if err != nil {
				return err
			}
			if len(items) != len(w.items) {
				return fmt.Errorf("%d batch results, want %d", len(items), len(w.items))
			}
			for i, it := range items {
				got := "ok"
				if it != nil {
					got = it.GetReason()
				}
				want := "ok"
				if w.items[i] != 0 {
					want = w.items[i].String()
				}
				if got != want {
					return fmt.Errorf("batch item %d: got %s (%q), want %s", i, got, it.GetMessage(), want)
				}
			}
		}
		if w.check != nil {
			return w.check(res.Response)
		}
		return nil
	}
	if res.OK() {
		return fmt.Errorf("succeeded, want %s", w.code)
	}
	if err := res.Err(); !errors.Is(err, w.code) {
		return fmt.Errorf("client error %v: errors.Is(err, %s) is false", err, w.code)
	}
	if res.Code != rpcerr.GRPCCode(w.code) {
		return fmt.Errorf("gRPC code %v, want %v", res.Code, rpcerr.GRPCCode(w.code))
	}
	if !w.transport && res.Reason != w.code.String() {
		return fmt.Errorf("status reason %q (%q), want %s: an untyped error", res.Reason, res.Message, w.code)
	}
	return nil
}

// valid checks a Verify, VerifyMac or anchor Verify answer.
func valid(want bool) outcome {
	return checked(func(b []byte) error {
		var v keystorev1.VerifyResponse // same wire shape as VerifyAnchorResponse and VerifyMacResponse
		if err := proto.Unmarshal(b, &v); err != nil {
			return err
		}
		if v.GetValid() != want {
			return fmt.Errorf("valid = %v, want %v", v.GetValid(), want)
		}
		return nil
	})
}
