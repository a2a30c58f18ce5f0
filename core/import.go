package core

import (
	"context"
	"encoding/base64"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
)

// Key import (BYOK). ImportParameters asks the provider for a one-time HPKE
// wrapping key (provider.NewImportKey: the private half lives only in the
// provider's memory) and hands out a token naming it; Import takes the
// token and the material sealed to that key, and the provider unwraps it
// into a new key version (provider.Import). The core never sees the
// material. Tokens live in memory only: a restart ends them all (the
// caller asks for new parameters), as does their expiry.

// importTokenPrefix starts every import token.
const importTokenPrefix = "kit1."

// importTokenLen is the length of a token: the prefix and 16 random bytes
// in unpadded base64url.
const importTokenLen = len(importTokenPrefix) + 22

// importToken is one set of import parameters.
type importToken struct {
	app     string // the app of the caller that asked for it
	id      KeyID
	alg     Algorithm
	wrap    provider.KeyRef
	h       provider.Handle
	expires time.Time
	used    bool
}

// importTable holds the outstanding tokens and, until they expire, the
// spent ones (so that a reuse says "already used", not "unknown").
type importTable struct {
	mu     sync.Mutex
	tokens map[string]*importToken
}

func newImportTable() *importTable { return &importTable{tokens: map[string]*importToken{}} }

// expired ends the tokens expired at now: it marks them used and returns
// those whose wrapping key the provider may still hold (h set: unused,
// or a forget that failed), to forget. A token is kept for another
// MaxImportTTL, so that a late Import says "expired" rather than
// "unknown", and never dropped while its wrapping key may live.
func (t *importTable) expired(now time.Time) []*importToken {
	var out []*importToken
	for s, tok := range t.tokens {
		switch {
		case now.Before(tok.expires):
		case tok.h != nil:
			tok.used = true
			out = append(out, tok)
		case !now.Before(tok.expires.Add(MaxImportTTL)):
			delete(t.tokens, s)
		}
	}
	return out
}

// maxImportEntries bounds the table: the unused tokens (at most
// MaxImportTokens) and the spent ones it remembers so that a reuse says
// "already used". Past it the spent tokens that expire first are
// forgotten (a reuse of one then says "unknown").
const maxImportEntries = 4 * MaxImportTokens

// dropSpent forgets spent tokens, those that expire first, until the
// table holds at most n entries.
func (t *importTable) dropSpent(n int) {
	for len(t.tokens) > n {
		var oldest string
		var at time.Time
		for s, tok := range t.tokens {
			if tok.used && tok.h == nil && (oldest == "" || tok.expires.Before(at)) {
				oldest, at = s, tok.expires
			}
		}
		if oldest == "" {
			return // only tokens whose wrapping key may live (MaxImportTokens bounds the unused)
		}
		delete(t.tokens, oldest)
	}
}

// outstanding counts the unused tokens of app and of everyone.
func (t *importTable) outstanding(app string) (ofApp, all int) {
	for _, tok := range t.tokens {
		if !tok.used {
			all++
			if tok.app == app {
				ofApp++
			}
		}
	}
	return ofApp, all
}

// forget asks the provider to drop the wrapping keys of toks, on a
// context that the caller's cancellation does not end (a caller that hung
// up must not leave a wrapping key alive). A key forgotten is no longer
// named (h cleared); one whose Destroy failed keeps its name, and the
// next expiry sweep tries again. The failure is not the caller's, who
// only happened to trigger the sweep, so it is not reported.
func (k *Keystore) forget(ctx context.Context, toks []*importToken) {
	ctx = context.WithoutCancel(ctx)
	for _, tok := range toks {
		k.imports.mu.Lock()
		h := tok.h
		k.imports.mu.Unlock()
		if h == nil || k.p.Destroy(ctx, tok.wrap, h) != nil {
			continue
		}
		k.imports.mu.Lock()
		tok.h = nil
		k.imports.mu.Unlock()
	}
}

// expireImports forgets the wrapping keys of the import tokens expired by
// now. ImportParameters and Sweep (which the daemon runs periodically)
// call it, so a wrapping key outlives its expiry by at most one sweep
// interval, and never a restart.
func (k *Keystore) expireImports(ctx context.Context) {
	k.imports.mu.Lock()
	stale := k.imports.expired(k.clock.Now().UTC())
	k.imports.mu.Unlock()
	k.forget(ctx, stale)
}

