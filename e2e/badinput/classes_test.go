package badinput

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/e2e/internal/probe"
	"github.com/nexus-os/keystored/server"
)

// Short names of the methods.
const (
	mCreate         = keystorev1.Keys_Create_FullMethodName
	mGet            = keystorev1.Keys_Get_FullMethodName
	mList           = keystorev1.Keys_List_FullMethodName
	mRotate         = keystorev1.Keys_Rotate_FullMethodName
	mRevoke         = keystorev1.Keys_Revoke_FullMethodName
	mRevokeVersion  = keystorev1.Keys_RevokeVersion_FullMethodName
	mDestroy        = keystorev1.Keys_Destroy_FullMethodName
	mSetPolicy      = keystorev1.Keys_SetPolicy_FullMethodName
	mPublicKey      = keystorev1.Keys_PublicKey_FullMethodName
	mSign           = keystorev1.Keys_Sign_FullMethodName
	mVerify         = keystorev1.Keys_Verify_FullMethodName
	mSeal           = keystorev1.Keys_Seal_FullMethodName
	mUnseal         = keystorev1.Keys_Unseal_FullMethodName
	mRewrap         = keystorev1.Keys_Rewrap_FullMethodName
	mSignBatch      = keystorev1.Keys_SignBatch_FullMethodName
	mSealBatch      = keystorev1.Keys_SealBatch_FullMethodName
	mUnsealBatch    = keystorev1.Keys_UnsealBatch_FullMethodName
	mMac            = keystorev1.Keys_Mac_FullMethodName
	mVerifyMac      = keystorev1.Keys_VerifyMac_FullMethodName
	mMacBatch       = keystorev1.Keys_MacBatch_FullMethodName
	mVerifyMacBatch = keystorev1.Keys_VerifyMacBatch_FullMethodName
	mSweep          = keystorev1.Keys_Sweep_FullMethodName
	mGetUsage       = keystorev1.Keys_GetUsage_FullMethodName
	mDataKey        = keystorev1.Keys_GenerateDataKey_FullMethodName
	mDataKeyNoPT    = keystorev1.Keys_GenerateDataKeyWithoutPlaintext_FullMethodName
	mDecrypt        = keystorev1.Keys_Decrypt_FullMethodName
	mImportParams   = keystorev1.Keys_GetImportParameters_FullMethodName
	mImport         = keystorev1.Keys_Import_FullMethodName
	mPut            = keystorev1.Store_Put_FullMethodName
	mGetValue       = keystorev1.Store_Get_FullMethodName
	mDelete         = keystorev1.Store_Delete_FullMethodName
	mListValues     = keystorev1.Store_List_FullMethodName
	mListAnchors    = keystorev1.TrustAnchors_ListAnchors_FullMethodName
	mVerifyAnchor   = keystorev1.TrustAnchors_Verify_FullMethodName
	mKEKStatus      = keystorev1.Admin_WrappingKeyStatus_FullMethodName
	mRotateKEK      = keystorev1.Admin_RotateWrappingKey_FullMethodName
)

// allMethods is every RPC of keystore.v1.
var allMethods = []string{
	mCreate, mGet, mList, mRotate, mRevoke, mRevokeVersion, mDestroy, mSetPolicy, mPublicKey, mSign, mVerify,
	mSeal, mUnseal, mRewrap, mSignBatch, mSealBatch, mUnsealBatch, mMac, mVerifyMac, mMacBatch, mVerifyMacBatch,
	mSweep, mGetUsage,
	mDataKey, mDataKeyNoPT, mDecrypt, mImportParams, mImport,
	mPut, mGetValue, mDelete, mListValues, mListAnchors, mVerifyAnchor,
	mKEKStatus, mRotateKEK,
}

// itemOf is the outcome of a call that names a key: for a batch of one
// item, the item's; for other calls, the call's.
func itemOf(method string, c provider.Code) outcome {
	switch method {
	case mSignBatch, mSealBatch, mUnsealBatch, mMacBatch, mVerifyMacBatch:
		return batch(c)
	}
	if c == 0 {
		return ok()
	}
	return fails(c)
}

// keyRequests returns, for the key name k, a request of every Keys RPC
// that names a key, every other field valid (Create and the other state
// changes only when withChanges).
func (e *env) keyRequests(k string, withChanges bool) map[string]proto.Message {
	m := map[string]proto.Message{
		mGet:         &keystorev1.GetKeyRequest{Key: k},
		mPublicKey:   &keystorev1.PublicKeyRequest{Key: k},
		mSign:        &keystorev1.SignRequest{Key: k, Message: msg},
		mVerify:      &keystorev1.VerifyRequest{Key: k, Version: 1, Message: msg, Signature: e.sig},
		mSeal:        &keystorev1.SealRequest{Key: k, Plaintext: plaintext, Aad: aad},
		mUnseal:      &keystorev1.UnsealRequest{Key: k, Sealed: e.sealed, Aad: aad},
		mRewrap:      &keystorev1.RewrapRequest{Key: k, Sealed: e.sealed, Aad: aad},
		mSignBatch:   &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{{Key: k, Message: msg}}},
		mSealBatch:   &keystorev1.SealBatchRequest{Items: []*keystorev1.SealRequest{{Key: k, Plaintext: plaintext, Aad: aad}}},
		mUnsealBatch: &keystorev1.UnsealBatchRequest{Items: []*keystorev1.UnsealRequest{{Key: k, Sealed: e.sealed, Aad: aad}}},
		mMac:         &keystorev1.MacRequest{Key: k, Message: msg},
		mVerifyMac:   &keystorev1.VerifyMacRequest{Key: k, Version: 1, Message: msg, Tag: e.tag},
		mMacBatch:    &keystorev1.MacBatchRequest{Items: []*keystorev1.MacRequest{{Key: k, Message: msg}}},
		mVerifyMacBatch: &keystorev1.VerifyMacBatchRequest{Items: []*keystorev1.VerifyMacRequest{
			{Key: k, Version: 1, Message: msg, Tag: e.tag}}},
		mDataKey:     &keystorev1.GenerateDataKeyRequest{Key: k, Aad: aad},
		mDataKeyNoPT: &keystorev1.GenerateDataKeyRequest{Key: k, Spec: "aes-128-gcm"},
		mDecrypt:     &keystorev1.DecryptRequest{Key: k, Version: 1, Enc: e.hpkeEnc, Ciphertext: e.hpkeCT, Info: hpkeInfo, Aad: aad},
	}
	// Import parameters for a key that does not exist are granted (Import
	// creates it), and an import of a valid token changes the state: both
	// go with the state changes.
	if withChanges {
		m[mImportParams] = &keystorev1.GetImportParametersRequest{Key: k, Algorithm: "aes-256-gcm"}
		m[mImport] = &keystorev1.ImportKeyRequest{Key: k, Token: "kit1." + strings.Repeat("A", 22), Enc: make([]byte, 32), Wrapped: make([]byte, 48)}
		m[mCreate] = &keystorev1.CreateKeyRequest{Key: k, Algorithm: "ed25519"}
		m[mRotate] = &keystorev1.RotateKeyRequest{Key: k}
		m[mRevoke] = &keystorev1.RevokeKeyRequest{Key: k}
		m[mRevokeVersion] = &keystorev1.RevokeKeyVersionRequest{Key: k, Version: 1}
		m[mDestroy] = &keystorev1.DestroyKeyRequest{Key: k}
		m[mSetPolicy] = &keystorev1.SetKeyPolicyRequest{Key: k, Policy: &keystorev1.KeyPolicy{}}
	}
	return m
}

// addSorted adds the requests of m in method order (a stable order).
func (e *env) addSorted(note string, m map[string]proto.Message, want func(method string) outcome) {
	e.t.Helper()
	for _, method := range allMethods {
		if req, ok := m[method]; ok {
			e.add(note, method, req, want(method))
		}
	}
}

// badName sends the bad name v everywhere a request names something: as
// a key to every Keys RPC that names one, as a value name to Store's
// Put, Get and Delete, as an anchor to TrustAnchors.Verify, as the app of
// Keys.List, and as the page token of both listings. Every one is EINVAL
// (for a batch: its item), and nothing is created. The empty name is not
// sent where "" is valid (the listing's app and page tokens).
func (e *env) badName(v string) {
	e.addSorted(v, e.keyRequests(v, true), func(m string) outcome { return itemOf(m, provider.EINVAL) })
	e.segRequests(v, provider.EINVAL, provider.EINVAL, v != "")
}

// segRequests sends v as a single name: Store Put, Get and Delete and the
// anchor must end with want; the listings' app and page tokens (when
// withList) with listWant.
func (e *env) segRequests(v string, want, listWant provider.Code, withList bool) {
	e.add(v, mPut, &keystorev1.PutValueRequest{Name: v, Value: []byte("x")}, fails(want))
	e.add(v, mGetValue, &keystorev1.GetValueRequest{Name: v}, fails(want))
	e.add(v, mDelete, &keystorev1.DeleteValueRequest{Name: v}, fails(want))
	e.add(v, mVerifyAnchor, &keystorev1.VerifyAnchorRequest{Anchor: v, Message: msg, Signature: e.anchorSig}, fails(want))
	if withList {
		e.add("app "+v, mList, &keystorev1.ListKeysRequest{App: v}, fails(listWant))
		e.add("app "+v, mGetUsage, &keystorev1.GetUsageRequest{App: v}, fails(listWant))
		e.add("token "+v, mList, &keystorev1.ListKeysRequest{PageToken: v}, fails(listWant))
		e.add("token "+v, mListValues, &keystorev1.ListValuesRequest{PageToken: v}, fails(listWant))
	}
}

