package isolation

import (
	"bytes"
	"crypto/hpke"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/e2e/internal/probe"
	"github.com/nexus-os/keystored/internal/daemontest"
)

const (
	nApps = 8
	// baseUID: app-i runs as uid baseUID+i.
	baseUID = 20000
	// unmappedUID is a uid the config does not name (refused everything).
	unmappedUID = baseUID + nApps + 1
	// sockGID is the socket group, every probe's group.
	sockGID = 20000
)

func appName(i int) string   { return "app-" + strconv.Itoa(i) }
func appUID(i int) uint32    { return uint32(baseUID + i) }
func onlyValue(i int) string { return "only-" + strconv.Itoa(i) }
func secretOf(i int) []byte  { return []byte("the shared value of " + appName(i)) }

// keyNames are the keys of every app the matrix targets: an active sign
// key, an active decrypt key, an active MAC key, an active HPKE
// (asymmetric-decrypt) key, an imported key, a revoked key, a destroyed
// key and a key that never exists.
var keyNames = []string{"sig/k", "enc/k", "mac/k", "dec/k", "imp/k", "old/k", "gone/k", "none/k"}

// fixture is what the daemon and the apps' setup produced.
type fixture struct {
	t   *testing.T
	d   *daemontest.Daemon
	bin string // the probe binary, executable by every uid
	// mat is each app's material (by app number); ownerImport each app's
	// import parameters for a new version of its imp/k, opImport the
	// operator's for a new key opimp/k in each app.
	mat         map[int]*material
	ownerImport map[int]importCall
	opImport    map[int]importCall
}

// TestIsolation: 8 apps as 8 real uids, an unmapped uid and the operator;
// every caller × every key of every app (and a missing key in each app's
// namespace) × every Keys RPC, and the Store RPCs: only the owner and the
// operator succeed, everyone else gets EPERM with no state change and one
// audit record per call, and "not yours" reads exactly like "does not
// exist".
func TestIsolation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the isolation matrix runs clients as 8 real uids (SysProcAttr.Credential); run the tests as root")
	}
	f := start(t)
	f.setup()

	before := f.snapshot()
	denied := map[uint32][]step{unmappedUID: f.unmappedScript()}
	for i := 1; i <= nApps; i++ {
		denied[appUID(i)] = f.deniedScript(i)
	}
	outs := f.runAll(denied)
	f.checkDenied(denied, outs)
	if diff := probe.DiffSnapshots(before, f.snapshot()); len(diff) > 0 {
		t.Errorf("refused calls changed the state directory:\n%s", strings.Join(diff, "\n"))
	}

	// The operator first: the owners then rotate and revoke what the
	// operator's script still uses.
	granted := map[uint32][]step{0: f.operatorScript()}
	gouts := f.runAll(granted)
	owners := map[uint32][]step{}
	for i := 1; i <= nApps; i++ {
		owners[appUID(i)] = f.ownerScript(i)
	}
	for uid, o := range f.runAll(owners) {
		granted[uid], gouts[uid] = owners[uid], o
	}
	for uid, steps := range granted {
		f.checkResults(uid, steps, gouts[uid].results)
	}
	f.checkCoverage(denied, granted)

	f.d.Stop()
	if strings.Contains(f.d.Stderr(), "panic") {
		t.Errorf("the daemon's log mentions a panic:\n%s", f.d.Stderr())
	}
	recs, err := probe.ReadAudit(f.d.State)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	f.checkAudit(recs, denied, outs)
	f.checkAudit(recs, granted, gouts)
}

// start writes the config, starts the daemon and copies the probe.
func start(t *testing.T) *fixture {
	pub := publicDir(t)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "unmapped = \"deny\"\noperators = [0]\nsocket_group = \"%d\"\n[apps]\n", sockGID)
	for i := 1; i <= nApps; i++ {
		fmt.Fprintf(&cfg, "%d = %q\n", appUID(i), appName(i))
	}
	// The unmapped uid's script is a burst of hundreds of refused calls,
	// each of which must be audited on its own: above its rate limit
	// they would be refused as a flood (coalesced), which e2e/dos tests.
	cfg.WriteString("[limits]\ndenied_rate = 100000\ndenied_burst = 100000\n")
	cfgPath := filepath.Join(t.TempDir(), "keystored.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, daemontest.Options{
		Socket: filepath.Join(pub, "run", "ks.sock"),
		Args:   []string{"--config", cfgPath, "--log-level", "warn"},
	})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(pub, "probe")
	copyFile(t, exe, bin)
	return &fixture{t: t, d: d, bin: bin, mat: map[int]*material{}, ownerImport: map[int]importCall{}, opImport: map[int]importCall{}}
}

