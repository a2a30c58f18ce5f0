package server

import (
	"context"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

// Probes: gRPC health checking (grpc.health.v1) and server reflection
// (grpc.reflection.v1 and v1alpha) on the daemon's socket, so that
// grpc-health-probe, grpcurl and load balancers' health checks work.
//
// They are not key operations: they touch no key, no value and no state,
// so they write no audit record (an orchestrator probing every second
// would otherwise fill the audit log) and are counted in
// keystored_probe_requests_total instead. Any uid that may connect may
// probe, including one the identity map denies: health says whether the
// daemon serves, and reflection describes the public keystore.v1 API
// (the .proto files anyone can read), neither of which is a secret of
// any app. They still pass the transport's admission like every request:
// the uid's rate limit, their method's receive limit and the budget of
// bytes in flight, and the connection limits (refusals of probes are
// counted, not audited).

// probeOps are the operation names of the probe methods.
var probeOps = map[string]string{
	healthpb.Health_Check_FullMethodName:                                   "health.check",
	healthpb.Health_Watch_FullMethodName:                                   "health.watch",
	healthpb.Health_List_FullMethodName:                                    "health.list",
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      "reflection.info",
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: "reflection.info",
}

// isProbe reports whether op is a probe's operation name.
func isProbe(op string) bool {
	switch op {
	case "health.check", "health.watch", "health.list", "reflection.info":
		return true
	}
	return false
}

// probeRequest is the receive limit of a health request (a service name)
// and of one reflection request (a symbol or file name).
const probeRequest = 4 << 10

// servedServices are the services the daemon registers, as reflection
// lists them.
var servedServices = []string{
	keystorev1.Keys_ServiceDesc.ServiceName,
	keystorev1.Store_ServiceDesc.ServiceName,
	keystorev1.TrustAnchors_ServiceDesc.ServiceName,
	keystorev1.Admin_ServiceDesc.ServiceName,
	healthpb.Health_ServiceDesc.ServiceName,
	reflectionv1.ServerReflection_ServiceDesc.ServiceName,
	reflectionv1alpha.ServerReflection_ServiceDesc.ServiceName,
}

// serviceList is reflection's view of the registered services (the
// registrar given to Register need not be a *grpc.Server).
type serviceList struct{}

func (serviceList) GetServiceInfo() map[string]grpc.ServiceInfo {
	m := make(map[string]grpc.ServiceInfo, len(servedServices))
	for _, name := range servedServices {
		m[name] = grpc.ServiceInfo{}
	}
	return m
}

// newHealth returns the health server: every served keystore.v1 service
// and the whole server ("") SERVING.
func newHealth() *health.Server {
	h := health.NewServer()
	for _, name := range []string{"", keystorev1.Keys_ServiceDesc.ServiceName, keystorev1.Store_ServiceDesc.ServiceName,
		keystorev1.TrustAnchors_ServiceDesc.ServiceName, keystorev1.Admin_ServiceDesc.ServiceName} {
		h.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	return h
}

// healthService is the health server, except that Shutdown also ends
// the Watch streams: a watcher would otherwise hold a graceful stop for
// its whole timeout.
type healthService struct {
	*health.Server
	stopping context.Context // cancelled by Shutdown
}

func (h healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(h.stopping, cancel)()
	err := h.Server.Watch(req, watchStream{Health_WatchServer: stream, ctx: ctx})
	if h.stopping.Err() != nil {
		return status.Error(codes.Unavailable, "keystored is stopping")
	}
	return err
}

// watchStream is a Watch stream with the context of healthService.Watch.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w watchStream) Context() context.Context { return w.ctx }

// registerProbes registers health and reflection on g.
func (s *Server) registerProbes(g grpc.ServiceRegistrar) {
	f := finishingRegistrar{ServiceRegistrar: g}
	healthpb.RegisterHealthServer(f, healthService{Server: s.health, stopping: s.stopping})
	reflection.Register(reflectionRegistrar{ServiceRegistrar: f})
}

// reflectionRegistrar is g with the service list reflection reports,
// whose streams answer at most MaxReflectionRequests requests each.
type reflectionRegistrar struct {
	grpc.ServiceRegistrar
	serviceList
}

// MaxReflectionRequests bounds the requests of one reflection stream: a
// stream is admitted (rate limit, memory) once, and each request makes
// the daemon encode descriptors, so without a bound one admitted stream
// could ask for them without end. grpcurl asks a handful per stream.
const MaxReflectionRequests = 64

// RegisterService registers desc with every stream handler bounded.
func (r reflectionRegistrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Streams = slices.Clone(desc.Streams)
	for i := range d.Streams {
		h := d.Streams[i].Handler
		d.Streams[i].Handler = func(srv any, stream grpc.ServerStream) error {
			return h(srv, &boundedStream{ServerStream: stream, left: MaxReflectionRequests})
		}
	}
	r.ServiceRegistrar.RegisterService(&d, impl)
}

// boundedStream refuses requests past its bound (RESOURCE_EXHAUSTED).
type boundedStream struct {
	grpc.ServerStream
	left int
}

func (b *boundedStream) RecvMsg(m any) error {
	if b.left == 0 {
		return status.Errorf(codes.ResourceExhausted, "a reflection stream takes at most %d requests; open another", MaxReflectionRequests)
	}
	b.left--
	return b.ServerStream.RecvMsg(m)
}

// Shutdown sets every health status to NOT_SERVING, so that Check
// answers NOT_SERVING while calls in flight finish, and ends the Watch
// streams (after telling them NOT_SERVING when they are quick enough to
// be told); the daemon calls it when it begins to stop.
func (s *Server) Shutdown() {
	s.health.Shutdown()
	s.stop()
}