// nameClass is a class of bad names, each sent everywhere by badName.
func nameClass(name string, values ...string) class {
	return class{name: name, build: func(e *env) {
		for _, v := range values {
			e.badName(v)
		}
	}}
}

var (
	seg64 = strings.Repeat("a", provider.MaxSegment)
	seg65 = strings.Repeat("a", provider.MaxSegment+1)
)

// replaceOnce returns b with the one occurrence of old replaced by new
// (same length, so no length prefix changes).
func (e *env) replaceOnce(b []byte, old, new string) []byte {
	e.t.Helper()
	if len(old) != len(new) || bytes.Count(b, []byte(old)) != 1 {
		e.t.Fatalf("the placeholder %q must occur once in the request and have the length of %q", old, new)
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

// placeholder stands in for invalid UTF-8 while a request is marshalled.
const placeholder = "~~~~~~~~~~~~~~~~"

// stringRequests returns a request of every RPC with a string field, that
// field set to s.
func (e *env) stringRequests(s string) map[string][]proto.Message {
	m := map[string][]proto.Message{}
	for method, req := range e.keyRequests(s, true) {
		m[method] = append(m[method], req)
	}
	m[mCreate] = append(m[mCreate], &keystorev1.CreateKeyRequest{Key: "new/k", Algorithm: s},
		&keystorev1.CreateKeyRequest{Key: "new/k", Use: s})
	m[mSign] = append(m[mSign], &keystorev1.SignRequest{Key: "sig/ec", Digest: e.digest, DigestHash: s})
	m[mVerify] = append(m[mVerify], &keystorev1.VerifyRequest{Key: "sig/ec", Version: 1, Digest: e.digest, DigestHash: s, Signature: e.sigEC})
	m[mDataKey] = append(m[mDataKey], &keystorev1.GenerateDataKeyRequest{Key: "enc/k", Spec: s})
	m[mDataKeyNoPT] = append(m[mDataKeyNoPT], &keystorev1.GenerateDataKeyRequest{Key: "enc/k", Spec: s})
	m[mImportParams] = append(m[mImportParams], &keystorev1.GetImportParametersRequest{Key: "imp/new", Algorithm: s},
		&keystorev1.GetImportParametersRequest{Key: "imp/new", Algorithm: "aes-256-gcm", WrappingAlgorithm: s})
	m[mImport] = append(m[mImport], &keystorev1.ImportKeyRequest{Key: "imp/new", Token: s})
	m[mList] = []proto.Message{&keystorev1.ListKeysRequest{App: s}, &keystorev1.ListKeysRequest{PageToken: s}}
	m[mGetUsage] = []proto.Message{&keystorev1.GetUsageRequest{App: s}}
	m[mSweep] = []proto.Message{&keystorev1.SweepKeysRequest{PageToken: s}}
	m[mPut] = []proto.Message{&keystorev1.PutValueRequest{Name: s}}
	m[mGetValue] = []proto.Message{&keystorev1.GetValueRequest{Name: s}}
	m[mDelete] = []proto.Message{&keystorev1.DeleteValueRequest{Name: s}}
	m[mListValues] = []proto.Message{&keystorev1.ListValuesRequest{PageToken: s}}
	m[mVerifyAnchor] = []proto.Message{&keystorev1.VerifyAnchorRequest{Anchor: s, Message: msg}}
	return m
}

// wireInt64 returns the wire bytes of req with the varint field num set
// to the 64-bit pattern v (so that 2^63 and friends can be sent).
func (e *env) wireInt64(req proto.Message, num protowire.Number, v uint64) []byte {
	e.t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// envelope returns a copy of the sealed envelope with f applied.
func envelope(sealed []byte, f func(b []byte) []byte) []byte {
	return f(append([]byte(nil), sealed...))
}

// unsealAll adds an Unseal, a Rewrap and an UnsealBatch of blob to enc/k
// with aad, each expected to fail with c (the batch's item).
func (e *env) unsealAll(note string, blob, a []byte, c provider.Code) {
	e.add(note, mUnseal, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: blob, Aad: a}, itemOf(mUnseal, c))
	e.add(note, mRewrap, &keystorev1.RewrapRequest{Key: "enc/k", Sealed: blob, Aad: a}, itemOf(mRewrap, c))
	e.add(note, mUnsealBatch, &keystorev1.UnsealBatchRequest{Items: []*keystorev1.UnsealRequest{{Key: "enc/k", Sealed: blob, Aad: a}}}, itemOf(mUnsealBatch, c))
}

// classes is the table.
var classes = []class{
	nameClass("path-traversal", "../x/y", "a/../../b", "../../etc/passwd", "sig/..", "./sig/k", "uid-0/../k", "sig/../../k", "..", "."),
	nameClass("encoded-traversal", "%2e%2e/x/y", "..%2f..%2fx", "sig/%2e%2e", "%2E%2E%2Fetc/k", "sig/k%00", "%2e%2e"),
	nameClass("absolute-path", "/etc/passwd", "/sig/k", "/uid-0/sig/k", "/", "/k"),
	nameClass("backslash", `..\..\x`, `sig\k`, `sig/k\..`, `uid-0\sig\k`, `\`),
	nameClass("unicode-lookalike",
		"ｓig/k", "sig/ｋ", // fullwidth
		"sig/kа", "аpp/sig/k", // Cyrillic а
		"sig/ke\u0301", "sig/\u00e9", // combining acute, precomposed é
		"sig/\u202ek", "sig/k\u200b", "sig/k\ufeff", // RTL override, zero width space, BOM
		"ѕig", "k\u0131"), // Cyrillic dze, dotless i
	nameClass("upper-case", "SIG/K", "sig/K", "Uid-0/sig/k", "UID-0/SIG/K", "K", "Shared"),
	nameClass("nul-and-control", "sig/k\x00", "sig/\x01k", "sig/k\x7f", "sig/k\t", "\x00/k", "k\x00", "\x1b[31mk", "sig/\x08k"),
	nameClass("injection", "sig/k\n", "sig/k;uid=0;", "sig/k\r\nuid=0", "sig/k uid=0", `sig/k"}`, "sig/k@1", "uid-0/sig/k@1",
		"k\nuid=0", "k;uid=0;", `{"uid":0}`, "sig/*", "sig/k?x"),
	nameClass("empty-names", "", "/", "//", "sig/", "/k", "sig//k", "a//b", "uid-0//k", " "),
	nameClass("segment-over-65", "sig/"+seg65, seg65+"/k", "uid-0/sig/"+seg65, seg65+"/sig/k", seg65,
		strings.Repeat("a/", 300), strings.Repeat("x", 10<<10), "sig/"+strings.Repeat("k", provider.MaxKeyIDLen)),
	{name: "segment-64-edge", build: func(e *env) {
		// 64 bytes is the bound: valid, and no such key or value (the
		// longest key ID, 3×64+2 bytes, included).
		for _, k := range []string{"sig/" + seg64, "uid-0/" + seg64 + "/" + seg64, seg64 + "/" + seg64, seg64 + "/" + seg64 + "/" + seg64} {
			e.addSorted(k, e.keyRequests(k, false), func(m string) outcome { return itemOf(m, provider.ENOENT) })
		}
		e.add("64", mGetValue, &keystorev1.GetValueRequest{Name: seg64}, fails(provider.ENOENT))
		e.add("64", mDelete, &keystorev1.DeleteValueRequest{Name: seg64}, fails(provider.ENOENT))
		e.add("64", mVerifyAnchor, &keystorev1.VerifyAnchorRequest{Anchor: seg64, Message: msg}, fails(provider.ENOENT))
		e.add("64", mList, &keystorev1.ListKeysRequest{App: seg64}, ok())
		e.add("64", mListValues, &keystorev1.ListValuesRequest{PageToken: seg64}, ok())
	}},
	{name: "segment-count", build: func(e *env) {
		// One segment is a valid value, anchor or app name, but not a key.
		for _, k := range []string{"k", "sig"} {
			e.addSorted(k, e.keyRequests(k, true), func(m string) outcome { return itemOf(m, provider.EINVAL) })
		}
		for _, k := range []string{"a/b/c/d", "a/b/c/d/e", "uid-0/sig/k/x"} {
			e.badName(k)
		}
		// Two segments are not a value, anchor or app name.
		e.segRequests("a/b", provider.EINVAL, provider.EINVAL, true)
		// Two segments is the caller's own app: valid, no such key.
		e.addSorted("nope/k", e.keyRequests("nope/k", false), func(m string) outcome { return itemOf(m, provider.ENOENT) })
	}},
	{name: "invalid-utf8", build: func(e *env) {
		for _, bad := range []string{"sig/k\xff\xfe", "\xc0\xafsig/k", "sig/\xed\xa0\x80k"} {
			ph := placeholder[:len(bad)]
			for _, method := range allMethods {
				for _, req := range e.stringRequests(ph)[method] {
					b, err := proto.Marshal(req)
					if err != nil {
						e.t.Fatal(err)
					}
					e.raw("invalid UTF-8", method, e.replaceOnce(b, ph, bad), fails(provider.EINVAL))
				}
			}
		}
	}},
	{name: "malformed-protobuf", build: func(e *env) {
		bodies := [][]byte{
			{0xff},                               // a tag that does not end
			{0x0a, 0x05, 'a'},                    // field 1 longer than the message
			{0x0b},                               // a group that never ends
			{0x08},                               // a varint that is missing
			{0x00, 0x00},                         // field number 0
			{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, // length 2^32-1
			bytes.Repeat([]byte{0x80}, 11),       // an 11-byte varint
		}
		for _, method := range allMethods {
			for _, b := range bodies {
				e.raw("malformed", method, b, fails(provider.EINVAL))
			}
		}
	}},
	{name: "zero-request", build: func(e *env) {
		// Every RPC with every field left out.
		zero := map[string]proto.Message{}
		for method, req := range e.keyRequests("x/y", true) {
			zero[method] = req.ProtoReflect().Type().New().Interface()
		}
		// No key, or a batch of no items: EINVAL.
		e.addSorted("zero", zero, func(string) outcome { return fails(provider.EINVAL) })
		e.add("zero", mList, &keystorev1.ListKeysRequest{}, ok())
		e.add("zero", mPut, &keystorev1.PutValueRequest{}, fails(provider.EINVAL))
		e.add("zero", mGetValue, &keystorev1.GetValueRequest{}, fails(provider.EINVAL))
		e.add("zero", mDelete, &keystorev1.DeleteValueRequest{}, fails(provider.EINVAL))
		e.add("zero", mListValues, &keystorev1.ListValuesRequest{}, ok())
		e.add("zero", mListAnchors, &keystorev1.ListAnchorsRequest{}, ok())
		e.add("zero", mVerifyAnchor, &keystorev1.VerifyAnchorRequest{}, fails(provider.EINVAL))
		// Admin's requests are empty: the status is read. (A well-formed
		// RotateWrappingKey would change the state; it gets only the
		// classes the transport or the codec refuse.)
		e.add("zero", mKEKStatus, &keystorev1.WrappingKeyStatusRequest{}, ok())
	}},
	{name: "message-size", build: func(e *env) {
		for _, n := range []int{0, provider.MaxSignMessage, provider.MaxSignMessage + 1, 1 << 20} {
			m := make([]byte, n)
			c := provider.Code(0)
			if n > provider.MaxSignMessage {
				c = provider.EMSGSIZE
			}
			e.add("sign", mSign, &keystorev1.SignRequest{Key: "sig/k", Message: m}, itemOf(mSign, c))
			e.add("sign", mSignBatch, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{{Key: "sig/k", Message: m}}}, itemOf(mSignBatch, c))
			verify, anchor := valid(false), valid(false)
			if c != 0 {
				verify, anchor = fails(c), fails(c)
			}
			e.add("verify", mVerify, &keystorev1.VerifyRequest{Key: "sig/k", Version: 1, Message: m, Signature: e.sig}, verify)
			e.add("verify", mVerifyAnchor, &keystorev1.VerifyAnchorRequest{Anchor: "root", Message: m, Signature: e.anchorSig}, anchor)
		}
		// MAC messages have their own bound, 1 MiB (4 MiB is over the
		// methods' receive limits, but not a batch's).
		for _, n := range []int{0, provider.MaxMACMessage, provider.MaxMACMessage + 1, 4 << 20} {
			m := make([]byte, n)
			c := provider.Code(0)
			if n > provider.MaxMACMessage {
				c = provider.EMSGSIZE
			}
			e.add("mac", mMac, &keystorev1.MacRequest{Key: "mac/k", Message: m}, itemOf(mMac, c))
			e.add("mac", mMacBatch, &keystorev1.MacBatchRequest{Items: []*keystorev1.MacRequest{{Key: "mac/k", Message: m}}}, itemOf(mMacBatch, c))
			verify := valid(false) // the tag is msg's
			if c != 0 {
				verify = fails(c)
			}
			e.add("verify-mac", mVerifyMac, &keystorev1.VerifyMacRequest{Key: "mac/k", Version: 1, Message: m, Tag: e.tag}, verify)
			e.add("verify-mac", mVerifyMacBatch, &keystorev1.VerifyMacBatchRequest{Items: []*keystorev1.VerifyMacRequest{
				{Key: "mac/k", Version: 1, Message: m, Tag: e.tag}}}, itemOf(mVerifyMacBatch, c))
		}
	}},
	{name: "plaintext-size", build: func(e *env) {
		for _, n := range []int{0, provider.MaxSealPlaintext, provider.MaxSealPlaintext + 1, 4 << 20} {
			p := make([]byte, n)
			c := provider.Code(0)
			if n > provider.MaxSealPlaintext {
				c = provider.EMSGSIZE
			}
			e.add("seal", mSeal, &keystorev1.SealRequest{Key: "enc/k", Plaintext: p}, itemOf(mSeal, c))
			e.add("seal", mSealBatch, &keystorev1.SealBatchRequest{Items: []*keystorev1.SealRequest{{Key: "enc/k", Plaintext: p}}}, itemOf(mSealBatch, c))
		}
	}},
	{name: "aad-size", build: func(e *env) {
		for _, n := range []int{provider.MaxAAD, provider.MaxAAD + 1, 1 << 20} {
			a := make([]byte, n)
			c := provider.Code(0)
			if n > provider.MaxAAD {
				c = provider.EMSGSIZE
			}
			e.add("seal", mSeal, &keystorev1.SealRequest{Key: "enc/k", Plaintext: plaintext, Aad: a}, itemOf(mSeal, c))
			e.add("seal", mSealBatch, &keystorev1.SealBatchRequest{Items: []*keystorev1.SealRequest{{Key: "enc/k", Plaintext: plaintext, Aad: a}}}, itemOf(mSealBatch, c))
			if c == 0 {
				c = provider.EBADMSG // not the AAD it was sealed with
			}
			e.unsealAll("aad", e.sealed, a, c)
		}
	}},
	{name: "sealed-size", build: func(e *env) {
		e.unsealAll("MaxSealed zeros", make([]byte, provider.MaxSealed), aad, provider.EBADMSG)
		e.unsealAll("MaxSealed+1", make([]byte, provider.MaxSealed+1), aad, provider.EMSGSIZE)
		e.unsealAll("4 MiB", make([]byte, 4<<20), aad, provider.EMSGSIZE)
		big := append(append([]byte(nil), e.sealed...), make([]byte, provider.MaxSealed-len(e.sealed))...)
		e.unsealAll("valid envelope padded to MaxSealed", big, aad, provider.EBADMSG)
	}},
	{name: "version-range", build: func(e *env) {
		type v struct {
			note string
			val  uint64
		}
		for _, x := range []v{{"0", 0}, {"-1", math.MaxUint64}, {"2^32", 1 << 32}, {"2^63", 1 << 63}, {"max int64", math.MaxInt64}, {"2^32-1", math.MaxUint32}} {
			revoke, pub, verify := fails(provider.EINVAL), fails(provider.EINVAL), fails(provider.EINVAL)
			switch x.val {
			case 0:
				pub = ok() // 0 is the current version
			case math.MaxUint32:
				revoke, pub, verify = fails(provider.ENOENT), fails(provider.ENOENT), fails(provider.ENOENT)
			}
			e.raw(x.note, mRevokeVersion, e.wireInt64(&keystorev1.RevokeKeyVersionRequest{Key: "sig/k"}, 2, x.val), revoke)
			e.raw(x.note, mPublicKey, e.wireInt64(&keystorev1.PublicKeyRequest{Key: "sig/k"}, 2, x.val), pub)
			e.raw(x.note, mVerify, e.wireInt64(&keystorev1.VerifyRequest{Key: "sig/k", Message: msg, Signature: e.sig}, 2, x.val), verify)
			e.raw(x.note, mVerifyMac, e.wireInt64(&keystorev1.VerifyMacRequest{Key: "mac/k", Message: msg, Tag: e.tag}, 2, x.val), verify)
			// Sign's version is optional: 0 signs with the primary.
			sign := verify
			if x.val == 0 {
				sign = ok()
			}
			e.raw(x.note, mSign, e.wireInt64(&keystorev1.SignRequest{Key: "sig/k", Message: msg}, 3, x.val), sign)
		}
		// A named version of a revoked key neither signs nor checks tags.
		e.add("revoked", mSign, &keystorev1.SignRequest{Key: "sig/old", Version: 1, Message: msg}, fails(provider.EKEYREVOKED))
		e.add("revoked", mVerifyMac, &keystorev1.VerifyMacRequest{Key: "mac/old", Version: 1, Message: msg, Tag: e.tag}, fails(provider.EKEYREVOKED))
		e.add("version 2 of a one-version key", mSign, &keystorev1.SignRequest{Key: "sig/k", Version: 2, Message: msg}, fails(provider.ENOENT))
		e.add("version 2 of a one-version key", mVerifyMac, &keystorev1.VerifyMacRequest{Key: "mac/k", Version: 2, Message: msg, Tag: e.tag}, fails(provider.ENOENT))
	}},
	{name: "unknown-algorithm", build: func(e *env) {
		for _, a := range []string{"rsa-4096", "ED25519", "ed25519 ", " ed25519", "ed25519\x00", "ed-25519", "ed25519/../aes",
			"none", "rsa", "aes-128-gcm", "xchacha20-poly1305\n", strings.Repeat("x", 10<<10),
			"hmac-sha1", "hmac-md5", "HMAC-SHA256", "hmac-sha256 ", "hmac", "ecdsa-p521-sha512", "ecdsa-p256", "rsa-1024-pss-sha256",
			"rsa-2048-pss-sha512", "rsa-2048", "ed25519ph\x00"} {
			e.add(a, mCreate, &keystorev1.CreateKeyRequest{Key: "new/k", Algorithm: a}, fails(provider.ENOTSUP))
		}
	}},
	{name: "unknown-use", build: func(e *env) {
		// CreateKeyRequest.use is "sign", "decrypt", "mac" or empty.
		for _, u := range []string{"encrypt", "SIGN", "Mac", "mac ", " mac", "mac\x00", "hmac", "seal", "sign,mac", "0", "3",
			strings.Repeat("u", 10<<10)} {
			e.add(u, mCreate, &keystorev1.CreateKeyRequest{Key: "new/k", Use: u}, fails(provider.EINVAL))
			e.add(u, mCreate, &keystorev1.CreateKeyRequest{Key: "new/k", Algorithm: "hmac-sha256", Use: u}, fails(provider.EINVAL))
		}
	}},
	{name: "alg-use-mismatch", build: func(e *env) {
		// An algorithm and a use that is not its own.
		for _, c := range []struct{ alg, use string }{{"ed25519", "mac"}, {"ed25519", "decrypt"}, {"hmac-sha256", "sign"},
			{"hmac-sha256", "decrypt"}, {"xchacha20-poly1305", "mac"}, {"ecdsa-p256-sha256", "decrypt"}} {
			e.add(c.alg+" as "+c.use, mCreate, &keystorev1.CreateKeyRequest{Key: "new/k", Algorithm: c.alg, Use: c.use}, fails(provider.EINVAL))
		}
		// A MAC key where another is needed, and the reverse.
		for _, k := range []string{"sig/k", "enc/k"} {
			e.add("mac with "+k, mMac, &keystorev1.MacRequest{Key: k, Message: msg}, fails(provider.EPERM))
			e.add("verify-mac with "+k, mVerifyMac, &keystorev1.VerifyMacRequest{Key: k, Version: 1, Message: msg, Tag: e.tag}, fails(provider.EPERM))
			e.add("mac batch with "+k, mMacBatch, &keystorev1.MacBatchRequest{Items: []*keystorev1.MacRequest{{Key: k, Message: msg}}}, batch(provider.EPERM))
			e.add("verify-mac batch with "+k, mVerifyMacBatch, &keystorev1.VerifyMacBatchRequest{Items: []*keystorev1.VerifyMacRequest{
				{Key: k, Version: 1, Message: msg, Tag: e.tag}}}, batch(provider.EPERM))
		}
		e.add("sign with a MAC key", mSign, &keystorev1.SignRequest{Key: "mac/k", Message: msg}, fails(provider.EPERM))
		e.add("verify with a MAC key", mVerify, &keystorev1.VerifyRequest{Key: "mac/k", Version: 1, Message: msg, Signature: e.tag}, fails(provider.EPERM))
		e.add("public key of a MAC key", mPublicKey, &keystorev1.PublicKeyRequest{Key: "mac/k"}, fails(provider.EPERM))
		e.add("seal with a MAC key", mSeal, &keystorev1.SealRequest{Key: "mac/k", Plaintext: plaintext}, fails(provider.EPERM))
		e.add("unseal with a MAC key", mUnseal, &keystorev1.UnsealRequest{Key: "mac/k", Sealed: e.sealed, Aad: aad}, fails(provider.EPERM))
		e.add("sign batch with a MAC key", mSignBatch, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{{Key: "mac/k", Message: msg}}}, batch(provider.EPERM))
		// A sign key where a decrypt key is needed, and the reverse.
		e.add("sign with a decrypt key", mSign, &keystorev1.SignRequest{Key: "enc/k", Message: msg}, fails(provider.EPERM))
		e.add("verify with a decrypt key", mVerify, &keystorev1.VerifyRequest{Key: "enc/k", Version: 1, Message: msg, Signature: e.sig}, fails(provider.EPERM))
		e.add("public key of a decrypt key", mPublicKey, &keystorev1.PublicKeyRequest{Key: "enc/k"}, fails(provider.EPERM))
		e.add("public key of a decrypt key", mPublicKey, &keystorev1.PublicKeyRequest{Key: "enc/c", Version: 1}, fails(provider.EPERM))
		e.add("seal with a sign key", mSeal, &keystorev1.SealRequest{Key: "sig/k", Plaintext: plaintext}, fails(provider.EPERM))
		e.add("unseal with a sign key", mUnseal, &keystorev1.UnsealRequest{Key: "sig/k", Sealed: e.sealed, Aad: aad}, fails(provider.EPERM))
		e.add("rewrap with a sign key", mRewrap, &keystorev1.RewrapRequest{Key: "sig/k", Sealed: e.sealed, Aad: aad}, fails(provider.EPERM))
		e.add("sign batch", mSignBatch, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{{Key: "enc/k", Message: msg}}}, batch(provider.EPERM))
		e.add("seal batch", mSealBatch, &keystorev1.SealBatchRequest{Items: []*keystorev1.SealRequest{{Key: "sig/k", Plaintext: plaintext}}}, batch(provider.EPERM))
		e.add("unseal batch", mUnsealBatch, &keystorev1.UnsealBatchRequest{Items: []*keystorev1.UnsealRequest{{Key: "sig/k", Sealed: e.sealed, Aad: aad}}}, batch(provider.EPERM))
	}},
	{name: "envelope-length", build: func(e *env) {
		// Every length 0..64: a prefix of a valid envelope (or the valid
		// envelope with bytes added), and random bytes.
		rng := rand.New(rand.NewPCG(6, 64))
		for n := 0; n <= 64; n++ {
			var cut []byte
			if n < len(e.sealed) {
				cut = append([]byte(nil), e.sealed[:n]...)
			} else {
				cut = append(append([]byte(nil), e.sealed...), make([]byte, n-len(e.sealed)+1)...)
			}
			e.unsealAll("cut", cut, aad, provider.EBADMSG)
			random := make([]byte, n)
			for i := range random {
				random[i] = byte(rng.Uint32())
			}
			e.unsealAll("random", random, aad, provider.EBADMSG)
		}
	}},
	{name: "envelope-header", build: func(e *env) {
		set := func(i int, v byte) func([]byte) []byte {
			return func(b []byte) []byte { b[i] = v; return b }
		}
		version := func(v uint32) func([]byte) []byte {
			return func(b []byte) []byte { binary.BigEndian.PutUint32(b[4:8], v); return b }
		}
		for _, f := range []struct {
			note string
			f    func([]byte) []byte
		}{
			{"magic 0", set(0, 'X')}, {"magic 1", set(1, 's')}, {"magic zero", set(0, 0)},
			{"format 0", set(2, 0)}, {"format 2", set(2, 2)}, {"format 255", set(2, 255)},
			{"alg 0", set(3, 0)}, {"alg ed25519", set(3, 1)}, {"alg chacha20-poly1305", set(3, 17)}, {"alg aes", set(3, 18)}, {"alg 255", set(3, 255)},
			{"version 0", version(0)}, {"version 2", version(2)}, {"version 2^32-1", version(math.MaxUint32)}, {"version 2^31", version(1 << 31)},
		} {
			e.unsealAll(f.note, envelope(e.sealed, f.f), aad, provider.EBADMSG)
		}
	}},
	{name: "envelope-bitflip", build: func(e *env) {
		// Every byte of a valid envelope flipped in turn.
		for i := range e.sealed {
			e.unsealAll("flip", envelope(e.sealed, func(b []byte) []byte { b[i] ^= 0x01; return b }), aad, provider.EBADMSG)
		}
	}},
	{name: "foreign-envelope", build: func(e *env) {
		e.unsealAll("envelope of enc/k2", e.sealed2, aad, provider.EBADMSG)
		e.unsealAll("envelope of enc/c (chacha20-poly1305)", e.sealedC, aad, provider.EBADMSG)
		e.unsealAll("wrong AAD", e.sealed, []byte("aae"), provider.EBADMSG)
		e.unsealAll("no AAD", e.sealed, nil, provider.EBADMSG)
		e.add("enc/k's envelope to enc/k2", mUnseal, &keystorev1.UnsealRequest{Key: "enc/k2", Sealed: e.sealed, Aad: aad}, fails(provider.EBADMSG))
		e.add("enc/k's envelope to enc/c", mRewrap, &keystorev1.RewrapRequest{Key: "enc/c", Sealed: e.sealed, Aad: aad}, fails(provider.EBADMSG))
		e.add("envelope to a revoked key", mUnseal, &keystorev1.UnsealRequest{Key: "enc/old", Sealed: e.sealed, Aad: aad}, fails(provider.EKEYREVOKED))
	}},
	{name: "signature-length", build: func(e *env) {
		flipped := append([]byte(nil), e.sig...)
		flipped[0] ^= 1
		for _, s := range [][]byte{nil, {0}, make([]byte, 63), make([]byte, 65), append(append([]byte(nil), e.sig...), 0),
			e.sig[:63], make([]byte, 4096), make([]byte, provider.MaxSignature), e.sig2, flipped} {
			e.add("verify", mVerify, &keystorev1.VerifyRequest{Key: "sig/k", Version: 1, Message: msg, Signature: s}, valid(false))
			e.add("anchor", mVerifyAnchor, &keystorev1.VerifyAnchorRequest{Anchor: "root", Message: msg, Signature: s}, valid(false))
		}
		over := make([]byte, provider.MaxSignature+1)
		e.add("verify", mVerify, &keystorev1.VerifyRequest{Key: "sig/k", Version: 1, Message: msg, Signature: over}, fails(provider.EMSGSIZE))
		e.add("anchor", mVerifyAnchor, &keystorev1.VerifyAnchorRequest{Anchor: "root", Message: msg, Signature: over}, fails(provider.EMSGSIZE))
		// Controls: the right signatures verify.
		e.add("verify", mVerify, &keystorev1.VerifyRequest{Key: "sig/k", Version: 1, Message: msg, Signature: e.sig}, valid(true))
		e.add("anchor", mVerifyAnchor, &keystorev1.VerifyAnchorRequest{Anchor: "root", Message: msg, Signature: e.anchorSig}, valid(true))
	}},
	{name: "tag-length", build: func(e *env) {
		// A tag of another length, another key's or flipped does not
		// match (valid=false); over the largest tag (64 bytes) it is
		// EMSGSIZE.
		flipped := append([]byte(nil), e.tag...)
		flipped[0] ^= 1
		for _, tag := range [][]byte{nil, {0}, make([]byte, 31), make([]byte, 33), append(append([]byte(nil), e.tag...), 0),
			e.tag[:31], e.tag[:16], make([]byte, provider.MaxMAC), e.tag2, flipped, append(append([]byte(nil), e.tag...), e.tag...)} {
			e.add("verify-mac", mVerifyMac, &keystorev1.VerifyMacRequest{Key: "mac/k", Version: 1, Message: msg, Tag: tag}, valid(false))
			e.add("verify-mac", mVerifyMacBatch, &keystorev1.VerifyMacBatchRequest{Items: []*keystorev1.VerifyMacRequest{
				{Key: "mac/k", Version: 1, Message: msg, Tag: tag}}}, batch(0))
		}
		for _, n := range []int{provider.MaxMAC + 1, 4096} {
			tag := make([]byte, n)
			e.add("verify-mac", mVerifyMac, &keystorev1.VerifyMacRequest{Key: "mac/k", Version: 1, Message: msg, Tag: tag}, fails(provider.EMSGSIZE))
			e.add("verify-mac", mVerifyMacBatch, &keystorev1.VerifyMacBatchRequest{Items: []*keystorev1.VerifyMacRequest{
				{Key: "mac/k", Version: 1, Message: msg, Tag: tag}}}, batch(provider.EMSGSIZE))
		}
		// Controls: the right tag matches.
		e.add("verify-mac", mVerifyMac, &keystorev1.VerifyMacRequest{Key: "mac/k", Version: 1, Message: msg, Tag: e.tag}, valid(true))
		e.add("verify-mac", mVerifyMac, &keystorev1.VerifyMacRequest{Key: "mac/k2", Version: 1, Message: msg, Tag: e.tag2}, valid(true))
	}},
	{name: "digest-input", build: func(e *env) {
		// Sign and Verify by digest (sig/ec signs SHA-256 digests): a
		// message with a digest, a digest without its hash or of the
		// wrong size, an unknown hash name or another algorithm's hash is
		// EINVAL; a key that signs whole messages only, or no signing
		// key, is EPERM.
		d := e.digest
		d384, d512 := sha512.Sum384(msg), sha512.Sum512(msg)
		type in struct {
			note    string
			message []byte
			digest  []byte
			hash    string
		}
		bad := []in{
			{"message and digest", msg, d, "sha256"},
			{"message and digest hash", msg, nil, "sha256"},
			{"digest without its hash", nil, d, ""},
			{"hash without a digest", nil, nil, "sha256"},
			{"sha384 digest for P-256", nil, d384[:], "sha384"},
			{"sha512 digest for P-256", nil, d512[:], "sha512"},
			{"sha256 digest called sha384", nil, d, "sha384"},
			{"1 byte", nil, d[:1], "sha256"},
			{"31 bytes", nil, d[:31], "sha256"},
			{"33 bytes", nil, append(append([]byte(nil), d...), 0), "sha256"},
			{"over the message bound", nil, make([]byte, provider.MaxSignMessage+1), "sha256"},
		}
		for _, h := range []string{"md5", "sha1", "SHA256", "sha-256", "sha256\x00", " sha256", "sha3-256", "sha512/256", strings.Repeat("h", 10<<10)} {
			bad = append(bad, in{"hash " + h, nil, d, h})
		}
		for _, b := range bad {
			e.add(b.note, mSign, &keystorev1.SignRequest{Key: "sig/ec", Message: b.message, Digest: b.digest, DigestHash: b.hash}, fails(provider.EINVAL))
			e.add(b.note, mVerify, &keystorev1.VerifyRequest{Key: "sig/ec", Version: 1, Message: b.message, Digest: b.digest, DigestHash: b.hash, Signature: e.sigEC},
				fails(provider.EINVAL))
			e.add(b.note, mSignBatch, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{
				{Key: "sig/ec", Message: b.message, Digest: b.digest, DigestHash: b.hash}}}, batch(provider.EINVAL))
		}
		for _, k := range []string{"sig/k", "enc/k", "mac/k"} {
			e.add("digest to "+k, mSign, &keystorev1.SignRequest{Key: k, Digest: d, DigestHash: "sha256"}, fails(provider.EPERM))
			e.add("digest to "+k, mVerify, &keystorev1.VerifyRequest{Key: k, Version: 1, Digest: d, DigestHash: "sha256", Signature: e.sig}, fails(provider.EPERM))
			e.add("digest to "+k, mSignBatch, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{{Key: k, Digest: d, DigestHash: "sha256"}}}, batch(provider.EPERM))
		}
		e.add("digest to a missing key", mSign, &keystorev1.SignRequest{Key: "nope/k", Digest: d, DigestHash: "sha256"}, fails(provider.ENOENT))
		// Controls: the digest signs, and the message's signature
		// verifies by digest; another digest does not verify.
		e.add("digest", mSign, &keystorev1.SignRequest{Key: "sig/ec", Digest: d, DigestHash: "sha256"}, ok())
		e.add("digest", mSignBatch, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{{Key: "sig/ec", Digest: d, DigestHash: "sha256"}}}, batch(0))
		e.add("digest", mVerify, &keystorev1.VerifyRequest{Key: "sig/ec", Version: 1, Digest: d, DigestHash: "sha256", Signature: e.sigEC}, valid(true))
		other := sha256.Sum256(plaintext)
		e.add("another digest", mVerify, &keystorev1.VerifyRequest{Key: "sig/ec", Version: 1, Digest: other[:], DigestHash: "sha256", Signature: e.sigEC}, valid(false))
	}},
	{name: "batch-count", build: func(e *env) {
		for _, n := range []int{0, server.MaxBatchItems + 1, 10000} {
			e.add("items", mSignBatch, &keystorev1.SignBatchRequest{Items: signItems(n, "sig/k")}, fails(provider.EINVAL))
			e.add("items", mSealBatch, &keystorev1.SealBatchRequest{Items: sealItems(n, "enc/k")}, fails(provider.EINVAL))
			e.add("items", mUnsealBatch, &keystorev1.UnsealBatchRequest{Items: unsealItems(n, "enc/k", e.sealed)}, fails(provider.EINVAL))
			e.add("items", mMacBatch, &keystorev1.MacBatchRequest{Items: macItems(n, "mac/k")}, fails(provider.EINVAL))
			e.add("items", mVerifyMacBatch, &keystorev1.VerifyMacBatchRequest{Items: verifyMacItems(n, "mac/k", e.tag)}, fails(provider.EINVAL))
		}
		// Millions of empty items in a request under the batches' receive
		// limit: refused before the items are built.
		empties := bytes.Repeat([]byte{0x0a, 0x00}, server.MaxBatchBytes/2)
		for _, m := range []string{mSignBatch, mSealBatch, mUnsealBatch, mMacBatch, mVerifyMacBatch} {
			e.raw("4.2M empty items", m, empties, fails(provider.EINVAL))
		}
		// Control: the bound itself is served.
		n := server.MaxBatchItems
		all := make([]provider.Code, n)
		e.add("items", mSignBatch, &keystorev1.SignBatchRequest{Items: signItems(n, "sig/k")}, batch(all...))
		e.add("items", mSealBatch, &keystorev1.SealBatchRequest{Items: sealItems(n, "enc/k")}, batch(all...))
		e.add("items", mUnsealBatch, &keystorev1.UnsealBatchRequest{Items: unsealItems(n, "enc/k", e.sealed)}, batch(all...))
		e.add("items", mMacBatch, &keystorev1.MacBatchRequest{Items: macItems(n, "mac/k")}, batch(all...))
		e.add("items", mVerifyMacBatch, &keystorev1.VerifyMacBatchRequest{Items: verifyMacItems(n, "mac/k", e.tag)}, batch(all...))
	}},
	{name: "batch-mixed", build: func(e *env) {
		big := make([]byte, provider.MaxSignMessage+1)
		e.add("mixed", mSignBatch, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{
			{Key: "sig/k", Message: msg}, {Key: "../x", Message: msg}, {Key: "enc/k", Message: msg}, {Key: "nope/k", Message: msg},
			{Key: "sig/k", Message: big}, {Key: "sig/old", Message: msg}, {Key: "SIG/K", Message: msg}, {Key: "sig/k2", Message: msg},
			{Key: "sig/ec", Digest: e.digest, DigestHash: "sha256"}, {Key: "sig/ec", Digest: e.digest[:31], DigestHash: "sha256"},
			{Key: "sig/k", Digest: e.digest, DigestHash: "sha256"}, {Key: "sig/k", Version: 1, Message: msg}, {Key: "sig/k", Version: 2, Message: msg},
			{Key: "sig/old", Version: 1, Message: msg}, {Key: "sig/k", Version: -1, Message: msg},
		}}, batch(0, provider.EINVAL, provider.EPERM, provider.ENOENT, provider.EMSGSIZE, provider.EKEYREVOKED, provider.EINVAL, 0,
			0, provider.EINVAL, provider.EPERM, 0, provider.ENOENT, provider.EKEYREVOKED, provider.EINVAL))
		e.add("mixed", mSealBatch, &keystorev1.SealBatchRequest{Items: []*keystorev1.SealRequest{
			{Key: "enc/k", Plaintext: plaintext}, {Key: "enc/../k", Plaintext: plaintext}, {Key: "sig/k", Plaintext: plaintext},
			{Key: "nope/k", Plaintext: plaintext}, {Key: "enc/k", Aad: make([]byte, provider.MaxAAD+1)}, {Key: "enc/old", Plaintext: plaintext},
			{Key: "enc/c", Plaintext: plaintext},
		}}, batch(0, provider.EINVAL, provider.EPERM, provider.ENOENT, provider.EMSGSIZE, provider.EKEYREVOKED, 0))
		e.add("mixed", mUnsealBatch, &keystorev1.UnsealBatchRequest{Items: []*keystorev1.UnsealRequest{
			{Key: "enc/k", Sealed: e.sealed, Aad: aad}, {Key: "enc/k", Sealed: e.sealed[:20], Aad: aad}, {Key: "enc/k", Sealed: e.sealed2, Aad: aad},
			{Key: "sig/k", Sealed: e.sealed, Aad: aad}, {Key: "/enc/k", Sealed: e.sealed, Aad: aad}, {Key: "nope/k", Sealed: e.sealed, Aad: aad},
			{Key: "enc/k", Sealed: e.sealed, Aad: make([]byte, provider.MaxAAD+1)}, {Key: "enc/old", Sealed: e.sealed, Aad: aad},
			{Key: "enc/c", Sealed: e.sealedC, Aad: aad},
		}}, batch(0, provider.EBADMSG, provider.EBADMSG, provider.EPERM, provider.EINVAL, provider.ENOENT, provider.EMSGSIZE, provider.EKEYREVOKED, 0))
		e.add("mixed", mMacBatch, &keystorev1.MacBatchRequest{Items: []*keystorev1.MacRequest{
			{Key: "mac/k", Message: msg}, {Key: "../x", Message: msg}, {Key: "sig/k", Message: msg}, {Key: "nope/k", Message: msg},
			{Key: "mac/k", Message: make([]byte, provider.MaxMACMessage+1)}, {Key: "mac/old", Message: msg}, {Key: "MAC/K", Message: msg},
			{Key: "mac/k2", Message: msg},
		}}, batch(0, provider.EINVAL, provider.EPERM, provider.ENOENT, provider.EMSGSIZE, provider.EKEYREVOKED, provider.EINVAL, 0))
		// A tag that does not match is a success (valid=false).
		e.add("mixed", mVerifyMacBatch, &keystorev1.VerifyMacBatchRequest{Items: []*keystorev1.VerifyMacRequest{
			{Key: "mac/k", Version: 1, Message: msg, Tag: e.tag}, {Key: "mac/k", Version: 1, Message: msg, Tag: e.tag2},
			{Key: "mac/k", Message: msg, Tag: e.tag}, {Key: "mac/k", Version: 1, Message: msg, Tag: make([]byte, provider.MaxMAC+1)},
			{Key: "sig/k", Version: 1, Message: msg, Tag: e.tag}, {Key: "nope/k", Version: 1, Message: msg, Tag: e.tag},
			{Key: "mac/old", Version: 1, Message: msg, Tag: e.tag}, {Key: "/mac/k", Version: 1, Message: msg, Tag: e.tag},
			{Key: "mac/k", Version: 2, Message: msg, Tag: e.tag}, {Key: "mac/k", Version: 1, Message: make([]byte, provider.MaxMACMessage+1), Tag: e.tag},
		}}, batch(0, 0, provider.EINVAL, provider.EMSGSIZE, provider.EPERM, provider.ENOENT, provider.EKEYREVOKED, provider.EINVAL,
			provider.ENOENT, provider.EMSGSIZE))
	}},
	{name: "batch-bytes", build: func(e *env) {
		// Over MaxBatchBytes but under the transport's limit: EMSGSIZE
		// from the daemon, before any item is done.
		m := make([]byte, provider.MaxSignMessage)
		items := make([]*keystorev1.SignRequest, 0, 130)
		for range 130 {
			items = append(items, &keystorev1.SignRequest{Key: "sig/k", Message: m})
		}
		e.add("8 MiB of messages", mSignBatch, &keystorev1.SignBatchRequest{Items: items}, fails(provider.EMSGSIZE))
		p := make([]byte, provider.MaxSealPlaintext)
		var seals []*keystorev1.SealRequest
		var unseals []*keystorev1.UnsealRequest
		for range 8 {
			seals = append(seals, &keystorev1.SealRequest{Key: "enc/k", Plaintext: p})
			unseals = append(unseals, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: p, Aad: aad})
		}
		e.add("8 MiB of plaintext", mSealBatch, &keystorev1.SealBatchRequest{Items: seals}, fails(provider.EMSGSIZE))
		e.add("8 MiB of sealed data", mUnsealBatch, &keystorev1.UnsealBatchRequest{Items: unseals}, fails(provider.EMSGSIZE))
		mm := make([]byte, provider.MaxMACMessage)
		var macs []*keystorev1.MacRequest
		var verifies []*keystorev1.VerifyMacRequest
		for range 8 {
			macs = append(macs, &keystorev1.MacRequest{Key: "mac/k", Message: mm})
			verifies = append(verifies, &keystorev1.VerifyMacRequest{Key: "mac/k", Version: 1, Message: mm, Tag: e.tag})
		}
		e.add("8 MiB of messages to MAC", mMacBatch, &keystorev1.MacBatchRequest{Items: macs}, fails(provider.EMSGSIZE))
		e.add("8 MiB of messages to check", mVerifyMacBatch, &keystorev1.VerifyMacBatchRequest{Items: verifies}, fails(provider.EMSGSIZE))
	}},
	{name: "oversized-frame", build: func(e *env) {
		// Every RPC, a request over the transport's limit: refused before
		// any handler, as EMSGSIZE (gRPC ResourceExhausted).
		pad := make([]byte, server.MaxRequestBytes+1)
		for _, method := range allMethods {
			b := protowire.AppendTag(nil, 1000, protowire.BytesType)
			e.raw("over the frame limit", method, protowire.AppendBytes(b, pad), outcome{code: provider.EMSGSIZE, transport: true})
		}
	}},
	{name: "page-size", build: func(e *env) {
		for _, n := range []int32{-1, 1001, math.MinInt32, math.MaxInt32} {
			e.add("page size", mList, &keystorev1.ListKeysRequest{PageSize: n}, fails(provider.EINVAL))
			e.add("page size", mListValues, &keystorev1.ListValuesRequest{PageSize: n}, fails(provider.EINVAL))
			e.add("sweep limit", mSweep, &keystorev1.SweepKeysRequest{Limit: n}, fails(provider.EINVAL))
		}
		e.add("sweep limit 1000", mSweep, &keystorev1.SweepKeysRequest{Limit: 1000}, ok())
		e.add("page size 1000", mList, &keystorev1.ListKeysRequest{PageSize: 1000}, ok())
		e.add("page size 1000", mListValues, &keystorev1.ListValuesRequest{PageSize: 1000}, ok())
	}},
	{name: "page-token", build: func(e *env) {
		for _, tok := range []string{"garbage", "a/b", "../../x/y/z", "uid-0/sig/k\n", "uid-0/sig/k@1", "Uid-0/sig/k",
			"uid-0/sig/" + seg65, strings.Repeat("t", 10<<10), "\x00"} {
			e.add("token", mList, &keystorev1.ListKeysRequest{PageToken: tok}, fails(provider.EINVAL))
			e.add("token", mListValues, &keystorev1.ListValuesRequest{PageToken: tok + "/"}, fails(provider.EINVAL))
			e.add("token", mSweep, &keystorev1.SweepKeysRequest{PageToken: tok}, fails(provider.EINVAL))
		}
	}},
	{name: "store-bounds", build: func(e *env) {
		for _, n := range []int{server.MaxValueSize + 1, 1 << 20} {
			e.add("value", mPut, &keystorev1.PutValueRequest{Name: "v", Value: make([]byte, n)}, fails(provider.EMSGSIZE))
			e.add("value", mPut, &keystorev1.PutValueRequest{Name: "new", Value: make([]byte, n)}, fails(provider.EMSGSIZE))
		}
		e.add("missing", mGetValue, &keystorev1.GetValueRequest{Name: "nope"}, fails(provider.ENOENT))
		e.add("missing", mDelete, &keystorev1.DeleteValueRequest{Name: "nope"}, fails(provider.ENOENT))
		e.add("name 65", mPut, &keystorev1.PutValueRequest{Name: seg65, Value: []byte("x")}, fails(provider.EINVAL))
		e.add("name 10 KiB", mGetValue, &keystorev1.GetValueRequest{Name: strings.Repeat("n", 10<<10)}, fails(provider.EINVAL))
	}},
	{name: "unknown-anchor", build: func(e *env) {
		for _, a := range []string{"nope", "root2", "roo", "root.pem", "uid-0"} {
			e.add(a, mVerifyAnchor, &keystorev1.VerifyAnchorRequest{Anchor: a, Message: msg, Signature: e.anchorSig}, fails(provider.ENOENT))
		}
		for _, a := range []string{"../anchors/root", "root/", "ROOT", "/root"} {
			e.add(a, mVerifyAnchor, &keystorev1.VerifyAnchorRequest{Anchor: a, Message: msg, Signature: e.anchorSig}, fails(provider.EINVAL))
		}
	}},
	{name: "policy-range", build: func(e *env) {
		for _, p := range []*keystorev1.KeyPolicy{
			{RotationPeriodSeconds: -1}, {RotationPeriodSeconds: 1}, {RotationPeriodSeconds: 59},
			{RotationPeriodSeconds: 3153600001}, {RotationPeriodSeconds: math.MaxInt64}, {RotationPeriodSeconds: math.MinInt64},
			{MinDecryptionVersion: 2}, {MinDecryptionVersion: math.MaxUint32},
		} {
			e.add("create", mCreate, &keystorev1.CreateKeyRequest{Key: "new/k", Algorithm: "ed25519", Policy: p}, fails(provider.EINVAL))
			e.add("set", mSetPolicy, &keystorev1.SetKeyPolicyRequest{Key: "sig/k", Policy: p}, fails(provider.EINVAL))
		}
	}},
	{name: "compressed-frame", build: func(e *env) {
		// keystored takes no compressed requests: a gzip request to every
		// RPC is refused by the transport as unsupported, before anything
		// is decompressed; so is a gzip bomb (a request padded with 16 MiB
		// of zeros, over the frame limit once decompressed).
		for _, method := range allMethods {
			e.reqs = append(e.reqs, request{note: "gzip", want: outcome{code: provider.ENOTSUP, transport: true},
				call: probe.Call{Method: method, Compressor: gzip.Name}})
		}
		bomb := protowire.AppendBytes(protowire.AppendTag(nil, 1000, protowire.BytesType), make([]byte, 16<<20))
		e.reqs = append(e.reqs, request{note: "gzip bomb", want: outcome{code: provider.ENOTSUP, transport: true},
			call: probe.Call{Method: mSign, Request: bomb, Compressor: gzip.Name}})
	}},
	{name: "datakey-input", build: func(e *env) {
		// The spec is a known cipher name or empty (aes-256-gcm); the
		// number of bytes 16 .. 64 or 0; not both; AAD as for Seal; a
		// decrypt key only.
		for _, m := range []string{mDataKey, mDataKeyNoPT} {
			plain := m == mDataKey
			for spec, n := range map[string]int{"": 32, "aes-256-gcm": 32, "aes-128-gcm": 16, "chacha20-poly1305": 32, "xchacha20-poly1305": 32} {
				e.add("spec "+spec, m, &keystorev1.GenerateDataKeyRequest{Key: "enc/k", Spec: spec}, dataKey(n, plain))
			}
			for _, spec := range []string{"aes-512-gcm", "AES-256-GCM", "aes-256-gcm ", "aes256gcm", "aes-256-gcm\x00", "ed25519", strings.Repeat("s", 10<<10)} {
				e.add("spec", m, &keystorev1.GenerateDataKeyRequest{Key: "enc/k", Spec: spec}, fails(provider.EINVAL))
			}
			for _, n := range []uint32{16, 17, 48, 64} {
				e.add("bytes", m, &keystorev1.GenerateDataKeyRequest{Key: "enc/k", NumberOfBytes: n}, dataKey(int(n), plain))
			}
			for _, n := range []uint32{1, 15, 65, 1 << 31, math.MaxUint32} {
				e.add("bytes", m, &keystorev1.GenerateDataKeyRequest{Key: "enc/k", NumberOfBytes: n}, fails(provider.EINVAL))
			}
			e.add("spec and bytes", m, &keystorev1.GenerateDataKeyRequest{Key: "enc/k", Spec: "aes-256-gcm", NumberOfBytes: 32}, fails(provider.EINVAL))
			e.add("aad", m, &keystorev1.GenerateDataKeyRequest{Key: "enc/k", Aad: make([]byte, provider.MaxAAD)}, dataKey(32, plain))
			for _, n := range []int{provider.MaxAAD + 1, 1 << 20} {
				e.add("aad", m, &keystorev1.GenerateDataKeyRequest{Key: "enc/k", Aad: make([]byte, n)}, fails(provider.EMSGSIZE))
			}
			e.add("chacha20-poly1305 key", m, &keystorev1.GenerateDataKeyRequest{Key: "enc/c"}, dataKey(32, plain))
			for _, k := range []string{"sig/k", "mac/k", "dec/k"} {
				e.add("key of another use", m, &keystorev1.GenerateDataKeyRequest{Key: k}, fails(provider.EPERM))
			}
			e.add("revoked", m, &keystorev1.GenerateDataKeyRequest{Key: "enc/old"}, fails(provider.EKEYREVOKED))
			e.add("missing", m, &keystorev1.GenerateDataKeyRequest{Key: "nope/k"}, fails(provider.ENOENT))
		}
	}},
	{name: "hpke-input", build: func(e *env) {
		// Decrypt of dec/k (X25519: enc 32 bytes, tag 16): the bounds
		// are EMSGSIZE, any other damage EBADMSG, a key of another use
		// EPERM.
		req := func(f func(r *keystorev1.DecryptRequest)) *keystorev1.DecryptRequest {
			r := &keystorev1.DecryptRequest{Key: "dec/k", Version: 1, Enc: e.hpkeEnc, Ciphertext: e.hpkeCT, Info: hpkeInfo, Aad: aad}
			f(r)
			return r
		}
		e.add("control", mDecrypt, req(func(*keystorev1.DecryptRequest) {}), decrypted(plaintext))
		e.add("primary", mDecrypt, req(func(r *keystorev1.DecryptRequest) { r.Version = 0 }), decrypted(plaintext))
		flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
		for note, r := range map[string]*keystorev1.DecryptRequest{
			"no enc":              req(func(r *keystorev1.DecryptRequest) { r.Enc = nil }),
			"enc 31":              req(func(r *keystorev1.DecryptRequest) { r.Enc = r.Enc[:31] }),
			"enc 33":              req(func(r *keystorev1.DecryptRequest) { r.Enc = append(bytes.Clone(r.Enc), 0) }),
			"enc of the hybrid":   req(func(r *keystorev1.DecryptRequest) { r.Enc = e.hpkeEnc2 }),
			"enc at the bound":    req(func(r *keystorev1.DecryptRequest) { r.Enc = make([]byte, provider.MaxHPKEEnc) }),
			"enc flipped":         req(func(r *keystorev1.DecryptRequest) { r.Enc = flip(r.Enc, 5) }),
			"no ciphertext":       req(func(r *keystorev1.DecryptRequest) { r.Ciphertext = nil }),
			"ciphertext 15":       req(func(r *keystorev1.DecryptRequest) { r.Ciphertext = r.Ciphertext[:15] }),
			"ciphertext cut":      req(func(r *keystorev1.DecryptRequest) { r.Ciphertext = r.Ciphertext[:len(r.Ciphertext)-1] }),
			"ciphertext flipped":  req(func(r *keystorev1.DecryptRequest) { r.Ciphertext = flip(r.Ciphertext, 0) }),
			"ciphertext at bound": req(func(r *keystorev1.DecryptRequest) { r.Ciphertext = make([]byte, provider.MaxHPKECiphertext) }),
			"other info":          req(func(r *keystorev1.DecryptRequest) { r.Info = []byte("infp") }),
			"no info":             req(func(r *keystorev1.DecryptRequest) { r.Info = nil }),
			"info at the bound":   req(func(r *keystorev1.DecryptRequest) { r.Info = make([]byte, provider.MaxHPKEInfo) }),
			"other aad":           req(func(r *keystorev1.DecryptRequest) { r.Aad = []byte("aae") }),
			"aad at the bound":    req(func(r *keystorev1.DecryptRequest) { r.Aad = make([]byte, provider.MaxAAD) }),
			"dec/old's message":   req(func(r *keystorev1.DecryptRequest) { r.Enc, r.Ciphertext = e.hpkeEnc2, e.hpkeCT2 }),
		} {
			e.add(note, mDecrypt, r, fails(provider.EBADMSG))
		}
		for note, r := range map[string]*keystorev1.DecryptRequest{
			"enc over":        req(func(r *keystorev1.DecryptRequest) { r.Enc = make([]byte, provider.MaxHPKEEnc+1) }),
			"ciphertext over": req(func(r *keystorev1.DecryptRequest) { r.Ciphertext = make([]byte, provider.MaxHPKECiphertext+1) }),
			"ciphertext 4MiB": req(func(r *keystorev1.DecryptRequest) { r.Ciphertext = make([]byte, 4<<20) }),
			"info over":       req(func(r *keystorev1.DecryptRequest) { r.Info = make([]byte, provider.MaxHPKEInfo+1) }),
			"aad over":        req(func(r *keystorev1.DecryptRequest) { r.Aad = make([]byte, provider.MaxAAD+1) }),
		} {
			e.add(note, mDecrypt, r, fails(provider.EMSGSIZE))
		}
		for _, k := range []string{"enc/k", "sig/k", "mac/k"} {
			e.add("key of another use", mDecrypt, req(func(r *keystorev1.DecryptRequest) { r.Key = k }), fails(provider.EPERM))
		}
		e.add("revoked", mDecrypt, req(func(r *keystorev1.DecryptRequest) { r.Key, r.Enc, r.Ciphertext = "dec/old", e.hpkeEnc2, e.hpkeCT2 }), fails(provider.EKEYREVOKED))
		e.add("missing", mDecrypt, req(func(r *keystorev1.DecryptRequest) { r.Key = "nope/k" }), fails(provider.ENOENT))
		e.add("version 2", mDecrypt, req(func(r *keystorev1.DecryptRequest) { r.Version = 2 }), fails(provider.ENOENT))
		for _, v := range []uint64{math.MaxUint64, 1 << 32, 1 << 63} {
			e.raw("version", mDecrypt, e.wireInt64(req(func(r *keystorev1.DecryptRequest) { r.Version = 0 }), 2, v), fails(provider.EINVAL))
		}
	}},
	{name: "import-parameters-input", build: func(e *env) {
		p := func(key, alg, wrapping string, ttl int64) *keystorev1.GetImportParametersRequest {
			return &keystorev1.GetImportParametersRequest{Key: key, Algorithm: alg, WrappingAlgorithm: wrapping, TtlSeconds: ttl}
		}
		// Granted (each leaves a token, which the daemon keeps in
		// memory only: at most 16 per app, so few).
		e.add("new key", mImportParams, p("imp/new", "aes-256-gcm", "", 60), importParams("hpke-mlkem768x25519-sha256-aes256gcm"))
		e.add("imported key", mImportParams, p("imp/k", "aes-256-gcm", "hpke-p256-sha256-aes128gcm", 86400), importParams("hpke-p256-sha256-aes128gcm"))
		e.add("no algorithm", mImportParams, p("imp/new", "", "", 0), fails(provider.EINVAL))
		for _, a := range []string{"aes-512-gcm", "AES-256-GCM", "aes-256-gcm ", strings.Repeat("a", 10<<10), "ed448", "ml-dsa-65", "hpke-mlkem768x25519-sha256-aes256gcm"} {
			e.add("algorithm "+a, mImportParams, p("imp/new", a, "", 0), fails(provider.ENOTSUP))
		}
		for _, w := range []string{"aes-256-gcm", "ed25519", "hmac-sha256"} {
			e.add("wrapping "+w, mImportParams, p("imp/new", "aes-256-gcm", w, 0), fails(provider.EINVAL))
		}
		e.add("wrapping unknown", mImportParams, p("imp/new", "aes-256-gcm", "hpke-x448-sha512-aes256gcm", 0), fails(provider.ENOTSUP))
		for _, ttl := range []int64{-1, 1, 59, 86401, math.MaxInt64, math.MinInt64} {
			e.add("ttl", mImportParams, p("imp/new", "aes-256-gcm", "", ttl), fails(provider.EINVAL))
		}
		e.add("generated key", mImportParams, p("sig/k", "ed25519", "", 0), fails(provider.EPERM))
		e.add("generated key", mImportParams, p("enc/c", "chacha20-poly1305", "", 0), fails(provider.EPERM))
		e.add("another algorithm", mImportParams, p("imp/k", "chacha20-poly1305", "", 0), fails(provider.EINVAL))
		e.add("revoked", mImportParams, p("enc/old", "xchacha20-poly1305", "", 0), fails(provider.EKEYREVOKED))
	}},
	{name: "import-input", build: func(e *env) {
		// Tokens malformed, unknown, of another key, spent; wrapped
		// material that does not open or is not the token's algorithm.
		// Nothing is created.
		unknown := "kit1." + strings.Repeat("B", 22)
		imp := func(key, token string, enc, wrapped []byte) *keystorev1.ImportKeyRequest {
			return &keystorev1.ImportKeyRequest{Key: key, Token: token, Enc: enc, Wrapped: wrapped}
		}
		enc32, w48 := make([]byte, 32), make([]byte, 48)
		for _, tok := range []string{"", "kit1.", "kit1." + strings.Repeat("A", 21), "kit1." + strings.Repeat("A", 23), "kit2." + strings.Repeat("A", 22),
			"KIT1." + strings.Repeat("A", 22), strings.Repeat("k", 10<<10)} {
			e.add("token", mImport, imp("imp/a", tok, enc32, w48), fails(provider.EINVAL))
		}
		e.add("unknown token", mImport, imp("imp/a", unknown, enc32, w48), fails(provider.ENOENT))
		e.add("enc over", mImport, imp("imp/a", unknown, make([]byte, provider.MaxHPKEEnc+1), w48), fails(provider.EMSGSIZE))
		e.add("wrapped over", mImport, imp("imp/a", unknown, enc32, make([]byte, provider.MaxImportWrapped+1)), fails(provider.EMSGSIZE))
		e.add("wrapped 4 MiB", mImport, imp("imp/a", unknown, enc32, make([]byte, 4<<20)), fails(provider.EMSGSIZE))
		rot := imp("imp/a", unknown, enc32, w48)
		rot.Policy = &keystorev1.KeyPolicy{RotationPeriodSeconds: 3600}
		e.add("rotation period", mImport, rot, fails(provider.EPERM))

		a, c, d := e.imports["imp/a"], e.imports["imp/c"], e.imports["imp/d"]
		encA, wrappedA := wrapTo(e.t, a, bytes.Repeat([]byte{0x22}, 32))
		e.add("another key's token", mImport, imp("imp/b", a.GetToken(), encA, wrappedA), fails(provider.EINVAL))
		e.add("another key's token", mImport, imp("sig/k", a.GetToken(), encA, wrappedA), fails(provider.EINVAL))
		bad := bytes.Clone(wrappedA)
		bad[0] ^= 1
		e.add("wrapped flipped", mImport, imp("imp/a", a.GetToken(), encA, bad), fails(provider.EBADMSG))
		e.add("spent token", mImport, imp("imp/a", a.GetToken(), encA, wrappedA), fails(provider.EALREADY))
		encC, wrappedC := wrapTo(e.t, c, bytes.Repeat([]byte{0x33}, 16))
		e.add("16 bytes for aes-256-gcm", mImport, imp("imp/c", c.GetToken(), encC, wrappedC), fails(provider.EINVAL))
		encD, wrappedD := wrapTo(e.t, d, bytes.Repeat([]byte{0x44}, 32))
		e.add("raw bytes for ed25519", mImport, imp("imp/d", d.GetToken(), encD, wrappedD), fails(provider.EINVAL))
	}},
	{name: "unknown-method", build: func(e *env) {
		for _, m := range []string{"/keystore.v1.Keys/Nope", "/keystore.v1.Nope/Get", "/keystore.v2.Keys/Sign", "/grpc.health.v1.Health/Nope", "/keystore.v1.Keys/sign"} {
			e.raw("unknown method", m, nil, fails(provider.ENOTSUP))
		}
	}},
}

