package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/keyfmt"
)

// TestJWTsVerifiedByGoJose: JWTs signed through client.Signer (with
// go-jose's cryptosigner, as an issuer would) as ES256, ES384, RS256,
// PS256 and EdDSA verify with go-jose against the key set `keystorectl
// pubkey --format jwks` prints, found by the token's kid; after a rotate
// the old token still verifies against the new key set and a token of the
// new version too; a token of another key, or an edited one, does not.
func TestJWTsVerifiedByGoJose(t *testing.T) {
	d := start(t)
	c := dial(t, d)
	ctx := context.Background()
	claims := jwt.Claims{Issuer: "keystored", Subject: "interop", Audience: jwt.Audience{"tests"},
		Expiry: jwt.NewNumericDate(notAfter), IssuedAt: jwt.NewNumericDate(notBefore)}
	for _, tc := range []struct {
		alg client.Algorithm
		jws jose.SignatureAlgorithm
	}{
		{client.ECDSAP256, jose.ES256}, {client.ECDSAP384, jose.ES384},
		{client.RSA2048PKCS1, jose.RS256}, {client.RSA2048PSS, jose.PS256}, {client.Ed25519, jose.EdDSA},
	} {
		t.Run(string(tc.jws), func(t *testing.T) {
			key := "jwt/" + string(tc.alg)
			if _, err := c.Create(ctx, key, client.CreateOptions{Algorithm: tc.alg}); err != nil {
				t.Fatal(err)
			}
			issue := func() string {
				t.Helper()
				s, err := c.Signer(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				j, err := keyfmt.NewJWK(s.KeyVersion())
				if err != nil {
					t.Fatal(err)
				}
				if j.Alg != string(tc.jws) {
					t.Fatalf("JWK alg %s, want %s", j.Alg, tc.jws)
				}
				signer, err := jose.NewSigner(jose.SigningKey{Algorithm: tc.jws, Key: cryptosigner.Opaque(s)},
					(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), j.Kid))
				if err != nil {
					t.Fatal(err)
				}
				tok, err := jwt.Signed(signer).Claims(claims).Serialize()
				if err != nil {
					t.Fatalf("sign a %s JWT: %v", tc.jws, err)
				}
				return tok
			}
			keySet := func() jose.JSONWebKeySet {
				t.Helper()
				var set jose.JSONWebKeySet
				if err := json.Unmarshal(ctlOK(t, d, nil, "pubkey", key, "--format", "jwks").stdout, &set); err != nil {
					t.Fatalf("go-jose cannot read the key set: %v", err)
				}
				return set
			}
			verify := func(tok string, set jose.JSONWebKeySet) error {
				parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{tc.jws})
				if err != nil {
					return err
				}
				if len(parsed.Headers) != 1 {
					t.Fatalf("%d headers", len(parsed.Headers))
				}
				keys := set.Key(parsed.Headers[0].KeyID)
				if len(keys) != 1 {
					return jose.ErrUnsupportedKeyType
				}
				var got jwt.Claims
				if err := parsed.Claims(keys[0].Key, &got); err != nil {
					return err
				}
				return got.ValidateWithLeeway(jwt.Expected{Issuer: "keystored", AnyAudience: jwt.Audience{"tests"}, Time: notBefore.Add(time.Hour)}, 0)
			}
			old := issue()
			if err := verify(old, keySet()); err != nil {
				t.Fatalf("go-jose: %v", err)
			}
			if _, err := c.Rotate(ctx, key); err != nil {
				t.Fatal(err)
			}
			fresh := issue()
			set := keySet()
			if len(set.Keys) != 2 {
				t.Fatalf("key set after a rotate has %d keys, want 2", len(set.Keys))
			}
			for _, tok := range []string{old, fresh} {
				if err := verify(tok, set); err != nil {
					t.Fatalf("go-jose after a rotate: %v", err)
				}
			}
			edited := []byte(fresh)
			edited[len(edited)/2] ^= 1
			if err := verify(string(edited), set); err == nil {
				t.Fatal("go-jose verified an edited token")
			}
		})
	}
}
