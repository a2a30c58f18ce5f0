package faults

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/audit"
	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/internal/rpcerr"
)

// auditRefused is the message of a request refused because its audit
// record could not be written.
const auditRefused = "audit log unavailable; request refused"

// rpcCall is one RPC with a request the daemon would grant.
type rpcCall func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error)

// everyRPC has one granted request per method of keystore.v1; the test
// checks it covers every method the services declare.
var everyRPC = map[string]rpcCall{
	keystorev1.Keys_Create_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Create(ctx, &keystorev1.CreateKeyRequest{Key: keyNew, Algorithm: string(client.Ed25519)})
	},
	keystorev1.Keys_Get_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Get(ctx, &keystorev1.GetKeyRequest{Key: keySig})
	},
	keystorev1.Keys_List_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).List(ctx, &keystorev1.ListKeysRequest{})
	},
	keystorev1.Keys_Rotate_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Rotate(ctx, &keystorev1.RotateKeyRequest{Key: keySig})
	},
	keystorev1.Keys_Revoke_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Revoke(ctx, &keystorev1.RevokeKeyRequest{Key: keyBox})
	},
	keystorev1.Keys_RevokeVersion_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).RevokeVersion(ctx, &keystorev1.RevokeKeyVersionRequest{Key: keyOld, Version: 1})
	},
	keystorev1.Keys_Destroy_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Destroy(ctx, &keystorev1.DestroyKeyRequest{Key: keyGone})
	},
	keystorev1.Keys_SetPolicy_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).SetPolicy(ctx, &keystorev1.SetKeyPolicyRequest{Key: keySig, Policy: &keystorev1.KeyPolicy{MinDecryptionVersion: 1}})
	},
	keystorev1.Keys_PublicKey_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).PublicKey(ctx, &keystorev1.PublicKeyRequest{Key: keySig, Version: 1})
	},
	keystorev1.Keys_Sign_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Sign(ctx, &keystorev1.SignRequest{Key: keySig, Message: fx.msg})
	},
	keystorev1.Keys_Verify_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Verify(ctx, &keystorev1.VerifyRequest{Key: keySig, Version: int64(fx.sig.Version), Message: fx.msg, Signature: fx.sig.Signature})
	},
	keystorev1.Keys_Seal_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Seal(ctx, &keystorev1.SealRequest{Key: keyBox, Plaintext: fx.pt})
	},
	keystorev1.Keys_Unseal_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Unseal(ctx, &keystorev1.UnsealRequest{Key: keyBox, Sealed: fx.sealed.Data, Aad: fx.aad})
	},
	keystorev1.Keys_Rewrap_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Rewrap(ctx, &keystorev1.RewrapRequest{Key: keyBox, Sealed: fx.sealed.Data, Aad: fx.aad})
	},
	keystorev1.Keys_SignBatch_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).SignBatch(ctx, &keystorev1.SignBatchRequest{Items: []*keystorev1.SignRequest{{Key: keySig, Message: fx.msg}}})
	},
	keystorev1.Keys_SealBatch_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).SealBatch(ctx, &keystorev1.SealBatchRequest{Items: []*keystorev1.SealRequest{{Key: keyFresh, Plaintext: fx.pt}}})
	},
	keystorev1.Keys_UnsealBatch_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).UnsealBatch(ctx, &keystorev1.UnsealBatchRequest{Items: []*keystorev1.UnsealRequest{{Key: keyBox, Sealed: fx.sealed.Data, Aad: fx.aad}}})
	},
	keystorev1.Keys_Mac_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Mac(ctx, &keystorev1.MacRequest{Key: keyMAC, Message: fx.msg})
	},
	keystorev1.Keys_VerifyMac_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).VerifyMac(ctx, &keystorev1.VerifyMacRequest{Key: keyMAC, Version: int64(fx.tag.Version), Message: fx.msg, Tag: fx.tag.Tag})
	},
	keystorev1.Keys_MacBatch_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).MacBatch(ctx, &keystorev1.MacBatchRequest{Items: []*keystorev1.MacRequest{{Key: keyMAC, Message: fx.msg}}})
	},
	keystorev1.Keys_VerifyMacBatch_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).VerifyMacBatch(ctx, &keystorev1.VerifyMacBatchRequest{Items: []*keystorev1.VerifyMacRequest{
			{Key: keyMAC, Version: int64(fx.tag.Version), Message: fx.msg, Tag: fx.tag.Tag}}})
	},
	keystorev1.Keys_Sweep_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Sweep(ctx, &keystorev1.SweepKeysRequest{})
	},
	keystorev1.Keys_GetUsage_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).GetUsage(ctx, &keystorev1.GetUsageRequest{})
	},
	keystorev1.Keys_GenerateDataKey_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).GenerateDataKey(ctx, &keystorev1.GenerateDataKeyRequest{Key: keyBox, Aad: fx.aad})
	},
	keystorev1.Keys_GenerateDataKeyWithoutPlaintext_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).GenerateDataKeyWithoutPlaintext(ctx, &keystorev1.GenerateDataKeyRequest{Key: keyBox, Aad: fx.aad})
	},
	keystorev1.Keys_Decrypt_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Decrypt(ctx, &keystorev1.DecryptRequest{Key: keyHPKE, Version: 1,
			Enc: fx.hpke.Enc, Ciphertext: fx.hpke.Ciphertext, Info: fx.hpke.Info, Aad: fx.hpke.AAD})
	},
	keystorev1.Keys_GetImportParameters_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).GetImportParameters(ctx, &keystorev1.GetImportParametersRequest{Key: keyImpNew, Algorithm: string(client.AES256GCM)})
	},
	// Refused for want of its audit record, the import creates nothing
	// (sameFiles below; readsWork after the restart finds no key).
	keystorev1.Keys_Import_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewKeysClient(conn).Import(ctx, &keystorev1.ImportKeyRequest{Key: keyImpNew, Token: fx.importToken, Enc: fx.importEnc, Wrapped: fx.importWrapped})
	},
	keystorev1.Store_Put_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewStoreClient(conn).Put(ctx, &keystorev1.PutValueRequest{Name: "v3", Value: []byte("x")})
	},
	keystorev1.Store_Get_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewStoreClient(conn).Get(ctx, &keystorev1.GetValueRequest{Name: "v1"})
	},
	keystorev1.Store_Delete_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewStoreClient(conn).Delete(ctx, &keystorev1.DeleteValueRequest{Name: "v2"})
	},
	keystorev1.Store_List_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewStoreClient(conn).List(ctx, &keystorev1.ListValuesRequest{})
	},
	keystorev1.TrustAnchors_ListAnchors_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewTrustAnchorsClient(conn).ListAnchors(ctx, &keystorev1.ListAnchorsRequest{})
	},
	keystorev1.TrustAnchors_Verify_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, fx fixture) (any, error) {
		return keystorev1.NewTrustAnchorsClient(conn).Verify(ctx, &keystorev1.VerifyAnchorRequest{Anchor: "release", Message: fx.msg, Signature: fx.sig.Signature})
	},
	// The daemon's software provider over its KEK file can rotate: refused
	// for want of its audit record, the rotation rewraps nothing (the
	// state is unchanged) and makes no next KEK file (checked below).
	keystorev1.Admin_WrappingKeyStatus_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewAdminClient(conn).WrappingKeyStatus(ctx, &keystorev1.WrappingKeyStatusRequest{})
	},
	keystorev1.Admin_RotateWrappingKey_FullMethodName: func(ctx context.Context, conn *grpc.ClientConn, _ fixture) (any, error) {
		return keystorev1.NewAdminClient(conn).RotateWrappingKey(ctx, &keystorev1.RotateWrappingKeyRequest{})
	},
}

