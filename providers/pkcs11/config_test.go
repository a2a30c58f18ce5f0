package pkcs11

import (
	"crypto"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/alg"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/core/secret"
)

// TestConfigValidation: every bad configuration fails at New with its code
// and a message that says what is wrong.
func TestConfigValidation(t *testing.T) {
	tk := newToken(t, "config-a")
	tk.initToken(t, "config-b")
	dir := t.TempDir()
	notLib := filepath.Join(dir, "not-a-library.so")
	if err := os.WriteFile(notLib, []byte("not an ELF file"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(*Config)
		code provider.Code
		msg  string
	}{
		{"no module", func(c *Config) { c.Module = "" }, provider.EINVAL, "module is required"},
		{"relative module", func(c *Config) { c.Module = "libsofthsm2.so" }, provider.EINVAL, "not absolute"},
		{"missing module", func(c *Config) { c.Module = filepath.Join(dir, "missing.so") }, provider.EINVAL, "missing.so"},
		{"module is a directory", func(c *Config) { c.Module = dir }, provider.EINVAL, "not a regular file"},
		{"module is not a library", func(c *Config) { c.Module = notLib }, provider.EINVAL, "not a PKCS#11 library"},
		{"no label", func(c *Config) { c.TokenLabel = "" }, provider.EINVAL, "token label is required"},
		{"long label", func(c *Config) { c.TokenLabel = strings.Repeat("x", 33) }, provider.EINVAL, "longer than 32"},
		{"unknown label", func(c *Config) { c.TokenLabel = "nope" }, provider.EINVAL, `tokens present: "config-a", "config-b"`},
		{"no PIN", func(c *Config) { c.PIN = secret.Bytes{} }, provider.EINVAL, "PIN is required"},
		{"long PIN", func(c *Config) { c.PIN = secret.New(make([]byte, MaxPIN+1)) }, provider.EINVAL, "PIN is longer"},
		{"wrong PIN", func(c *Config) { c.PIN = secret.New([]byte("wrong-pin-0000")) }, provider.EPERM, "wrong PIN"},
		{"bad name", func(c *Config) { c.Name = "Not A Segment" }, provider.EINVAL, "provider name"},
		{"negative pool", func(c *Config) { c.PoolSize = -1 }, provider.EINVAL, "pool size"},
		{"huge pool", func(c *Config) { c.PoolSize = MaxPoolSize + 1 }, provider.EINVAL, "pool size"},
		{"unknown algorithm", func(c *Config) { c.Algorithms = []provider.Algorithm{provider.Ed25519, "rot13"} }, provider.EINVAL, `unknown algorithm "rot13"`},
		{"algorithm twice", func(c *Config) { c.Algorithms = []provider.Algorithm{provider.Ed25519, provider.Ed25519} }, provider.EINVAL, `"ed25519" given twice`},
		{"algorithm the token lacks", func(c *Config) { c.Algorithms = []provider.Algorithm{provider.MLDSA65} }, provider.ENOTSUP, `does not support algorithm "ml-dsa-65"; it offers ed25519, ed448,`},
	}
	if libc := "/lib/x86_64-linux-gnu/libc.so.6"; fileExists(libc) {
		cases = append(cases, struct {
			name string
			edit func(*Config)
			code provider.Code
			msg  string
		}{"module is another library", func(c *Config) { c.Module = libc }, provider.EINVAL, "not a PKCS#11 library"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := tk.config()
			c.edit(&cfg)
			p, err := New(cfg)
			if err == nil {
				if cerr := p.Close(); cerr != nil {
					t.Error(cerr)
				}
				t.Fatalf("New succeeded, want %v", c.code)
			}
			wantCode(t, "New", err, c.code)
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not say %q", err, c.msg)
			}
			if strings.Contains(err.Error(), testPIN) {
				t.Errorf("error %q contains the PIN", err)
			}
		})
	}
	// Every failed New released the module; a good one still works.
	p := tk.open(t, func(c *Config) { c.Name = "custom.name-1"; c.PoolSize = 3 })
	info, err := p.Info(t.Context())
	if err != nil || info.Name != "custom.name-1" {
		t.Errorf("Info = %+v, %v; want name custom.name-1", info, err)
	}
	if n := cap(p.(*tokenProvider).pool.slots); n != 3 {
		t.Errorf("pool size %d, want 3", n)
	}
	limited := tk.open(t, func(c *Config) {
		c.Algorithms = []provider.Algorithm{provider.HMACSHA256, provider.ECDSAP256, provider.AES256GCM}
	})
	info, err = limited.Info(t.Context())
	if want := []provider.Algorithm{provider.ECDSAP256, provider.AES256GCM, provider.HMACSHA256}; err != nil || !slices.Equal(info.Algorithms, want) {
		t.Errorf("Info with Config.Algorithms = %v, %v; want %v (the registry's order)", info.Algorithms, err, want)
	}
	_, err = limited.Generate(t.Context(), mustRef(t, "limited", 1, provider.Ed25519))
	wantCode(t, "Generate of an algorithm Config.Algorithms leaves out", err, provider.ENOTSUP)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestPoolSize: the default pool size.
func TestPoolSize(t *testing.T) {
	cases := []struct {
		maxRW uint
		procs int
		want  int
	}{
		{p11.CK_EFFECTIVELY_INFINITE, 1, 2},
		{p11.CK_EFFECTIVELY_INFINITE, 2, 4},
		{p11.CK_EFFECTIVELY_INFINITE, 64, 8},
		{p11.CK_UNAVAILABLE_INFORMATION, 2, 4},
		{3, 64, 1},
		{4, 64, 2},
		{10, 64, 8},
		{9, 64, 7},
		{1, 2, 1},
		{100, 2, 4},
	}
	for _, c := range cases {
		if got := poolSize(c.maxRW, c.procs); got != c.want {
			t.Errorf("poolSize(%d, %d) = %d, want %d", c.maxRW, c.procs, got, c.want)
		}
	}
}

// TestExtraRoom: the spare and slow sessions fit in what the token's
// session limit leaves beside the pool.
func TestExtraRoom(t *testing.T) {
	cases := []struct {
		maxRW uint
		size  int
		want  int
	}{
		{p11.CK_EFFECTIVELY_INFINITE, 8, 2},
		{p11.CK_UNAVAILABLE_INFORMATION, 64, 2},
		{10, 8, 2},
		{10, 9, 1},
		{10, 10, 0},
		{1, 1, 0},
		{100, 2, 2},
	}
	for _, c := range cases {
		if got := extraRoom(c.maxRW, c.size); got != c.want {
			t.Errorf("extraRoom(%d, %d) = %d, want %d", c.maxRW, c.size, got, c.want)
		}
	}
}

// softhsmMechanisms is what SoftHSM2 2.6.1 reports of the mechanisms the
// provider asks about (C_GetMechanismInfo).
var softhsmMechanisms = map[uint]p11.MechanismInfo{
	ckmECEdwardsKeyPairGen:         {MinKeySize: 256, MaxKeySize: 456, Flags: p11.CKF_GENERATE_KEY_PAIR},
	ckmEdDSA:                       {MinKeySize: 256, MaxKeySize: 456, Flags: p11.CKF_SIGN | p11.CKF_VERIFY},
	p11.CKM_EC_KEY_PAIR_GEN:        {MinKeySize: 112, MaxKeySize: 521, Flags: 0x1910000},
	p11.CKM_ECDSA:                  {MinKeySize: 112, MaxKeySize: 521, Flags: 0x1902800},
	p11.CKM_RSA_PKCS_KEY_PAIR_GEN:  {MinKeySize: 512, MaxKeySize: 16384, Flags: p11.CKF_GENERATE_KEY_PAIR},
	p11.CKM_RSA_PKCS:               {MinKeySize: 512, MaxKeySize: 16384, Flags: 0x62b00},
	p11.CKM_RSA_PKCS_PSS:           {MinKeySize: 512, MaxKeySize: 16384, Flags: p11.CKF_SIGN | p11.CKF_VERIFY},
	p11.CKM_AES_KEY_GEN:            {MinKeySize: 16, MaxKeySize: 32, Flags: p11.CKF_GENERATE},
	p11.CKM_AES_GCM:                {MinKeySize: 16, MaxKeySize: 32, Flags: p11.CKF_ENCRYPT | p11.CKF_DECRYPT},
	p11.CKM_GENERIC_SECRET_KEY_GEN: {MinKeySize: 1, MaxKeySize: 0x80000000, Flags: p11.CKF_GENERATE},
	p11.CKM_SHA256_HMAC:            {MinKeySize: 32, MaxKeySize: 512, Flags: p11.CKF_SIGN | p11.CKF_VERIFY},
	p11.CKM_SHA384_HMAC:            {MinKeySize: 48, MaxKeySize: 512, Flags: p11.CKF_SIGN | p11.CKF_VERIFY},
	p11.CKM_SHA512_HMAC:            {MinKeySize: 64, MaxKeySize: 512, Flags: p11.CKF_SIGN | p11.CKF_VERIFY},
}

// softhsmAlgorithms is what the provider announces on SoftHSM2 2.6.1, in
// the registry's order.
var softhsmAlgorithms = []provider.Algorithm{
	provider.Ed25519, provider.Ed448, provider.ECDSAP256, provider.ECDSAP384,
	provider.RSA2048PSS, provider.RSA3072PSS, provider.RSA4096PSS,
	provider.RSA2048PKCS1, provider.RSA3072PKCS1, provider.RSA4096PKCS1,
	provider.AES256GCM, provider.HMACSHA256, provider.HMACSHA384, provider.HMACSHA512,
}

// TestAlgorithmsFrom: an algorithm is announced only when the token has
// every mechanism it needs, with the flags and key sizes it needs.
func TestAlgorithmsFrom(t *testing.T) {
	all := softhsmMechanisms
	with := func(edits map[uint]*p11.MechanismInfo) map[uint]p11.MechanismInfo {
		m := maps.Clone(all)
		for mech, mi := range edits {
			if mi == nil {
				delete(m, mech)
			} else {
				m[mech] = *mi
			}
		}
		return m
	}
	without := func(drop ...provider.Algorithm) []provider.Algorithm {
		return slices.DeleteFunc(slices.Clone(softhsmAlgorithms), func(a provider.Algorithm) bool { return slices.Contains(drop, a) })
	}
	only := func(mi p11.MechanismInfo, minSize, maxSize, flags uint) *p11.MechanismInfo {
		mi.MinKeySize, mi.MaxKeySize, mi.Flags = minSize, maxSize, flags
		return &mi
	}
	rsaPSS := []provider.Algorithm{provider.RSA2048PSS, provider.RSA3072PSS, provider.RSA4096PSS}
	rsaPKCS1 := []provider.Algorithm{provider.RSA2048PKCS1, provider.RSA3072PKCS1, provider.RSA4096PKCS1}
	ec := []provider.Algorithm{provider.ECDSAP256, provider.ECDSAP384}
	hmacs := []provider.Algorithm{provider.HMACSHA256, provider.HMACSHA384, provider.HMACSHA512}
	edGen, ecGen, rsaGen := all[ckmECEdwardsKeyPairGen], all[p11.CKM_EC_KEY_PAIR_GEN], all[p11.CKM_RSA_PKCS_KEY_PAIR_GEN]
	ecdsa, hmac256, secretGen := all[p11.CKM_ECDSA], all[p11.CKM_SHA256_HMAC], all[p11.CKM_GENERIC_SECRET_KEY_GEN]
	cases := []struct {
		name  string
		infos map[uint]p11.MechanismInfo
		ph    bool
		want  []provider.Algorithm
	}{
		{"SoftHSM2 2.6.1", all, false, softhsmAlgorithms},
		{"SoftHSM2 2.6.1 with Ed25519ph", all, true, slices.Insert(slices.Clone(softhsmAlgorithms), 10, provider.Ed25519ph)},
		{"none", nil, true, nil},
		{"no EdDSA", with(map[uint]*p11.MechanismInfo{ckmEdDSA: nil}), true, without(provider.Ed25519, provider.Ed448)},
		{"EdDSA verify only", with(map[uint]*p11.MechanismInfo{ckmEdDSA: {Flags: p11.CKF_VERIFY}}), false, without(provider.Ed25519, provider.Ed448)},
		{"no Edwards keygen", with(map[uint]*p11.MechanismInfo{ckmECEdwardsKeyPairGen: nil}), false, without(provider.Ed25519, provider.Ed448)},
		{"Ed25519 sizes only", with(map[uint]*p11.MechanismInfo{ckmECEdwardsKeyPairGen: only(edGen, 255, 255, p11.CKF_GENERATE_KEY_PAIR)}), false, without(provider.Ed448)},
		{"Edwards sizes unstated", with(map[uint]*p11.MechanismInfo{ckmECEdwardsKeyPairGen: only(edGen, 0, 0, p11.CKF_GENERATE_KEY_PAIR), ckmEdDSA: only(edGen, 0, 0, p11.CKF_SIGN)}), false, without(provider.Ed448)},
		{"Ed448 sizes only", with(map[uint]*p11.MechanismInfo{ckmECEdwardsKeyPairGen: only(edGen, 448, 448, p11.CKF_GENERATE_KEY_PAIR)}), false, without(provider.Ed25519)},
		{"no ECDSA", with(map[uint]*p11.MechanismInfo{p11.CKM_ECDSA: nil}), false, without(ec...)},
		{"no EC keygen", with(map[uint]*p11.MechanismInfo{p11.CKM_EC_KEY_PAIR_GEN: nil}), false, without(ec...)},
		{"EC up to 256 bits", with(map[uint]*p11.MechanismInfo{p11.CKM_EC_KEY_PAIR_GEN: only(ecGen, 256, 256, ecGen.Flags)}), false, without(provider.ECDSAP384)},
		{"ECDSA from 384 bits", with(map[uint]*p11.MechanismInfo{p11.CKM_ECDSA: only(ecdsa, 384, 521, ecdsa.Flags)}), false, without(provider.ECDSAP256)},
		{"EC compressed points only", with(map[uint]*p11.MechanismInfo{p11.CKM_EC_KEY_PAIR_GEN: only(ecGen, 112, 521, p11.CKF_GENERATE_KEY_PAIR|p11.CKF_EC_F_P|p11.CKF_EC_NAMEDCURVE|p11.CKF_EC_COMPRESS)}), false, without(ec...)},
		{"EC binary fields only", with(map[uint]*p11.MechanismInfo{p11.CKM_ECDSA: only(ecdsa, 112, 521, p11.CKF_SIGN|p11.CKF_EC_F_2M|p11.CKF_EC_NAMEDCURVE)}), false, without(ec...)},
		{"EC flags unstated", with(map[uint]*p11.MechanismInfo{p11.CKM_EC_KEY_PAIR_GEN: only(ecGen, 0, 0, p11.CKF_GENERATE_KEY_PAIR), p11.CKM_ECDSA: only(ecdsa, 0, 0, p11.CKF_SIGN)}), false, softhsmAlgorithms},
		{"no PSS", with(map[uint]*p11.MechanismInfo{p11.CKM_RSA_PKCS_PSS: nil}), false, without(rsaPSS...)},
		{"no RSA PKCS", with(map[uint]*p11.MechanismInfo{p11.CKM_RSA_PKCS: nil}), false, without(rsaPKCS1...)},
		{"RSA PKCS decrypt only", with(map[uint]*p11.MechanismInfo{p11.CKM_RSA_PKCS: only(rsaGen, 512, 16384, p11.CKF_DECRYPT|p11.CKF_ENCRYPT)}), false, without(rsaPKCS1...)},
		{"no RSA keygen", with(map[uint]*p11.MechanismInfo{p11.CKM_RSA_PKCS_KEY_PAIR_GEN: nil}), false, without(append(rsaPSS, rsaPKCS1...)...)},
		{"RSA up to 3072 bits", with(map[uint]*p11.MechanismInfo{p11.CKM_RSA_PKCS_KEY_PAIR_GEN: only(rsaGen, 1024, 3072, p11.CKF_GENERATE_KEY_PAIR)}), false, without(provider.RSA4096PSS, provider.RSA4096PKCS1)},
		{"RSA from 3072 bits", with(map[uint]*p11.MechanismInfo{p11.CKM_RSA_PKCS_PSS: only(rsaGen, 3072, 4096, p11.CKF_SIGN)}), false, without(provider.RSA2048PSS)},
		{"no GCM", with(map[uint]*p11.MechanismInfo{p11.CKM_AES_GCM: nil}), false, without(provider.AES256GCM)},
		{"GCM encrypt only", with(map[uint]*p11.MechanismInfo{p11.CKM_AES_GCM: {MinKeySize: 16, MaxKeySize: 32, Flags: p11.CKF_ENCRYPT}}), false, without(provider.AES256GCM)},
		{"AES-128 only", with(map[uint]*p11.MechanismInfo{p11.CKM_AES_GCM: {MinKeySize: 16, MaxKeySize: 16, Flags: p11.CKF_ENCRYPT | p11.CKF_DECRYPT}}), false, without(provider.AES256GCM)},
		{"AES sizes in bits", with(map[uint]*p11.MechanismInfo{p11.CKM_AES_KEY_GEN: {MinKeySize: 128, MaxKeySize: 256, Flags: p11.CKF_GENERATE}}), false, softhsmAlgorithms},
		{"no AES keygen", with(map[uint]*p11.MechanismInfo{p11.CKM_AES_KEY_GEN: nil}), false, without(provider.AES256GCM)},
		{"no generic secret keygen", with(map[uint]*p11.MechanismInfo{p11.CKM_GENERIC_SECRET_KEY_GEN: nil}), false, without(hmacs...)},
		{"generic secrets up to 256 bits", with(map[uint]*p11.MechanismInfo{p11.CKM_GENERIC_SECRET_KEY_GEN: only(secretGen, 8, 256, p11.CKF_GENERATE)}), false, without(provider.HMACSHA384, provider.HMACSHA512)},
		{"generic secret sizes unstated", with(map[uint]*p11.MechanismInfo{p11.CKM_GENERIC_SECRET_KEY_GEN: only(secretGen, 0, 0, p11.CKF_GENERATE)}), false, softhsmAlgorithms},
		{"no SHA-384 HMAC", with(map[uint]*p11.MechanismInfo{p11.CKM_SHA384_HMAC: nil}), false, without(provider.HMACSHA384)},
		{"SHA-256 HMAC verify only", with(map[uint]*p11.MechanismInfo{p11.CKM_SHA256_HMAC: only(hmac256, 32, 512, p11.CKF_VERIFY)}), false, without(provider.HMACSHA256)},
		{"HMAC keys from 256 bytes", with(map[uint]*p11.MechanismInfo{p11.CKM_SHA256_HMAC: only(hmac256, 256, 4096, p11.CKF_SIGN)}), false, without(provider.HMACSHA256)},
		{"HMAC key of 64 bytes and more", with(map[uint]*p11.MechanismInfo{p11.CKM_SHA256_HMAC: only(hmac256, 64, 64, p11.CKF_SIGN)}), false, without(provider.HMACSHA256)},
	}
	names := alg.Default().Names()
	for _, c := range cases {
		if got := algorithmsFrom(c.infos, names, c.ph); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestSchemes: every algorithm of the registry the provider can offer
// has a scheme that agrees with the registry's spec.
func TestSchemes(t *testing.T) {
	reg := alg.Default()
	for _, a := range reg.Names() {
		sc, ok := schemeOf(a)
		if !ok {
			continue
		}
		spec, err := reg.Lookup(a)
		if err != nil {
			t.Fatal(err)
		}
		if sc.class() == p11.CKO_PRIVATE_KEY != (spec.Use == provider.UseSign) {
			t.Errorf("%s: scheme object class %d for use %s", a, sc.class(), spec.Use)
		}
		switch sc.fam {
		case famHMAC:
			if sc.size != spec.MACSize {
				t.Errorf("%s: scheme key size %d, spec MAC size %d", a, sc.size, spec.MACSize)
			}
		case famEdwards:
			if sc.size != spec.PublicKeySize {
				t.Errorf("%s: scheme public key size %d, spec %d", a, sc.size, spec.PublicKeySize)
			}
		case famEC:
			if 1+2*sc.size != spec.PublicKeySize || sc.size != spec.SecretSize {
				t.Errorf("%s: scheme coordinate size %d, spec public key %d", a, sc.size, spec.PublicKeySize)
			}
		case famRSA:
			if sc.bits/8 != spec.SignatureSize || (spec.Hash != crypto.SHA256) {
				t.Errorf("%s: scheme modulus %d bits, spec signature %d bytes, hash %v", a, sc.bits, spec.SignatureSize, spec.Hash)
			}
		}
	}
	for _, a := range []provider.Algorithm{provider.MLDSA44, provider.MLDSA65, provider.MLDSA87, provider.XChaCha20Poly1305, provider.ChaCha20Poly1305} {
		if _, ok := schemeOf(a); ok {
			t.Errorf("%s has a scheme; the provider cannot make its keys in a PKCS#11 token", a)
		}
	}
}

// TestReadPINFile: a private regular file gives its PIN without the final
// newline; a symlink, a group- or world-readable file, an empty or overlong
// PIN and a missing file are refused.
func TestReadPINFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for content, want := range map[string]string{"1234": "1234", "1234\n": "1234", "12 34\r\n": "12 34", "1234\n\n": "1234\n"} {
		pin, err := ReadPINFile(write("good", content, 0o600))
		if err != nil || string(pin.Reveal()) != want {
			t.Errorf("ReadPINFile(%q) = %q, %v; want %q", content, pin.Reveal(), err, want)
		}
	}
	if _, err := ReadPINFile(write("ro", "1234", 0o400)); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
	good := write("target", "secret-pin", 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		code       provider.Code
	}{
		{"mode 0644", write("wide", "secret-pin", 0o644), provider.EPERM},
		{"mode 0640", write("group", "secret-pin", 0o640), provider.EPERM},
		{"symlink", link, provider.EPERM},
		{"directory", dir, provider.EPERM},
		{"missing", filepath.Join(dir, "missing"), provider.EINVAL},
		{"empty", write("empty", "", 0o600), provider.EINVAL},
		{"newline only", write("nl", "\n", 0o600), provider.EINVAL},
		{"too long", write("long", strings.Repeat("p", MaxPIN+1), 0o600), provider.EINVAL},
		{"much too long", write("huge", strings.Repeat("p", 10000), 0o600), provider.EINVAL},
		{"no path", "", provider.EINVAL},
	}
	for _, c := range cases {
		pin, err := ReadPINFile(c.path)
		if err == nil {
			t.Errorf("%s: got a %d-byte PIN, want an error", c.name, pin.Len())
			continue
		}
		wantCode(t, c.name, err, c.code)
		// The contents have letters: the temporary directory's random
		// name is digits only, and may well contain "1234".
		if strings.Contains(err.Error(), "secret-pin") || strings.Contains(err.Error(), "ppppp") {
			t.Errorf("%s: error %q contains the file's content", c.name, err)
		}
		if errors.Is(err, os.ErrNotExist) != (c.name == "missing") {
			t.Errorf("%s: errors.Is(ErrNotExist) wrong for %v", c.name, err)
		}
	}
}
