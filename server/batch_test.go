package server

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"

	dto "github.com/prometheus/client_model/go"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

func TestSignBatch(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "enc/k"})
	mustOK(t, "Create", err)
	pk, err := e.keys.PublicKey(bg, &keystorev1.PublicKeyRequest{Key: "sig/k"})
	mustOK(t, "PublicKey", err)

	items := make([]*keystorev1.SignRequest, MaxBatchItems)
	for i := range items {
		items[i] = &keystorev1.SignRequest{Key: "sig/k", Message: []byte(fmt.Sprintf("message %d", i))}
	}
	// Per-item failures, in known places.
	items[3] = &keystorev1.SignRequest{Key: "enc/k", Message: []byte("m")}                                // wrong use
	items[500] = &keystorev1.SignRequest{Key: "sig/missing", Message: []byte("m")}                        // absent
	items[1000] = &keystorev1.SignRequest{Key: "Bad", Message: []byte("m")}                               // malformed
	items[1023] = &keystorev1.SignRequest{Key: "sig/k", Message: make([]byte, provider.MaxSignMessage+1)} // too large
	want := map[int]string{3: "EPERM", 500: "ENOENT", 1000: "EINVAL", 1023: "EMSGSIZE"}

	r, err := e.keys.SignBatch(bg, &keystorev1.SignBatchRequest{Items: items})
	mustOK(t, "SignBatch", err)
	if len(r.GetResults()) != len(items) {
		t.Fatalf("%d results for %d items", len(r.GetResults()), len(items))
	}
	for i, res := range r.GetResults() {
		if reason, bad := want[i]; bad {
			if res.GetResponse() != nil || res.GetError().GetReason() != reason || res.GetError().GetMessage() == "" {
				t.Fatalf("item %d: %v, want error %s", i, res, reason)
			}
			continue
		}
		if res.GetError() != nil || res.GetResponse() == nil {
			t.Fatalf("item %d: %v", i, res)
		}
		if !ed25519.Verify(pk.GetPublicKey(), items[i].GetMessage(), res.GetResponse().GetSignature()) {
			t.Fatalf("item %d: signature is not over its own message (results out of order?)", i)
		}
	}
	rec := e.audit.last(t)
	if rec.Op != "keys.sign-batch" || rec.Items != MaxBatchItems || rec.Failed != len(want) || rec.Result != "ok" {
		t.Fatalf("record %+v", rec)
	}
}

func TestSealUnsealBatch(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "enc/k"})
	mustOK(t, "Create", err)
	var seal []*keystorev1.SealRequest
	for i := range 40 {
		seal = append(seal, &keystorev1.SealRequest{Key: "enc/k", Plaintext: []byte(fmt.Sprintf("pt %d", i)), Aad: []byte{byte(i)}})
	}
	sr, err := e.keys.SealBatch(bg, &keystorev1.SealBatchRequest{Items: seal})
	mustOK(t, "SealBatch", err)
	var unseal []*keystorev1.UnsealRequest
	for i, res := range sr.GetResults() {
		if res.GetError() != nil {
			t.Fatalf("seal item %d: %v", i, res.GetError())
		}
		unseal = append(unseal, &keystorev1.UnsealRequest{Key: "enc/k", Sealed: res.GetResponse().GetSealed(), Aad: []byte{byte(i)}})
	}
	unseal[7].Aad = []byte("wrong")
	unseal[8].Sealed = []byte("garbage")
	ur, err := e.keys.UnsealBatch(bg, &keystorev1.UnsealBatchRequest{Items: unseal})
	mustOK(t, "UnsealBatch", err)
	for i, res := range ur.GetResults() {
		if i == 7 || i == 8 {
			if res.GetError().GetReason() != "EBADMSG" {
				t.Fatalf("unseal item %d: %v, want EBADMSG", i, res)
			}
			continue
		}
		if !bytes.Equal(res.GetResponse().GetPlaintext(), seal[i].GetPlaintext()) {
			t.Fatalf("unseal item %d: %q, want %q", i, res.GetResponse().GetPlaintext(), seal[i].GetPlaintext())
		}
	}
	if rec := e.audit.last(t); rec.Op != "keys.unseal-batch" || rec.Items != 40 || rec.Failed != 2 || rec.Key != "alice/enc/k" {
		t.Fatalf("record %+v", rec)
	}
}