// TestEveryRPCCovered keeps everyRPC complete: a new RPC must be added to
// the audit-failure test.
func TestEveryRPCCovered(t *testing.T) {
	n := 0
	for _, sd := range []grpc.ServiceDesc{keystorev1.Keys_ServiceDesc, keystorev1.Store_ServiceDesc, keystorev1.TrustAnchors_ServiceDesc, keystorev1.Admin_ServiceDesc} {
		for _, m := range sd.Methods {
			n++
			if everyRPC["/"+sd.ServiceName+"/"+m.MethodName] == nil {
				t.Errorf("everyRPC has no request for /%s/%s", sd.ServiceName, m.MethodName)
			}
		}
		if len(sd.Streams) != 0 {
			t.Errorf("%s has streaming methods: the audit tests do not cover them", sd.ServiceName)
		}
	}
	if n != len(everyRPC) {
		t.Errorf("everyRPC has %d requests, the services %d methods", len(everyRPC), n)
	}
}

// auditLogOf returns the daemon's audit log path.
func auditLogOf(d *daemontest.Daemon) string { return filepath.Join(d.State, "audit", "audit.jsonl") }

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// breakAuditLog makes the daemon's audit log unwritable: the daemon's file
// size limit (RLIMIT_FSIZE, set with prlimit) becomes the log's size, so
// its next write(2) fails with EFBIG while the state directory's small
// files can still be written. Before that the log is grown past any file
// a request writes (metadata, handles and values are a few KiB).
func breakAuditLog(t *testing.T, d *daemontest.Daemon, c *client.Client) int64 {
	t.Helper()
	path := auditLogOf(d)
	for fileSize(t, path) < 64<<10 {
		if _, err := c.Get(context.Background(), keySig); err != nil {
			t.Fatal(err)
		}
	}
	size := fileSize(t, path)
	lim := unix.Rlimit{Cur: uint64(size), Max: uint64(size)}
	if err := unix.Prlimit(d.Pid(), unix.RLIMIT_FSIZE, &lim, nil); err != nil {
		t.Skipf("prlimit(RLIMIT_FSIZE) on the daemon: %v: cannot make its audit log unwritable", err)
	}
	return size
}