// setup: every app, as its own uid, creates its keys (sig/k, enc/k, mac/k
// by its use, an HPKE dec/k, a revoked old/k, a destroyed gone/k), signs,
// seals and MACs once, puts two values: "shared" (a name every app uses)
// and its own "only-<i>", and asks for three sets of import parameters
// for imp/k. Then each app imports imp/k with the first, and the operator
// asks for import parameters for opimp/k in every app.
func (f *fixture) setup() {
	t := f.t
	jobs := map[uint32][]step{}
	type at struct{ sig, seal, mac, pub int }
	idx := map[int]at{}
	imps := map[int][]int{}
	for i := 1; i <= nApps; i++ {
		s := &script{t: t}
		s.add("setup", keystorev1.Keys_Create_FullMethodName, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"}, "ok")
		s.add("setup", keystorev1.Keys_Create_FullMethodName, &keystorev1.CreateKeyRequest{Key: "enc/k"}, "ok")
		s.add("setup", keystorev1.Keys_Create_FullMethodName, &keystorev1.CreateKeyRequest{Key: "mac/k", Use: "mac"}, "ok")
		s.add("setup", keystorev1.Keys_Create_FullMethodName, &keystorev1.CreateKeyRequest{Key: "dec/k", Algorithm: "hpke-x25519-sha256-chacha20poly1305"}, "ok")
		for _, k := range []string{"old/k", "gone/k"} {
			s.add("setup", keystorev1.Keys_Create_FullMethodName, &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519"}, "ok")
			s.add("setup", keystorev1.Keys_Revoke_FullMethodName, &keystorev1.RevokeKeyRequest{Key: k}, "ok")
		}
		s.add("setup", keystorev1.Keys_Destroy_FullMethodName, &keystorev1.DestroyKeyRequest{Key: "gone/k"}, "ok")
		var x at
		x.sig = len(s.steps)
		s.add("setup", keystorev1.Keys_Sign_FullMethodName, &keystorev1.SignRequest{Key: "sig/k", Message: msg}, "ok")
		x.seal = len(s.steps)
		s.add("setup", keystorev1.Keys_Seal_FullMethodName, &keystorev1.SealRequest{Key: "enc/k", Plaintext: plaintext, Aad: aad}, "ok")
		x.mac = len(s.steps)
		s.add("setup", keystorev1.Keys_Mac_FullMethodName, &keystorev1.MacRequest{Key: "mac/k", Message: msg}, "ok")
		x.pub = len(s.steps)
		s.add("setup", keystorev1.Keys_PublicKey_FullMethodName, &keystorev1.PublicKeyRequest{Key: "dec/k", Version: 1}, "ok")
		for range 3 {
			imps[i] = append(imps[i], len(s.steps))
			s.add("setup", keystorev1.Keys_GetImportParameters_FullMethodName, &keystorev1.GetImportParametersRequest{
				Key: "imp/k", Algorithm: "aes-256-gcm", WrappingAlgorithm: "hpke-x25519-sha256-chacha20poly1305"}, "ok")
		}
		s.add("setup", keystorev1.Store_Put_FullMethodName, &keystorev1.PutValueRequest{Name: "shared", Value: secretOf(i)}, "ok")
		s.add("setup", keystorev1.Store_Put_FullMethodName, &keystorev1.PutValueRequest{Name: onlyValue(i), Value: []byte("x")}, "ok")
		jobs[appUID(i)] = s.steps
		idx[i] = x
	}
	outs := f.runAll(jobs)
	setupImport := map[int]importCall{}
	for i := 1; i <= nApps; i++ {
		uid := appUID(i)
		f.checkResults(uid, jobs[uid], outs[uid].results)
		res := outs[uid].results
		var sig keystorev1.SignResponse
		var sealed keystorev1.SealResponse
		var tag keystorev1.MacResponse
		var pub keystorev1.PublicKeyResponse
		for _, d := range []struct {
			at int
			m  proto.Message
		}{{idx[i].sig, &sig}, {idx[i].seal, &sealed}, {idx[i].mac, &tag}, {idx[i].pub, &pub}} {
			if err := res[d.at].Decode(d.m); err != nil {
				t.Fatal(err)
			}
		}
		if sig.GetKey() != appName(i)+"/sig/k" || len(sig.GetSignature()) != 64 || len(sealed.GetSealed()) == 0 ||
			tag.GetKey() != appName(i)+"/mac/k" || len(tag.GetTag()) != 32 || pub.GetKey() != appName(i)+"/dec/k" || len(pub.GetPublicKey()) != 32 {
			t.Fatalf("%s setup: sign %v, seal %d bytes, mac %v, public key %v", appName(i), &sig, len(sealed.GetSealed()), &tag, &pub)
		}
		m := &material{sig: sig.GetSignature(), sealed: sealed.GetSealed(), tag: tag.GetTag()}
		m.enc, m.ct = hpkeSeal(t, pub.GetKemId(), pub.GetKdfId(), pub.GetAeadId(), pub.GetPublicKey(), hpkeInfo, aad, plaintext)
		calls := make([]importCall, 3)
		for n, at := range imps[i] {
			var p keystorev1.GetImportParametersResponse
			if err := res[at].Decode(&p); err != nil {
				t.Fatal(err)
			}
			calls[n] = wrapFor(t, &p)
		}
		setupImport[i], m.imp, f.ownerImport[i] = calls[0], calls[1], calls[2]
		f.mat[i] = m
	}

	// Each app imports its imp/k; the operator asks for parameters.
	jobs = map[uint32][]step{}
	for i := 1; i <= nApps; i++ {
		s := &script{t: t}
		c := setupImport[i]
		s.add("setup", keystorev1.Keys_Import_FullMethodName, &keystorev1.ImportKeyRequest{Key: "imp/k", Token: c.token, Enc: c.enc, Wrapped: c.wrapped}, "ok")
		jobs[appUID(i)] = s.steps
	}
	op := &script{t: t}
	for j := 1; j <= nApps; j++ {
		op.add("setup", keystorev1.Keys_GetImportParameters_FullMethodName, &keystorev1.GetImportParametersRequest{
			Key: appName(j) + "/opimp/k", Algorithm: "aes-256-gcm"}, "ok") // the default wrapping: the hybrid
	}
	jobs[0] = op.steps
	outs = f.runAll(jobs)
	for uid, steps := range jobs {
		f.checkResults(uid, steps, outs[uid].results)
	}
	for j := 1; j <= nApps; j++ {
		var p keystorev1.GetImportParametersResponse
		if err := outs[0].results[j-1].Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.GetKey() != appName(j)+"/opimp/k" || p.GetWrappingAlgorithm() != "hpke-mlkem768x25519-sha256-aes256gcm" {
			t.Fatalf("operator's import parameters: %v", &p)
		}
		f.opImport[j] = wrapFor(t, &p)
	}
}

// hpkeSeal seals pt to a raw HPKE public key with Go's crypto/hpke (base
// mode).
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
	enc, sender, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		t.Fatal(err)
	}
	if ct, err = sender.Seal(aad, pt); err != nil {
		t.Fatal(err)
	}
	return enc, ct
}

