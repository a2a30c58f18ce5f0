package server

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
	"github.com/nexus-os/keystored/core/provider"
)

// deniedIdentity denies every uid, this test process's included.
func deniedIdentity(t *testing.T) *Identity {
	t.Helper()
	id, err := NewIdentity(nil, nil, UnmappedDeny)
	if err != nil {
		t.Fatal(err)
	}
	return &id
}

// TestHealthNotAudited: a uid the identity map denies gets SERVING from
// grpc.health.v1 for the whole server and each keystore.v1 service, 100
// checks write no audit record (they are counted in
// keystored_probe_requests_total), while its key request is refused and
// audited.
func TestHealthNotAudited(t *testing.T) {
	// A denied uid's token bucket is small (20/s, burst 40): a probe
	// within it is answered.
	e := newEnv(t, envOpts{identity: deniedIdentity(t), limits: Limits{DeniedBurst: 200}})
	h := healthpb.NewHealthClient(e.conn)
	for _, svc := range []string{"", "keystore.v1.Keys", "keystore.v1.Store", "keystore.v1.TrustAnchors"} {
		r, err := h.Check(bg, &healthpb.HealthCheckRequest{Service: svc})
		mustOK(t, "Check "+svc, err)
		if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, want SERVING", svc, r.GetStatus())
		}
	}
	for range 96 {
		_, err := h.Check(bg, &healthpb.HealthCheckRequest{})
		mustOK(t, "Check", err)
	}
	_, err := e.keys.Get(bg, &keystorev1.GetKeyRequest{Key: "a/b"})
	wantCode(t, "Get by a denied uid", err, provider.EPERM)
	recs := e.audit.waitFor(t, 1)
	if len(recs) != 1 || recs[0].Op != "keys.get" {
		t.Fatalf("audit records %+v, want only the refused keys.get", recs)
	}
	// The counter is bumped as the handler returns, which may be just after
	// the client has its answer: wait (bounded) for the last one.
	probes := func() float64 { return testutil.ToFloat64(e.srv.metrics.probes.WithLabelValues("health.check", "ok")) }
	for deadline := time.Now().Add(10 * time.Second); probes() < 100 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := probes(); got != 100 {
		t.Errorf("%s{op=health.check,result=ok} = %v, want 100", MetricProbes, got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.requests.WithLabelValues("health.check", "ok")); got != 0 {
		t.Errorf("health checks counted as key requests: %v", got)
	}
}

// TestHealthShutdown: Shutdown turns Check to NOT_SERVING and ends a
// Watch stream.
func TestHealthShutdown(t *testing.T) {
	e := newEnv(t, envOpts{})
	h := healthpb.NewHealthClient(e.conn)
	w, err := h.Watch(bg, &healthpb.HealthCheckRequest{})
	mustOK(t, "Watch", err)
	r, err := w.Recv()
	mustOK(t, "Watch.Recv", err)
	if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch: %v, want SERVING", r.GetStatus())
	}
	e.srv.Shutdown()
	for {
		r, err := w.Recv()
		if err != nil {
			break // the stream ends: a graceful stop does not wait for it
		}
		if r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("Watch after Shutdown: %v, want NOT_SERVING", r.GetStatus())
		}
	}
	c, err := h.Check(bg, &healthpb.HealthCheckRequest{})
	mustOK(t, "Check", err)
	if c.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Check after Shutdown: %v, want NOT_SERVING", c.GetStatus())
	}
	if n := e.audit.count(); n != 0 {
		t.Errorf("%d audit records for health calls, want 0", n)
	}
}