// wantAuditRefused fails unless err is the EIO of a request refused for
// want of an audit record, and resp is empty.
func wantAuditRefused(t *testing.T, what string, resp any, err error) {
	t.Helper()
	code, _ := provider.CodeOf(rpcerr.FromStatus(err))
	if code != provider.EIO || !strings.Contains(err.Error(), auditRefused) {
		t.Errorf("%s: got %v, want EIO %q", what, err, auditRefused)
	}
	if m, ok := resp.(proto.Message); !ok || m.ProtoReflect().IsValid() {
		t.Errorf("%s: returned %v with the error", what, resp)
	}
}

// With the audit log unwritable, every request of every RPC fails with
// EIO and returns nothing, and nothing in the state directory changes.
// After a restart (with the disk fixed) the log verifies and every
// request works again.
func TestAuditUnwritable(t *testing.T) {
	ctx := context.Background()
	d := daemontest.Start(t, daemontest.Options{})
	c, err := client.Dial(ctx, d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}()
	fx := setUp(t, c)
	size := breakAuditLog(t, d, c)

	// The first request finds the log unwritable.
	_, err = c.Get(ctx, keySig)
	if !errors.Is(err, client.ErrIO) || !strings.Contains(err.Error(), auditRefused) {
		t.Fatalf("first request with the log unwritable: %v, want EIO %q", err, auditRefused)
	}
	before := snapshot(t, d.State)
	conn := d.Dial(t)
	for method, call := range everyRPC {
		resp, err := call(ctx, conn, fx)
		wantAuditRefused(t, method, resp, err)
	}
	writesFail(t, c, append(writes(true), destroyRequest), auditRefused)
	sameFiles(t, "requests with the audit log unwritable", before, snapshot(t, d.State))
	if _, err := os.Lstat(filepath.Join(d.State, "kek.next")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a KEK rotation refused for want of its audit record began: kek.next: %v", err)
	}
	if got := fileSize(t, auditLogOf(d)); got != size {
		t.Errorf("the audit log grew from %d to %d bytes while unwritable", size, got)
	}

	// The daemon stops (its log cannot be flushed) and starts again.
	if err := d.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := d.Wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("keystored exited with status %d after SIGTERM with a failed audit log", code)
	res, err := audit.VerifyFile(auditLogOf(d))
	if err != nil {
		t.Fatalf("audit log after the failure: %v", err)
	}
	d2 := daemontest.Start(t, daemontest.Options{State: d.State})
	c2, err := client.Dial(ctx, d2.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c2.Close(); err != nil {
			t.Error(err)
		}
	}()
	readsWork(t, c2, fx)
	for _, w := range append(writes(true), destroyRequest) {
		if err := w.call(ctx, c2); err != nil {
			t.Errorf("%s after the restart: %v", w.name, err)
		}
	}
	d2.Stop()
	res2, err := audit.VerifyFile(auditLogOf(d2))
	if err != nil {
		t.Fatalf("audit log after the restart: %v", err)
	}
	if res2.Records <= res.Records {
		t.Errorf("audit log: %d records after the restart, %d before", res2.Records, res.Records)
	}
}