// wrapFor wraps importMaterial to import parameters p.
func wrapFor(t *testing.T, p *keystorev1.GetImportParametersResponse) importCall {
	t.Helper()
	if p.GetToken() == "" {
		t.Fatalf("import parameters without a token: %v", p)
	}
	enc, wrapped := hpkeSeal(t, p.GetKemId(), p.GetKdfId(), p.GetAeadId(), p.GetPublicKey(), p.GetInfo(), nil, importMaterial)
	return importCall{token: p.GetToken(), enc: enc, wrapped: wrapped}
}

// deniedScript is what app i tries on the other apps: every Keys RPC on
// every key of every other app (EPERM; a batch answers OK with the item
// refused), listing another app's keys, and the Store: the same name is
// its own value, the other apps' names do not exist, and a name cannot
// name an app.
func (f *fixture) deniedScript(i int) []step {
	s := &script{t: f.t}
	for j := 1; j <= nApps; j++ {
		if j == i {
			continue
		}
		for _, k := range keyNames {
			id := appName(j) + "/" + k
			for _, v := range keyVariants(id, f.mat[j]) {
				want, item := "EPERM", ""
				if v.batch {
					want, item = "ok", "EPERM"
				}
				st := s.add(v.name, v.method, v.req, want)
				st.target, st.auditKey, st.app, st.item = id, id, appName(j), item
			}
		}
		// An envelope that does not parse is refused before the key is
		// looked at (EBADMSG, whoever owns the key): the same answer for
		// every key, existing or not.
		for _, k := range keyNames {
			id := appName(j) + "/" + k
			st := s.add("keys.unseal-garbage", keystorev1.Keys_Unseal_FullMethodName, &keystorev1.UnsealRequest{Key: id, Sealed: []byte("garbage"), Aad: aad}, "EBADMSG")
			st.target, st.auditKey, st.app = id, id, appName(j)
		}
		// Another app's import token is refused for a key of one's own
		// (EPERM), and stays unspent.
		own := appName(i) + "/imp/k"
		st := s.add("keys.import-token-of-another-app", keystorev1.Keys_Import_FullMethodName, &keystorev1.ImportKeyRequest{
			Key: own, Token: f.mat[j].imp.token, Enc: f.mat[j].imp.enc, Wrapped: f.mat[j].imp.wrapped}, "EPERM")
		st.target, st.auditKey, st.app = own, own, appName(j)
		s.add("keys.list-app", keystorev1.Keys_List_FullMethodName, &keystorev1.ListKeysRequest{App: appName(j)}, "EPERM").app = appName(j)
		s.add("keys.get-usage-app", keystorev1.Keys_GetUsage_FullMethodName, &keystorev1.GetUsageRequest{App: appName(j)}, "EPERM").app = appName(j)
		s.add("store.get-other", keystorev1.Store_Get_FullMethodName, &keystorev1.GetValueRequest{Name: onlyValue(j)}, "ENOENT")
		s.add("store.delete-other", keystorev1.Store_Delete_FullMethodName, &keystorev1.DeleteValueRequest{Name: onlyValue(j)}, "ENOENT")
		s.add("store.get-app-path", keystorev1.Store_Get_FullMethodName, &keystorev1.GetValueRequest{Name: appName(j) + "/shared"}, "EINVAL")
		s.add("store.put-app-path", keystorev1.Store_Put_FullMethodName, &keystorev1.PutValueRequest{Name: appName(j) + "/shared", Value: []byte("x")}, "EINVAL")
		s.add("store.delete-app-path", keystorev1.Store_Delete_FullMethodName, &keystorev1.DeleteValueRequest{Name: "../" + appName(j) + "/shared"}, "EINVAL")
	}
	s.add("store.get-shared", keystorev1.Store_Get_FullMethodName, &keystorev1.GetValueRequest{Name: "shared"}, "ok").check = valueIs(secretOf(i))
	s.add("store.list", keystorev1.Store_List_FullMethodName, &keystorev1.ListValuesRequest{}, "ok").check = valueNamesAre(onlyValue(i), "shared")
	// Identity claimed in the call's metadata is ignored: still EPERM.
	other := i%nApps + 1
	for _, v := range keyVariants(appName(other)+"/sig/k", f.mat[other]) {
		want, item := "EPERM", ""
		if v.batch {
			want, item = "ok", "EPERM"
		}
		st := s.add(v.name, v.method, v.req, want) // compared with the plain refusals
		st.target, st.auditKey, st.app, st.item = appName(other)+"/sig/k", appName(other)+"/sig/k", appName(other), item
		st.call.Metadata = spoofHeaders(other)
	}
	s.add("spoof.store.get", keystorev1.Store_Get_FullMethodName, &keystorev1.GetValueRequest{Name: "shared"}, "ok").check = valueIs(secretOf(i))
	s.steps[len(s.steps)-1].call.Metadata = spoofHeaders(other)
	s.add("keys.list-own", keystorev1.Keys_List_FullMethodName, &keystorev1.ListKeysRequest{}, "ok").check =
		keyIDsAre(appName(i)+"/dec/k", appName(i)+"/enc/k", appName(i)+"/gone/k", appName(i)+"/imp/k", appName(i)+"/mac/k", appName(i)+"/old/k", appName(i)+"/sig/k")
	// Sweeping is for operators: refused to every app.
	s.add("keys.sweep", keystorev1.Keys_Sweep_FullMethodName, &keystorev1.SweepKeysRequest{}, "EPERM")
	return s.steps
}

