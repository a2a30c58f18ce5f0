package conformance

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
)

// provMinSecret is the shortest known secret the suite searches for:
// shorter strings could occur by chance.
const provMinSecret = 8

// provSecretForm is one spelling of a secret.
type provSecretForm struct {
	name string
	b    []byte
}

// secretForms returns the spellings of secret the suite searches for:
// raw, hex in both cases, base64 (standard and URL; the padded forms
// start with the unpadded ones), and Go's %v, %#v and %q renderings of a
// []byte (without their brackets, braces or quotes).
func secretForms(secret []byte) []provSecretForm {
	h := hex.EncodeToString(secret)
	v := fmt.Sprint(secret)
	gv := fmt.Sprintf("%#v", secret)
	q := strconv.Quote(string(secret))
	return []provSecretForm{
		{"raw", secret},
		{"lowercase hex", []byte(h)},
		{"uppercase hex", []byte(strings.ToUpper(h))},
		{"base64", []byte(base64.RawStdEncoding.EncodeToString(secret))},
		{"URL base64", []byte(base64.RawURLEncoding.EncodeToString(secret))},
		{"%v decimal list", []byte(strings.Trim(v, "[]"))},
		{"%#v", []byte(strings.TrimSuffix(strings.TrimPrefix(gv, "[]byte{"), "}"))},
		{"%q", []byte(strings.Trim(q, `"`))},
	}
}

// findSecret reports the first spelling of secret that occurs in hay.
func findSecret(hay, secret []byte) (string, bool) {
	for _, f := range secretForms(secret) {
		if len(f.b) > 0 && bytes.Contains(hay, f.b) {
			return f.name, true
		}
	}
	return "", false
}

// knownSecrets returns the searchable secrets of ref. They are computed
// once per run and ref: for a deterministic RSA key that costs a key
// generation.
func (s *provSuite) knownSecrets(ref provider.KeyRef) ([][]byte, error) {
	s.pool.mu.Lock()
	secrets, ok := s.pool.known[ref]
	s.pool.mu.Unlock()
	if !ok {
		var err error
		if secrets, err = s.known(ref); err != nil {
			return nil, fmt.Errorf("WithKnownSecrets(%s): %w", ref, err)
		}
		s.pool.mu.Lock()
		s.pool.known[ref] = secrets
		s.pool.mu.Unlock()
	}
	var out [][]byte
	for i, sec := range secrets {
		if len(sec) < provMinSecret {
			s.logf("WithKnownSecrets(%s): secret %d is %d bytes, too short to search for reliably; ignored", ref, i, len(sec))
			continue
		}
		out = append(out, sec)
	}
	return out, nil
}

// provOutput is one thing a provider returned that the suite searches.
type provOutput struct {
	what string
	b    []byte
}

