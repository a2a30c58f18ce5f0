package isolation

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/e2e/internal/probe"
	"github.com/nexus-os/keystored/server"
)

// step is one call of a probe's script and what must come of it.
type step struct {
	// variant names the RPC and the form of its request ("keys.sign",
	// "keys.public-key@1"); refusals are compared within a variant.
	variant string
	call    probe.Call
	// target is the key ID the call names (replaced, with app, before
	// refusals are compared).
	target string
	// auditKey is the key the call's audit record must name; empty when
	// it is not checked.
	auditKey string
	// app is the app the call targets; refusals of calls with an app are
	// compared within their variant.
	app string
	// want is "ok" or the reason the call must end with.
	want string
	// item is, for a batch of one item, "ok" or the item's reason; empty
	// for other calls.
	item string
	// check makes more checks of a success.
	check func(probe.Result) error
}

// script builds a list of steps.
type script struct {
	t     *testing.T
	steps []step
}

// add appends a call of method with req that must end with want, and
// returns the step for more fields (valid until the next add).
func (s *script) add(variant, method string, req proto.Message, want string) *step {
	s.t.Helper()
	c, err := probe.NewCall(method, req)
	if err != nil {
		s.t.Fatal(err)
	}
	s.steps = append(s.steps, step{variant: variant, call: c, want: want})
	return &s.steps[len(s.steps)-1]
}

// variant is one RPC with its request for a key ID.
type variant struct {
	name   string
	method string
	req    proto.Message
	batch  bool
}

var (
	msg       = []byte("a message to sign")
	plaintext = []byte("a plaintext")
	aad       = []byte("some aad")
	hpkeInfo  = []byte("an hpke info")
	// importMaterial is the AES-256-GCM key every import imports.
	importMaterial = bytes.Repeat([]byte{0x5e}, 32)
)

// material is what requests naming an app's keys carry, made by the
// app's setup: a signature of msg by sig/k, an envelope of plaintext with
// aad by enc/k and the tag of msg by mac/k (version 1 each); an HPKE
// message of plaintext to dec/k (version 1, info hpkeInfo, aad aad); and
// import parameters for imp/k with importMaterial wrapped to them, which
// only the other apps use (refused): they stay unspent.
type material struct {
	sig, sealed, tag []byte
	enc, ct          []byte
	imp              importCall
}

// importCall is an import token and the material wrapped for it.
type importCall struct {
	token        string
	enc, wrapped []byte
}

// keyVariants returns every Keys RPC that names a key, with a request
// naming id that would succeed for its owner (m is what the key's app
// made, or another app's when id does not exist).
func keyVariants(id string, m *material) []variant {
	return []variant{
		{"keys.create", keystorev1.Keys_Create_FullMethodName, &keystorev1.CreateKeyRequest{Key: id, Algorithm: "ed25519"}, false},
		{"keys.get", keystorev1.Keys_Get_FullMethodName, &keystorev1.GetKeyRequest{Key: id}, false},
		{"keys.rotate", keystorev1.Keys_Rotate_FullMethodName, &keystorev1.RotateKeyRequest{Key: id}, false},
		{"keys.revoke", keystorev1.Keys_Revoke_FullMethodName, &keystorev1.RevokeKeyRequest{Key: id}, false},
		{"keys.revoke-version", keystorev1.Keys_RevokeVersion_FullMethodName, &keystorev1.RevokeKeyVersionRequest{Key: id, Version: 1}, false},
		{"keys.destroy", keystorev1.Keys_Destroy_FullMethodName, &keystorev1.DestroyKeyRequest{Key: id}, false},
		{"keys.set-policy", keystorev1.Keys_SetPolicy_FullMethodName, &keystorev1.SetKeyPolicyRequest{Key: id, Policy: &keystorev1.KeyPolicy{}}, false},
		{"keys.public-key", keystorev1.Keys_PublicKey_FullMethodName, &keystorev1.PublicKeyRequest{Key: id}, false},
		{"keys.public-key@1", keystorev1.Keys_PublicKey_FullMethodName, &keystorev1.PublicKeyRequest{Key: id, Version: 1}, false},
		{"keys.sign", keystorev1.Keys_Sign_FullMethodName, &keystorev1.SignRequest{Key: id, Message: msg}, false},
		{"keys.sign@1", keystorev1.Keys_Sign_FullMethodName, &keystorev1.SignRequest{Key: id, Version: 1, Message: msg}, false},
		{"keys.verify", keystorev1.Keys_Verify_FullMethodName, &keystorev1.VerifyRequest{Key: id, Version: 1, Message: msg, Signature: m.sig}, false},
		{"keys.seal", keystorev1.Keys_Seal_FullMethodName, &keystorev1.SealRequest{Key: id, Plaintext: plaintext, Aad: aad}, false},
		{"keys.unseal", keystorev1.Keys_Unseal_FullMethodName, &keystorev1.UnsealRequest{Key: id, Sealed: m.sealed, Aad: aad}, false},
		{"keys.rewrap", keystorev1.Keys_Rewrap_FullMethodName, &keystorev1.RewrapRequest{Key: id, Sealed: m.sealed, Aad: aad}, false},
		{"keys.sign-batch", keystorev1.Keys_SignBatch_FullMethodName, &keystorev1.SignBatchRequest{
			Items: []*keystorev1.SignRequest{{Key: id, Message: msg}}}, true},
		{"keys.seal-batch", keystorev1.Keys_SealBatch_FullMethodName, &keystorev1.SealBatchRequest{
			Items: []*keystorev1.SealRequest{{Key: id, Plaintext: plaintext, Aad: aad}}}, true},
		{"keys.unseal-batch", keystorev1.Keys_UnsealBatch_FullMethodName, &keystorev1.UnsealBatchRequest{
			Items: []*keystorev1.UnsealRequest{{Key: id, Sealed: m.sealed, Aad: aad}}}, true},
		{"keys.mac", keystorev1.Keys_Mac_FullMethodName, &keystorev1.MacRequest{Key: id, Message: msg}, false},
		{"keys.verify-mac", keystorev1.Keys_VerifyMac_FullMethodName, &keystorev1.VerifyMacRequest{Key: id, Version: 1, Message: msg, Tag: m.tag}, false},
		{"keys.mac-batch", keystorev1.Keys_MacBatch_FullMethodName, &keystorev1.MacBatchRequest{
			Items: []*keystorev1.MacRequest{{Key: id, Message: msg}}}, true},
		{"keys.verify-mac-batch", keystorev1.Keys_VerifyMacBatch_FullMethodName, &keystorev1.VerifyMacBatchRequest{
			Items: []*keystorev1.VerifyMacRequest{{Key: id, Version: 1, Message: msg, Tag: m.tag}}}, true},
		{"keys.generate-data-key", keystorev1.Keys_GenerateDataKey_FullMethodName, &keystorev1.GenerateDataKeyRequest{Key: id, Aad: aad}, false},
		{"keys.generate-data-key-without-plaintext", keystorev1.Keys_GenerateDataKeyWithoutPlaintext_FullMethodName,
			&keystorev1.GenerateDataKeyRequest{Key: id, Spec: "aes-128-gcm"}, false},
		{"keys.decrypt", keystorev1.Keys_Decrypt_FullMethodName, &keystorev1.DecryptRequest{Key: id, Version: 1, Enc: m.enc, Ciphertext: m.ct, Info: hpkeInfo, Aad: aad}, false},
		{"keys.get-import-parameters", keystorev1.Keys_GetImportParameters_FullMethodName, &keystorev1.GetImportParametersRequest{Key: id, Algorithm: "aes-256-gcm"}, false},
		{"keys.import", keystorev1.Keys_Import_FullMethodName, &keystorev1.ImportKeyRequest{Key: id, Token: m.imp.token, Enc: m.imp.enc, Wrapped: m.imp.wrapped}, false},
	}
}

