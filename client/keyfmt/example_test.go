package keyfmt_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/keyfmt"
)

// The key set a JWT issuer publishes: every active version of its key
// (here RFC 8037's example Ed25519 key as version 1), kid the RFC 7638
// thumbprint. With a client: info, err := c.Get(ctx, "jwt/issuer").
func ExampleNewJWKS() {
	raw, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		log.Fatal(err)
	}
	info := client.KeyInfo{
		ID: "web/jwt/issuer", Algorithm: client.Ed25519, Uses: []string{"sign"}, State: client.KeyActive, CurrentVersion: 1,
		Versions: []client.KeyVersion{{Version: 1, State: client.VersionPrimary, PublicKey: raw}},
	}
	set, err := keyfmt.NewJWKS(info)
	if err != nil {
		log.Fatal(err)
	}
	out, err := json.Marshal(set)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
	// Output:
	// {"keys":[{"kty":"OKP","use":"sig","alg":"EdDSA","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}
}
