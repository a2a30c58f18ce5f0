package keystorev1_test

// The non-exportability test of keystore.v1 (THREATS.md T13): no message
// of the API can carry private key material. Every bytes or string field
// must be on a reviewed allowlist of fields that hold names, public keys,
// signatures, sealed blobs or the caller's own payloads; no message or
// field name may suggest key material; every message-typed field is of
// this file's messages or google.protobuf.Timestamp. A new field fails the
// test until it is reviewed and listed; TestNoKeyMaterialCheckFires
// proves the check fires on mutated copies of the descriptors.

import (
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/durationpb"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

// apiAllowlist names every bytes and string field of keystore.v1 as
// "Message.field", each with why it cannot hold private key material.
var apiAllowlist = map[string]string{
	"TrustAnchor.name":                                 "anchor name (config file name)",
	"TrustAnchor.algorithm":                            "algorithm name",
	"TrustAnchor.public_key":                           "public key",
	"TrustAnchor.fingerprint":                          "hash of the public key",
	"VerifyAnchorRequest.anchor":                       "anchor name",
	"VerifyAnchorRequest.message":                      "caller's message",
	"VerifyAnchorRequest.signature":                    "caller's signature",
	"PutValueRequest.name":                             "value name",
	"PutValueRequest.value":                            "caller's own Store value",
	"GetValueRequest.name":                             "value name",
	"GetValueResponse.value":                           "caller's own Store value",
	"DeleteValueRequest.name":                          "value name",
	"ListValuesRequest.page_token":                     "opaque page token (a name)",
	"ListValuesResponse.names":                         "value names",
	"ListValuesResponse.next_page_token":               "opaque page token (a name)",
	"KeyVersion.public_key":                            "public key",
	"KeyMetadata.id":                                   "key ID",
	"KeyMetadata.algorithm":                            "algorithm name",
	"KeyMetadata.uses":                                 "use names",
	"KeyMetadata.provider":                             "provider name",
	"CreateKeyRequest.key":                             "key name",
	"CreateKeyRequest.algorithm":                       "algorithm name",
	"GetKeyRequest.key":                                "key name",
	"ListKeysRequest.app":                              "app ID",
	"ListKeysRequest.page_token":                       "opaque page token (a key ID)",
	"UnreadableKey.id":                                 "key ID",
	"ListKeysResponse.next_page_token":                 "opaque page token (a key ID)",
	"RotateKeyRequest.key":                             "key name",
	"RevokeKeyRequest.key":                             "key name",
	"RevokeKeyVersionRequest.key":                      "key name",
	"DestroyKeyRequest.key":                            "key name",
	"SetKeyPolicyRequest.key":                          "key name",
	"PublicKeyRequest.key":                             "key name",
	"PublicKeyResponse.key":                            "key ID",
	"PublicKeyResponse.algorithm":                      "algorithm name",
	"PublicKeyResponse.public_key":                     "public key",
	"SignRequest.key":                                  "key name",
	"SignRequest.message":                              "caller's message",
	"SignResponse.key":                                 "key ID",
	"SignResponse.signature":                           "signature",
	"VerifyRequest.key":                                "key name",
	"VerifyRequest.message":                            "caller's message",
	"VerifyRequest.signature":                          "caller's signature",
	"SealRequest.key":                                  "key name",
	"SealRequest.plaintext":                            "caller's plaintext",
	"SealRequest.aad":                                  "caller's AAD",
	"SealResponse.sealed":                              "sealed blob (AEAD output)",
	"UnsealRequest.key":                                "key name",
	"UnsealRequest.sealed":                             "sealed blob",
	"UnsealRequest.aad":                                "caller's AAD",
	"UnsealResponse.plaintext":                         "caller's own plaintext",
	"RewrapRequest.key":                                "key name",
	"RewrapRequest.sealed":                             "sealed blob",
	"RewrapRequest.aad":                                "caller's AAD",
	"RewrapResponse.sealed":                            "sealed blob",
	"ErrorDetail.reason":                               "error code name",
	"ErrorDetail.message":                              "error message (names keys, never payloads)",
	"WrappingKeyStatusResponse.current":                "KEK fingerprint (a hash: HKDF of the KEK, 8 bytes)",
	"WrappingKeyStatusResponse.pending":                "KEK fingerprint",
	"WrappingKeyStatusResponse.provider_wrapping_keys": "KEK fingerprints",
	"RotateWrappingKeyResponse.from":                   "KEK fingerprint",
	"RotateWrappingKeyResponse.to":                     "KEK fingerprint",
	"SweepKeysRequest.page_token":                      "opaque page token (a key ID)",
	"RotatedKey.key":                                   "key ID",
	"SweepFailure.key":                                 "key ID",
	"SweepKeysResponse.next_page_token":                "opaque page token (a key ID)",
	"GetUsageRequest.app":                              "app ID",
	"GetUsageResponse.app":                             "app ID",
	"CreateKeyRequest.use":                             "use name",
	"SignRequest.digest":                               "caller's digest of its message",
	"SignRequest.digest_hash":                          "hash name",
	"VerifyRequest.digest":                             "caller's digest of its message",
	"VerifyRequest.digest_hash":                        "hash name",
	"MacRequest.key":                                   "key name",
	"MacRequest.message":                               "caller's message",
	"MacResponse.key":                                  "key ID",
	"MacResponse.tag":                                  "HMAC tag (a PRF output, never the key)",
	"VerifyMacRequest.key":                             "key name",
	"VerifyMacRequest.message":                         "caller's message",
	"VerifyMacRequest.tag":                             "caller's tag",
	// v1.4.
	"KeyMetadata.origin":             "origin name (generated or imported)",
	"KeyVersion.origin":              "origin name (generated or imported)",
	"GenerateDataKeyRequest.key":     "key name",
	"GenerateDataKeyRequest.spec":    "data key spec name",
	"GenerateDataKeyRequest.aad":     "caller's AAD",
	"GenerateDataKeyResponse.key":    "key ID",
	"GenerateDataKeyResponse.sealed": "sealed blob (the data key sealed under the key: AEAD output)",
	// Reviewed: a data key is not a keystore key's material. It is fresh
	// random bytes the caller asked for, to encrypt its own data with,
	// never derived from or used as any key the keystore holds (it is
	// sealed under one, like a Seal plaintext) — the caller's own payload,
	// as UnsealResponse.plaintext. GenerateDataKeyWithoutPlaintext leaves
	// it empty.
	"GenerateDataKeyResponse.plaintext":              "a data key the caller asked for (its payload, like Unseal's plaintext); never a keystore key",
	"DecryptRequest.key":                             "key name",
	"DecryptRequest.enc":                             "HPKE encapsulated key (a sender's ephemeral public value)",
	"DecryptRequest.ciphertext":                      "HPKE ciphertext (AEAD output)",
	"DecryptRequest.info":                            "sender's HPKE info",
	"DecryptRequest.aad":                             "sender's AAD",
	"DecryptResponse.key":                            "key ID",
	"DecryptResponse.plaintext":                      "the sender's message to the caller (its payload)",
	"GetImportParametersRequest.key":                 "key name",
	"GetImportParametersRequest.algorithm":           "algorithm name",
	"GetImportParametersRequest.wrapping_algorithm":  "algorithm name",
	"GetImportParametersResponse.key":                "key ID",
	"GetImportParametersResponse.algorithm":          "algorithm name",
	"GetImportParametersResponse.token":              "opaque import token (a random name of the parameters; no key)",
	"GetImportParametersResponse.wrapping_algorithm": "algorithm name",
	"GetImportParametersResponse.public_key":         "the one-time wrapping key's public key (its private half never leaves the provider)",
	"GetImportParametersResponse.info":               "HPKE info (a label, the key ID and the algorithm name)",
	"ImportKeyRequest.key":                           "key name",
	"ImportKeyRequest.token":                         "import token",
	"ImportKeyRequest.enc":                           "HPKE encapsulated key (the caller's ephemeral public value)",
	// Reviewed: the material travels into the keystore only, HPKE-sealed
	// to a one-time wrapping key whose private half lives only in the
	// provider's memory (docs/api.md, Key import): nothing but the
	// provider can open it, and no response ever carries it back.
	"ImportKeyRequest.wrapped": "key material HPKE-sealed to the one-time wrapping key (inbound only; only the provider opens it)",
}

// apiForbiddenWords may not appear in any message, field or enum value
// name of the API.
var apiForbiddenWords = []string{"private", "secret", "seed", "kek", "priv", "material", "pin"}

// forbiddenIn returns the forbidden word name holds, or "". Names are
// split into words (snake_case and CamelCase): a word starting with a
// forbidden word matches ("seeds", "privkey"); so does a forbidden word of
// five letters or more anywhere ("privatekey"). Short words are matched
// only as words, so RevokeKey ("re-vo-KEK-ey") does not trip on "kek".
func forbiddenIn(name string) string {
	var words []string
	start := 0
	for i := 1; i <= len(name); i++ {
		if i == len(name) || name[i] == '_' || (name[i] >= 'A' && name[i] <= 'Z' && name[i-1] >= 'a' && name[i-1] <= 'z') {
			if w := strings.Trim(strings.ToLower(name[start:i]), "_"); w != "" {
				words = append(words, w)
			}
			start = i
		}
	}
	lower := strings.ToLower(name)
	for _, f := range apiForbiddenWords {
		if len(f) >= 5 && strings.Contains(lower, f) {
			return f
		}
		for _, w := range words {
			if strings.HasPrefix(w, f) {
				return f
			}
		}
	}
	return ""
}

// allowedForeignMessages are the message types of other files a field may
// have.
var allowedForeignMessages = map[protoreflect.FullName]bool{"google.protobuf.Timestamp": true}

// keyMaterialProblems walks fd and returns every way it could carry key
// material (sorted), and the allowlisted fields it saw.
func keyMaterialProblems(fd protoreflect.FileDescriptor, allow map[string]string) (problems []string, seen map[string]bool) {
	seen = map[string]bool{}
	checkName := func(what, name string) {
		if w := forbiddenIn(name); w != "" {
			problems = append(problems, what+" contains "+w)
		}
	}
	var walk func(msgs protoreflect.MessageDescriptors)
	walk = func(msgs protoreflect.MessageDescriptors) {
		for i := 0; i < msgs.Len(); i++ {
			m := msgs.Get(i)
			checkName("message "+string(m.Name()), string(m.Name()))
			fields := m.Fields()
			for j := 0; j < fields.Len(); j++ {
				f := fields.Get(j)
				key := string(m.Name()) + "." + string(f.Name())
				checkName("field "+key, string(f.Name()))
				switch f.Kind() {
				case protoreflect.BytesKind, protoreflect.StringKind:
					seen[key] = true
					if allow[key] == "" {
						problems = append(problems, "field "+key+" ("+f.Kind().String()+") is not on the allowlist")
					}
				case protoreflect.MessageKind, protoreflect.GroupKind:
					if f.IsMap() {
						problems = append(problems, "field "+key+" is a map")
					} else if f.Message().ParentFile() != fd && !allowedForeignMessages[f.Message().FullName()] {
						problems = append(problems, "field "+key+" has foreign type "+string(f.Message().FullName()))
					}
				}
			}
			walk(m.Messages())
		}
	}
	walk(fd.Messages())
	enums := fd.Enums()
	for i := 0; i < enums.Len(); i++ {
		e := enums.Get(i)
		checkName("enum "+string(e.Name()), string(e.Name()))
		for j := 0; j < e.Values().Len(); j++ {
			checkName("enum value "+string(e.Values().Get(j).Name()), string(e.Values().Get(j).Name()))
		}
	}
	sort.Strings(problems)
	return problems, seen
}

func TestAPICarriesNoKeyMaterial(t *testing.T) {
	fd := keystorev1.File_keystore_proto
	if got, want := string(fd.Package()), "keystore.v1"; got != want {
		t.Fatalf("package = %q, want %q", got, want)
	}
	problems, seen := keyMaterialProblems(fd, apiAllowlist)
	for _, p := range problems {
		t.Errorf("%s: keystore.v1 must not be able to carry private key material (review the field, then list it in apiAllowlist)", p)
	}
	for key := range apiAllowlist {
		if !seen[key] {
			t.Errorf("allowlisted field %s no longer exists: remove it from apiAllowlist", key)
		}
	}
	if len(seen) < 50 {
		t.Fatalf("walked %d bytes/string fields, want at least 50 (did the walk break?)", len(seen))
	}
	t.Logf("%d messages, %d bytes/string fields, all allowlisted", fd.Messages().Len(), len(seen))
}

func TestForbiddenIn(t *testing.T) {
	for name, want := range map[string]string{
		"RevokeKeyRequest": "", "public_key": "", "min_decryption_version": "", "KEY_STATE_PRIMARY": "",
		"private_key": "private", "PrivateKey": "private", "privatekey": "private", "privkey": "priv",
		"key_seed": "seed", "Seeds": "seed", "WrappedKek": "kek", "kek": "kek", "KEY_STATE_PIN_SET": "pin",
		"user_pin": "pin", "secret": "secret", "ClientSecretValue": "secret", "keymaterial": "material",
	} {
		if got := forbiddenIn(name); got != want {
			t.Errorf("forbiddenIn(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestNoKeyMaterialCheckFires: mutated copies of the descriptors must each
// fail the check.
func TestNoKeyMaterialCheckFires(t *testing.T) {
	bytesField := func(name string) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(99),
			Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum(),
			JsonName: proto.String(name)}
	}
	uintField := func(name string) *descriptorpb.FieldDescriptorProto {
		f := bytesField(name)
		f.Type = descriptorpb.FieldDescriptorProto_TYPE_UINT32.Enum()
		return f
	}
	msg := func(fd *descriptorpb.FileDescriptorProto, name string) *descriptorpb.DescriptorProto {
		for _, m := range fd.GetMessageType() {
			if m.GetName() == name {
				return m
			}
		}
		t.Fatalf("no message %s", name)
		return nil
	}
	cases := []struct {
		name   string
		mutate func(fd *descriptorpb.FileDescriptorProto)
		want   string // a substring of one problem
	}{
		{"bytes private_key on SignResponse", func(fd *descriptorpb.FileDescriptorProto) {
			m := msg(fd, "SignResponse")
			m.Field = append(m.Field, bytesField("private_key"))
		}, "field SignResponse.private_key contains priv"},
		{"unlisted bytes field", func(fd *descriptorpb.FileDescriptorProto) {
			m := msg(fd, "KeyMetadata")
			m.Field = append(m.Field, bytesField("blob"))
		}, "field KeyMetadata.blob (bytes) is not on the allowlist"},
		{"unlisted string field", func(fd *descriptorpb.FileDescriptorProto) {
			m := msg(fd, "CreateKeyResponse")
			f := bytesField("note")
			f.Type = descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
			m.Field = append(m.Field, f)
		}, "field CreateKeyResponse.note (string) is not on the allowlist"},
		{"numeric field named seed", func(fd *descriptorpb.FileDescriptorProto) {
			m := msg(fd, "KeyVersion")
			m.Field = append(m.Field, uintField("seed_len"))
		}, "field KeyVersion.seed_len contains seed"},
		{"message named after the KEK", func(fd *descriptorpb.FileDescriptorProto) {
			fd.MessageType = append(fd.MessageType, &descriptorpb.DescriptorProto{Name: proto.String("WrappedKek")})
		}, "message WrappedKek contains kek"},
		{"nested message with key material", func(fd *descriptorpb.FileDescriptorProto) {
			m := msg(fd, "KeyPolicy")
			m.NestedType = append(m.NestedType, &descriptorpb.DescriptorProto{Name: proto.String("Export"),
				Field: []*descriptorpb.FieldDescriptorProto{bytesField("key_material")}})
		}, "field Export.key_material contains material"},
		{"enum value PIN", func(fd *descriptorpb.FileDescriptorProto) {
			e := fd.GetEnumType()[0]
			e.Value = append(e.Value, &descriptorpb.EnumValueDescriptorProto{Name: proto.String("KEY_STATE_PIN_SET"), Number: proto.Int32(99)})
		}, "enum value KEY_STATE_PIN_SET contains pin"},
		{"foreign message type", func(fd *descriptorpb.FileDescriptorProto) {
			fd.Dependency = append(fd.Dependency, "google/protobuf/duration.proto")
			m := msg(fd, "KeyPolicy")
			f := bytesField("period")
			f.Type = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
			f.TypeName = proto.String(".google.protobuf.Duration")
			m.Field = append(m.Field, f)
		}, "field KeyPolicy.period has foreign type google.protobuf.Duration"},
	}
	// Importing durationpb registers duration.proto in GlobalFiles.
	if durationpb.File_google_protobuf_duration_proto == nil {
		t.Fatal("duration.proto is not linked")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fdp := protodesc.ToFileDescriptorProto(keystorev1.File_keystore_proto)
			tc.mutate(fdp)
			fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
			if err != nil {
				t.Fatalf("building the mutated descriptor: %v", err)
			}
			problems, _ := keyMaterialProblems(fd, apiAllowlist)
			for _, p := range problems {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("problems = %q, want one containing %q", problems, tc.want)
		})
	}
}
