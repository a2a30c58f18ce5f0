package sshagent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/sshagent"
)

// fixture is a real keystored server (clienttest), a client of it, and
// the agent served on a real socket, reached through x/crypto's agent
// client as ssh would.
type fixture struct {
	srv   *clienttest.Server
	c     *client.Client
	agent *sshagent.Agent
	ag    agent.ExtendedAgent // the x/crypto client, over the socket
	sock  string
}

// keys every fixture creates: what the zero Selection offers is marked.
var fixtureKeys = []struct {
	name    string
	alg     client.Algorithm
	revoked bool
}{
	{"ssh/login", client.Ed25519, false},   // offered
	{"ssh/git", client.Ed25519, false},     // offered
	{"deploy/prod", client.Ed25519, false}, // offered
	{"ssh/old", client.Ed25519, true},      // revoked: not offered
	{"db/rows", client.XChaCha20Poly1305, false},
	{"sig/ed448", client.Ed448, false},
	{"sig/mldsa", client.MLDSA44, false},
}

func newFixture(t *testing.T, sel sshagent.Selection) *fixture {
	t.Helper()
	ctx := t.Context()
	srv := clienttest.Start(t, clienttest.Options{App: "web"})
	c, err := client.Dial(ctx, srv.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for _, k := range fixtureKeys {
		if _, err := c.Create(ctx, k.name, client.CreateOptions{Algorithm: k.alg}); err != nil {
			t.Fatalf("Create %s: %v", k.name, err)
		}
		if k.revoked {
			if _, err := c.Revoke(ctx, k.name); err != nil {
				t.Fatal(err)
			}
		}
	}
	a, err := sshagent.New(ctx, sshagent.Config{Keystore: c, Select: sel})
	if err != nil {
		t.Fatal(err)
	}
	sock := serve(t, a, sshagent.ServeConfig{})
	return &fixture{srv: srv, c: c, agent: a, ag: dialAgent(t, sock), sock: sock}
}

// serve serves a on a new socket until the test ends and returns its
// path.
func serve(t *testing.T, a agent.Agent, cfg sshagent.ServeConfig) string {
	t.Helper()
	s, err := sshagent.ListenTemp()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sshagent.Serve(ctx, s, a, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Socket.Close: %v", err)
		}
	})
	return s.Path
}

// dialAgent connects x/crypto's agent client to the socket.
func dialAgent(t *testing.T, sock string) agent.ExtendedAgent {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("closing the agent connection: %v", err)
		}
	})
	return agent.NewClient(conn)
}

// comments lists the comments (KEY@N) of the agent's keys, sorted.
func comments(t *testing.T, ag agent.Agent) []string {
	t.Helper()
	keys, err := ag.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var out []string
	for _, k := range keys {
		out = append(out, k.Comment)
	}
	slices.Sort(out)
	return out
}

// sshKey returns the ssh public key of a key's current version.
func (f *fixture) sshKey(t *testing.T, key string) ssh.PublicKey {
	t.Helper()
	pub, err := f.c.PublicKey(t.Context(), key, 0)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := ssh.NewPublicKey(ed25519.PublicKey(pub.Raw))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func TestListOffersActiveSSHSigningKeys(t *testing.T) {
	f := newFixture(t, sshagent.Selection{})
	got := comments(t, f.ag)
	want := []string{"web/deploy/prod@1", "web/ssh/git@1", "web/ssh/login@1"}
	if !slices.Equal(got, want) {
		t.Fatalf("List: %q, want %q (no revoked, decrypt, ed448 or ML-DSA key)", got, want)
	}
	keys, err := f.ag.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		key := strings.TrimSuffix(k.Comment, "@1")
		if want := f.sshKey(t, key).Marshal(); k.Format != ssh.KeyAlgoED25519 || !bytes.Equal(k.Blob, want) {
			t.Errorf("%s: format %q, blob %x; want ssh-ed25519 with the daemon's public key %x", k.Comment, k.Format, k.Blob, want)
		}
	}
}