// spoofHeaders claims, in every way a naive server might read, to be app
// j's uid, or an operator.
func spoofHeaders(j int) map[string]string {
	uid := strconv.Itoa(int(appUID(j)))
	return map[string]string{
		"uid": uid, "x-uid": uid, "keystored-uid": uid, "app": appName(j), "x-keystored-app": appName(j),
		"operator": "true", "x-forwarded-user": "root", "authorization": "Bearer " + appName(j),
	}
}

// unmappedScript: a uid the config does not map is refused everything,
// its "own" short names included, before any handler runs (so a batch is
// refused as a whole).
func (f *fixture) unmappedScript() []step {
	s := &script{t: f.t}
	for j := 0; j <= nApps; j++ {
		for _, k := range keyNames {
			id, app, m := k, "", f.mat[1]
			if j > 0 {
				id, app, m = appName(j)+"/"+k, appName(j), f.mat[j]
			}
			for _, v := range keyVariants(id, m) {
				st := s.add(v.name, v.method, v.req, "EPERM")
				st.target, st.app = id, app
				if st.app == "" {
					st.app = "own"
				}
			}
		}
		if j > 0 {
			s.add("keys.list-app", keystorev1.Keys_List_FullMethodName, &keystorev1.ListKeysRequest{App: appName(j)}, "EPERM").app = appName(j)
			s.add("keys.get-usage-app", keystorev1.Keys_GetUsage_FullMethodName, &keystorev1.GetUsageRequest{App: appName(j)}, "EPERM").app = appName(j)
		}
	}
	s.add("keys.list", keystorev1.Keys_List_FullMethodName, &keystorev1.ListKeysRequest{}, "EPERM")
	s.add("keys.get-usage", keystorev1.Keys_GetUsage_FullMethodName, &keystorev1.GetUsageRequest{}, "EPERM")
	s.add("keys.sweep", keystorev1.Keys_Sweep_FullMethodName, &keystorev1.SweepKeysRequest{}, "EPERM")
	s.add("store.put", keystorev1.Store_Put_FullMethodName, &keystorev1.PutValueRequest{Name: "shared", Value: []byte("x")}, "EPERM")
	s.add("store.get", keystorev1.Store_Get_FullMethodName, &keystorev1.GetValueRequest{Name: "shared"}, "EPERM")
	s.add("store.delete", keystorev1.Store_Delete_FullMethodName, &keystorev1.DeleteValueRequest{Name: "shared"}, "EPERM")
	s.add("store.list", keystorev1.Store_List_FullMethodName, &keystorev1.ListValuesRequest{}, "EPERM")
	s.add("anchors.list", keystorev1.TrustAnchors_ListAnchors_FullMethodName, &keystorev1.ListAnchorsRequest{}, "EPERM")
	return s.steps
}

// operatorScript: the operator (uid 0) uses every app's keys by their full
// IDs, manages a key it creates in each app, and lists every app; its
// Store namespace is its own. It runs before the owners change their keys.
func (f *fixture) operatorScript() []step {
	s := &script{t: f.t}
	for j := 1; j <= nApps; j++ {
		app := appName(j)
		sigID, encID, macID, decID, impID, opID := app+"/sig/k", app+"/enc/k", app+"/mac/k", app+"/dec/k", app+"/imp/k", app+"/op/k"
		s.useKeys(sigID, encID, macID, decID, impID, f.mat[j])
		s.manage(opID)
		c := f.opImport[j]
		s.add("keys.import", keystorev1.Keys_Import_FullMethodName, &keystorev1.ImportKeyRequest{Key: app + "/opimp/k", Token: c.token, Enc: c.enc, Wrapped: c.wrapped}, "ok").check =
			imported(app+"/opimp/k", 1)
		s.add("keys.list-app", keystorev1.Keys_List_FullMethodName, &keystorev1.ListKeysRequest{App: app}, "ok").check =
			keyIDsAre(app+"/dec/k", app+"/enc/k", app+"/gone/k", app+"/imp/k", app+"/mac/k", app+"/old/k", app+"/op/k", app+"/opimp/k", app+"/sig/k")
		s.add("keys.get-usage-app", keystorev1.Keys_GetUsage_FullMethodName, &keystorev1.GetUsageRequest{App: app}, "ok")
	}
	s.add("keys.sweep", keystorev1.Keys_Sweep_FullMethodName, &keystorev1.SweepKeysRequest{}, "ok")
	s.add("keys.list", keystorev1.Keys_List_FullMethodName, &keystorev1.ListKeysRequest{PageSize: 1000}, "ok").check = func(r probe.Result) error {
		var l keystorev1.ListKeysResponse
		if err := r.Decode(&l); err != nil {
			return err
		}
		apps := map[string]int{}
		for _, k := range l.GetKeys() {
			apps[strings.SplitN(k.GetId(), "/", 2)[0]]++
		}
		for j := 1; j <= nApps; j++ {
			if apps[appName(j)] != 9 {
				return fmt.Errorf("operator's list holds %d keys of %s, want 9 (%v)", apps[appName(j)], appName(j), apps)
			}
		}
		return nil
	}
	s.add("store.get-shared", keystorev1.Store_Get_FullMethodName, &keystorev1.GetValueRequest{Name: "shared"}, "ENOENT")
	s.add("store.list", keystorev1.Store_List_FullMethodName, &keystorev1.ListValuesRequest{}, "ok").check = valueNamesAre()
	return s.steps
}

