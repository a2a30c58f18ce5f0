package main

import (
	"testing"

	"github.com/cloudflare/circl/sign/ed448"
)

func ed448Public(t *testing.T) []byte {
	t.Helper()
	pub, _, err := ed448.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
