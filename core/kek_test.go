package core_test

import (
	"bytes"
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/clock"
	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
	"github.com/nexus-os/keystored/core/storage"
	"github.com/nexus-os/keystored/providers/software"
)

// softWithKEK returns a software provider over a KEK of 32 bytes b, and
// its fingerprint.
func softWithKEK(t *testing.T, b byte) (provider.Provider, string) {
	t.Helper()
	p, err := software.New(software.Config{KEK: secret.New(bytes.Repeat([]byte{b}, 32))})
	if err != nil {
		t.Fatal(err)
	}
	info, err := p.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(info.KEKs) != 1 || len(info.KEKs[0]) != 16 {
		t.Fatalf("software provider announces KEKs %q, want one 16-hex-character fingerprint", info.KEKs)
	}
	return p, info.KEKs[0]
}

// noKEKs hides a provider's KEKs, as a provider from before Info.KEKs (or
// one whose handles are not wrapped under a KEK) announces.
type noKEKs struct{ provider.Provider }

func (p noKEKs) Info(ctx context.Context) (provider.Info, error) {
	i, err := p.Provider.Info(ctx)
	i.KEKs = nil
	return i, err
}

func openWith(st core.Storage, p provider.Provider) (*core.Keystore, error) {
	return core.Open(context.Background(), core.Config{Storage: st, Provider: p, Clock: clock.NewFake(epoch), Audit: &recorder{}})
}

func inspect(t *testing.T, st core.Storage) core.StateInfo {
	t.Helper()
	si, err := core.Inspect(context.Background(), st)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return si
}

// TestManifestKEK: the MANIFEST records the KEK of the first open; the
// same KEK opens the state again and its keys work; another KEK (the
// KEK file replaced by a fresh one) is refused with EIO naming both
// fingerprints, and changes nothing.
func TestManifestKEK(t *testing.T) {
	st := storage.NewMemory()
	pA, fpA := softWithKEK(t, 0xa1)
	ks, err := openWith(st, pA)
	if err != nil {
		t.Fatal(err)
	}
	id := mustID(t, "app-a/sign/k")
	if _, err := ks.Create(ctx, appA, id, core.CreateOptions{Algorithm: provider.Ed25519}); err != nil {
		t.Fatal(err)
	}
	if si := inspect(t, st); si != (core.StateInfo{HoldsKeys: true, HoldsAppKeys: true, Provider: "software", Secure: true, KEK: fpA}) {
		t.Errorf("Inspect = %+v, want keys, software, secure, KEK %s", si, fpA)
	}

	again, _ := softWithKEK(t, 0xa1)
	ks, err = openWith(st, again)
	if err != nil {
		t.Fatalf("reopening with the same KEK: %v", err)
	}
	if _, err := ks.Sign(ctx, appA, id, []byte("m")); err != nil {
		t.Fatalf("sign after reopening with the same KEK: %v", err)
	}

	before := st.Snapshot()
	pB, fpB := softWithKEK(t, 0xb2)
	_, err = openWith(st, pB)
	wantCode(t, "open under another KEK", err, provider.EIO)
	for _, part := range []string{"wrapped under KEK " + fpA, "keystore/MANIFEST", "the provider holds KEK " + fpB, "restore the KEK"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("refusal %q does not say %q", err, part)
		}
	}
	if !maps.EqualFunc(before, st.Snapshot(), bytes.Equal) {
		t.Error("a refused open changed the state")
	}
}

// TestManifestKEKRecordedLate: a state whose MANIFEST records no KEK (made
// before KEKs were recorded) gets the provider's first KEK at the next
// open, and is from then on refused under another KEK. A provider that
// announces no KEK is not checked.
func TestManifestKEKRecordedLate(t *testing.T) {
	st := storage.NewMemory()
	pA, fpA := softWithKEK(t, 0xa1)
	if _, err := openWith(st, noKEKs{pA}); err != nil {
		t.Fatal(err)
	}
	if si := inspect(t, st); si.KEK != "" || si.HoldsKeys || si.Provider != "software" {
		t.Fatalf("Inspect after an open without KEKs = %+v, want no KEK recorded, no keys", si)
	}
	if _, err := openWith(st, pA); err != nil {
		t.Fatalf("open of a state without a recorded KEK: %v", err)
	}
	if got := inspect(t, st).KEK; got != fpA {
		t.Fatalf("recorded KEK = %q, want %s", got, fpA)
	}
	pB, _ := softWithKEK(t, 0xb2)
	_, err := openWith(st, pB)
	wantCode(t, "open under another KEK after recording", err, provider.EIO)
	// Without KEKs announced nothing is checked (and nothing rewritten).
	before := st.Snapshot()
	if _, err := openWith(st, noKEKs{pB}); err != nil {
		t.Fatalf("open with a provider that announces no KEK: %v", err)
	}
	if !maps.EqualFunc(before, st.Snapshot(), bytes.Equal) {
		t.Error("an open with a provider that announces no KEK changed the state")
	}
}

