package main

import (
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/daemontest"
)

// TestProbes: the real daemon answers grpc.health.v1 on its socket, to a
// uid its identity map denies too (this test runs with unmapped = "deny"
// and no operators, so its own uid is denied): SERVING; reflection is
// refused to that uid and lists keystore.v1.Keys to a mapped one. 100 health
// checks add no audit record (the denied key request does), and show in
// keystored_probe_requests_total.
func TestProbes(t *testing.T) {
	cfg := writeFile(t, t.TempDir(), "keystored.toml", "unmapped = \"deny\"\noperators = []\n[limits]\ndenied_burst = 200 # a denied uid's bucket: 20/s, burst 40 by default\n", 0o600)
	d := daemontest.Start(t, daemontest.Options{Args: []string{"--config", cfg, "--metrics-addr", "127.0.0.1:0"}})
	conn := d.Dial(t)
	ctx := t.Context()
	_, err := keystorev1.NewKeysClient(conn).Get(ctx, &keystorev1.GetKeyRequest{Key: "sig/k"})
	wantReason(t, "Get by a denied uid", err, provider.EPERM)

	h := healthpb.NewHealthClient(conn)
	for i := range 100 {
		r, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatalf("health check %d: %v", i, err)
		}
		if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health check %d: %v, want SERVING", i, r.GetStatus())
		}
	}
	// Reflection (a stream) needs an app: refused to the denied uid,
	// answered by a daemon that maps it.
	denied, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err == nil {
		_, err = denied.Recv()
	}
	wantReason(t, "reflection by a denied uid", err, provider.EPERM)
	cfg2 := writeFile(t, t.TempDir(), "keystored.toml", "unmapped = \"uid\"\n", 0o600)
	d2 := daemontest.Start(t, daemontest.Options{Args: []string{"--config", cfg2}})
	stream, err := reflectionv1.NewServerReflectionClient(d2.Dial(t)).ServerReflectionInfo(ctx)
	mustOK(t, "ServerReflectionInfo", err)
	mustOK(t, "Send", stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}))
	lr, err := stream.Recv()
	mustOK(t, "Recv", err)
	var names []string
	for _, s := range lr.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, "keystore.v1.Keys") {
		t.Errorf("reflection lists %v, want keystore.v1.Keys among them", names)
	}
	mustOK(t, "CloseSend", stream.CloseSend())
	d2.Stop()

	m := regexp.MustCompile(`metrics on (http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(d.Stdout())
	if m == nil {
		t.Fatalf("no metrics line in %q", d.Stdout())
	}
	body := httpGet(t, m[1])
	if want := `keystored_probe_requests_total{op="health.check",result="ok"} 100`; !strings.Contains(body, want) {
		t.Errorf("metrics lack %q", want)
	}
	d.Stop()
	var ops []string
	for _, r := range requestRecords(t, filepath.Join(d.State, auditFile)) {
		ops = append(ops, r.Op)
	}
	if !slices.Equal(ops, []string{"keys.get"}) {
		t.Errorf("audit records %v, want only the denied keys.get (a refused probe is counted, not audited)", ops)
	}
}

// httpGet returns the body of a GET of url.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