// ownerScript: app i uses and manages its own keys, by short and by full
// ID, and its own values.
func (f *fixture) ownerScript(i int) []step {
	s := &script{t: f.t}
	app := appName(i)
	s.add("keys.get-short", keystorev1.Keys_Get_FullMethodName, &keystorev1.GetKeyRequest{Key: "sig/k"}, "ok").check = keyIDIs(app + "/sig/k")
	s.useKeys(app+"/sig/k", "enc/k", "mac/k", app+"/dec/k", "imp/k", f.mat[i])
	s.useKeys("sig/k", app+"/enc/k", app+"/mac/k", "dec/k", app+"/imp/k", f.mat[i])
	c := f.ownerImport[i]
	s.add("keys.import", keystorev1.Keys_Import_FullMethodName, &keystorev1.ImportKeyRequest{Key: "imp/k", Token: c.token, Enc: c.enc, Wrapped: c.wrapped}, "ok").check =
		imported(app+"/imp/k", 2)
	s.manage("tmp/k")
	s.add("keys.rotate", keystorev1.Keys_Rotate_FullMethodName, &keystorev1.RotateKeyRequest{Key: "sig/k"}, "ok")
	s.add("keys.revoke-version", keystorev1.Keys_RevokeVersion_FullMethodName, &keystorev1.RevokeKeyVersionRequest{Key: app + "/sig/k", Version: 1}, "ok")
	s.add("keys.destroy", keystorev1.Keys_Destroy_FullMethodName, &keystorev1.DestroyKeyRequest{Key: "old/k"}, "ok")
	s.add("keys.list-own", keystorev1.Keys_List_FullMethodName, &keystorev1.ListKeysRequest{}, "ok").check =
		keyIDsAre(app+"/dec/k", app+"/enc/k", app+"/gone/k", app+"/imp/k", app+"/mac/k", app+"/old/k", app+"/op/k", app+"/opimp/k", app+"/sig/k", app+"/tmp/k")
	s.add("keys.list-app", keystorev1.Keys_List_FullMethodName, &keystorev1.ListKeysRequest{App: app}, "ok")
	s.add("keys.get-usage", keystorev1.Keys_GetUsage_FullMethodName, &keystorev1.GetUsageRequest{}, "ok")
	s.add("keys.get-usage-own", keystorev1.Keys_GetUsage_FullMethodName, &keystorev1.GetUsageRequest{App: app}, "ok")
	s.add("store.get-shared", keystorev1.Store_Get_FullMethodName, &keystorev1.GetValueRequest{Name: "shared"}, "ok").check = valueIs(secretOf(i))
	s.add("store.put", keystorev1.Store_Put_FullMethodName, &keystorev1.PutValueRequest{Name: "shared2", Value: []byte("y")}, "ok")
	s.add("store.delete", keystorev1.Store_Delete_FullMethodName, &keystorev1.DeleteValueRequest{Name: onlyValue(i)}, "ok")
	s.add("store.list", keystorev1.Store_List_FullMethodName, &keystorev1.ListValuesRequest{}, "ok").check = valueNamesAre("shared", "shared2")
	return s.steps
}