// The first request to find the audit log unwritable, when it is a state
// change (a create, or an import with parameters issued before): it fails
// with EIO, returns nothing, and changes nothing. The daemon writes a
// state change's audit record ahead, before the change is made durable,
// so a log that cannot take the record stops the change.
func TestAuditUnwritableFirstStateChange(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		call      func(ctx context.Context, c *client.Client, fx fixture) error
	}{
		{"create", keyNew, func(ctx context.Context, c *client.Client, _ fixture) error {
			_, err := c.Create(ctx, keyNew, client.CreateOptions{Algorithm: client.Ed25519})
			return err
		}},
		{"import", keyImpNew, func(ctx context.Context, c *client.Client, fx fixture) error {
			_, err := c.Import(ctx, keyImpNew, fx.importToken, fx.importEnc, fx.importWrapped, client.Policy{})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := daemontest.Start(t, daemontest.Options{})
			c, err := client.Dial(ctx, d.Socket)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c.Close(); err != nil {
					t.Error(err)
				}
			}()
			fx := setUp(t, c)
			breakAuditLog(t, d, c)
			before := snapshot(t, d.State)
			err = tc.call(ctx, c, fx)
			if !errors.Is(err, client.ErrIO) || !strings.Contains(err.Error(), auditRefused) {
				t.Fatalf("%s as the first request with the log unwritable: %v, want EIO %q", tc.name, err, auditRefused)
			}
			after := snapshot(t, d.State)
			d.Kill()

			d2 := daemontest.Start(t, daemontest.Options{State: d.State})
			c2, err := client.Dial(ctx, d2.Socket)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c2.Close(); err != nil {
					t.Error(err)
				}
			}()
			page, err := c2.List(ctx, client.ListOptions{})
			if err != nil || len(page.Unreadable) != 0 || len(page.Keys) != fixtureKeys {
				t.Fatalf("list after restart: %d keys, unreadable %v, %v; want the %d of the fixture", len(page.Keys), page.Unreadable, err, fixtureKeys)
			}
			// The daemon writes a state change's audit record before
			// making the change durable, so the refused change must not
			// exist and nothing may have changed.
			if _, err := c2.Get(ctx, tc.key); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("get %s after restart: %v, want ENOENT (the refused %s took effect)", tc.key, err, tc.name)
			}
			sameFiles(t, "a refused "+tc.name, before, after)
			d2.Stop()
			if _, err := audit.VerifyFile(auditLogOf(d2)); err != nil {
				t.Errorf("audit log: %v", err)
			}
		})
	}
}
