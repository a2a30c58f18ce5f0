package sshagent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
)

// Keystore is what the agent asks of keystored; *client.Client
// implements it.
type Keystore interface {
	Get(ctx context.Context, key string) (client.KeyInfo, error)
	List(ctx context.Context, opts client.ListOptions) (client.KeyPage, error)
	Sign(ctx context.Context, key string, msg []byte) (client.Signature, error)
}

// Selection chooses the keys the agent offers: the primary version of
// each active signing key it names whose algorithm has an ssh form. The
// zero Selection offers every such key the daemon lists for the caller:
// all of the caller's app's keys (for an operator, every app's: name the
// app with App).
type Selection struct {
	// App lists this app's keys instead of the daemon's default. Only
	// operators may name an app that is not their own (EPERM).
	App string
	// Purposes keeps only keys whose purpose is one of these.
	Purposes []string
	// Keys are exactly the keys to offer (KEY as the CLI takes it:
	// <purpose>/<name> of the caller's app, or <app>/<purpose>/<name>).
	// With Keys, App and Purposes must be empty.
	Keys []string
}

// DefaultCallTimeout bounds each call the agent makes to the daemon.
const DefaultCallTimeout = 30 * time.Second

// maxListPages bounds the pages one listing reads (1000 keys each): more
// than an app's default key quota.
const maxListPages = 16

// Config configures New.
type Config struct {
	// Keystore is the daemon connection (required).
	Keystore Keystore
	// Select chooses the keys.
	Select Selection
	// CallTimeout bounds each daemon call (0: DefaultCallTimeout).
	CallTimeout time.Duration
}

// Agent is a read-only ssh agent over keystored keys. It is safe for
// concurrent use.
type Agent struct {
	ctx     context.Context // the agent's life: its methods have no ctx
	ks      Keystore
	sel     Selection
	timeout time.Duration

	mu       sync.Mutex
	locked   bool
	lockSalt [32]byte
	lockHash [32]byte
	offered  map[string]offer // by ssh wire public key: the last listing
}

// offer is one key the agent offers.
type offer struct {
	key     string // full key ID
	version uint32
	alg     sshAlgorithm
	pub     ssh.PublicKey
}

func (o offer) ref() string { return o.key + "@" + strconv.FormatUint(uint64(o.version), 10) }

var _ agent.ExtendedAgent = (*Agent)(nil)

// New returns the agent. ctx bounds its life: every daemon call runs
// under it (with Config.CallTimeout each). A Selection mixing Keys with
// App or Purposes is EINVAL. New makes no daemon call; Offers does.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Keystore == nil {
		return nil, provider.Errorf(provider.EINVAL, "ssh-agent: no keystore connection")
	}
	sel := cfg.Select
	if len(sel.Keys) > 0 && (sel.App != "" || len(sel.Purposes) > 0) {
		return nil, provider.Errorf(provider.EINVAL, "ssh-agent: named keys cannot be combined with an app or purposes")
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	return &Agent{ctx: ctx, ks: cfg.Keystore, sel: sel, timeout: cfg.CallTimeout, offered: map[string]offer{}}, nil
}

// Errors of the agent's refusals.
var (
	errReadOnly = provider.Errorf(provider.EPERM, "ssh-agent: the agent is read-only: keys live in keystored (create them with keystorectl create)")
	errLocked   = provider.Errorf(provider.EPERM, "ssh-agent: the agent is locked")
)

// Offered is a key the agent offers, for its start-up message.
type Offered struct {
	Ref     string // KEY@N, the comment of the ssh key
	KeyType string // "ssh-ed25519"
}

// Offers lists the keys the agent offers now. With named keys
// (Selection.Keys) every one must exist, be an active signing key and
// have an ssh form: a missing one is ENOENT (or EPERM), a revoked one
// EKEYREVOKED, a decrypt key EPERM, another algorithm ENOTSUP; so that
// `keystorectl ssh-agent --key` fails at start on a mistake. A listing
// (no named keys) skips the keys it cannot offer.
func (a *Agent) Offers() ([]Offered, error) {
	offers, err := a.refresh(true)
	if err != nil {
		return nil, err
	}
	out := make([]Offered, 0, len(offers))
	for _, o := range offers {
		out = append(out, Offered{Ref: o.ref(), KeyType: o.alg.KeyType})
	}
	return out, nil
}

// call returns the context of one daemon call.
func (a *Agent) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(a.ctx, a.timeout)
}