// useKeys adds every non-destructive use of a sign key, a decrypt key, a
// MAC key, an HPKE key and an imported key, with the material of their
// app (m).
func (s *script) useKeys(sigID, encID, macID, decID, impID string, m *material) {
	sig, sealed, tag := m.sig, m.sealed, m.tag
	s.add("keys.get", keystorev1.Keys_Get_FullMethodName, &keystorev1.GetKeyRequest{Key: encID}, "ok")
	s.add("keys.public-key", keystorev1.Keys_PublicKey_FullMethodName, &keystorev1.PublicKeyRequest{Key: sigID}, "ok")
	s.add("keys.sign", keystorev1.Keys_Sign_FullMethodName, &keystorev1.SignRequest{Key: sigID, Message: msg}, "ok")
	s.add("keys.verify", keystorev1.Keys_Verify_FullMethodName, &keystorev1.VerifyRequest{Key: sigID, Version: 1, Message: msg, Signature: sig}, "ok").check =
		func(r probe.Result) error {
			var v keystorev1.VerifyResponse
			if err := r.Decode(&v); err != nil {
				return err
			}
			if !v.GetValid() {
				return fmt.Errorf("the owner's signature does not verify")
			}
			return nil
		}
	s.add("keys.sign-batch", keystorev1.Keys_SignBatch_FullMethodName, &keystorev1.SignBatchRequest{
		Items: []*keystorev1.SignRequest{{Key: sigID, Message: msg}}}, "ok").item = "ok"
	s.add("keys.seal", keystorev1.Keys_Seal_FullMethodName, &keystorev1.SealRequest{Key: encID, Plaintext: plaintext, Aad: aad}, "ok")
	s.add("keys.unseal", keystorev1.Keys_Unseal_FullMethodName, &keystorev1.UnsealRequest{Key: encID, Sealed: sealed, Aad: aad}, "ok").check =
		func(r probe.Result) error {
			var u keystorev1.UnsealResponse
			if err := r.Decode(&u); err != nil {
				return err
			}
			if !bytes.Equal(u.GetPlaintext(), plaintext) {
				return fmt.Errorf("unseal returned %q", u.GetPlaintext())
			}
			return nil
		}
	s.add("keys.rewrap", keystorev1.Keys_Rewrap_FullMethodName, &keystorev1.RewrapRequest{Key: encID, Sealed: sealed, Aad: aad}, "ok")
	s.add("keys.seal-batch", keystorev1.Keys_SealBatch_FullMethodName, &keystorev1.SealBatchRequest{
		Items: []*keystorev1.SealRequest{{Key: encID, Plaintext: plaintext, Aad: aad}}}, "ok").item = "ok"
	s.add("keys.unseal-batch", keystorev1.Keys_UnsealBatch_FullMethodName, &keystorev1.UnsealBatchRequest{
		Items: []*keystorev1.UnsealRequest{{Key: encID, Sealed: sealed, Aad: aad}}}, "ok").item = "ok"
	s.add("keys.set-policy", keystorev1.Keys_SetPolicy_FullMethodName, &keystorev1.SetKeyPolicyRequest{Key: encID, Policy: &keystorev1.KeyPolicy{}}, "ok")
	s.add("keys.sign@1", keystorev1.Keys_Sign_FullMethodName, &keystorev1.SignRequest{Key: sigID, Version: 1, Message: msg}, "ok")
	s.add("keys.mac", keystorev1.Keys_Mac_FullMethodName, &keystorev1.MacRequest{Key: macID, Message: msg}, "ok").check =
		func(r probe.Result) error {
			var m keystorev1.MacResponse
			if err := r.Decode(&m); err != nil {
				return err
			}
			if !bytes.Equal(m.GetTag(), tag) {
				return fmt.Errorf("mac returned tag %x, want the owner's %x", m.GetTag(), tag)
			}
			return nil
		}
	s.add("keys.verify-mac", keystorev1.Keys_VerifyMac_FullMethodName, &keystorev1.VerifyMacRequest{Key: macID, Version: 1, Message: msg, Tag: tag}, "ok").check =
		func(r probe.Result) error {
			var v keystorev1.VerifyMacResponse
			if err := r.Decode(&v); err != nil {
				return err
			}
			if !v.GetValid() {
				return fmt.Errorf("the owner's tag does not verify")
			}
			return nil
		}
	s.add("keys.mac-batch", keystorev1.Keys_MacBatch_FullMethodName, &keystorev1.MacBatchRequest{
		Items: []*keystorev1.MacRequest{{Key: macID, Message: msg}}}, "ok").item = "ok"
	s.add("keys.verify-mac-batch", keystorev1.Keys_VerifyMacBatch_FullMethodName, &keystorev1.VerifyMacBatchRequest{
		Items: []*keystorev1.VerifyMacRequest{{Key: macID, Version: 1, Message: msg, Tag: tag}}}, "ok").item = "ok"
	s.add("keys.generate-data-key", keystorev1.Keys_GenerateDataKey_FullMethodName, &keystorev1.GenerateDataKeyRequest{Key: encID, Aad: aad}, "ok").check =
		func(r probe.Result) error {
			var d keystorev1.GenerateDataKeyResponse
			if err := r.Decode(&d); err != nil {
				return err
			}
			if len(d.GetPlaintext()) != 32 || len(d.GetSealed()) == 0 {
				return fmt.Errorf("a data key of %d bytes, %d sealed", len(d.GetPlaintext()), len(d.GetSealed()))
			}
			return nil
		}
	s.add("keys.generate-data-key-without-plaintext", keystorev1.Keys_GenerateDataKeyWithoutPlaintext_FullMethodName,
		&keystorev1.GenerateDataKeyRequest{Key: encID, Spec: "aes-128-gcm"}, "ok")
	s.add("keys.decrypt", keystorev1.Keys_Decrypt_FullMethodName, &keystorev1.DecryptRequest{Key: decID, Version: 1, Enc: m.enc, Ciphertext: m.ct, Info: hpkeInfo, Aad: aad}, "ok").check =
		func(r probe.Result) error {
			var d keystorev1.DecryptResponse
			if err := r.Decode(&d); err != nil {
				return err
			}
			if !bytes.Equal(d.GetPlaintext(), plaintext) {
				return fmt.Errorf("decrypt returned %q", d.GetPlaintext())
			}
			return nil
		}
	// Granted parameters leave a token, unused (an app holds up to 16).
	s.add("keys.get-import-parameters", keystorev1.Keys_GetImportParameters_FullMethodName, &keystorev1.GetImportParametersRequest{
		Key: impID, Algorithm: "aes-256-gcm", WrappingAlgorithm: "hpke-x25519-sha256-chacha20poly1305"}, "ok")
}

