package pkcs11

import (
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/nexus-os/keystored/core/provider"
)

// maxCached bounds the object-handle cache; when full it starts over.
const maxCached = 4096

// objCache maps a CKA_ID to the object handle of the key that operations
// use (the private key of a pair, the AES or HMAC secret key). It has a
// generation: a handle found before a forget or a clear is not cached
// after it.
type objCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[objectID]p11.ObjectHandle
}

func (c *objCache) get(id objectID) (p11.ObjectHandle, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[id]
	return h, c.gen, ok
}

// put caches h for id unless the cache changed generation since gen.
func (c *objCache) put(id objectID, h p11.ObjectHandle, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil || len(c.m) >= maxCached {
		c.m = make(map[objectID]p11.ObjectHandle)
	}
	c.m[id] = h
}

// forget drops id and starts a new generation.
func (c *objCache) forget(id objectID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
	c.gen++
}

// clear drops everything and starts a new generation.
func (c *objCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
	c.gen++
}

// idTemplate is the search template of the token objects with CKA_ID id,
// and of class class when it is not ^0. Session objects are never
// matched: the ones Generate stages (stage) carry the CKA_ID of the key
// they will become, and vanish with their session.
func idTemplate(id objectID, class uint) []*p11.Attribute {
	t := []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, id[:]), p11.NewAttribute(p11.CKA_TOKEN, true)}
	if class != anyClass {
		t = append(t, p11.NewAttribute(p11.CKA_CLASS, class))
	}
	return t
}

// anyClass asks idTemplate for objects of every class.
const anyClass = ^uint(0)

// findObjects returns up to max objects matching tmpl.
func findObjects(ctx *p11.Ctx, sh p11.SessionHandle, tmpl []*p11.Attribute, max int) ([]p11.ObjectHandle, error) {
	if err := ctx.FindObjectsInit(sh, tmpl); err != nil {
		return nil, call("C_FindObjectsInit", err)
	}
	objs, _, err := ctx.FindObjects(sh, max)
	ferr := ctx.FindObjectsFinal(sh)
	if err != nil {
		return nil, call("C_FindObjects", err)
	}
	if ferr != nil {
		return nil, call("C_FindObjectsFinal", ferr)
	}
	return objs, nil
}

// findKey returns the one object of class with CKA_ID id: ENOENT when
// there is none (never generated, or destroyed), EIO when there are
// several.
func findKey(ctx *p11.Ctx, sh p11.SessionHandle, ref provider.KeyRef, id objectID, class uint) (p11.ObjectHandle, error) {
	objs, err := findObjects(ctx, sh, idTemplate(id, class), 2)
	if err != nil {
		return 0, err
	}
	switch len(objs) {
	case 0:
		// Private objects are invisible to a session that is not logged
		// in: after a logout behind our back that is a reset, not ENOENT.
		if si, err := ctx.GetSessionInfo(sh); err != nil {
			return 0, call("C_GetSessionInfo", err)
		} else if si.State != p11.CKS_RW_USER_FUNCTIONS && si.State != p11.CKS_RO_USER_FUNCTIONS {
			return 0, &ckrError{fn: "C_FindObjects", rv: p11.CKR_USER_NOT_LOGGED_IN}
		}
		return 0, provider.Errorf(provider.ENOENT, "key %s is not on the token (destroyed, or never generated)", ref)
	case 1:
		return objs[0], nil
	}
	return 0, provider.Errorf(provider.EIO, "the token holds several objects of class %d with the ID of key %s", uint64(class), ref)
}

// destroyAll destroys every token object with CKA_ID id, whatever its
// class. An object destroyed meanwhile by someone else is not an error.
func destroyAll(ctx *p11.Ctx, sh p11.SessionHandle, id objectID) error {
	const batch, rounds = 16, 8
	for range rounds {
		objs, err := findObjects(ctx, sh, idTemplate(id, anyClass), batch)
		if err != nil {
			return err
		}
		if len(objs) == 0 {
			return nil
		}
		for _, o := range objs {
			if err := ctx.DestroyObject(sh, o); err != nil {
				if rv, _ := rvOf(err); !isStaleObject(rv) {
					return call("C_DestroyObject", err)
				}
			}
		}
	}
	return provider.Errorf(provider.EIO, "objects with one key's ID keep appearing on the token")
}