// dataKey is the outcome of a granted GenerateDataKey(WithoutPlaintext):
// an n-byte data key (none without plaintext) and its sealed form.
func dataKey(n int, withPlaintext bool) outcome {
	return checked(func(b []byte) error {
		var r keystorev1.GenerateDataKeyResponse
		if err := proto.Unmarshal(b, &r); err != nil {
			return err
		}
		if !withPlaintext {
			n = 0
		}
		if len(r.GetPlaintext()) != n || len(r.GetSealed()) == 0 || r.GetVersion() != 1 {
			return fmt.Errorf("a data key of %d bytes, %d sealed, version %d; want %d bytes", len(r.GetPlaintext()), len(r.GetSealed()), r.GetVersion(), n)
		}
		return nil
	})
}

// decrypted is the outcome of a Decrypt that gives want.
func decrypted(want []byte) outcome {
	return checked(func(b []byte) error {
		var r keystorev1.DecryptResponse
		if err := proto.Unmarshal(b, &r); err != nil {
			return err
		}
		if !bytes.Equal(r.GetPlaintext(), want) || r.GetVersion() != 1 {
			return fmt.Errorf("decrypted %q, version %d; want %q of version 1", r.GetPlaintext(), r.GetVersion(), want)
		}
		return nil
	})
}