// imported checks an Import's answer: key id, imported, at version v.
func imported(id string, v uint32) func(probe.Result) error {
	return func(r probe.Result) error {
		var k keystorev1.ImportKeyResponse
		if err := r.Decode(&k); err != nil {
			return err
		}
		if m := k.GetKey(); m.GetId() != id || m.GetOrigin() != "imported" || m.GetCurrentVersion() != v {
			return fmt.Errorf("import answered %v, want %s imported at version %d", m, id, v)
		}
		return nil
	}
}

// manage adds the whole life of a new key: create, set-policy, rotate,
// revoke-version, revoke, destroy.
func (s *script) manage(id string) {
	s.add("keys.create", keystorev1.Keys_Create_FullMethodName, &keystorev1.CreateKeyRequest{Key: id, Algorithm: "ed25519"}, "ok")
	s.add("keys.set-policy", keystorev1.Keys_SetPolicy_FullMethodName, &keystorev1.SetKeyPolicyRequest{Key: id, Policy: &keystorev1.KeyPolicy{RotationPeriodSeconds: 3600}}, "ok")
	s.add("keys.rotate", keystorev1.Keys_Rotate_FullMethodName, &keystorev1.RotateKeyRequest{Key: id}, "ok")
	s.add("keys.revoke-version", keystorev1.Keys_RevokeVersion_FullMethodName, &keystorev1.RevokeKeyVersionRequest{Key: id, Version: 1}, "ok")
	s.add("keys.revoke", keystorev1.Keys_Revoke_FullMethodName, &keystorev1.RevokeKeyRequest{Key: id}, "ok")
	s.add("keys.destroy", keystorev1.Keys_Destroy_FullMethodName, &keystorev1.DestroyKeyRequest{Key: id}, "ok")
}

func valueIs(want []byte) func(probe.Result) error {
	return func(r probe.Result) error {
		var g keystorev1.GetValueResponse
		if err := r.Decode(&g); err != nil {
			return err
		}
		if !bytes.Equal(g.GetValue(), want) {
			return fmt.Errorf("value %q, want %q", g.GetValue(), want)
		}
		return nil
	}
}

func valueNamesAre(want ...string) func(probe.Result) error {
	return func(r probe.Result) error {
		var l keystorev1.ListValuesResponse
		if err := r.Decode(&l); err != nil {
			return err
		}
		if !slices.Equal(l.GetNames(), want) && !(len(want) == 0 && len(l.GetNames()) == 0) {
			return fmt.Errorf("value names %q, want %q", l.GetNames(), want)
		}
		return nil
	}
}

func keyIDIs(want string) func(probe.Result) error {
	return func(r probe.Result) error {
		var g keystorev1.GetKeyResponse
		if err := r.Decode(&g); err != nil {
			return err
		}
		if g.GetKey().GetId() != want {
			return fmt.Errorf("key %q, want %q", g.GetKey().GetId(), want)
		}
		return nil
	}
}

func keyIDsAre(want ...string) func(probe.Result) error {
	return func(r probe.Result) error {
		var l keystorev1.ListKeysResponse
		if err := r.Decode(&l); err != nil {
			return err
		}
		var got []string
		for _, k := range l.GetKeys() {
			got = append(got, k.GetId())
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("listed keys %q, want %q", got, want)
		}
		return nil
	}
}

// outcome is what one probe process returned.
type outcome struct {
	results []probe.Result
	pid     int
}

// runAll runs one probe process per uid, all at once, each making its
// whole script over one connection.
func (f *fixture) runAll(jobs map[uint32][]step) map[uint32]outcome {
	t := f.t
	t.Helper()
	var (
		mu   sync.Mutex
		outs = map[uint32]outcome{}
		errs []error
		wg   sync.WaitGroup
	)
	for uid, steps := range jobs {
		wg.Go(func() {
			o, err := f.runProbe(uid, steps)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("probe as uid %d: %w", uid, err))
				return
			}
			outs[uid] = o
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return outs
}

func (f *fixture) runProbe(uid uint32, steps []step) (outcome, error) {
	calls := make([]probe.Call, len(steps))
	for i, s := range steps {
		calls[i] = s.call
	}
	in, err := json.Marshal(calls)
	if err != nil {
		return outcome{}, err
	}
	cmd := exec.Command(f.bin)
	cmd.Dir = "/"
	cmd.Env = []string{probe.EnvSocket + "=" + f.d.Socket}
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: sockGID, Groups: []uint32{sockGID}}}
	}
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return outcome{}, err
	}
	pid := cmd.Process.Pid
	if err := cmd.Wait(); err != nil {
		return outcome{}, fmt.Errorf("%v\n%s", err, stderr.String())
	}
	var results []probe.Result
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
		return outcome{}, fmt.Errorf("reading results: %v\n%s", err, stderr.String())
	}
	if len(results) != len(steps) {
		return outcome{}, fmt.Errorf("%d results for %d calls", len(results), len(steps))
	}
	return outcome{results: results, pid: pid}, nil
}

// checkResults checks every result of one probe against its script.
func (f *fixture) checkResults(uid uint32, steps []step, results []probe.Result) {
	f.t.Helper()
	bad := 0
	for i, s := range steps {
		if err := checkResult(s, results[i]); err != nil {
			bad++
			if bad <= 20 {
				f.t.Errorf("uid %d, call %d (%s %s): %v", uid, i, s.variant, s.target, err)
			}
		}
	}
	if bad > 20 {
		f.t.Errorf("uid %d: %d calls in all ended wrong", uid, bad)
	}
}

