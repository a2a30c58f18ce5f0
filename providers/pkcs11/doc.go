// Package pkcs11 is a keystored provider whose keys live in a PKCS#11
// token (a hardware security module, a smart card, SoftHSM2): keys are
// generated inside the token, sensitive and never extractable, and every
// private-key operation runs there. [New] returns the provider, which
// announces exactly the algorithms the token's mechanisms allow (ed25519,
// aes-256-gcm); [Provider] adds Close.
//
// A handle only names the key's token objects, by an ID derived from the
// KeyRef, so it cannot name another key's objects. Calls borrow logged-in
// sessions from a pool, and a session lost to a token reset is replaced
// and the call retried once. Every CKR_ value maps to a contract code
// through one table; the provider never logs.
//
// The package needs cgo (github.com/miekg/pkcs11), so the daemon runs it
// out of process, as the plugin binary cmd/keystore-plugin-pkcs11.
// docs/hardware.md has the configuration, the object layout, sessions,
// errors and the limits of SoftHSM2.
package pkcs11
