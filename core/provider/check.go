package provider

import "context"

// The checks every provider makes before any work, so that every provider
// (and the plugin wire layer on both sides) refuses the same inputs with
// the same codes and messages. Over a bound the result is EMSGSIZE.

// CheckContext returns an error wrapping ErrUnavailable, and ctx's own
// error, once ctx is done.
func CheckContext(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return Errorf(EUNAVAILABLE, "request cancelled: %w", err)
	}
	return nil
}

// CheckSign checks Sign's message against MaxSignMessage.
func CheckSign(msg []byte) error {
	if len(msg) > MaxSignMessage {
		return Errorf(EMSGSIZE, "message to sign is over %d bytes", MaxSignMessage)
	}
	return nil
}

// CheckSeal checks Seal's plaintext against MaxSealPlaintext and its
// associated data against MaxProviderAAD.
func CheckSeal(plaintext, aad []byte) error {
	if len(plaintext) > MaxSealPlaintext {
		return Errorf(EMSGSIZE, "plaintext is over %d bytes", MaxSealPlaintext)
	}
	return checkProviderAAD(aad)
}

// CheckOpen checks Open's sealed input against MaxSealed and its
// associated data against MaxProviderAAD.
func CheckOpen(sealed, aad []byte) error {
	if len(sealed) > MaxSealed {
		return Errorf(EMSGSIZE, "sealed message is over %d bytes", MaxSealed)
	}
	return checkProviderAAD(aad)
}

func checkProviderAAD(aad []byte) error {
	if len(aad) > MaxProviderAAD {
		return Errorf(EMSGSIZE, "associated data is over %d bytes", MaxProviderAAD)
	}
	return nil
}