// checkDenied checks the refused calls' results, and that within a
// caller and RPC variant every refusal reads the same once the named key
// and app are replaced: another app's active, revoked, destroyed and
// missing keys are indistinguishable.
func (f *fixture) checkDenied(jobs map[uint32][]step, outs map[uint32]outcome) {
	t := f.t
	total, refused, eperm := 0, 0, 0
	for uid, steps := range jobs {
		f.checkResults(uid, steps, outs[uid].results)
		seen := map[string]string{} // variant → refusal
		first := map[string]string{}
		for i, s := range steps {
			total++
			if s.want == "EPERM" || s.item == "EPERM" {
				eperm++
			}
			r := outs[uid].results[i]
			if s.app == "" {
				continue
			}
			refused++
			got, err := refusal(s, r)
			if err != nil {
				t.Errorf("uid %d %s %s: %v", uid, s.variant, s.target, err)
				continue
			}
			prev, ok := seen[s.variant]
			if !ok {
				seen[s.variant], first[s.variant] = got, s.target+" of "+s.app
				if s.variant == "keys.sign" && uid == appUID(1) {
					t.Logf("app-1 signing with %s gets: %s (%s)", s.target, r.Message, r.Reason)
				}
				continue
			}
			if got != prev {
				t.Errorf("uid %d %s: the refusal for %s differs from the one for %s:\n got  %q\n want %q",
					uid, s.variant, s.target+" of "+s.app, first[s.variant], got, prev)
			}
		}
	}
	t.Logf("refused phase: %d callers, %d calls, %d of them EPERM (a batch's item for batches), %d compared refusals of another app's key or listing",
		len(jobs), total, eperm, refused)
}

// operatorOnly are the Keys RPCs no app may call, on its own keys or any
// other's: the matrix checks every app is refused them and the operator
// granted them.
var operatorOnly = map[string]bool{keystorev1.Keys_Sweep_FullMethodName: true}

// checkCoverage: every Keys RPC was refused to other apps and granted to
// the owner (but the operator-only ones) and the operator; every Store
// RPC was made by every app.
func (f *fixture) checkCoverage(denied, granted map[uint32][]step) {
	t := f.t
	methods := func(steps []step, want string) map[string]bool {
		m := map[string]bool{}
		for _, s := range steps {
			if s.want == want || s.item == want {
				m[s.call.Method] = true
			}
		}
		return m
	}
	for i := 1; i <= nApps; i++ {
		d, g := methods(denied[appUID(i)], "EPERM"), methods(granted[appUID(i)], "ok")
		all := map[string]bool{}
		for _, s := range denied[appUID(i)] {
			all[s.call.Method] = true
		}
		for _, m := range keysRPCs() {
			if !d[m] {
				t.Errorf("%s never tried %s on another app's key", appName(i), m)
			}
			if !g[m] && !operatorOnly[m] {
				t.Errorf("%s never succeeded with %s on its own key", appName(i), m)
			}
		}
		for _, m := range storeRPCs {
			if !all[m] || !g[m] {
				t.Errorf("%s: Store RPC %s not covered", appName(i), m)
			}
		}
	}
	op := methods(granted[0], "ok")
	for _, m := range keysRPCs() {
		if !op[m] {
			t.Errorf("the operator never succeeded with %s", m)
		}
	}
}

// checkAudit: each probe's calls left exactly one audit record each, in
// order, with the caller's uid, the operation, the result and (for keys)
// the key.
func (f *fixture) checkAudit(recs []audit.Record, jobs map[uint32][]step, outs map[uint32]outcome) {
	t := f.t
	checked := 0
	defer func() { t.Logf("%d audit records matched one to one with their calls", checked) }()
	byPID := map[int64][]audit.Record{}
	for _, r := range recs {
		if r.Op == "keys.applied" {
			continue // the core's record of its own after a lifecycle change, not a call's
		}
		byPID[r.Caller.PID] = append(byPID[r.Caller.PID], r)
	}
	for uid, steps := range jobs {
		got := byPID[int64(outs[uid].pid)]
		if len(got) != len(steps) {
			t.Errorf("uid %d (pid %d): %d audit records for %d calls", uid, outs[uid].pid, len(got), len(steps))
			continue
		}
		eperm, wantEPERM := 0, 0
		for i, s := range steps {
			if s.want == "EPERM" {
				wantEPERM++
			}
			if got[i].Result == "EPERM" && got[i].Caller.UID == int64(uid) {
				eperm++
			}
			if got[i].Caller.UID != int64(uid) {
				t.Errorf("uid %d call %d: audit record of uid %d", uid, i, got[i].Caller.UID)
			}
			if err := checkRecord(s, got[i]); err != nil {
				t.Errorf("uid %d call %d (%s %s): %v", uid, i, s.variant, s.target, err)
			} else {
				checked++
			}
		}
		if eperm != wantEPERM {
			t.Errorf("uid %d: %d EPERM audit records, want %d", uid, eperm, wantEPERM)
		}
	}
}

func (f *fixture) snapshot() map[string]string {
	f.t.Helper()
	s, err := probe.Snapshot(f.d.State)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// publicDir returns a new directory every user can traverse (0755).
func publicDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ksiso")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("removing %s: %v", d, err)
		}
	})
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// copyFile copies the executable src to dst, mode 0755.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
}
