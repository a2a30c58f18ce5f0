// Package pkcs11 is a keystored provider whose keys live in a PKCS#11
// token (a hardware security module, a smart card, or SoftHSM2): keys are
// generated inside the token, marked sensitive and never extractable, and
// every private-key operation runs there. The provider never sees private
// key bytes.
//
// It uses github.com/miekg/pkcs11 and so needs cgo. keystored runs it out
// of process, as the plugin binary cmd/keystore-plugin-pkcs11, so cgo and
// the vendor's library never enter the daemon; New can also be used in
// process (tests, tools).
//
// # Algorithms
//
// Info announces exactly what the token supports, read from its mechanism
// list at New:
//
//   - ed25519 when the token has CKM_EC_EDWARDS_KEY_PAIR_GEN (0x1055) with
//     CKF_GENERATE_KEY_PAIR and CKM_EDDSA (0x1057) with CKF_SIGN (PKCS#11
//     3.0). Keys are made with CKA_EC_PARAMS = the DER OID 1.3.101.112
//     (06 03 2B 65 70, RFC 8410); signatures are pure Ed25519 (CKM_EDDSA
//     without parameters).
//   - aes-256-gcm when it has CKM_AES_KEY_GEN with CKF_GENERATE and
//     CKM_AES_GCM with CKF_ENCRYPT and CKF_DECRYPT, both allowing 32-byte
//     keys. Seal draws a 12-byte IV from crypto/rand and returns
//     IV ‖ ciphertext ‖ 16-byte tag, the layout of the software provider.
//
// # Objects and handles
//
// Each key version is one object (AES) or a pair of objects (Ed25519) on
// the token with CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true, CKA_EXTRACTABLE
// and CKA_MODIFIABLE false (where the token accepts it), CKA_SIGN only on the
// Ed25519 private key, CKA_ENCRYPT and CKA_DECRYPT only on the AES key. All
// objects of a version share CKA_ID = the first 20 bytes of
// SHA-256("keystored/pkcs11/id/v1" ‖ KeyRef.AppendBinary), and CKA_LABEL is
// the versioned key ID ("app/purpose/name@N").
//
// A handle is "KSP1" ‖ CKA_ID (24 bytes). It is only a reference: on every
// use the provider recomputes the CKA_ID from the KeyRef it is given and
// refuses (EIO) a handle that differs, so a handle cannot name the key of
// another key ID, version, algorithm, use or provider name. Objects are
// found by CKA_ID and class; their PKCS#11 object handles are cached and
// the cache is dropped when the token reports a stale handle or a reset.
//
// Generate first destroys any object already carrying the version's
// CKA_ID (left by a crash between Generate and the core's metadata write),
// so a repeated Generate replaces the key and never duplicates it. Destroy
// deletes the objects; later uses fail with ENOENT, and a second Destroy
// succeeds.
//
// # Sessions
//
// The provider keeps a pool of logged-in read/write sessions (Config.
// PoolSize; by default min(the token's read/write session limit,
// 2×GOMAXPROCS, 8)); each call borrows one, so calls run in parallel up to
// the pool size and wait (honouring ctx) beyond it. Generate and Destroy,
// which create and delete token objects, run one at a time per provider:
// SoftHSM2 fails now and then when threads do that concurrently. When the
// token reports
// that a session or the login is gone (CKR_SESSION_HANDLE_INVALID,
// CKR_SESSION_CLOSED, CKR_USER_NOT_LOGGED_IN, CKR_DEVICE_REMOVED,
// CKR_TOKEN_NOT_PRESENT, CKR_CRYPTOKI_NOT_INITIALIZED), the provider
// discards every session of the old generation, opens a new one, logs in
// again and retries the call once.
//
// # Errors
//
// Every CKR_ value maps to a contract code through one table (errors.go);
// a failed Open is EBADMSG "message authentication failed" whatever the
// token said, with no output. Errors name the key, never a payload. The
// provider never logs.
//
// # Memory
//
// The PIN is kept (as secret.Bytes) for re-login after a reset and wiped by
// Close; the binding passes it to the library as a Go string, which cannot
// be wiped. Plaintexts returned by Open pass through a buffer the binding
// allocates in C and frees without clearing.
package pkcs11