// keysRPCs returns every RPC of the Keys service, which the matrix must
// cover: read from the service's descriptor, so that a new RPC fails the
// coverage check until the matrix tries it.
func keysRPCs() []string {
	var out []string
	for _, m := range keystorev1.Keys_ServiceDesc.Methods {
		out = append(out, "/"+keystorev1.Keys_ServiceDesc.ServiceName+"/"+m.MethodName)
	}
	return out
}

// storeRPCs is every RPC of the Store service.
var storeRPCs = []string{
	keystorev1.Store_Put_FullMethodName, keystorev1.Store_Get_FullMethodName,
	keystorev1.Store_Delete_FullMethodName, keystorev1.Store_List_FullMethodName,
}

// checkResult checks one call's result against its step.
func checkResult(s step, r probe.Result) error {
	if r.Reason != s.want {
		return fmt.Errorf("got %s (%q), want %s", r.Reason, r.Message, s.want)
	}
	if !r.OK() {
		code, ok := provider.ParseCode(s.want)
		if !ok {
			return fmt.Errorf("bad expectation %q", s.want)
		}
		if err := r.Err(); !errors.Is(err, code) {
			return fmt.Errorf("error %v does not match %s with errors.Is", err, code)
		}
		return nil
	}
	if s.item != "" {
		items, err := probe.BatchErrors(s.call.Method, r.Response)
		if err != nil {
			return err
		}
		if len(items) != 1 {
			return fmt.Errorf("batch of one item answered %d results", len(items))
		}
		got := "ok"
		if items[0] != nil {
			got = items[0].GetReason()
		}
		if got != s.item {
			return fmt.Errorf("batch item: got %s (%q), want %s", got, items[0].GetMessage(), s.item)
		}
	}
	if s.check != nil {
		return s.check(r)
	}
	return nil
}

// refusal returns what a caller learns from a refused call, with the key
// ID and app it named replaced by placeholders: the full status (code,
// message, details) as bytes, or a batch item's reason and message.
func refusal(s step, r probe.Result) (string, error) {
	norm := func(m string) string {
		if s.target != "" {
			m = strings.ReplaceAll(m, s.target, "<KEY>")
		}
		if s.app != "" {
			m = strings.ReplaceAll(m, s.app, "<APP>")
		}
		return m
	}
	if s.item != "" && r.OK() {
		items, err := probe.BatchErrors(s.call.Method, r.Response)
		if err != nil || len(items) != 1 || items[0] == nil {
			return "", fmt.Errorf("batch item not refused: %v", err)
		}
		return "item " + items[0].GetReason() + ": " + norm(items[0].GetMessage()), nil
	}
	st := r.GRPCStatus().Proto()
	st.Message = norm(st.GetMessage())
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	return string(b), err
}

// checkRecord checks a call's audit record.
func checkRecord(s step, rec audit.Record) error {
	wantOp, wantResult := server.OpName(s.call.Method), s.want
	items, failed := 0, 0
	if s.item != "" && s.want == "ok" {
		items = 1
		if s.item != "ok" {
			failed = 1
		}
	}
	switch {
	case rec.Op != wantOp || rec.Result != wantResult:
		return fmt.Errorf("audit record %s %s, want %s %s", rec.Op, rec.Result, wantOp, wantResult)
	case rec.Items != items || rec.Failed != failed:
		return fmt.Errorf("audit record items %d failed %d, want %d %d", rec.Items, rec.Failed, items, failed)
	case s.auditKey != "" && rec.Key != s.auditKey:
		return fmt.Errorf("audit record key %q, want %q", rec.Key, s.auditKey)
	}
	return nil
}
