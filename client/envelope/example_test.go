package envelope_test

import (
	"context"
	"log"
	"os"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/envelope"
)

// Encrypt a file of any size under a new data key sealed by the decrypt
// key backups/db, writing to a temporary name and renaming only once
// the whole envelope is written.
func ExampleEncrypt() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	in, err := os.Open("dump.sql")
	if err != nil {
		log.Fatal(err)
	}
	defer in.Close()
	out, err := os.CreateTemp(".", ".dump.sql.ksenv-*")
	if err != nil {
		log.Fatal(err)
	}
	res, err := envelope.Encrypt(ctx, c, "backups/db", out, in, envelope.EncryptOptions{AAD: []byte("host-1")})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		log.Fatal(err)
	}
	if err := os.Rename(out.Name(), "dump.sql.ksenv"); err != nil {
		log.Fatal(err)
	}
	log.Printf("encrypted %d bytes with %s@%d", res.Plaintext, res.Key, res.Version)
}

// Decrypt an envelope: what Decrypt wrote is usable only if it returns
// nil (a damaged file fails at its bad segment, after the good ones).
func ExampleDecrypt() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	in, err := os.Open("dump.sql.ksenv")
	if err != nil {
		log.Fatal(err)
	}
	defer in.Close()
	out, err := os.CreateTemp(".", ".dump.sql-*")
	if err != nil {
		log.Fatal(err)
	}
	_, err = envelope.Decrypt(ctx, c, out, in, envelope.DecryptOptions{ExpectKey: "backups/db", AAD: []byte("host-1")})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name()) // never use a partial plaintext
		log.Fatal(err)
	}
	if err := os.Rename(out.Name(), "dump.sql"); err != nil {
		log.Fatal(err)
	}
}
