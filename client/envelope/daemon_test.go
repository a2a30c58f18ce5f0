package envelope_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/clienttest"
	"github.com/nexus-os/keystored/client/envelope"
)

// Through the real daemon: a file encrypted with a key decrypts after the
// key rotated, names its key and version, refuses another expected key,
// and stops decrypting once its version is revoked.
func TestEnvelopeThroughDaemon(t *testing.T) {
	srv := clienttest.Start(t, clienttest.Options{App: "web"})
	ctx := context.Background()
	c, err := client.Dial(ctx, srv.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, k := range []string{"files/k", "files/other"} {
		if _, err := c.Create(ctx, k, client.CreateOptions{Algorithm: client.XChaCha20Poly1305}); err != nil {
			t.Fatal(err)
		}
	}
	pt := patternBytes(2<<20 + 99)
	var file bytes.Buffer
	res, err := envelope.Encrypt(ctx, c, "files/k", &file, bytes.NewReader(pt), envelope.EncryptOptions{AAD: []byte("report.pdf")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Key != "web/files/k" || res.Version != 1 || res.Plaintext != int64(len(pt)) {
		t.Errorf("Encrypt = %+v", res)
	}
	if _, err := c.Rotate(ctx, "files/k"); err != nil {
		t.Fatal(err)
	}
	for _, expect := range []string{"", "files/k", "web/files/k"} {
		var out bytes.Buffer
		res, err := envelope.Decrypt(ctx, c, &out, bytes.NewReader(file.Bytes()), envelope.DecryptOptions{AAD: []byte("report.pdf"), ExpectKey: expect})
		if err != nil || !bytes.Equal(out.Bytes(), pt) || res.Key != "web/files/k" || res.Version != 1 {
			t.Errorf("Decrypt (expect %q) after a rotation = %+v, %v", expect, res, err)
		}
	}
	var out bytes.Buffer
	if _, err := envelope.Decrypt(ctx, c, &out, bytes.NewReader(file.Bytes()), envelope.DecryptOptions{AAD: []byte("report.pdf"), ExpectKey: "files/other"}); !errors.Is(err, client.ErrBadMessage) || out.Len() != 0 {
		t.Errorf("Decrypt expecting another key: %v, %d bytes out", err, out.Len())
	}
	if _, err := envelope.Decrypt(ctx, c, &out, bytes.NewReader(file.Bytes()), envelope.DecryptOptions{AAD: []byte("other.pdf")}); !errors.Is(err, client.ErrBadMessage) || out.Len() != 0 {
		t.Errorf("Decrypt with another AAD: %v, %d bytes out", err, out.Len())
	}
	if _, err := c.RevokeVersion(ctx, "files/k", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.Decrypt(ctx, c, &out, bytes.NewReader(file.Bytes()), envelope.DecryptOptions{AAD: []byte("report.pdf")}); !errors.Is(err, client.ErrKeyRevoked) || out.Len() != 0 {
		t.Errorf("Decrypt after version 1 was revoked: %v, %d bytes out", err, out.Len())
	}
}