// TestReflection: server reflection lists the keystore.v1 services and
// describes them (what grpcurl needs), unaudited; a stream answers at most
// MaxReflectionRequests requests, and a denied uid gets none (nor Watch):
// it may only call the unary health probes.
func TestReflection(t *testing.T) {
	d := newEnv(t, envOpts{identity: deniedIdentity(t)})
	ds, err := reflectionv1.NewServerReflectionClient(d.conn).ServerReflectionInfo(bg)
	if err == nil {
		_, err = ds.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("reflection for a denied uid: %v, want PermissionDenied", err)
	}
	w, err := healthpb.NewHealthClient(d.conn).Watch(bg, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("health Watch for a denied uid: %v, want PermissionDenied", err)
	}
	if _, err := healthpb.NewHealthClient(d.conn).Check(bg, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health Check for a denied uid: %v", err)
	}

	e := newEnv(t, envOpts{})
	stream, err := reflectionv1.NewServerReflectionClient(e.conn).ServerReflectionInfo(bg)
	mustOK(t, "ServerReflectionInfo", err)
	ask := func(req *reflectionv1.ServerReflectionRequest) *reflectionv1.ServerReflectionResponse {
		t.Helper()
		mustOK(t, "Send", stream.Send(req))
		r, err := stream.Recv()
		mustOK(t, "Recv", err)
		if er := r.GetErrorResponse(); er != nil {
			t.Fatalf("reflection error: %v", er)
		}
		return r
	}
	r := ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}})
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"keystore.v1.Keys", "keystore.v1.Store", "keystore.v1.TrustAnchors", "grpc.health.v1.Health"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("ListServices %v lacks %s", names, want)
		}
	}
	r = ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "keystore.v1.Keys"}})
	found := false
	for _, b := range r.GetFileDescriptorResponse().GetFileDescriptorProto() {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(b, &fd); err != nil {
			t.Fatal(err)
		}
		for _, s := range fd.GetService() {
			if fd.GetPackage() == "keystore.v1" && s.GetName() == "Keys" {
				found = true
			}
		}
	}
	if !found {
		t.Error("FileContainingSymbol(keystore.v1.Keys) has no Keys service")
	}
	for range MaxReflectionRequests - 2 {
		ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}})
	}
	// The daemon ends the stream as it would read request 65 (a Send may
	// meet the ended stream: io.EOF); Recv has the status.
	_ = stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}})
	if _, err := stream.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("request %d of one reflection stream: %v, want ResourceExhausted", MaxReflectionRequests+1, err)
	}
	e.srv.FlushRefusals()
	if n := e.audit.count(); n != 0 {
		t.Errorf("%d audit records for reflection, want 0", n)
	}
}

// TestProbeLimits: probes pass admission like any request: one over its
// receive limit is refused (EMSGSIZE), and past its uid's rate
// (EUNAVAILABLE); the refusals are counted, not audited.
func TestProbeLimits(t *testing.T) {
	e := newEnv(t, envOpts{identity: deniedIdentity(t), limits: Limits{DeniedRate: 0.001, DeniedBurst: 3}})
	h := healthpb.NewHealthClient(e.conn)
	_, err := h.Check(bg, &healthpb.HealthCheckRequest{Service: strings.Repeat("s", probeRequest+1)})
	wantCode(t, "Check with a 4 KiB service name", err, provider.EMSGSIZE)
	_, err = h.Check(bg, &healthpb.HealthCheckRequest{})
	mustOK(t, "Check", err)
	_, err = h.Check(bg, &healthpb.HealthCheckRequest{})
	mustOK(t, "Check", err)
	_, err = h.Check(bg, &healthpb.HealthCheckRequest{})
	wantCode(t, "Check over the rate", err, provider.EUNAVAILABLE)
	e.srv.FlushRefusals()
	if n := e.audit.count(); n != 0 {
		t.Errorf("%d audit records for refused probes, want 0: %+v", n, e.audit.records())
	}
	if got := testutil.ToFloat64(e.srv.metrics.refusedRequests.WithLabelValues(refusedRate)); got != 1 {
		t.Errorf("rate refusals counted %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.probes.WithLabelValues("health.check", "EUNAVAILABLE")); got != 1 {
		t.Errorf("refused probe counted %v, want 1", got)
	}
}
