package pkcs11

import (
	"path/filepath"
	"strconv"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
)

// A PKCS#11 library has one state per process: C_Initialize and
// C_Finalize are global, and loading the same file twice gives the same
// library. So the providers of a process share one module per library
// file, counted: the library is initialized when the first provider opens
// it and finalized when the last one closes.

// module is a loaded, initialized PKCS#11 library shared by the providers
// of this process.
type module struct {
	path string // the library file, symlinks resolved
	ctx  *p11.Ctx
	refs int  // guarded by modules.mu
	own  bool // this package initialized the library, so it finalizes it

	initMu sync.Mutex // serializes reinit
}

var modules = struct {
	mu sync.Mutex
	m  map[string]*module
}{m: map[string]*module{}}

// openModule loads and initializes the library at path (already checked
// to be an absolute path of a regular file), or takes another reference
// to it.
func openModule(path string) (*module, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, provider.Errorf(provider.EINVAL, "PKCS#11 module %q: %w", path, err)
	}
	modules.mu.Lock()
	defer modules.mu.Unlock()
	if m, ok := modules.m[real]; ok {
		m.refs++
		return m, nil
	}
	ctx := p11.New(real)
	if ctx == nil {
		return nil, provider.Errorf(provider.EINVAL, "PKCS#11 module %q is not a PKCS#11 library (it does not load, or has no C_GetFunctionList)", path)
	}
	own := true
	if err := ctx.Initialize(); err != nil {
		rv, _ := rvOf(err)
		if rv != p11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
			ctx.Destroy()
			return nil, mapErr("PKCS#11 module "+strconv.Quote(path)+" failed to initialize", call("C_Initialize", err))
		}
		// Initialized by other code of this process: it finalizes it.
		own = false
	}
	m := &module{path: real, ctx: ctx, refs: 1, own: own}
	modules.m[real] = m
	return m, nil
}

// release drops a reference; the last one finalizes and unloads the
// library.
func (m *module) release() error {
	modules.mu.Lock()
	defer modules.mu.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(modules.m, m.path)
	var err error
	if m.own {
		if e := m.ctx.Finalize(); e != nil {
			if rv, _ := rvOf(e); rv != p11.CKR_CRYPTOKI_NOT_INITIALIZED {
				err = mapErr("finalizing PKCS#11 module "+strconv.Quote(m.path), call("C_Finalize", e))
			}
		}
	}
	m.ctx.Destroy()
	return err
}

// reinit initializes the library again after it reported
// CKR_CRYPTOKI_NOT_INITIALIZED (someone finalized it under us).
func (m *module) reinit() error {
	m.initMu.Lock()
	defer m.initMu.Unlock()
	if err := m.ctx.Initialize(); err != nil {
		if rv, _ := rvOf(err); rv != p11.CKR_CRYPTOKI_ALREADY_INITIALIZED {
			return call("C_Initialize", err)
		}
	}
	return nil
}