// outputsOf returns k's public outputs (public key, handle, a signature or
// sealed blobs) and the text of errors its misuse provokes.
func (s *provSuite) outputsOf(ctx context.Context, k *provKey) []provOutput {
	out := []provOutput{
		{"the public key", k.g.PublicKey},
		{"the handle", k.g.Handle},
	}
	switch k.ref.Use {
	case provider.UseSign:
		if sig, err := s.p.Sign(ctx, k.ref, k.g.Handle, provKeyMsg); err == nil {
			out = append(out, provOutput{"a signature", sig})
		}
		if k.hash != 0 {
			if sig, err := s.p.SignDigest(ctx, k.ref, k.g.Handle, k.hash, digestOf(k.hash, provKeyMsg)); err == nil {
				out = append(out, provOutput{"a signature of a digest", sig})
			}
		}
	case provider.UseMAC:
		out = append(out, provOutput{"a tag", k.tag})
		if tag, err := s.p.MAC(ctx, k.ref, k.g.Handle, nil); err == nil {
			out = append(out, provOutput{"the tag of an empty message", tag})
		}
	case provider.UseDecrypt:
		out = append(out, provOutput{"a sealed blob", k.sealed})
		if sealed, err := s.p.Seal(ctx, k.ref, k.g.Handle, nil, nil); err == nil {
			out = append(out, provOutput{"a sealed empty plaintext", sealed})
		}
	case provider.UseAsymmetricDecrypt:
		if k.msg.enc != nil {
			if pt, err := s.p.Decrypt(ctx, k.ref, k.g.Handle, k.msg.enc, k.msg.ct, k.msg.info, k.msg.aad); err == nil {
				out = append(out, provOutput{"a decrypted message", pt})
			}
			bad := bytes.Clone(k.msg.ct)
			bad[len(bad)-1] ^= 1
			pt, err := s.p.Decrypt(ctx, k.ref, k.g.Handle, k.msg.enc, bad, k.msg.info, k.msg.aad)
			out = append(out, provOutput{"the output of Decrypt of a tampered message", pt})
			if err != nil {
				out = append(out, provOutput{"the error of Decrypt of a tampered message", []byte(fmt.Sprintf("%v %+v", err, err))})
			}
		}
	}
	wrongVersion := k.ref
	wrongVersion.Version++
	var ats []provAttempt
	ats = append(ats, s.misuse(ctx, k, wrongVersion, k.g.Handle, "its handle")...)
	ats = append(ats, s.misuse(ctx, k, k.ref, k.g.Handle[:len(k.g.Handle)/2], "its handle truncated")...)
	flipped := bytes.Clone(k.g.Handle)
	flipped[len(flipped)-1] ^= 1
	ats = append(ats, s.misuse(ctx, k, k.ref, flipped, "its handle with a bit flipped")...)
	if k.sealed != nil {
		bad := bytes.Clone(k.sealed)
		bad[len(bad)-1] ^= 1
		_, err := s.p.Open(ctx, k.ref, k.g.Handle, bad, provKeyAAD)
		ats = append(ats, provAttempt{what: "Open of a tampered blob", err: err})
	}
	for _, at := range ats {
		if at.err != nil {
			out = append(out, provOutput{"the error of " + at.what, []byte(fmt.Sprintf("%v %+v", at.err, at.err))})
		}
	}
	return out
}

// checkNoSecretsInOutputs: with WithKnownSecrets, no secret of a key
// appears, in any spelling, in its public key, handle, signatures (of
// messages and digests), sealed blobs, tags, decrypted messages or the
// errors its misuse provokes.
func (s *provSuite) checkNoSecretsInOutputs(ctx context.Context) error {
	if s.known == nil {
		return skipf("provider's private material is unknown; pass WithKnownSecrets")
	}
	var f provFails
	searched := 0
	for _, a := range s.algs {
		k, err := s.keyFor(ctx, "secrets", "outputs", a)
		if err != nil {
			return err
		}
		secrets, err := s.knownSecrets(k.ref)
		if err != nil {
			return err
		}
		if k.ref.Use == provider.UseSign {
			s.checkSecretsDerive(k, secrets)
		}
		for _, o := range s.outputsOf(ctx, k) {
			for i, sec := range secrets {
				searched++
				if form, ok := findSecret(o.b, sec); ok {
					f.addf("%s of %s contains known secret %d (%d bytes) in %s form; want no private material", o.what, k.ref, i, len(sec), form)
				}
			}
		}
	}
	if searched == 0 {
		return fmt.Errorf("WithKnownSecrets returned no secret of %d bytes or more for any key: nothing was searched", provMinSecret)
	}
	return f.err()
}

