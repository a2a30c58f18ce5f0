package conformance

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nexus-os/keystored/core/provider"
)

// This file exposes the suite's checks to its own tests (package
// conformance_test), so that they can prove each check fails for a
// provider that breaks its requirement.

// WithHangLimit shortens the hang detector for the suite's own tests.
func WithHangLimit(d time.Duration) Option { return func(o *options) { o.hang = d } }

// WithOnlyAlgorithms narrows the suite's own tests to some of the
// announced algorithms (the providers' packages run every one).
func WithOnlyAlgorithms(algs ...provider.Algorithm) Option {
	return func(o *options) { o.only = slices.Clone(algs) }
}

// CheckOne runs the requirement named path against p: a whole-provider
// check ("Info", "Context", "ErrorCodes", ...) with a == "", or a
// per-algorithm one ("Seal/Tamper", "HandleBinding/Version") for algorithm
// a. logf receives the check's log lines. It returns nil, the violations,
// or an error for which IsSkip holds.
func CheckOne(ctx context.Context, p provider.Provider, path string, a provider.Algorithm, logf func(string, ...any), opts ...Option) error {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	s, err := newProvSuite(ctx, p, o)
	if err != nil {
		return err
	}
	s = s.withLog(logf)
	switch path {
	case "Info":
		return s.checkInfo(ctx)
	case "ErrorCodes":
		return s.checkErrorCodes(ctx)
	case "KEKRotation":
		return s.checkKEKRotation(ctx)
	}
	for _, c := range provSingles() {
		if c.name == path {
			return c.check(s, ctx)
		}
	}
	group, name, _ := strings.Cut(path, "/")
	for _, g := range provGroups() {
		if g.name == group {
			if c, ok := g.checks[name]; ok {
				if !slices.Contains(s.algsOf(g.use), a) {
					return fmt.Errorf("test: %s is not an announced %s algorithm", a, g.use)
				}
				return c(s, ctx, a)
			}
		}
	}
	return fmt.Errorf("test: no check named %q", path)
}

// CheckDeterministic runs the Deterministic check on two providers.
func CheckDeterministic(ctx context.Context, p1, p2 provider.Provider, logf func(string, ...any), opts ...Option) error {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	s1, err := newProvSuite(ctx, p1, o)
	if err != nil {
		return err
	}
	s2, err := newProvSuite(ctx, p2, o)
	if err != nil {
		return err
	}
	return checkDeterministic(ctx, s1.withLog(logf), s2.withLog(logf), nil)
}

// CheckNames lists every check path CheckOne knows.
func CheckNames() []string {
	names := []string{"Info", "ErrorCodes", "KEKRotation"}
	for _, c := range provSingles() {
		names = append(names, c.name)
	}
	for _, g := range provGroups() {
		for _, n := range slices.Sorted(maps.Keys(g.checks)) {
			names = append(names, g.name+"/"+n)
		}
	}
	return names
}

// IsSkip reports whether err is a check's "does not apply".
func IsSkip(err error) bool {
	var s *provSkip
	return errors.As(err, &s)
}

// FindSecret exposes the secret search.
func FindSecret(hay, secret []byte) (string, bool) { return findSecret(hay, secret) }

// KeystoreCheckNames lists RunKeystore's subtests.
func KeystoreCheckNames() []string {
	var names []string
	for _, c := range ksChecks() {
		names = append(names, c.name)
	}
	return names
}
