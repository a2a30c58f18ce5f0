package plugin

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/providers/testseed"
)

// secretForms returns the ways a secret could appear in text output: raw,
// hex in both cases, base64 (standard and URL, padded or not) and Go's
// %v of a byte slice.
func secretForms(secret []byte) map[string][]byte {
	return map[string][]byte{
		"raw":           secret,
		"hex":           []byte(hex.EncodeToString(secret)),
		"HEX":           []byte(strings.ToUpper(hex.EncodeToString(secret))),
		"base64":        []byte(base64.StdEncoding.EncodeToString(secret)),
		"base64 raw":    []byte(base64.RawStdEncoding.EncodeToString(secret)),
		"base64url":     []byte(base64.URLEncoding.EncodeToString(secret)),
		"base64url raw": []byte(base64.RawURLEncoding.EncodeToString(secret)),
		"%v":            []byte(strings.Trim(fmt.Sprint(secret), "[]")),
	}
}

// TestPluginOutputHasNoSecrets runs a workload through a keystore backed
// by the INSECURE testseed plugin (every algorithm; signs of messages and
// digests, seals, failed unseals, MACs and failed MAC verifications,
// corrupted handles, revoke, rotate, destroy, a crash and a restart),
// captures everything the plugin wrote (its stderr and stdio,
// raw and as forwarded into the host log) and searches it for every
// private key and the KEK: there must be none.
func TestPluginOutputHasNoSecrets(t *testing.T) {
	t.Parallel()
	raw, logs := &syncBuffer{}, &syncBuffer{}
	c := testseedPlugin(t, Config{Logger: testLogger(logs), rawOutput: raw, RestartBackoff: 1})
	ks := openKeystore(t, c)
	ctx := t.Context()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var refs []provider.KeyRef
	for i, a := range info.Algorithms {
		id, err := provider.NewKeyID("app", "leak", fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		md, err := ks.Create(ctx, testCaller, id, core.CreateOptions{Algorithm: a})
		if err != nil {
			t.Fatalf("create %s: %v", a, err)
		}
		use := md.Use
		for v := provider.Version(1); v <= 2; v++ {
			refs = append(refs, provider.KeyRef{ID: id, Version: v, Algorithm: a, Use: use, Provider: info.Name})
		}
		for round := 0; round < 2; round++ {
			switch use {
			case provider.UseSign:
				if _, err := ks.Sign(ctx, testCaller, id, []byte("message")); err != nil {
					t.Fatalf("sign %s: %v", a, err)
				}
				if s, err := alg.Default().Lookup(a); err == nil && s.Hash != 0 {
					in := core.SignInput{Digest: make([]byte, s.Hash.Size()), Hash: s.Hash}
					if _, err := ks.SignWith(ctx, testCaller, id, 0, in); err != nil {
						t.Fatalf("sign a digest with %s: %v", a, err)
					}
				}
			case provider.UseMAC:
				tag, err := ks.MAC(ctx, testCaller, id, []byte("message"))
				if err != nil {
					t.Fatalf("mac %s: %v", a, err)
				}
				if err := ks.VerifyMAC(ctx, testCaller, id, tag.Version, []byte("other message"), tag.Tag); err == nil {
					t.Fatalf("verify-mac %s of another message succeeded", a)
				}
			case provider.UseDecrypt:
				sealed, err := ks.Seal(ctx, testCaller, id, []byte("plaintext"), []byte("aad"))
				if err != nil {
					t.Fatalf("seal %s: %v", a, err)
				}
				if _, err := ks.Unseal(ctx, testCaller, id, sealed.Data, []byte("other aad")); err == nil {
					t.Fatalf("unseal %s with the wrong AAD succeeded", a)
				}
			}
			if round == 0 {
				if _, err := ks.Rotate(ctx, testCaller, id); err != nil {
					t.Fatalf("rotate %s: %v", a, err)
				}
			}
		}
		// Corrupted and misbound handles, straight to the plugin.
		g, err := c.Generate(ctx, provider.KeyRef{ID: id, Version: 3, Algorithm: a, Use: use, Provider: info.Name})
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, provider.KeyRef{ID: id, Version: 3, Algorithm: a, Use: use, Provider: info.Name})
		bad := bytes.Clone(g.Handle)
		bad[len(bad)-1] ^= 1
		other := provider.KeyRef{ID: id, Version: 4, Algorithm: a, Use: use, Provider: info.Name}
		for _, tc := range []struct {
			ref provider.KeyRef
			h   provider.Handle
		}{{refs[len(refs)-1], bad}, {other, g.Handle}} {
			switch use {
			case provider.UseSign:
				_, err = c.Sign(ctx, tc.ref, tc.h, []byte("m"))
			case provider.UseMAC:
				_, err = c.MAC(ctx, tc.ref, tc.h, []byte("m"))
			default:
				_, err = c.Open(ctx, tc.ref, tc.h, make([]byte, 64), nil)
			}
			if err == nil {
				t.Fatalf("%s: a corrupted or misbound handle worked", a)
			}
		}
		if _, err := ks.Revoke(ctx, testCaller, id); err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Destroy(ctx, testCaller, id); err != nil {
			t.Fatalf("destroy %s: %v", a, err)
		}
	}
	// A crash and a restart add go-plugin's messages to the output.
	killPlugin(t, c)
	for i := 0; i < 2; i++ {
		if _, err := c.Generate(ctx, refs[0]); err == nil {
			break
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	outputs := map[string][]byte{"raw plugin output": raw.Bytes(), "host log": logs.Bytes()}
	if !bytes.Contains(outputs["raw plugin output"], []byte("INSECURE")) || !bytes.Contains(outputs["host log"], []byte("INSECURE")) {
		t.Fatalf("the plugin's start-up warning was not captured and forwarded:\nraw:\n%s\nlog:\n%s", outputs["raw plugin output"], outputs["host log"])
	}
	type secret struct {
		what string
		b    []byte
	}
	kek, err := testseed.InsecureKEK(testSeed)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []secret{{"KEK", kek}, {"seed", testSeed}}
	for _, ref := range refs {
		known, err := testseed.InsecureKnownSecrets(testSeed, ref)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range known {
			secrets = append(secrets, secret{fmt.Sprintf("%s (%s) secret %d", ref, ref.Algorithm, i), s})
		}
	}
	searched := 0
	for _, s := range secrets {
		for form, needle := range secretForms(s.b) {
			for name, hay := range outputs {
				searched++
				if bytes.Contains(hay, needle) {
					t.Errorf("%s found in the %s as %s", s.what, name, form)
				}
			}
		}
	}
	t.Logf("searched %d bytes of plugin output and %d of host log for %d secrets (%d searches)",
		len(outputs["raw plugin output"]), len(outputs["host log"]), len(secrets), searched)
}
