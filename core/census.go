package core

import (
	"context"

	"github.com/nexus-os/keystored/core/provider"
)

// Census is a count of the keys in storage by app and state, for the
// daemon's metrics.
type Census struct {
	// Apps maps each app that has a key directory to its counts.
	Apps map[string]AppCensus
}

// AppCensus counts one app's keys.
type AppCensus struct {
	// ByState counts the keys in each state (StateActive, StateRevoked,
	// StateDestroyed).
	ByState map[KeyState]int
	// Unreadable counts the keys whose metadata cannot be read (EIO: a
	// damaged file); List reports them one by one.
	Unreadable int
}

// Census counts the keys in storage by state. It is not an operation of
// a caller: it checks no caller and writes no audit event (it changes
// nothing and returns no key), so it suits a metrics scrape. It reads the
// key index (index.go; built on first use) and every key's record, from
// the cache or storage, so the caller should not run it often (the server
// caches it: server.CensusInterval). ctx bounds the count.
func (k *Keystore) Census(ctx context.Context) (Census, error) {
	ids, apps, err := k.indexView(ctx)
	if err != nil {
		return Census{}, provider.WithOp("census", layoutRoot, err)
	}
	c := Census{Apps: make(map[string]AppCensus, len(apps))}
	for _, app := range apps {
		c.Apps[app] = AppCensus{ByState: map[KeyState]int{}}
	}
	for _, id := range ids {
		if err := provider.CheckContext(ctx); err != nil {
			return Census{}, err
		}
		ac, ok := c.Apps[id.App()]
		if !ok {
			ac = AppCensus{ByState: map[KeyState]int{}}
		}
		m, ok, err := k.listOne(ctx, id)
		switch {
		case err != nil:
			ac.Unreadable++
		case ok:
			ac.ByState[m.State]++
		}
		c.Apps[id.App()] = ac
	}
	return c, nil
}