// refresh asks the daemon for the keys to offer and remembers them for
// Sign. strict makes a named key that cannot be offered an error.
func (a *Agent) refresh(strict bool) ([]offer, error) {
	var infos []client.KeyInfo
	if len(a.sel.Keys) > 0 {
		for _, k := range a.sel.Keys {
			ctx, cancel := a.call()
			info, err := a.ks.Get(ctx, k)
			cancel()
			if err != nil {
				return nil, err
			}
			if strict {
				if err := offerable(info); err != nil {
					return nil, err
				}
			}
			infos = append(infos, info)
		}
	} else {
		opts := client.ListOptions{App: a.sel.App, PageSize: 1000}
		for pages := 0; ; pages++ {
			if pages == maxListPages {
				return nil, provider.Errorf(provider.EIO, "ssh-agent: the listing did not end after %d pages", maxListPages)
			}
			ctx, cancel := a.call()
			page, err := a.ks.List(ctx, opts)
			cancel()
			if err != nil {
				return nil, err
			}
			infos = append(infos, page.Keys...)
			if page.NextPageToken == "" || page.NextPageToken == opts.PageToken {
				break
			}
			opts.PageToken = page.NextPageToken
		}
	}
	var offers []offer
	byBlob := map[string]offer{}
	for _, info := range infos {
		if len(a.sel.Purposes) > 0 && !slices.Contains(a.sel.Purposes, purposeOf(info.ID)) {
			continue
		}
		if offerable(info) != nil {
			continue
		}
		o, err := offerOf(info)
		if err != nil {
			return nil, err
		}
		blob := string(o.pub.Marshal())
		if _, dup := byBlob[blob]; dup {
			continue // a named key given twice
		}
		byBlob[blob] = o
		offers = append(offers, o)
	}
	a.mu.Lock()
	a.offered = byBlob
	a.mu.Unlock()
	return offers, nil
}

// purposeOf returns the purpose segment of a full key ID.
func purposeOf(id string) string {
	parts := strings.Split(id, "/")
	if len(parts) != 3 {
		return ""
	}
	return parts[1]
}

// offerable says why a key cannot be offered, or nil.
func offerable(info client.KeyInfo) error {
	switch {
	case info.State != client.KeyActive:
		return &provider.Error{Code: provider.EKEYREVOKED, Op: "ssh-agent", Key: info.ID, Msg: "the key is " + info.State.String() + ": it cannot sign"}
	case !slices.Contains(info.Uses, "sign"):
		return &provider.Error{Code: provider.EPERM, Op: "ssh-agent", Key: info.ID, Msg: "not a signing key (" + string(info.Algorithm) + ")"}
	}
	if _, ok := algorithms[info.Algorithm]; !ok {
		return &provider.Error{Code: provider.ENOTSUP, Op: "ssh-agent", Key: info.ID, Msg: "OpenSSH has no key type for " + string(info.Algorithm) + " (the agent offers ed25519 keys)"}
	}
	return nil
}

// offerOf returns the offer of an offerable key: its primary version.
func offerOf(info client.KeyInfo) (offer, error) {
	alg := algorithms[info.Algorithm]
	v, ok := info.Version(info.CurrentVersion)
	if !ok || v.State != client.VersionPrimary {
		return offer{}, &provider.Error{Code: provider.EIO, Op: "ssh-agent", Key: info.ID, Msg: "keystored protocol error: no primary version " + strconv.FormatUint(uint64(info.CurrentVersion), 10)}
	}
	pub, err := alg.PublicKey(v.PublicKey)
	if err != nil {
		return offer{}, provider.Errorf(provider.EIO, "ssh-agent: %s@%d: %w", info.ID, v.Version, err)
	}
	return offer{key: info.ID, version: v.Version, alg: alg, pub: pub}, nil
}

// List returns the keys the agent offers, asking the daemon each time (a
// rotated, revoked or new key shows at once); nothing while locked.
func (a *Agent) List() ([]*agent.Key, error) {
	if a.isLocked() {
		return nil, nil
	}
	offers, err := a.refresh(false)
	if err != nil {
		return nil, err
	}
	keys := make([]*agent.Key, 0, len(offers))
	for _, o := range offers {
		keys = append(keys, &agent.Key{Format: o.pub.Type(), Blob: o.pub.Marshal(), Comment: o.ref()})
	}
	if a.isLocked() { // locked while the daemon answered
		return nil, nil
	}
	return keys, nil
}

// Sign signs data with key (one the agent offers) through the daemon.
func (a *Agent) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return a.SignWithFlags(key, data, 0)
}

