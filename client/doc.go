// Package client is the typed Go client of keystored, the host key store
// daemon. It talks gRPC (package keystore.v1) over the daemon's Unix
// socket; the daemon knows the caller from the kernel (SO_PEERCRED), so a
// request never names its own identity.
//
//	c, err := client.Dial(ctx, "keystore-state/keystored.sock")
//	if err != nil { ... }
//	defer c.Close()
//	key, err := c.Create(ctx, "signing/release", client.CreateOptions{Algorithm: client.Ed25519})
//	sig, err := c.Sign(ctx, "signing/release", msg)
//	err = c.Verify(ctx, "signing/release", sig.Version, msg, sig.Signature)
//
// Messages over 64 KiB are signed by their digest (SignDigest, for ECDSA,
// RSA and ed25519ph keys); Signer returns a crypto.Signer for any signing
// key, bound to one key version, for crypto/x509, crypto/tls, x/crypto/ssh
// and JOSE libraries; MAC and VerifyMAC make and check HMAC tags. Package
// client/keyfmt writes public keys as PEM, OpenSSH lines and JWK sets.
//
// Envelope encryption: GenerateDataKey returns a fresh data key and the
// same key sealed under a decrypt key (Unseal recovers it); package
// client/envelope encrypts a stream of any size with one. Asymmetric
// decryption: senders encrypt to an asymmetric-decrypt key's public key
// with HPKE (HPKESeal here, or any RFC 9180 implementation) and Decrypt
// opens the message inside the daemon. Key import: GetImportParameters,
// WrapForImport (the material is sealed here, never sent in the clear) and
// Import, or ImportKey for all three; imported keys have KeyInfo.Origin
// OriginImported and rotate only with RotateWith's Generate.
//
// Keys are named "<purpose>/<name>" (a key of the caller's own app) or
// "<app>/<purpose>/<name>" (operators may name any app). A specific
// version is a separate argument, or "@N" where a method takes a key
// reference (Signer, ParseKeyRef).
//
// # Errors
//
// Every error the daemon returns wraps one of the sentinels below (the
// provider contract's codes), so callers test them with errors.Is:
//
//	if errors.Is(err, client.ErrKeyRevoked) { ... }   // or syscall.EKEYREVOKED
//
// A daemon that cannot be reached (no socket, connection refused, the
// daemon going away) gives ErrUnavailable with a message naming the
// socket. A context that ends gives ErrUnavailable too, and the error also
// matches context.Canceled or context.DeadlineExceeded.
//
// # Insecure daemons
//
// A daemon running the INSECURE deterministic test provider marks every
// response with the header "keystored-insecure: true". KeyInfo.Insecure
// reports it per key (the calls that return key metadata read the header
// every time) and Client.Insecure whether a daemon the client was
// connected to carried it: the client reads the headers of the first
// response on every connection it makes, and of no other call, so that a
// Sign costs what a bare gRPC call does. A call that makes a new
// connection (gRPC reconnects, or retries a call the closing connection
// never delivered, inside the call) is followed by a read-only
// ListAnchors whose headers are read, before its response is returned.
// If that ListAnchors gets no response (the call's context ended, the
// connection failed again), the response is returned unchecked; a failed
// ListAnchors in any case leaves the connection unchecked, so the next
// call reads the headers. So one response after a
// reconnect can carry an unread mark; check Client.Insecure again after
// the next call, or use the calls that return key metadata, whose mark
// is read every time.
package client