// TestManifestKEKAmongSeveral: a recorded KEK anywhere in the provider's
// list (a provider that holds an old and a new KEK) opens the state.
func TestManifestKEKAmongSeveral(t *testing.T) {
	st := storage.NewMemory()
	pA, fpA := softWithKEK(t, 0xa1)
	if _, err := openWith(st, pA); err != nil {
		t.Fatal(err)
	}
	two := kekList{pA, []string{"00000000000000ff", fpA}}
	if _, err := openWith(st, two); err != nil {
		t.Fatalf("open with the recorded KEK second in the list: %v", err)
	}
	if got := inspect(t, st).KEK; got != fpA {
		t.Errorf("recorded KEK changed to %q by an open, want %s", got, fpA)
	}
}

// kekList announces the given KEKs.
type kekList struct {
	provider.Provider
	keks []string
}

func (p kekList) Info(ctx context.Context) (provider.Info, error) {
	i, err := p.Provider.Info(ctx)
	i.KEKs = append([]string(nil), p.keks...)
	return i, err
}

// TestManifestKEKMalformed: a recorded KEK that is not a fingerprint is
// a damaged MANIFEST (EIO), for Open and Inspect alike.
func TestManifestKEKMalformed(t *testing.T) {
	st := storage.NewMemory()
	m, err := core.EncodeManifest("software", true, "NOT-HEX")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WriteFile("keystore/MANIFEST", m); err != nil {
		t.Fatal(err)
	}
	pA, _ := softWithKEK(t, 0xa1)
	_, err = openWith(st, pA)
	wantCode(t, "open", err, provider.EIO)
	_, err = core.Inspect(context.Background(), st)
	wantCode(t, "inspect", err, provider.EIO)
}

// TestInspectNeverWrites: Inspect of an empty state, of a MANIFEST alone
// and of a state with keys reports what is there and writes nothing.
func TestInspectNeverWrites(t *testing.T) {
	st := storage.NewMemory()
	if si := inspect(t, st); si != (core.StateInfo{}) {
		t.Errorf("Inspect of an empty state = %+v, want the zero StateInfo", si)
	}
	if n := len(st.Snapshot()); n != 0 {
		t.Errorf("Inspect of an empty state wrote %d files", n)
	}
	m, err := core.EncodeManifest("software", true, "0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WriteFile("keystore/MANIFEST", m); err != nil {
		t.Fatal(err)
	}
	if si := inspect(t, st); si != (core.StateInfo{Provider: "software", Secure: true, KEK: "0123456789abcdef"}) {
		t.Errorf("Inspect of a MANIFEST alone = %+v", si)
	}
	if err := st.WriteFile("keystore/app-a/sign/k/meta.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	before := st.Snapshot()
	if si := inspect(t, st); !si.HoldsKeys {
		t.Errorf("Inspect of a state with a key directory = %+v, want HoldsKeys", si)
	}
	if !maps.EqualFunc(before, st.Snapshot(), bytes.Equal) {
		t.Error("Inspect changed the state")
	}
	if _, err := core.Inspect(context.Background(), nil); codeOf(err) != provider.EINVAL {
		t.Errorf("Inspect(nil) = %v, want EINVAL", err)
	}
}

// TestStateCheckProvider: StateInfo.CheckProvider makes Open's checks
// without a provider: no MANIFEST admits anyone; another name or Secure
// flag is EPERM; a recorded KEK missing from announced KEKs is EIO; no
// announced KEKs checks no KEK.
func TestStateCheckProvider(t *testing.T) {
	soft := provider.Info{Name: "software", Secure: true}
	rec := core.StateInfo{HoldsKeys: true, Provider: "software", Secure: true, KEK: "00000000000000aa"}
	for _, tc := range []struct {
		name string
		s    core.StateInfo
		info provider.Info
		want provider.Code
	}{
		{"new state", core.StateInfo{}, soft, 0},
		{"same provider, no KEKs announced", rec, soft, 0},
		{"recorded KEK announced", rec, provider.Info{Name: "software", Secure: true, KEKs: []string{"00000000000000aa"}}, 0},
		{"other KEK", rec, provider.Info{Name: "software", Secure: true, KEKs: []string{"00000000000000bb"}}, provider.EIO},
		{"other name", rec, provider.Info{Name: "other", Secure: true}, provider.EPERM},
		{"insecure state", core.StateInfo{Provider: "testseed"}, soft, provider.EPERM},
	} {
		if got := codeOf(tc.s.CheckProvider(tc.info)); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
