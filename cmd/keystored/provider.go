package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/plugin"
	"github.com/nexus-os/keystored/providers/software"
	"github.com/nexus-os/keystored/providers/testseed"
)

// insecureWarning is printed at every start with --insecure-test-seed.
const insecureWarning = "WARNING: INSECURE: every key is derived from the seed; never use for real keys"

// kekFileName is the software provider's KEK file in the state directory.
const kekFileName = "kek"

// pluginDirName is the plugin's private directory in the state directory.
// Its dot keeps it out of the storage layout: no storage path can name it
// (CheckPath refuses dot names) and the storage's sweep of temporary files
// does not walk into it.
const pluginDirName = ".plugins"

// providerKind names the provider the flags select.
type providerKind int

const (
	kindSoftware providerKind = iota
	kindPlugin
	kindInsecureSeed
)

// selectedProvider is the provider the daemon runs on, and how to release it.
type selectedProvider struct {
	p       provider.Provider
	kind    providerKind
	closer  io.Closer // nil when there is nothing to close
	summary string    // for the start line, e.g. "software"
}

// openProvider makes the provider the options select: the software
// provider (KEK in <state>/kek, created 0600 on first start), a pinned
// plugin, or the INSECURE seeded provider.
func openProvider(ctx context.Context, o *options, logger *slog.Logger) (*selectedProvider, error) {
	switch {
	case o.pluginPath != "":
		return openPlugin(ctx, o, logger)
	case o.insecureSeed != "":
		seed, err := hex.DecodeString(o.insecureSeed)
		if err != nil {
			return nil, fmt.Errorf("--insecure-test-seed: not hex: %w", err)
		}
		p, err := testseed.NewInsecure(seed, testseed.AllowOutsideTests())
		if err != nil {
			return nil, fmt.Errorf("--insecure-test-seed: %w", err)
		}
		return &selectedProvider{p: p, kind: kindInsecureSeed, closer: closerOf(p), summary: "INSECURE testseed"}, nil
	}
	p, err := software.New(software.Config{KEKFile: filepath.Join(o.state, kekFileName)})
	if err != nil {
		return nil, fmt.Errorf("software provider: %w", err)
	}
	return &selectedProvider{p: p, kind: kindSoftware, closer: closerOf(p), summary: "software"}, nil
}

func openPlugin(ctx context.Context, o *options, logger *slog.Logger) (*selectedProvider, error) {
	path, err := filepath.Abs(o.pluginPath)
	if err != nil {
		return nil, fmt.Errorf("--provider-plugin: %w", err)
	}
	env := make([]string, 0, len(o.pluginEnv))
	for _, name := range o.pluginEnv {
		v, ok := os.LookupEnv(name)
		if !ok {
			return nil, fmt.Errorf("--provider-env %s: the variable is not set", name)
		}
		env = append(env, name+"="+v)
	}
	// The verified copy of the binary, the plugin's working directory and
	// its socket live in the state directory (0700, the daemon's), never
	// in $TMPDIR.
	priv, err := filepath.Abs(filepath.Join(o.state, pluginDirName))
	if err != nil {
		return nil, fmt.Errorf("--state: %w", err)
	}
	c, err := plugin.Launch(ctx, plugin.Config{
		Path:       path,
		SHA256:     o.pluginSHA256,
		PrivateDir: priv,
		Args:       o.pluginArgs,
		Env:        env,
		Logger:     logger,
	})
	if err != nil {
		return nil, fmt.Errorf("provider plugin %s: %w", path, err)
	}
	// Provider: the client with the optional interfaces the plugin
	// announces (a KEK rotation).
	return &selectedProvider{p: c.Provider(), kind: kindPlugin, closer: c, summary: "plugin " + filepath.Base(path)}, nil
}

// closerOf returns p as an io.Closer when it has a Close method.
func closerOf(p provider.Provider) io.Closer {
	if c, ok := p.(io.Closer); ok {
		return c
	}
	return nil
}