// SignWithFlags signs data with key through the daemon, in the format
// flags ask for. It fails while locked, for a key the agent does not
// offer (the daemon is asked again first), for data over the daemon's
// 64 KiB bound, and when the daemon signs with another version than the
// one listed (the key was rotated: list again). The signature is checked
// against key before it is returned.
func (a *Agent) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	if a.isLocked() {
		return nil, errLocked
	}
	if len(data) > provider.MaxSignMessage {
		return nil, provider.Errorf(provider.EMSGSIZE, "ssh-agent: %d bytes to sign, over keystored's bound of %d", len(data), provider.MaxSignMessage)
	}
	blob := string(key.Marshal())
	o, ok := a.lookup(blob)
	if !ok {
		if _, err := a.refresh(false); err != nil {
			return nil, err
		}
		if o, ok = a.lookup(blob); !ok {
			return nil, provider.Errorf(provider.ENOENT, "ssh-agent: the agent does not offer this %s key", key.Type())
		}
	}
	format, err := o.alg.Format(flags)
	if err != nil {
		return nil, err
	}
	ctx, cancel := a.call()
	sig, err := a.ks.Sign(ctx, o.key, data)
	cancel()
	if err != nil {
		return nil, err
	}
	if sig.Version != o.version {
		a.forget(blob)
		return nil, &provider.Error{Code: provider.EINVAL, Op: "ssh-agent", Key: o.ref(),
			Msg: "keystored signed with version " + strconv.FormatUint(uint64(sig.Version), 10) + ": the key was rotated; list the agent's keys again"}
	}
	sb, err := o.alg.Blob(sig.Signature)
	if err != nil {
		return nil, err
	}
	out := &ssh.Signature{Format: format, Blob: sb}
	if err := o.pub.Verify(data, out); err != nil {
		return nil, &provider.Error{Code: provider.EIO, Op: "ssh-agent", Key: o.ref(), Msg: "keystored's signature does not verify"}
	}
	if a.isLocked() { // locked while the daemon signed
		return nil, errLocked
	}
	return out, nil
}

func (a *Agent) lookup(blob string) (offer, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	o, ok := a.offered[blob]
	return o, ok
}

func (a *Agent) forget(blob string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.offered, blob)
}

func (a *Agent) isLocked() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.locked
}

// Add is refused: the agent is read-only.
func (a *Agent) Add(agent.AddedKey) error { return errReadOnly }

// Remove is refused: the agent is read-only.
func (a *Agent) Remove(ssh.PublicKey) error { return errReadOnly }

// RemoveAll is refused: the agent is read-only.
func (a *Agent) RemoveAll() error { return errReadOnly }

// Signers is refused: the agent hands out no signer (and the protocol
// has no such request).
func (a *Agent) Signers() ([]ssh.Signer, error) { return nil, errReadOnly }

// Extension answers no extension (PROTOCOL.agent 4.7: SSH_AGENT_FAILURE).
// ssh's session-bind@openssh.com is among them: without it the agent
// cannot restrict keys by destination, which it does not offer anyway.
func (a *Agent) Extension(string, []byte) ([]byte, error) {
	return nil, agent.ErrExtensionUnsupported
}

// Lock locks the agent with passphrase: until Unlock with the same
// passphrase, List returns no key and Sign fails. Only a salted SHA-256 of
// the passphrase is kept. Locking a locked agent fails (as OpenSSH's).
func (a *Agent) Lock(passphrase []byte) error {
	var salt [32]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return provider.Errorf(provider.EIO, "ssh-agent: lock: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.locked {
		return errLocked
	}
	a.locked, a.lockSalt, a.lockHash = true, salt, lockHash(salt, passphrase)
	a.offered = map[string]offer{}
	return nil
}

// Unlock unlocks the agent if passphrase is the one it was locked with
// (compared in constant time).
func (a *Agent) Unlock(passphrase []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.locked {
		return provider.Errorf(provider.EINVAL, "ssh-agent: the agent is not locked")
	}
	h := lockHash(a.lockSalt, passphrase)
	if subtle.ConstantTimeCompare(h[:], a.lockHash[:]) != 1 {
		return errWrongPassphrase
	}
	a.locked, a.lockSalt, a.lockHash = false, [32]byte{}, [32]byte{}
	return nil
}

var errWrongPassphrase = provider.Errorf(provider.EPERM, "ssh-agent: unlock: incorrect passphrase")

// lockHash is SHA-256(salt ‖ passphrase).
func lockHash(salt [32]byte, passphrase []byte) [32]byte {
	buf := append(salt[:], passphrase...)
	defer clear(buf)
	return sha256.Sum256(buf)
}