// checkSecretsDerive logs when no known secret of a signature key derives
// its public key through the registry: the secrets may be wrong, and the
// search would then prove little.
func (s *provSuite) checkSecretsDerive(k *provKey, secrets [][]byte) {
	sp, err := s.spec(k.ref.Algorithm)
	if err != nil {
		return
	}
	for _, sec := range secrets {
		if !sp.SecretSizeOK(len(sec)) {
			continue
		}
		if signer, err := sp.NewSigner(sec, false); err == nil && bytes.Equal(signer.PublicKey(), k.g.PublicKey) {
			return
		}
	}
	s.logf("note: no known secret of %s derives its public key; is WithKnownSecrets right?", k.ref)
}

// provCanary marks payloads (messages, plaintexts, AAD) in the
// NoPayloadsInErrors check.
var provCanary = []byte("conformance-canary-payload-5f1c9e")

// checkNoPayloadsInErrors: the errors of failed calls do not contain the
// message, digest, plaintext, ciphertext, HPKE info or AAD they were
// given, in any spelling.
func (s *provSuite) checkNoPayloadsInErrors(ctx context.Context) error {
	var errs []provAttempt
	for _, a := range s.algs {
		k, err := s.keyFor(ctx, "payloads", "key", a)
		if err != nil {
			return err
		}
		half := k.g.Handle[:len(k.g.Handle)/2]
		switch k.ref.Use {
		case provider.UseSign:
			big := append(bytes.Clone(provCanary), make([]byte, provider.MaxSignMessage)...)
			_, err := s.p.Sign(ctx, k.ref, k.g.Handle, big)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Sign(%s) of an oversize message", k.ref), err: err})
			_, err = s.p.Sign(ctx, k.ref, half, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Sign(%s) with a truncated handle", k.ref), err: err})
			_, err = s.p.Seal(ctx, k.ref, k.g.Handle, provCanary, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Seal(%s) with a signature key", k.ref), err: err})
			_, err = s.p.MAC(ctx, k.ref, k.g.Handle, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("MAC(%s) with a signature key", k.ref), err: err})
			// The canary as a digest: of no hash's size, or refused by an
			// algorithm that signs no digests.
			_, err = s.p.SignDigest(ctx, k.ref, k.g.Handle, s.misuseDigestHash(k.ref.Algorithm), provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("SignDigest(%s) of a digest of the wrong size", k.ref), err: err})
		case provider.UseMAC:
			big := append(bytes.Clone(provCanary), make([]byte, provider.MaxMACMessage)...)
			_, err := s.p.MAC(ctx, k.ref, k.g.Handle, big)
			errs = append(errs, provAttempt{what: fmt.Sprintf("MAC(%s) of an oversize message", k.ref), err: err})
			_, err = s.p.MAC(ctx, k.ref, half, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("MAC(%s) with a truncated handle", k.ref), err: err})
			_, err = s.p.Sign(ctx, k.ref, k.g.Handle, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Sign(%s) with a MAC key", k.ref), err: err})
			_, err = s.p.Seal(ctx, k.ref, k.g.Handle, provCanary, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Seal(%s) with a MAC key", k.ref), err: err})
		case provider.UseDecrypt:
			_, err := s.p.Sign(ctx, k.ref, k.g.Handle, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Sign(%s) with an AEAD key", k.ref), err: err})
			_, err = s.p.MAC(ctx, k.ref, k.g.Handle, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("MAC(%s) with an AEAD key", k.ref), err: err})
			big := append(bytes.Clone(provCanary), make([]byte, provider.MaxSealPlaintext)...)
			_, err = s.p.Seal(ctx, k.ref, k.g.Handle, big, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Seal(%s) of an oversize plaintext", k.ref), err: err})
			_, err = s.p.Seal(ctx, k.ref, half, provCanary, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Seal(%s) with a truncated handle", k.ref), err: err})
			sealed, err := s.p.Seal(ctx, k.ref, k.g.Handle, provCanary, provCanary)
			if err != nil {
				return fmt.Errorf("Seal(%s): %w; want success", k.ref, err)
			}
			bad := bytes.Clone(sealed)
			bad[len(bad)-1] ^= 1
			_, err = s.p.Open(ctx, k.ref, k.g.Handle, bad, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Open(%s) of a tampered blob", k.ref), err: err})
			_, err = s.p.Open(ctx, k.ref, k.g.Handle, sealed, append(bytes.Clone(provCanary), 'x'))
			errs = append(errs, provAttempt{what: fmt.Sprintf("Open(%s) with the wrong AAD", k.ref), err: err})
			_, err = s.p.Open(ctx, k.ref, k.g.Handle, provCanary, nil)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Open(%s) of garbage", k.ref), err: err})
		case provider.UseAsymmetricDecrypt:
			_, err := s.p.Sign(ctx, k.ref, k.g.Handle, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Sign(%s) with an HPKE key", k.ref), err: err})
			_, err = s.p.Seal(ctx, k.ref, k.g.Handle, provCanary, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Seal(%s) with an HPKE key", k.ref), err: err})
			m := k.hpkeMessage(k.ref)
			_, err = s.p.Decrypt(ctx, k.ref, k.g.Handle, m.enc, m.ct, provCanary, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Decrypt(%s) with the wrong info and AAD", k.ref), err: err})
			_, err = s.p.Decrypt(ctx, k.ref, half, m.enc, m.ct, provCanary, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Decrypt(%s) with a truncated handle", k.ref), err: err})
			_, err = s.p.Decrypt(ctx, k.ref, k.g.Handle, provCanary, provCanary, provCanary, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Decrypt(%s) of garbage", k.ref), err: err})
			big := append(bytes.Clone(provCanary), make([]byte, provider.MaxHPKEInfo)...)
			_, err = s.p.Decrypt(ctx, k.ref, k.g.Handle, m.enc, m.ct, big, provCanary)
			errs = append(errs, provAttempt{what: fmt.Sprintf("Decrypt(%s) with oversize info", k.ref), err: err})
		}
	}
	var f provFails
	n := 0
	for _, at := range errs {
		if at.err == nil {
			continue
		}
		n++
		text := []byte(fmt.Sprintf("%v\n%+v\n%#v", at.err, at.err, at.err))
		if form, ok := findSecret(text, provCanary); ok {
			f.addf("the error of %s contains its payload in %s form: %q; want identifiers only", at.what, form, truncate(at.err.Error(), 200))
		}
	}
	if n == 0 {
		return skipf("no call the check makes failed, so no error text could be searched")
	}
	return f.err()
}

// checkRedaction: with WithKnownSecrets, the provider value printed with
// %v, %+v, %#v, %s and %x, after it generated a key of every algorithm,
// contains no secret of those keys.
func (s *provSuite) checkRedaction(ctx context.Context) error {
	if s.known == nil {
		return skipf("provider's private material is unknown; pass WithKnownSecrets")
	}
	type keySecrets struct {
		ref     provider.KeyRef
		secrets [][]byte
	}
	var all []keySecrets
	for _, a := range s.algs {
		k, err := s.keyFor(ctx, "redaction", "key", a)
		if err != nil {
			return err
		}
		// Use the key, so that a provider that caches keys holds it.
		if err := s.works(ctx, k); err != nil {
			return err
		}
		secrets, err := s.knownSecrets(k.ref)
		if err != nil {
			return err
		}
		all = append(all, keySecrets{k.ref, secrets})
	}
	var f provFails
	searched := 0
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		text := []byte(fmt.Sprintf(verb, s.raw))
		for _, ks := range all {
			for i, sec := range ks.secrets {
				searched++
				if form, ok := findSecret(text, sec); ok {
					f.addf("fmt %s of the provider contains known secret %d of %s in %s form; want it redacted", verb, i, ks.ref, form)
				}
			}
		}
	}
	if searched == 0 {
		return fmt.Errorf("WithKnownSecrets returned no secret of %d bytes or more for any key: nothing was searched", provMinSecret)
	}
	return f.err()
}
