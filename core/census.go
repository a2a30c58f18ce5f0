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

// Census walks every app's keys and counts them by state. It is not an
// operation of a caller: it checks no caller and writes no audit event
// (it changes nothing and returns no key), so it suits a metrics scrape;
// it reads every key's metadata, so the caller should not run it often
// (the server caches it: server.CensusInterval). ctx bounds the walk.
func (k *Keystore) Census(ctx context.Context) (Census, error) {
	apps, err := k.dirNames(layoutRoot)
	if err != nil {
		return Census{}, provider.WithOp("census", layoutRoot, err)
	}
	c := Census{Apps: make(map[string]AppCensus, len(apps))}
	for _, app := range apps {
		ac := AppCensus{ByState: map[KeyState]int{}}
		purposes, err := k.dirNames(layoutRoot + "/" + app)
		if err != nil {
			return Census{}, provider.WithOp("census", app, err)
		}
		for _, purpose := range purposes {
			names, err := k.keyNames(layoutRoot + "/" + app + "/" + purpose)
			if err != nil {
				return Census{}, provider.WithOp("census", app+"/"+purpose, err)
			}
			for _, name := range names {
				if err := provider.CheckContext(ctx); err != nil {
					return Census{}, err
				}
				id, err := provider.NewKeyID(app, purpose, name)
				if err != nil {
					continue // not a key
				}
				m, ok, err := k.listOne(ctx, id)
				switch {
				case err != nil:
					ac.Unreadable++
				case ok:
					ac.ByState[m.State]++
				}
			}
		}
		c.Apps[app] = ac
	}
	return c, nil
}