// ImportParameters returns what a caller needs to import key material of
// o.Algorithm into key id: a one-time HPKE wrapping public key of
// o.WrappingAlgorithm (default DefaultImportWrapping), the HPKE info to
// seal the material under (provider.ImportInfo) and a token for Import,
// valid once, for the calling app, for o.TTL (default 24 h). The key may
// not exist yet (Import creates it); an existing key must be active, of
// that algorithm, and imported (EPERM for a generated key). An app holds
// at most MaxImportTokensPerApp unused tokens (EDQUOT past it).
func (k *Keystore) ImportParameters(ctx context.Context, c Caller, id KeyID, o ImportOptions) (ImportParameters, error) {
	ev := k.event(c, OpImportParameters, id.String(), 0)
	p, err := k.importParameters(ctx, c, id, o, &ev)
	return audited(ctx, k, &ev, p, err)
}

func (k *Keystore) importParameters(ctx context.Context, c Caller, id KeyID, o ImportOptions, ev *Event) (ImportParameters, error) {
	spec, wrapSpec, ttl, err := k.checkImportOptions(o)
	if err != nil {
		return ImportParameters{}, err
	}
	if err := admit(ctx, c, OpImportParameters, id); err != nil {
		return ImportParameters{}, err
	}
	_, rec, err := k.readKey(ctx, id)
	if err != nil {
		return ImportParameters{}, err
	}
	if err := checkImportInto(OpImportParameters, metaOf(rec), spec); err != nil {
		return ImportParameters{}, err
	}
	if err := k.ready(ctx); err != nil {
		return ImportParameters{}, err
	}
	k.expireImports(ctx)
	now := k.clock.Now().UTC()
	k.imports.mu.Lock()
	ofApp, all := k.imports.outstanding(c.App)
	k.imports.mu.Unlock()
	if ofApp >= MaxImportTokensPerApp || all >= MaxImportTokens {
		return ImportParameters{}, provider.Errorf(provider.EDQUOT, "too many unused import tokens (%d per app, %d in all); use or let expire the ones issued", MaxImportTokensPerApp, MaxImportTokens)
	}
	wrap := provider.KeyRef{ID: id, Version: 1, Algorithm: wrapSpec.Name, Use: provider.UseAsymmetricDecrypt, Provider: k.info.Name}
	g, err := k.p.NewImportKey(ctx, wrap)
	if err != nil {
		return ImportParameters{}, provider.WithOp("provider new import key", id.String(), err)
	}
	if len(g.Handle) == 0 || len(g.Handle) > provider.MaxHandle || !wrapSpec.CheckPublicKey(g.PublicKey) {
		return ImportParameters{}, provider.Errorf(provider.EIO, "provider returned a malformed import wrapping key")
	}
	var raw [16]byte
	if _, err := io.ReadFull(k.random, raw[:]); err != nil {
		return ImportParameters{}, provider.Errorf(provider.EIO, "random source failed: %v", err)
	}
	token := importTokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	tok := &importToken{app: c.App, id: id, alg: spec.Name, wrap: wrap,
		h: append(provider.Handle(nil), g.Handle...), expires: now.Add(ttl)}
	k.imports.mu.Lock()
	ofApp, all = k.imports.outstanding(c.App)
	full := ofApp >= MaxImportTokensPerApp || all >= MaxImportTokens
	if !full {
		k.imports.dropSpent(maxImportEntries - 1)
		k.imports.tokens[token] = tok
	}
	k.imports.mu.Unlock()
	if full {
		k.forget(ctx, []*importToken{tok})
		return ImportParameters{}, provider.Errorf(provider.EDQUOT, "too many unused import tokens (%d per app, %d in all); use or let expire the ones issued", MaxImportTokensPerApp, MaxImportTokens)
	}
	ev.Detail = "algorithm " + string(spec.Name) + ", wrapping " + string(wrapSpec.Name) + ", expires " + tok.expires.Format(time.RFC3339)
	return ImportParameters{
		ID: id, Algorithm: spec.Name, Token: token, WrappingAlgorithm: wrapSpec.Name,
		KEMID: wrapSpec.KEMID, KDFID: wrapSpec.KDFID, AEADID: wrapSpec.AEADID,
		PublicKey: append([]byte(nil), g.PublicKey...), Info: provider.ImportInfo(id, spec.Name), Expires: tok.expires,
	}, nil
}

