package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nexus-os/keystored/core"
	"github.com/nexus-os/keystored/core/provider"
	"github.com/nexus-os/keystored/internal/keksource"
	"github.com/nexus-os/keystored/plugin"
	"github.com/nexus-os/keystored/providers/software"
	"github.com/nexus-os/keystored/providers/testseed"
)

// insecureWarning is printed at every start with --insecure-test-seed.
const insecureWarning = "WARNING: INSECURE: every key is derived from the seed; never use for real keys"

// kekFileName is the software provider's default KEK file in the state
// directory, and kekParamsFileName the default Argon2id parameters file of
// a passphrase-derived KEK.
const (
	kekFileName       = "kek"
	kekParamsFileName = "kek.params"
)

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
	closer  io.Closer      // nil when there is nothing to close
	plugin  *plugin.Client // the plugin's client (its status for metrics); nil unless kindPlugin
	summary string         // for the start line, e.g. "software"
}

// openProvider makes the provider the options select: the software
// provider (KEK from the --kek-* flags over the config's [kek] table,
// by default <state>/kek, created 0600 on first start of a state without
// keys), a pinned plugin, or the INSECURE seeded provider. state is what
// core.Inspect found in the state directory.
func openProvider(ctx context.Context, o *options, kekConfig keksource.Options, unwrappedKeys int, state core.StateInfo, logger *slog.Logger) (*selectedProvider, error) {
	if (o.pluginPath != "" || o.insecureSeed != "") && kekConfig.Values() != ([4]string{}) {
		return nil, withHint(errors.New("the config's [kek] table sets the built-in software provider's KEK, but another provider is selected"),
			"remove [kek] from the config file, or pass a plugin its KEK with --provider-arg")
	}
	switch {
	case o.pluginPath != "":
		return openPlugin(ctx, o, state, logger)
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
	// A state of another provider is refused as such, before its (absent)
	// KEK file could be mistaken for a lost one.
	if err := state.CheckProvider(provider.Info{Name: software.Name, Secure: true}); err != nil {
		return nil, stateRefused(o.state, err)
	}
	src, err := keksource.Resolve(o.kek.Over(kekConfig),
		keksource.Defaults{File: filepath.Join(o.state, kekFileName), Params: filepath.Join(o.state, kekParamsFileName)}, o.getenv)
	if err != nil {
		return nil, withHint(fmt.Errorf("software provider KEK: %w", err), "docs/operations.md, \"The KEK\", lists the sources")
	}
	scfg, wipe, err := src.Config(kekState(state).MayCreate())
	if err != nil {
		return nil, fmt.Errorf("software provider KEK: %w", err)
	}
	scfg.CacheSize = unwrappedKeys
	p, err := software.New(scfg)
	wipe()
	if err != nil {
		if errors.Is(err, provider.ErrNotFound) {
			return nil, missingKEK(o.state, src, state, err)
		}
		return nil, fmt.Errorf("software provider (%s): %w", src, err)
	}
	logger.Info("software provider KEK", "source", src.String())
	return &selectedProvider{p: p, kind: kindSoftware, closer: closerOf(p), summary: "software"}, nil
}

// kekState is what the state holds, as keksource (and a plugin) sees it.
func kekState(state core.StateInfo) keksource.State {
	return keksource.State{HoldsKeys: state.HoldsKeys, KEK: state.KEK}
}

// missingKEK is the refusal to start when a state's KEK is missing: it
// names the state directory, the missing file (the KEK file, or the
// parameters file of a passphrase KEK, whose salt the KEK needs) and the
// fingerprint the MANIFEST records, and says to restore it from its
// backup. err is the provider's ENOENT (kept for its code; its text says
// no more).
func missingKEK(stateDir string, src keksource.Source, state core.StateInfo, err error) error {
	path, what := src.KEKFile, "the KEK file "+src.KEKFile
	if src.Passphrase() {
		path, what = src.ParamsFile, "the KEK parameters file "+src.ParamsFile+" (its salt: without it the passphrase gives another KEK)"
	}
	recorded := "KEK " + state.KEK + " (the fingerprint recorded in keystore/MANIFEST)"
	if state.KEK == "" {
		recorded = "a KEK whose fingerprint keystore/MANIFEST does not record (the state predates it)"
	}
	var msg string
	if state.HoldsKeys {
		msg = fmt.Sprintf("state directory %s holds keys wrapped under %s, but %s is missing; refusing to start: "+
			"a new KEK would leave every key unusable", stateDir, recorded, what)
	} else {
		msg = fmt.Sprintf("state directory %s was made with %s, but %s is missing; refusing to start rather than make another KEK",
			stateDir, recorded, what)
	}
	code, _ := provider.CodeOf(err)
	return withHint(provider.Errorf(code, "%s", msg),
		"restore it from its backup to "+path+" (docs/operations.md, \"Backup and restore\"), 0600 and owned by the daemon's user")
}

func openPlugin(ctx context.Context, o *options, state core.StateInfo, logger *slog.Logger) (*selectedProvider, error) {
	path, err := filepath.Abs(o.pluginPath)
	if err != nil {
		return nil, fmt.Errorf("--provider-plugin: %w", err)
	}
	env := make([]string, 0, len(o.pluginEnv)+2)
	for _, name := range o.pluginEnv {
		v, ok := os.LookupEnv(name)
		if !ok {
			return nil, fmt.Errorf("--provider-env %s: the variable is not set", name)
		}
		env = append(env, name+"="+v)
	}
	// What the state holds, so that a plugin creates a KEK only for a
	// state without keys; a restart is always told the state holds keys
	// (keys may have been made since the launch) and no KEK fingerprint
	// (the one of the launch may be stale after a rotation).
	restartEnv := append(slices.Clone(env), keksource.RestartEnv()...)
	env = append(env, kekState(state).Env()...)
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
		RestartEnv: restartEnv,
		Logger:     logger,
	})
	if err != nil {
		return nil, fmt.Errorf("provider plugin %s: %w", path, err)
	}
	// Provider: the client with the optional interfaces the plugin
	// announces (a KEK rotation).
	return &selectedProvider{p: c.Provider(), kind: kindPlugin, closer: c, plugin: c, summary: "plugin " + filepath.Base(path)}, nil
}

// checkSignatures says whether the core verifies every signature the
// provider returns: for a plugin, unless [provider] verify_signatures is
// false for the very binary --provider-sha256 pins (trusted_plugin_sha256);
// never for the in-process providers (their signatures come from this
// process's own code). A relaxation that names another binary, or comes
// without a plugin, refuses the start.
func checkSignatures(o *options, ps providerSettings) (bool, error) {
	if ps.verifySignatures {
		return o.pluginPath != "", nil
	}
	switch {
	case o.pluginPath == "":
		return false, withHint(errors.New("the config's provider.verify_signatures = false applies only to a provider plugin, and none is selected"),
			"remove it: the built-in providers' signatures are not verified, they come from the daemon's own code")
	case !strings.EqualFold(o.pluginSHA256, ps.trustedPlugin):
		return false, withHint(fmt.Errorf("the config trusts the plugin binary %s to sign without verification (provider.trusted_plugin_sha256), but --provider-sha256 pins %s; refusing to start",
			ps.trustedPlugin, strings.ToLower(o.pluginSHA256)),
			"a new binary is verified until the config names it: update provider.trusted_plugin_sha256, or remove provider.verify_signatures")
	}
	return false, nil
}

// closerOf returns p as an io.Closer when it has a Close method.
func closerOf(p provider.Provider) io.Closer {
	if c, ok := p.(io.Closer); ok {
		return c
	}
	return nil
}