func TestSelection(t *testing.T) {
	for _, tc := range []struct {
		name string
		sel  sshagent.Selection
		want []string
	}{
		{"purpose", sshagent.Selection{Purposes: []string{"ssh"}}, []string{"web/ssh/git@1", "web/ssh/login@1"}},
		{"purposes", sshagent.Selection{Purposes: []string{"deploy", "db", "nothing"}}, []string{"web/deploy/prod@1"}},
		{"own app named", sshagent.Selection{App: "web", Purposes: []string{"deploy"}}, []string{"web/deploy/prod@1"}},
		{"named keys", sshagent.Selection{Keys: []string{"ssh/login", "web/deploy/prod", "ssh/login"}}, []string{"web/deploy/prod@1", "web/ssh/login@1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.sel)
			if got := comments(t, f.ag); !slices.Equal(got, tc.want) {
				t.Errorf("List: %q, want %q", got, tc.want)
			}
			offers, err := f.agent.Offers()
			if err != nil {
				t.Fatalf("Offers: %v", err)
			}
			var refs []string
			for _, o := range offers {
				refs = append(refs, o.Ref)
				if o.KeyType != "ssh-ed25519" {
					t.Errorf("Offers: %s has key type %q", o.Ref, o.KeyType)
				}
			}
			slices.Sort(refs)
			if !slices.Equal(refs, tc.want) {
				t.Errorf("Offers: %q, want %q", refs, tc.want)
			}
		})
	}
}

// A named key that cannot be offered is an error at start (Offers),
// with the code that says why.
func TestNamedKeyErrors(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want provider.Code
	}{
		{"ssh/missing", provider.ENOENT},
		{"other/ssh/login", provider.EPERM}, // another app's
		{"ssh/old", provider.EKEYREVOKED},
		{"db/rows", provider.EPERM},
		{"sig/ed448", provider.ENOTSUP},
		{"sig/mldsa", provider.ENOTSUP},
		{"Bad Name", provider.EINVAL},
	} {
		t.Run(tc.key, func(t *testing.T) {
			f := newFixture(t, sshagent.Selection{Keys: []string{"ssh/login", tc.key}})
			_, err := f.agent.Offers()
			if code, _ := provider.CodeOf(err); code != tc.want {
				t.Fatalf("Offers with %s: %v, want %v", tc.key, err, tc.want)
			}
		})
	}
	// Another app is EPERM for a listing too.
	f := newFixture(t, sshagent.Selection{App: "other"})
	if _, err := f.agent.Offers(); !errors.Is(err, provider.ErrPermission) {
		t.Errorf("Offers of another app: %v, want EPERM", err)
	}
}

func TestNewRefusesMixedSelection(t *testing.T) {
	for _, sel := range []sshagent.Selection{
		{Keys: []string{"ssh/login"}, App: "web"},
		{Keys: []string{"ssh/login"}, Purposes: []string{"ssh"}},
	} {
		if _, err := sshagent.New(t.Context(), sshagent.Config{Keystore: nopKeystore{}, Select: sel}); !errors.Is(err, provider.ErrInvalid) {
			t.Errorf("New(%+v): %v, want EINVAL", sel, err)
		}
	}
	if _, err := sshagent.New(t.Context(), sshagent.Config{}); !errors.Is(err, provider.ErrInvalid) {
		t.Errorf("New without a keystore: %v, want EINVAL", err)
	}
}

// nopKeystore answers nothing.
type nopKeystore struct{}

func (nopKeystore) Get(context.Context, string) (client.KeyInfo, error) {
	return client.KeyInfo{}, provider.ErrNotFound
}
func (nopKeystore) List(context.Context, client.ListOptions) (client.KeyPage, error) {
	return client.KeyPage{}, nil
}
func (nopKeystore) Sign(context.Context, string, []byte) (client.Signature, error) {
	return client.Signature{}, provider.ErrNotFound
}