// importParams is the outcome of granted import parameters wrapped with
// the suite wrapping.
func importParams(wrapping string) outcome {
	return checked(func(b []byte) error {
		var r keystorev1.GetImportParametersResponse
		if err := proto.Unmarshal(b, &r); err != nil {
			return err
		}
		if r.GetWrappingAlgorithm() != wrapping || !strings.HasPrefix(r.GetToken(), "kit1.") || len(r.GetPublicKey()) == 0 || len(r.GetInfo()) == 0 {
			return fmt.Errorf("import parameters %v, want a token and a %s wrapping key", &r, wrapping)
		}
		return nil
	})
}

func signItems(n int, k string) []*keystorev1.SignRequest {
	out := make([]*keystorev1.SignRequest, n)
	for i := range out {
		out[i] = &keystorev1.SignRequest{Key: k, Message: msg}
	}
	return out
}

func macItems(n int, k string) []*keystorev1.MacRequest {
	out := make([]*keystorev1.MacRequest, n)
	for i := range out {
		out[i] = &keystorev1.MacRequest{Key: k, Message: msg}
	}
	return out
}

func verifyMacItems(n int, k string, tag []byte) []*keystorev1.VerifyMacRequest {
	out := make([]*keystorev1.VerifyMacRequest, n)
	for i := range out {
		out[i] = &keystorev1.VerifyMacRequest{Key: k, Version: 1, Message: msg, Tag: tag}
	}
	return out
}

func sealItems(n int, k string) []*keystorev1.SealRequest {
	out := make([]*keystorev1.SealRequest, n)
	for i := range out {
		out[i] = &keystorev1.SealRequest{Key: k, Plaintext: plaintext, Aad: aad}
	}
	return out
}

func unsealItems(n int, k string, sealed []byte) []*keystorev1.UnsealRequest {
	out := make([]*keystorev1.UnsealRequest, n)
	for i := range out {
		out[i] = &keystorev1.UnsealRequest{Key: k, Sealed: sealed, Aad: aad}
	}
	return out
}
