package plugin

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/nexus-os/keystored/plugin/internal/providerpb"
)

// wireAllowlist names every bytes and string field of the wire protocol,
// as "Message.field". Each can never hold private key material: key
// references, descriptions, public keys, opaque handles, signatures and
// the caller's payloads. A new bytes or string field fails
// TestWireCarriesNoKeyMaterial until it is reviewed and listed here.
var wireAllowlist = map[string]bool{
	"KeyRef.key_id":                     true,
	"KeyRef.algorithm":                  true,
	"KeyRef.provider":                   true,
	"InfoResponse.name":                 true,
	"InfoResponse.version":              true,
	"InfoResponse.algorithms":           true,
	"InfoResponse.keks":                 true,
	"GenerateResponse.public_key":       true,
	"GenerateResponse.handle":           true,
	"SignRequest.handle":                true,
	"SignRequest.message":               true,
	"SignResponse.signature":            true,
	"SignDigestRequest.handle":          true,
	"SignDigestRequest.digest_hash":     true,
	"SignDigestRequest.digest":          true,
	"MacRequest.handle":                 true,
	"MacRequest.message":                true,
	"MacResponse.tag":                   true,
	"SealRequest.handle":                true,
	"SealRequest.plaintext":             true,
	"SealRequest.aad":                   true,
	"SealResponse.sealed":               true,
	"OpenRequest.handle":                true,
	"OpenRequest.sealed":                true,
	"OpenRequest.aad":                   true,
	"OpenResponse.plaintext":            true,
	"DestroyRequest.handle":             true,
	"BeginKEKRotationResponse.next_kek": true,
	"RewrapHandleRequest.handle":        true,
	"RewrapHandleResponse.handle":       true,
	// HPKE decryption: the caller's message (enc, ciphertext, info, aad,
	// all sent to the key's public key by anyone) and its plaintext, the
	// caller's payload as OpenResponse.plaintext.
	"DecryptRequest.handle":     true,
	"DecryptRequest.enc":        true,
	"DecryptRequest.ciphertext": true,
	"DecryptRequest.info":       true,
	"DecryptRequest.aad":        true,
	"DecryptResponse.plaintext": true,
	// Import: the wrapping key's handle (a name; its private half never
	// leaves the plugin's memory) and the material HPKE-sealed to the
	// one-time wrapping key: only the plugin can open it.
	"ImportRequest.wrap_handle": true,
	"ImportRequest.enc":         true,
	"ImportRequest.wrapped":     true,
	// The call stream: a reply's output is a signature or a MAC tag
	// (SignResponse.signature, MacResponse.tag), its status an encoded
	// error status, what a unary call's trailers carry.
	"Reply.output": true,
	"Reply.status": true,
}

// forbiddenWords may not appear in any field or message name.
var forbiddenWords = []string{"private", "secret", "seed", "kek", "priv", "material", "pin"}

// nameReviewed names the messages ("Message") and fields
// ("Message.field") whose name holds a forbidden word but that were
// reviewed and carry no key material, with the reason.
var nameReviewed = map[string]string{
	"InfoResponse.keks":                 "fingerprints that name the KEKs (a KEK ID is an HKDF output, not the KEK), never KEK bytes",
	"InfoResponse.kek_rotation":         "a bool: whether the plugin serves the KEK rotation RPCs",
	"BeginKEKRotationRequest":           "empty",
	"BeginKEKRotationResponse":          "holds only next_kek, a fingerprint",
	"BeginKEKRotationResponse.next_kek": "a fingerprint that names the next KEK, as InfoResponse.keks; never KEK bytes",
	"CommitKEKRotationRequest":          "empty",
	"CommitKEKRotationResponse":         "empty",
}