func TestSign(t *testing.T) {
	f := newFixture(t, sshagent.Selection{})
	pub := f.sshKey(t, "ssh/login")
	for _, data := range [][]byte{{}, []byte("session id and user auth request"), make([]byte, provider.MaxSignMessage)} {
		for _, flags := range []agent.SignatureFlags{0, agent.SignatureFlagRsaSha256, agent.SignatureFlagRsaSha512} {
			sig, err := f.ag.SignWithFlags(pub, data, flags)
			if err != nil {
				t.Fatalf("Sign %d bytes, flags %d: %v", len(data), flags, err)
			}
			if sig.Format != ssh.KeyAlgoED25519 {
				t.Errorf("signature format %q, want ssh-ed25519", sig.Format)
			}
			if err := pub.Verify(data, sig); err != nil {
				t.Errorf("signature over %d bytes does not verify: %v", len(data), err)
			}
			if err := pub.Verify(append(data, 'x'), sig); err == nil {
				t.Error("signature verifies over other data")
			}
		}
	}
	if f.srv.Calls(signMethod) == 0 {
		t.Error("the daemon signed nothing: the agent did not sign through keystored")
	}
	// Over the daemon's bound: refused before the daemon is asked.
	before := f.srv.Calls(signMethod)
	if _, err := f.ag.Sign(pub, make([]byte, provider.MaxSignMessage+1)); err == nil {
		t.Error("Sign of 64 KiB + 1 succeeded")
	}
	if n := f.srv.Calls(signMethod); n != before {
		t.Errorf("Sign of 64 KiB + 1 reached the daemon (%d calls)", n-before)
	}
	// A key the agent does not hold.
	other, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, err := ssh.NewPublicKey(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ag.Sign(otherPub, []byte("x")); err == nil {
		t.Error("Sign with a key the agent does not offer succeeded")
	}
	// A key of the app the selection leaves out.
	g := newFixture(t, sshagent.Selection{Purposes: []string{"deploy"}})
	if _, err := g.ag.Sign(g.sshKey(t, "ssh/login"), []byte("x")); err == nil {
		t.Error("Sign with a key outside the selection succeeded")
	}
}

// The agent asks the daemon on every List and checks the version on every
// Sign: a rotation or revocation shows at once.
func TestRotateAndRevoke(t *testing.T) {
	f := newFixture(t, sshagent.Selection{Keys: []string{"ssh/login"}})
	v1 := f.sshKey(t, "ssh/login")
	if _, err := f.ag.Sign(v1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Rotate(t.Context(), "ssh/login"); err != nil {
		t.Fatal(err)
	}
	// Signing with the listed (now retired) version fails: the daemon
	// signs with @2.
	if _, err := f.ag.Sign(v1, []byte("x")); err == nil {
		t.Error("Sign with the rotated-away version succeeded")
	}
	if got, want := comments(t, f.ag), []string{"web/ssh/login@2"}; !slices.Equal(got, want) {
		t.Errorf("List after rotate: %q, want %q", got, want)
	}
	v2 := f.sshKey(t, "ssh/login")
	sig, err := f.ag.Sign(v2, []byte("x"))
	if err != nil {
		t.Fatalf("Sign with @2: %v", err)
	}
	if err := v2.Verify([]byte("x"), sig); err != nil {
		t.Error(err)
	}
	if _, err := f.c.Revoke(t.Context(), "ssh/login"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ag.Sign(v2, []byte("x")); err == nil {
		t.Error("Sign after revoke succeeded")
	}
	if got := comments(t, f.ag); len(got) != 0 {
		t.Errorf("List after revoke: %q, want nothing", got)
	}
}

// The agent is read-only: adding, removing and the rest are refused over
// the protocol, and the keys stay as they were.
func TestReadOnly(t *testing.T) {
	f := newFixture(t, sshagent.Selection{})
	before := comments(t, f.ag)
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ag.Add(agent.AddedKey{PrivateKey: priv, Comment: "smuggled"}); err == nil {
		t.Error("Add succeeded")
	}
	if err := f.ag.Add(agent.AddedKey{PrivateKey: priv, Comment: "smuggled", LifetimeSecs: 60}); err == nil {
		t.Error("Add with a constraint succeeded")
	}
	if err := f.ag.Remove(f.sshKey(t, "ssh/login")); err == nil {
		t.Error("Remove succeeded")
	}
	if err := f.ag.RemoveAll(); err == nil {
		t.Error("RemoveAll succeeded")
	}
	if _, err := f.ag.Extension("session-bind@openssh.com", []byte("x")); !errors.Is(err, agent.ErrExtensionUnsupported) {
		t.Errorf("Extension: %v, want ErrExtensionUnsupported", err)
	}
	if got := comments(t, f.ag); !slices.Equal(got, before) {
		t.Errorf("keys after refused changes: %q, want %q", got, before)
	}
	if s, err := f.agent.Signers(); err == nil || s != nil {
		t.Errorf("Signers: %v, %v; want an error", s, err)
	}
	// Nothing the daemon holds changed either.
	for _, k := range fixtureKeys {
		info, err := f.c.Get(t.Context(), k.name)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]client.KeyState{false: client.KeyActive, true: client.KeyRevoked}[k.revoked]; info.State != want || info.CurrentVersion != 1 {
			t.Errorf("%s: %v version %d after the refused changes", k.name, info.State, info.CurrentVersion)
		}
	}
}

func TestLock(t *testing.T) {
	f := newFixture(t, sshagent.Selection{})
	pub := f.sshKey(t, "ssh/login")
	want := comments(t, f.ag)
	if err := f.ag.Unlock([]byte("pw")); err == nil {
		t.Error("Unlock of an unlocked agent succeeded")
	}
	if err := f.ag.Lock([]byte("correct horse")); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if got := comments(t, f.ag); len(got) != 0 {
		t.Errorf("List while locked: %q, want nothing", got)
	}
	signs := f.srv.Calls(signMethod)
	if _, err := f.ag.Sign(pub, []byte("x")); err == nil {
		t.Error("Sign while locked succeeded")
	}
	if n := f.srv.Calls(signMethod); n != signs {
		t.Error("Sign while locked reached the daemon")
	}
	if err := f.ag.Lock([]byte("other")); err == nil {
		t.Error("Lock of a locked agent succeeded")
	}
	// A second client of the same agent is locked out too.
	other := dialAgent(t, f.sock)
	if got := comments(t, other); len(got) != 0 {
		t.Errorf("List on another connection while locked: %q", got)
	}
	for _, wrong := range []string{"", "correct hors", "correct horsf", "correct horse ", "other"} {
		if err := f.ag.Unlock([]byte(wrong)); err == nil {
			t.Fatalf("Unlock with %q succeeded", wrong)
		}
	}
	if _, err := f.ag.Sign(pub, []byte("x")); err == nil {
		t.Error("Sign succeeded after failed unlocks")
	}
	if err := other.Unlock([]byte("correct horse")); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if got := comments(t, f.ag); !slices.Equal(got, want) {
		t.Errorf("List after unlock: %q, want %q", got, want)
	}
	if _, err := f.ag.Sign(pub, []byte("x")); err != nil {
		t.Errorf("Sign after unlock: %v", err)
	}
	// An empty passphrase works as a passphrase.
	if err := f.ag.Lock(nil); err != nil {
		t.Fatal(err)
	}
	if err := f.ag.Unlock([]byte("correct horse")); err == nil {
		t.Error("Unlock with the old passphrase succeeded")
	}
	if err := f.ag.Unlock(nil); err != nil {
		t.Errorf("Unlock with the empty passphrase: %v", err)
	}
}

// Every signature is the daemon's, recorded in its audit log under the
// caller's own app.
func TestSignsAreAudited(t *testing.T) {
	f := newFixture(t, sshagent.Selection{})
	if _, err := f.ag.Sign(f.sshKey(t, "ssh/git"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	log := readFile(t, f.srv.AuditLog)
	if !strings.Contains(log, `"app":"web"`) || !strings.Contains(log, `"op":"keys.sign","key":"web/ssh/git","version":1,"result":"ok"`) {
		t.Errorf("audit log has no sign record of web/ssh/git by app web:\n%s", log)
	}
}

// signMethod is the daemon's Sign, as clienttest counts it.
const signMethod = "/keystore.v1.Keys/Sign"

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
