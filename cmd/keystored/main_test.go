package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/daemontest"
	"github.com/nexus-os/keystored/internal/rpcerr"
	"github.com/nexus-os/keystored/internal/testbin"
)

// clientEnv switches the test binary into a tiny keystore client (see
// clientMain), which the identity test runs under other uids.
const clientEnv = "KEYSTORED_TEST_CLIENT"

func TestMain(m *testing.M) {
	if os.Getenv(clientEnv) != "" {
		os.Exit(clientMain(os.Stdout))
	}
	if os.Getenv(activateEnv) != "" {
		os.Exit(activateMain())
	}
	os.Exit(daemontest.Main(m))
}

// clientMain runs the script in $KEYSTORED_TEST_SCRIPT against the socket
// $KEYSTORED_TEST_SOCKET and prints one result per operation, separated by
// ";": "ok", "ok:<value>" or the error's reason. Operations (separated by
// ";", arguments by spaces): create KEY ALG, sign KEY, get KEY, list,
// put NAME VALUE, getv NAME, del NAME, listv.
func clientMain(out io.Writer) int {
	conn, err := grpc.NewClient("unix://"+os.Getenv("KEYSTORED_TEST_SOCKET"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer conn.Close()
	keys, store := keystorev1.NewKeysClient(conn), keystorev1.NewStoreClient(conn)
	ctx := context.Background()
	var results []string
	for _, op := range strings.Split(os.Getenv("KEYSTORED_TEST_SCRIPT"), ";") {
		f := strings.Fields(op)
		if len(f) == 0 {
			continue
		}
		arg := func(i int) string {
			if i < len(f) {
				return f[i]
			}
			return ""
		}
		var (
			value string
			err   error
		)
		switch f[0] {
		case "create":
			_, err = keys.Create(ctx, &keystorev1.CreateKeyRequest{Key: arg(1), Algorithm: arg(2)})
		case "sign":
			_, err = keys.Sign(ctx, &keystorev1.SignRequest{Key: arg(1), Message: []byte("m")})
		case "get":
			var r *keystorev1.GetKeyResponse
			if r, err = keys.Get(ctx, &keystorev1.GetKeyRequest{Key: arg(1)}); err == nil {
				value = r.GetKey().GetId()
			}
		case "list":
			var r *keystorev1.ListKeysResponse
			if r, err = keys.List(ctx, &keystorev1.ListKeysRequest{}); err == nil {
				var ids []string
				for _, k := range r.GetKeys() {
					ids = append(ids, k.GetId())
				}
				value = strings.Join(ids, ",")
			}
		case "put":
			_, err = store.Put(ctx, &keystorev1.PutValueRequest{Name: arg(1), Value: []byte(arg(2))})
		case "getv":
			var r *keystorev1.GetValueResponse
			if r, err = store.Get(ctx, &keystorev1.GetValueRequest{Name: arg(1)}); err == nil {
				value = string(r.GetValue())
			}
		case "del":
			_, err = store.Delete(ctx, &keystorev1.DeleteValueRequest{Name: arg(1)})
		case "listv":
			var r *keystorev1.ListValuesResponse
			if r, err = store.List(ctx, &keystorev1.ListValuesRequest{}); err == nil {
				value = strings.Join(r.GetNames(), ",")
			}
		default:
			fmt.Fprintln(os.Stderr, "unknown op", f[0])
			return 3
		}
		switch {
		case err != nil:
			c, _ := provider.CodeOf(rpcerr.FromStatus(err))
			results = append(results, c.String())
		case value != "":
			results = append(results, "ok:"+value)
		default:
			results = append(results, "ok")
		}
	}
	fmt.Fprint(out, strings.Join(results, ";"))
	return 0
}

// reason returns the keystored reason an RPC error carries in its status
// details, or "" (and fails the test) when it carries none: every error of
// the daemon is typed.
func reason(t *testing.T, what string, err error) string {
	t.Helper()
	if err == nil {
		return "ok"
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: not a gRPC status: %v", what, err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == rpcerr.Domain {
			return info.GetReason()
		}
	}
	t.Fatalf("%s: untyped error (no keystored ErrorInfo): %v", what, err)
	return ""
}

func wantReason(t *testing.T, what string, err error, want provider.Code) {
	t.Helper()
	if got := reason(t, what, err); got != want.String() {
		t.Fatalf("%s: got %s (%v), want %s", what, got, err, want)
	}
}

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// clients returns the three service clients of a daemon.
func clients(t *testing.T, d *daemontest.Daemon) (keystorev1.KeysClient, keystorev1.StoreClient, keystorev1.TrustAnchorsClient) {
	t.Helper()
	conn := d.Dial(t)
	return keystorev1.NewKeysClient(conn), keystorev1.NewStoreClient(conn), keystorev1.NewTrustAnchorsClient(conn)
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// copyFile copies src to dst with mode perm.
func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(errors.Join(err, out.Close()))
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, perm); err != nil {
		t.Fatal(err)
	}
}

// publicDir returns a new directory every user can traverse (0755).
func publicDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kde")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("removing %s: %v", d, err)
		}
	})
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// writeFile writes a config or other small file with mode perm.
func writeFile(t *testing.T, dir, name, body string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

// pinnedPlugin builds the plugin binary of package pkg and returns its
// path and its SHA-256 in hex, for --provider-plugin and --provider-sha256.
func pinnedPlugin(t *testing.T, pkg string) (string, string) {
	t.Helper()
	bin := testbin.Build(t, pkg)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return bin, hex.EncodeToString(sum[:])
}
