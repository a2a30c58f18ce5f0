package provider

import "context"

// KEKRotator is the optional interface of a provider whose handles are
// wrapped under a key-encryption key (Info.KEKs) and that can replace that
// KEK. The core drives a rotation (core.Keystore.RotateKEK): Begin, then
// RewrapHandle for every stored handle, then Commit. Every step is durable
// before it returns and may be repeated after a crash: a provider
// restarted in the middle of a rotation holds both KEKs (Info.KEKs =
// [next, current]) until Commit.
//
// A provider that cannot rotate its KEK does not implement KEKRotator (the
// core then answers ENOTSUP); across the plugin boundary the plugin
// answers ENOTSUP for a served provider without it.
type KEKRotator interface {
	// BeginKEKRotation makes (or, when one is already pending, resumes)
	// the next KEK durably. From its return on, new handles are wrapped
	// under it, handles under either KEK unwrap, and Info.KEKs is [next,
	// current]. It returns the next KEK's fingerprint.
	BeginKEKRotation(ctx context.Context) (string, error)
	// RewrapHandle returns h wrapped under the KEK new handles are
	// wrapped under (the pending one during a rotation), bound to ref as
	// before; it returns h itself when h already is. A handle that does
	// not authenticate under ref is EIO, a destroyed one ENOENT.
	RewrapHandle(ctx context.Context, ref KeyRef, h Handle) (Handle, error)
	// CommitKEKRotation makes the pending KEK the only one, durably: from
	// its return on, a handle still wrapped under the old KEK fails (EIO,
	// "wrong KEK") and Info.KEKs is [next]. Without a pending rotation it
	// does nothing.
	CommitKEKRotation(ctx context.Context) error
}
