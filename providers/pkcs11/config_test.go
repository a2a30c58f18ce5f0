package pkcs11

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"

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
		{3, 64, 3},
		{1, 2, 1},
		{100, 2, 4},
	}
	for _, c := range cases {
		if got := poolSize(c.maxRW, c.procs); got != c.want {
			t.Errorf("poolSize(%d, %d) = %d, want %d", c.maxRW, c.procs, got, c.want)
		}
	}
}

// TestAlgorithmsFrom: an algorithm is announced only when the token has
// every mechanism it needs, with the flags and key sizes it needs.
func TestAlgorithmsFrom(t *testing.T) {
	edGen := p11.MechanismInfo{MinKeySize: 256, MaxKeySize: 456, Flags: p11.CKF_GENERATE_KEY_PAIR}
	edSign := p11.MechanismInfo{MinKeySize: 256, MaxKeySize: 456, Flags: p11.CKF_SIGN | p11.CKF_VERIFY}
	aesGen := p11.MechanismInfo{MinKeySize: 16, MaxKeySize: 32, Flags: p11.CKF_GENERATE}
	gcm := p11.MechanismInfo{MinKeySize: 16, MaxKeySize: 32, Flags: p11.CKF_ENCRYPT | p11.CKF_DECRYPT}
	all := map[uint]p11.MechanismInfo{ckmECEdwardsKeyPairGen: edGen, ckmEdDSA: edSign, p11.CKM_AES_KEY_GEN: aesGen, p11.CKM_AES_GCM: gcm}
	with := func(mech uint, mi *p11.MechanismInfo) map[uint]p11.MechanismInfo {
		m := map[uint]p11.MechanismInfo{}
		for k, v := range all {
			m[k] = v
		}
		if mi == nil {
			delete(m, mech)
		} else {
			m[mech] = *mi
		}
		return m
	}
	ed, aes := provider.Ed25519, provider.AES256GCM
	cases := []struct {
		name  string
		infos map[uint]p11.MechanismInfo
		want  []provider.Algorithm
	}{
		{"all", all, []provider.Algorithm{ed, aes}},
		{"none", nil, nil},
		{"no EdDSA", with(ckmEdDSA, nil), []provider.Algorithm{aes}},
		{"EdDSA verify only", with(ckmEdDSA, &p11.MechanismInfo{Flags: p11.CKF_VERIFY}), []provider.Algorithm{aes}},
		{"no Edwards keygen", with(ckmECEdwardsKeyPairGen, nil), []provider.Algorithm{aes}},
		{"no GCM", with(p11.CKM_AES_GCM, nil), []provider.Algorithm{ed}},
		{"GCM encrypt only", with(p11.CKM_AES_GCM, &p11.MechanismInfo{MinKeySize: 16, MaxKeySize: 32, Flags: p11.CKF_ENCRYPT}), []provider.Algorithm{ed}},
		{"AES-128 only", with(p11.CKM_AES_GCM, &p11.MechanismInfo{MinKeySize: 16, MaxKeySize: 16, Flags: p11.CKF_ENCRYPT | p11.CKF_DECRYPT}), []provider.Algorithm{ed}},
		{"AES sizes in bits", with(p11.CKM_AES_KEY_GEN, &p11.MechanismInfo{MinKeySize: 128, MaxKeySize: 256, Flags: p11.CKF_GENERATE}), []provider.Algorithm{ed, aes}},
		{"no AES keygen", with(p11.CKM_AES_KEY_GEN, nil), []provider.Algorithm{ed}},
	}
	for _, c := range cases {
		if got := algorithmsFrom(c.infos); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
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
	good := write("target", "1234", 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		code       provider.Code
	}{
		{"mode 0644", write("wide", "1234", 0o644), provider.EPERM},
		{"mode 0640", write("group", "1234", 0o640), provider.EPERM},
		{"symlink", link, provider.EPERM},
		{"directory", dir, provider.EPERM},
		{"missing", filepath.Join(dir, "missing"), provider.EINVAL},
		{"empty", write("empty", "", 0o600), provider.EINVAL},
		{"newline only", write("nl", "\n", 0o600), provider.EINVAL},
		{"too long", write("long", strings.Repeat("9", MaxPIN+1), 0o600), provider.EINVAL},
		{"much too long", write("huge", strings.Repeat("9", 10000), 0o600), provider.EINVAL},
		{"no path", "", provider.EINVAL},
	}
	for _, c := range cases {
		pin, err := ReadPINFile(c.path)
		if err == nil {
			t.Errorf("%s: got a %d-byte PIN, want an error", c.name, pin.Len())
			continue
		}
		wantCode(t, c.name, err, c.code)
		if strings.Contains(err.Error(), "1234") || strings.Contains(err.Error(), "99999") {
			t.Errorf("%s: error %q contains the file's content", c.name, err)
		}
		if errors.Is(err, os.ErrNotExist) != (c.name == "missing") {
			t.Errorf("%s: errors.Is(ErrNotExist) wrong for %v", c.name, err)
		}
	}
}
