// Package pkcs11 is a keystored provider whose keys live in a PKCS#11
// token (a hardware security module, a smart card, SoftHSM2): keys are
// generated inside the token, sensitive and never extractable, and every
// private-key operation runs there. [New] returns the provider, which
// announces exactly the algorithms the token's mechanisms allow (of
// ed25519, ed448, ed25519ph, ECDSA P-256 and P-384, RSA-PSS and RSA
// PKCS#1 v1.5 of 2048 to 4096 bits, HMAC-SHA-256/384/512 and
// aes-256-gcm; Config.Algorithms may limit them); [Provider] adds Close.
// ECDSA, RSA and Ed25519ph sign a digest computed on the host, so Sign of
// a message is SignDigest of its digest; a new key pair passes a pairwise
// consistency test before Generate returns.
//
// A handle only names the key's token objects, by an ID derived from the
// KeyRef, so it cannot name another key's objects. Calls borrow logged-in
// sessions from a pool (key generation and destruction use sessions of
// their own, and a slow RSA generation holds no lock others need), and a
// session lost to a token reset is replaced and the call retried once. Every CKR_ value maps to a contract code
// through one table; the provider never logs.
//
// Key import (NewImportKey, Import) opens the caller's HPKE-sealed
// material in the plugin's memory (the one-time wrapping keys live there,
// providers/internal/importkey) and brings it into the token with
// C_UnwrapKey (CKM_AES_KEY_WRAP_PAD), as a key with the attributes of a
// generated one; a probe at start decides which kinds of key the token
// takes (SoftHSM2 2.6.1: not Ed25519). PKCS#11 has no HPKE mechanism, so
// the provider offers no asymmetric-decrypt algorithm and Decrypt is
// ENOTSUP.
//
// The package needs cgo (github.com/miekg/pkcs11), so the daemon runs it
// out of process, as the plugin binary cmd/keystore-plugin-pkcs11.
// docs/hardware.md has the configuration, the object layout, sessions,
// errors and the limits of SoftHSM2.
package pkcs11