func TestBatchLimits(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "enc/k"})
	mustOK(t, "Create", err)
	_, err = e.keys.SignBatch(bg, &keystorev1.SignBatchRequest{})
	wantCode(t, "empty SignBatch", err, provider.EINVAL)
	_, err = e.keys.UnsealBatch(bg, &keystorev1.UnsealBatchRequest{})
	wantCode(t, "empty UnsealBatch", err, provider.EINVAL)
	over := make([]*keystorev1.SealRequest, MaxBatchItems+1)
	for i := range over {
		over[i] = &keystorev1.SealRequest{Key: "enc/k"}
	}
	_, err = e.keys.SealBatch(bg, &keystorev1.SealBatchRequest{Items: over})
	wantCode(t, "SealBatch of 1025", err, provider.EINVAL)
	// Over the total bound but under the transport's: refused by the
	// handler, before any seal.
	big := make([]*keystorev1.SealRequest, 8)
	for i := range big {
		big[i] = &keystorev1.SealRequest{Key: "enc/k", Plaintext: make([]byte, provider.MaxSealPlaintext), Aad: make([]byte, provider.MaxAAD)}
	}
	before := e.audit.count()
	_, err = e.keys.SealBatch(bg, &keystorev1.SealBatchRequest{Items: big})
	wantCode(t, "SealBatch over MaxBatchBytes", err, provider.EMSGSIZE)
	if rec := e.audit.last(t); e.audit.count() != before+1 || rec.Result != "EMSGSIZE" || rec.Items != 0 {
		t.Fatalf("record %+v", rec)
	}
	if g, err := e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "enc/k"}); err != nil || g.GetKey().GetCurrentVersion() != 1 {
		t.Fatalf("key after refused batch: %v %v", g, err)
	}
}

// TestMetrics: requests are counted by op and result in the server's own
// registry.
func TestMetrics(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, err := e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "sig/k", Algorithm: "ed25519"})
	mustOK(t, "Create", err)
	for range 3 {
		_, err := e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/k", Message: []byte("m")})
		mustOK(t, "Sign", err)
	}
	_, err = e.keys.Sign(bg, &keystorev1.SignRequest{Key: "sig/none", Message: []byte("m")})
	wantCode(t, "Sign missing", err, provider.ENOENT)
	_, err = e.keys.Create(bg, &keystorev1.CreateKeyRequest{Key: "mac/k", Use: "mac"})
	mustOK(t, "Create mac", err)
	mr, err := e.keys.Mac(bg, &keystorev1.MacRequest{Key: "mac/k", Message: []byte("m")})
	mustOK(t, "Mac", err)
	_, err = e.keys.VerifyMac(bg, &keystorev1.VerifyMacRequest{Key: "mac/k", Version: 0, Message: []byte("m"), Tag: mr.GetTag()})
	wantCode(t, "VerifyMac version 0", err, provider.EINVAL)

	families, err := e.srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	var histCount uint64
	var conns float64 = -1
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := labelString(m.GetLabel())
			switch f.GetName() {
			case MetricRequests:
				counts[labels] = m.GetCounter().GetValue()
			case MetricDuration:
				if labels == "keys.sign/ok" {
					histCount = m.GetHistogram().GetSampleCount()
				}
			case MetricConnections:
				conns = m.GetGauge().GetValue()
			}
		}
	}
	if counts["keys.sign/ok"] != 3 || counts["keys.sign/ENOENT"] != 1 || counts["keys.create/ok"] != 2 ||
		counts["keys.mac/ok"] != 1 || counts["keys.verify-mac/EINVAL"] != 1 {
		t.Fatalf("request counts = %v", counts)
	}
	if histCount != 3 {
		t.Fatalf("duration histogram count for keys.sign/ok = %d, want 3", histCount)
	}
	if conns != 1 {
		t.Fatalf("%s = %v, want 1", MetricConnections, conns)
	}
}

func labelString(ls []*dto.LabelPair) string {
	var op, result string
	for _, l := range ls {
		switch l.GetName() {
		case "op":
			op = l.GetValue()
		case "result":
			result = l.GetValue()
		}
	}
	return op + "/" + result
}