// TestWireCarriesNoKeyMaterial walks the protocol's descriptors: every
// bytes or string field is on the allowlist, and no name suggests key
// material.
func TestWireCarriesNoKeyMaterial(t *testing.T) {
	fd := providerpb.File_keystore_provider_v1_provider_proto
	if got, want := string(fd.Package()), "keystore.provider.v1"; got != want {
		t.Fatalf("package = %q, want %q", got, want)
	}
	seen := map[string]bool{}
	var walk func(msgs protoreflect.MessageDescriptors)
	walk = func(msgs protoreflect.MessageDescriptors) {
		for i := 0; i < msgs.Len(); i++ {
			m := msgs.Get(i)
			if _, ok := nameReviewed[string(m.Name())]; !ok {
				checkName(t, "message "+string(m.Name()), string(m.Name()))
			}
			fields := m.Fields()
			for j := 0; j < fields.Len(); j++ {
				f := fields.Get(j)
				key := string(m.Name()) + "." + string(f.Name())
				if _, ok := nameReviewed[key]; !ok {
					checkName(t, "field "+key, string(f.Name()))
				}
				switch f.Kind() {
				case protoreflect.BytesKind, protoreflect.StringKind:
					seen[key] = true
					if !wireAllowlist[key] {
						t.Errorf("field %s (%s) is not on the allowlist of fields that cannot carry key material", key, f.Kind())
					}
				case protoreflect.MessageKind, protoreflect.GroupKind:
					if f.Message().ParentFile() != fd {
						t.Errorf("field %s has type %s from another file: only this protocol's messages may travel", key, f.Message().FullName())
					}
				}
			}
			walk(m.Messages())
		}
	}
	walk(fd.Messages())
	for key := range wireAllowlist {
		if !seen[key] {
			t.Errorf("allowlisted field %s no longer exists: remove it from the list", key)
		}
	}
	if len(seen) == 0 {
		t.Fatal("walked no field")
	}
	svc := fd.Services().ByName("Provider")
	if svc == nil {
		t.Fatal("no Provider service")
	}
	var methods []string
	for i := 0; i < svc.Methods().Len(); i++ {
		methods = append(methods, string(svc.Methods().Get(i).Name()))
	}
	if got, want := strings.Join(methods, ","), "Info,Generate,Sign,SignDigest,Mac,Decrypt,NewImportKey,Import,Seal,Open,Destroy,BeginKEKRotation,RewrapHandle,CommitKEKRotation,Calls"; got != want {
		t.Errorf("Provider methods = %s, want %s", got, want)
	}
}

func checkName(t *testing.T, what, name string) {
	t.Helper()
	lower := strings.ToLower(name)
	for _, w := range forbiddenWords {
		if strings.Contains(lower, w) {
			t.Errorf("%s contains %q: the wire protocol must not carry key material", what, w)
		}
	}
}

// generateDirective is the go:generate line of generate.go; the
// freshness test runs the same protoc command.
const generateDirective = "//go:generate protoc -I proto --go_out=. --go_opt=module=github.com/nexus-os/keystored/plugin --go-grpc_out=. --go-grpc_opt=module=github.com/nexus-os/keystored/plugin keystore/provider/v1/provider.proto"

// findTool looks for a code generator on PATH, then in $GOPATH/bin.
func findTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				return p
			}
		}
	}
	return ""
}

// protocVersionLine is the line of a generated file naming the protoc
// version, which the comparison ignores (Debian releases differ).
var protocVersionLine = regexp.MustCompile(`(?m)^// (\t| - )protoc +v?[0-9.]+$`)

// TestGeneratedCodeIsFresh regenerates the Go code from the .proto into a
// temporary directory and compares it with the committed files.
func TestGeneratedCodeIsFresh(t *testing.T) {
	src, err := os.ReadFile("generate.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(src, []byte(generateDirective+"\n")) {
		t.Fatalf("generate.go does not hold the directive this test runs:\n%s", generateDirective)
	}
	const hint = "; install the pinned tools: apt-get install protobuf-compiler; " +
		"go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12; " +
		"go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2"
	protoc := findTool("protoc")
	genGo := findTool("protoc-gen-go")
	genGRPC := findTool("protoc-gen-go-grpc")
	switch {
	case protoc == "":
		t.Skip("protoc not found" + hint)
	case genGo == "" || genGRPC == "":
		t.Skip("protoc-gen-go or protoc-gen-go-grpc not found on PATH or in $GOPATH/bin" + hint)
	}
	out := t.TempDir()
	args := strings.Fields(strings.TrimPrefix(generateDirective, "//go:generate protoc "))
	for i, a := range args {
		args[i] = strings.Replace(strings.Replace(a, "--go_out=.", "--go_out="+out, 1), "--go-grpc_out=.", "--go-grpc_out="+out, 1)
	}
	args = append([]string{"--plugin=protoc-gen-go=" + genGo, "--plugin=protoc-gen-go-grpc=" + genGRPC}, args...)
	cmd := exec.Command(protoc, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	for _, f := range []string{"provider.pb.go", "provider_grpc.pb.go"} {
		got, err := os.ReadFile(filepath.Join(out, "internal", "providerpb", f))
		if err != nil {
			t.Fatalf("protoc did not write %s: %v", f, err)
		}
		want, err := os.ReadFile(filepath.Join("internal", "providerpb", f))
		if err != nil {
			t.Fatal(err)
		}
		got = protocVersionLine.ReplaceAll(got, nil)
		want = protocVersionLine.ReplaceAll(want, nil)
		if !bytes.Equal(got, want) {
			t.Errorf("internal/providerpb/%s is stale (or was made by other generator versions): run go generate ./plugin"+hint, f)
		}
	}
}