// checkImportOptions checks o before any lookup and fills in defaults.
func (k *Keystore) checkImportOptions(o ImportOptions) (spec, wrap *alg.Spec, ttl time.Duration, err error) {
	if o.Algorithm == "" {
		return nil, nil, 0, provider.Errorf(provider.EINVAL, "name the algorithm of the material to import")
	}
	if spec, err = k.reg.Lookup(o.Algorithm); err != nil {
		return nil, nil, 0, err
	}
	if !spec.Importable() {
		return nil, nil, 0, provider.Errorf(provider.ENOTSUP, "%s keys cannot be imported (no standard PKCS #8 form keystored parses)", string(spec.Name))
	}
	if !k.info.Supports(spec.Name) {
		return nil, nil, 0, provider.Errorf(provider.ENOTSUP, "provider %s does not offer %s; its %s algorithms: %s", k.info.Name, string(spec.Name), spec.Use, k.offered(spec.Use))
	}
	if o.WrappingAlgorithm == "" {
		o.WrappingAlgorithm = DefaultImportWrapping
	}
	if wrap, err = k.reg.Lookup(o.WrappingAlgorithm); err != nil {
		return nil, nil, 0, err
	}
	if wrap.Use != provider.UseAsymmetricDecrypt {
		return nil, nil, 0, provider.Errorf(provider.EINVAL, "wrapping algorithm %s is not an HPKE algorithm", string(wrap.Name))
	}
	switch ttl = o.TTL; {
	case ttl == 0:
		ttl = DefaultImportTTL
	case ttl < MinImportTTL || ttl > MaxImportTTL || ttl%time.Second != 0:
		return nil, nil, 0, provider.Errorf(provider.EINVAL, "import parameters are valid for 0 (the default, %s) or whole seconds from %s to %s", DefaultImportTTL, MinImportTTL, MaxImportTTL)
	}
	return spec, wrap, ttl, nil
}

// checkImportInto checks that material of spec may be imported into the
// key m (nil: a key Import would create).
func checkImportInto(op Op, m *Metadata, spec *alg.Spec) error {
	if err := checkKey(op, m); err != nil {
		return err
	}
	if m == nil {
		return nil
	}
	if m.Origin != OriginImported {
		return provider.Errorf(provider.EPERM, "key %s holds generated material; import into a new key", m.ID)
	}
	if m.Algorithm != spec.Name {
		return provider.Errorf(provider.EINVAL, "key %s is a %s key, not %s", m.ID, string(m.Algorithm), string(spec.Name))
	}
	return nil
}

// Import makes key id, or its next version, from material wrapped to the
// import parameters r.Token names: a new key with r.Policy (no rotation
// period: EPERM), or a new primary version of an existing imported key
// (the old primary is retired). The token is spent by the call whatever
// its outcome. Errors: ENOENT for an unknown token, EALREADY for a used
// one, EKEYEXPIRED past its expiry, EPERM for a token of another app,
// EINVAL for a token of another key or material of another algorithm,
// EBADMSG for a wrapped form that does not open.
func (k *Keystore) Import(ctx context.Context, c Caller, id KeyID, r ImportRequest) (Metadata, error) {
	ev := k.event(c, OpImport, id.String(), 0)
	m, err := k.importKey(ctx, c, id, r, &ev)
	return audited(ctx, k, &ev, m, err)
}

