package client_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
)

// A DataKey never prints its plaintext: not with any fmt verb, nor as
// JSON, nor through slog.
func TestDataKeyDoesNotPrint(t *testing.T) {
	secret := bytes.Repeat([]byte{0xab}, 32)
	d := client.DataKey{Key: "app/box/k", Version: 3, Plaintext: secret, Sealed: []byte("sealed")}
	j, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("made", "dk", d)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("made", "dk", d)
	outs := map[string]string{
		"%v": fmt.Sprintf("%v", d), "%+v": fmt.Sprintf("%+v", d), "%#v": fmt.Sprintf("%#v", d), "%s": fmt.Sprintf("%s", d),
		"%x": fmt.Sprintf("%x", d), "%q": fmt.Sprintf("%q", d), "json": string(j), "slog": logged.String(),
		"%v of a pointer": fmt.Sprintf("%v", &d), "%v in a slice": fmt.Sprintf("%v", []client.DataKey{d}),
	}
	for how, out := range outs {
		for _, leak := range []string{hex.EncodeToString(secret), "171 171", "q6urq6urq6ur"} { // hex, %v of bytes, base64
			if strings.Contains(strings.ToLower(out), leak) {
				t.Errorf("%s prints the plaintext: %s", how, out)
			}
		}
		if !strings.Contains(out, "app/box/k") {
			t.Errorf("%s does not name the key: %s", how, out)
		}
	}
	d.Wipe()
	if !bytes.Equal(secret, make([]byte, 32)) {
		t.Error("Wipe left the plaintext")
	}
}

// GenerateDataKey's key unseals from its sealed form with the same aad
// only, under the key's primary version; the specs give their sizes.
func TestGenerateDataKeyThroughDaemon(t *testing.T) {
	c, _ := dial(t, clienttest.Options{})
	ctx := context.Background()
	if _, err := c.Create(ctx, "box/k", client.CreateOptions{Algorithm: client.XChaCha20Poly1305}); err != nil {
		t.Fatal(err)
	}
	aad := []byte("files/report.pdf")
	for spec, size := range map[client.DataKeySpec]int{
		{}: 32, {Spec: "aes-256-gcm"}: 32, {Spec: "aes-128-gcm"}: 16, {Spec: "chacha20-poly1305"}: 32,
		{Spec: "xchacha20-poly1305"}: 32, {Bytes: 16}: 16, {Bytes: 64}: 64,
	} {
		d, err := c.GenerateDataKey(ctx, "box/k", spec, aad)
		if err != nil {
			t.Fatalf("%+v: %v", spec, err)
		}
		if len(d.Plaintext) != size || d.Key != "app/box/k" || d.Version != 1 {
			t.Errorf("%+v: %v, want %d bytes under app/box/k@1", spec, d, size)
		}
		u, err := c.Unseal(ctx, "box/k", d.Sealed, aad)
		if err != nil || !bytes.Equal(u.Plaintext, d.Plaintext) {
			t.Errorf("%+v: Unseal = %v; want the data key", spec, err)
		}
		if _, err := c.Unseal(ctx, "box/k", d.Sealed, []byte("other")); !errors.Is(err, client.ErrBadMessage) {
			t.Errorf("%+v: Unseal with another aad: %v, want ErrBadMessage", spec, err)
		}
	}
	if _, err := c.GenerateDataKey(ctx, "box/k", client.DataKeySpec{Spec: "rot13"}, nil); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("unknown spec: %v, want ErrInvalid", err)
	}
	w, err := c.GenerateDataKeyWithoutPlaintext(ctx, "box/k", client.DataKeySpec{}, aad)
	if err != nil || w.Plaintext != nil || len(w.Sealed) == 0 {
		t.Fatalf("GenerateDataKeyWithoutPlaintext = %v, %v", w, err)
	}
	if u, err := c.Unseal(ctx, "box/k", w.Sealed, aad); err != nil || len(u.Plaintext) != 32 {
		t.Errorf("Unseal of the sealed data key: %d bytes, %v", len(u.Plaintext), err)
	}
	if _, err := c.Rotate(ctx, "box/k"); err != nil {
		t.Fatal(err)
	}
	if d, err := c.GenerateDataKey(ctx, "box/k", client.DataKeySpec{}, nil); err != nil || d.Version != 2 {
		t.Errorf("after a rotation: %v, %v; want version 2", d, err)
	}
	if _, err := c.Create(ctx, "sig/k", client.CreateOptions{Algorithm: client.Ed25519}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GenerateDataKey(ctx, "sig/k", client.DataKeySpec{}, nil); !errors.Is(err, client.ErrPermission) {
		t.Errorf("with a signing key: %v, want ErrPermission", err)
	}
}