func (k *Keystore) importKey(ctx context.Context, c Caller, id KeyID, r ImportRequest, ev *Event) (Metadata, error) {
	if err := provider.CheckImport(r.Enc, r.Wrapped); err != nil {
		return Metadata{}, err
	}
	if len(r.Token) != importTokenLen || !strings.HasPrefix(r.Token, importTokenPrefix) {
		return Metadata{}, provider.Errorf(provider.EINVAL, "malformed import token")
	}
	if r.Policy.RotationPeriod != 0 {
		return Metadata{}, provider.Errorf(provider.EPERM, "an imported key has no rotation period: its new versions come from Import")
	}
	if err := admit(ctx, c, OpImport, id); err != nil {
		return Metadata{}, err
	}
	tok, err := k.spend(c, id, r.Token)
	if err != nil {
		return Metadata{}, err
	}
	spec, err := k.reg.Lookup(tok.alg)
	if err != nil {
		return Metadata{}, err
	}
	ev.Detail = "algorithm " + string(spec.Name) + ", origin imported"
	k.kekMu.RLock() // a handle is made: see Keystore.kekMu
	defer k.kekMu.RUnlock()
	e, err := k.writeKey(ctx, id)
	if err != nil {
		k.forget(ctx, []*importToken{tok})
		return Metadata{}, err
	}
	defer k.unlockKey(e)
	rec := e.rec.Load()
	m := metaOf(rec)
	if err := checkImportInto(OpImport, m, spec); err != nil {
		k.forget(ctx, []*importToken{tok})
		return Metadata{}, err
	}
	if err := k.ready(ctx); err != nil {
		k.forget(ctx, []*importToken{tok})
		return Metadata{}, err
	}
	v := Version(1)
	var settle func(*entry)
	if rec == nil {
		if err := checkPolicy(r.Policy, 1); err != nil {
			k.forget(ctx, []*importToken{tok})
			return Metadata{}, err
		}
		if settle, err = k.reserveKey(id.App()); err != nil { // quota.go
			k.forget(ctx, []*importToken{tok})
			return Metadata{}, err
		}
		defer func() { settle(e) }()
	} else {
		if rec.meta.Current == provider.MaxVersion {
			k.forget(ctx, []*importToken{tok})
			return Metadata{}, provider.Errorf(provider.EINVAL, "key has reached the last version number")
		}
		if err := k.checkVersionQuota(rec); err != nil { // quota.go
			k.forget(ctx, []*importToken{tok})
			return Metadata{}, err
		}
		if r.Policy != (Policy{}) {
			k.forget(ctx, []*importToken{tok})
			return Metadata{}, provider.Errorf(provider.EINVAL, "a policy is set when an import creates a key; key %s exists (use set-policy)", id)
		}
		v = rec.meta.Current + 1
	}
	vr := newVersionRT(id, v, spec, k.info.Name, 0)
	k.imports.mu.Lock()
	wh := tok.h
	k.imports.mu.Unlock()
	g, err := k.p.Import(ctx, vr.ref, tok.wrap, wh, r.Enc, r.Wrapped)
	// The provider spends the wrapping key whatever the outcome.
	k.imports.mu.Lock()
	tok.h = nil
	k.imports.mu.Unlock()
	if err != nil {
		return Metadata{}, provider.WithOp("provider import", vr.refStr, err)
	}
	pub, err := k.adopt(spec, vr, g)
	if err != nil {
		return Metadata{}, err
	}
	now := k.clock.Now().UTC()
	var next *record
	if rec == nil {
		next = &record{spec: spec, versions: []*versionRT{vr}, meta: Metadata{
			ID: id, Algorithm: spec.Name, Use: spec.Use, State: StateActive, Current: 1,
			Versions: []VersionInfo{{Version: 1, State: VersionPrimary, PublicKey: pub, Created: now, Origin: OriginImported}},
			Policy:   r.Policy, Provider: k.info.Name, Insecure: k.insecure, Origin: OriginImported, Created: now,
		}}
	} else {
		next = rec.withVersion(vr, pub, now, OriginImported)
	}
	next.meta.Generation = 1
	if rec != nil {
		next.meta.Generation = rec.meta.Generation + 1
	}
	ev.Version, ev.Gen = v, next.meta.Generation
	if err := k.change(ctx, e, next, *ev, nil); err != nil {
		return Metadata{}, err
	}
	if err := k.applied(ctx, ev); err != nil {
		return Metadata{}, err
	}
	return next.snapshot(), nil
}

// spend takes the import token s for caller c and key id: it must exist,
// belong to c's app and id, be unused and unexpired. It is marked used
// before the provider sees it, so a token works once even when two
// imports race.
func (k *Keystore) spend(c Caller, id KeyID, s string) (*importToken, error) {
	now := k.clock.Now().UTC()
	k.imports.mu.Lock()
	defer k.imports.mu.Unlock()
	tok, ok := k.imports.tokens[s]
	switch {
	case !ok:
		return nil, provider.Errorf(provider.ENOENT, "unknown import token (tokens end at expiry and at a daemon restart); get new import parameters")
	case tok.app != c.App:
		return nil, provider.Errorf(provider.EPERM, "import token was issued to another app")
	case tok.id != id:
		return nil, provider.Errorf(provider.EINVAL, "import token was issued for key %s, not %s", tok.id, id)
	case !now.Before(tok.expires):
		return nil, provider.Errorf(provider.EKEYEXPIRED, "import token expired at %s; get new import parameters", tok.expires.Format(time.RFC3339))
	case tok.used:
		return nil, provider.Errorf(provider.EALREADY, "import token already used; get new import parameters")
	}
	tok.used = true
	return tok, nil
}
