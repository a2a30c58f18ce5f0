package core

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/nexus-os/keystored/core/provider"
)

// KEKStatus describes the KEKs of a keystore (see Keystore.KEKStatus).
type KEKStatus struct {
	// Current is the KEK the MANIFEST records the state's handles as
	// wrapped under; empty for a provider that announces no KEK.
	Current string
	// Pending is the KEK a rotation that has not finished is rewrapping
	// them under (RotateKEK resumes it); empty when none is pending.
	Pending string
	// ProviderKEKs are the KEKs the provider holds now (Info.KEKs), the
	// one new handles are wrapped under first.
	ProviderKEKs []string
	// Rotatable reports whether the provider can rotate its KEK
	// (implements provider.KEKRotator).
	Rotatable bool
}

// KEKRotation is what RotateKEK did: the KEKs, and counts of its work so
// far (also when it fails: a rerun resumes where it stopped).
type KEKRotation struct {
	// From and To are the old and the new KEK's fingerprints.
	From, To string
	// Keys is the number of keys walked.
	Keys int
	// Rewrapped counts the handles written anew under To; Unchanged those
	// already under it (made during the rotation, or by an earlier run
	// that was interrupted).
	Rewrapped, Unchanged int
	// Missing counts versions that are not destroyed but whose handle
	// file is gone (an interrupted destroy): unusable before the rotation
	// already, they are left as they are.
	Missing int
	// Committed reports whether the provider committed the rotation (the
	// old KEK is gone).
	Committed bool
}

// KEKStatus returns the KEKs the MANIFEST records and the provider holds.
// Only an operator may ask (EPERM).
func (k *Keystore) KEKStatus(ctx context.Context, c Caller) (KEKStatus, error) {
	ev := k.event(c, OpKEKStatus, "", 0)
	s, err := k.kekStatus(ctx, c)
	return audited(ctx, k, &ev, s, err)
}

func (k *Keystore) kekStatus(ctx context.Context, c Caller) (KEKStatus, error) {
	if !c.Operator {
		return KEKStatus{}, provider.Errorf(provider.EPERM, "only an operator may read the KEK status")
	}
	m, _, err := readManifest(k.st)
	if err != nil {
		return KEKStatus{}, err
	}
	info, err := k.p.Info(ctx)
	if err != nil {
		return KEKStatus{}, provider.WithOp("provider info", "", err)
	}
	_, rot := k.p.(provider.KEKRotator)
	return KEKStatus{Current: m.KEK, Pending: m.KEKNext, ProviderKEKs: info.KEKs, Rotatable: rot}, nil
}

// RotateKEK rewraps every handle of the state under a new KEK. Only an
// operator may rotate (EPERM); a provider that does not implement
// provider.KEKRotator gives ENOTSUP; a rotation already running gives
// EALREADY.
//
// Steps, each durable before the next, so that a crash at any point
// leaves every key usable under the old or the new KEK and a rerun
// resumes: the audit record is written ahead; the provider's Begin makes
// the next KEK (from then on new handles are wrapped under it); the
// MANIFEST records it as kek_next; every version of every key (all apps)
// that has a handle is rewrapped under its key's lock and its handle file
// replaced (or, for inline handles, its meta.json rewritten once); the provider's Commit drops the old KEK; the MANIFEST records
// the new one as kek. A key that cannot be read or rewrapped stops the
// rotation before the commit (EIO): the old KEK stays until every handle
// is under the new one. ctx is honoured between keys. A rerun that finds
// the provider already committed (it holds the recorded kek_next but not
// the recorded kek: a provider plugin restarted after a Commit whose reply
// was lost) only records the new KEK.
func (k *Keystore) RotateKEK(ctx context.Context, c Caller) (KEKRotation, error) {
	ev := k.event(c, OpKEKRotate, "", 0)
	r, err := k.rotateKEK(ctx, c, &ev)
	ev.Detail = r.detail()
	if err = k.finish(ctx, &ev, err); err != nil {
		return r, err
	}
	return r, nil
}

// detail is the audit detail of a rotation.
func (r KEKRotation) detail() string {
	if r.To == "" {
		return ""
	}
	d := "kek " + r.From + " -> " + r.To + ": " + strconv.Itoa(r.Keys) + " keys, " +
		strconv.Itoa(r.Rewrapped) + " handles rewrapped, " + strconv.Itoa(r.Unchanged) + " unchanged"
	if r.Missing > 0 {
		d += ", " + strconv.Itoa(r.Missing) + " missing"
	}
	if !r.Committed {
		d += "; not committed"
	}
	return d
}

func (k *Keystore) rotateKEK(ctx context.Context, c Caller, ev *Event) (KEKRotation, error) {
	var r KEKRotation
	if !c.Operator {
		return r, provider.Errorf(provider.EPERM, "only an operator may rotate the KEK")
	}
	rot, ok := k.p.(provider.KEKRotator)
	if !ok {
		return r, provider.Errorf(provider.ENOTSUP, "provider %s cannot rotate its KEK (docs/operations.md, KEK rotation, lists the providers that can)", k.info.Name)
	}
	if !k.rotating.TryLock() {
		return r, provider.Errorf(provider.EALREADY, "a KEK rotation is already running")
	}
	defer k.rotating.Unlock()
	if err := k.auditReady(ctx); err != nil { // not ready: a rerun records an unrecorded pending KEK
		return r, err
	}
	m, _, err := readManifest(k.st)
	if err != nil {
		return r, err
	}
	r.From = m.KEK
	if err := k.commit(ctx, *ev); err != nil {
		return r, err
	}
	if done, err := k.committedMeanwhile(ctx, m, &r); done || err != nil {
		return r, err
	}

	// Begin under kekMu: no create or rotation is between its Generate
	// and its durable handle, so every handle under the old KEK is in
	// storage for the walk to find, and every later one is under the new.
	k.kekMu.Lock()
	to, err := rot.BeginKEKRotation(ctx)
	k.kekMu.Unlock()
	if err != nil {
		return r, provider.WithOp("begin KEK rotation", "", err)
	}
	if err := provider.CheckKEKFingerprint(to); err != nil || to == m.KEK {
		return r, provider.Errorf(provider.EIO, "provider's BeginKEKRotation returned an invalid next KEK %q", to)
	}
	r.To = to
	switch m.KEKNext {
	case to:
		k.unrecorded.Store(nil)
	case "":
		m.KEKNext = to
		if err := writeManifest(k.st, m); err != nil {
			k.unrecorded.Store(&to)
			return r, err
		}
		k.unrecorded.Store(nil)
	default:
		return r, provider.Errorf(provider.EIO, "%s records a rotation to KEK %s, but the provider's pending KEK is %s; "+
			"restore the pending KEK the rotation began with (docs/operations.md)", manifestPath, m.KEKNext, to)
	}

	if err := k.rewrapAll(ctx, rot, &r); err != nil {
		return r, err
	}

	if err := k.ready(ctx); err != nil {
		return r, err
	}
	if err := rot.CommitKEKRotation(ctx); err != nil {
		return r, provider.WithOp("commit KEK rotation", "", err)
	}
	// The MANIFEST names the new KEK only once the provider holds it
	// alone (a plugin restarted without its pending KEK would otherwise
	// commit nothing and leave the state naming a KEK no one has).
	info, err := k.p.Info(ctx)
	if err != nil {
		return r, provider.WithOp("provider info", "", err)
	}
	if len(info.KEKs) != 1 || info.KEKs[0] != to {
		return r, provider.Errorf(provider.EIO, "after committing the rotation to KEK %s the provider holds KEKs %v, not that KEK alone; "+
			"%s still records the rotation (restore the pending KEK, then rerun)", to, info.KEKs, manifestPath)
	}
	r.Committed = true
	m.KEK, m.KEKNext = to, ""
	return r, writeManifest(k.st, m)
}

// committedMeanwhile finishes a rotation that the provider committed
// without the MANIFEST saying so, while the keystore ran: the MANIFEST
// records kek_next, and the provider now holds that KEK but not the
// recorded one. A provider plugin restarted by its client after a Commit
// whose reply was lost is in that state (Open finishes the same state at
// start). It reports whether it did.
func (k *Keystore) committedMeanwhile(ctx context.Context, m manifestBody, r *KEKRotation) (bool, error) {
	if m.KEKNext == "" {
		return false, nil
	}
	info, err := k.p.Info(ctx)
	if err != nil {
		return false, provider.WithOp("provider info", "", err)
	}
	if slices.Contains(info.KEKs, m.KEK) || !slices.Contains(info.KEKs, m.KEKNext) {
		return false, nil
	}
	r.To, r.Committed = m.KEKNext, true
	m.KEK, m.KEKNext = m.KEKNext, ""
	return true, writeManifest(k.st, m)
}

// rewrapAll walks every key of every app, as an operator's List does, and
// rewraps its handles. It stops at the first error of ctx; a key that
// fails is counted and the walk goes on, and then the whole is EIO.
func (k *Keystore) rewrapAll(ctx context.Context, rot provider.KEKRotator, r *KEKRotation) error {
	var errs []error
	token := ""
	for {
		page, err := k.list(ctx, Caller{Operator: true}, ListOptions{PageSize: MaxPageSize, PageToken: token, withReserved: true})
		if err != nil {
			return err
		}
		for _, u := range page.Unreadable {
			errs = append(errs, provider.WithOp("read", u.ID.String(), u.Err))
		}
		for _, m := range page.Keys {
			if err := provider.CheckContext(ctx); err != nil {
				return err
			}
			r.Keys++
			if err := k.rewrapKey(ctx, rot, m.ID, r); err != nil {
				if ctx.Err() != nil {
					return err
				}
				errs = append(errs, err)
			}
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	if len(errs) > 0 {
		const show = 3
		var b strings.Builder
		for i, e := range errs[:min(show, len(errs))] {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(e.Error())
		}
		return provider.Errorf(provider.EIO, "%d keys could not be rewrapped, so the old KEK stays and the rotation stays pending "+
			"(repair or destroy them, then run the rotation again): %s", len(errs), b.String())
	}
	return nil
}

// rewrapKey rewraps every version of id that has a handle, under the
// key's lock: each new handle in a file is durable in its file before the
// next; the new inline handles (meta.json's) are written together, in one
// rewrite of meta.json that keeps its generation (a rewrap changes no
// state the audit log tracks, as a seal reservation does not).
func (k *Keystore) rewrapKey(ctx context.Context, rot provider.KEKRotator, id KeyID, r *KEKRotation) error {
	e, err := k.writeKey(ctx, id)
	if err != nil {
		return err
	}
	defer k.unlockKey(e)
	rec := e.rec.Load()
	if rec == nil {
		return nil // gone since the listing
	}
	inline := map[int]provider.Handle{} // version index → new handle
	for i, vr := range rec.versions {
		if rec.meta.Versions[i].State == VersionDestroyed {
			continue
		}
		h, err := k.handle(vr)
		switch {
		case errors.Is(err, errHandleMissing):
			r.Missing++
			continue
		case err != nil:
			return provider.WithOp("kek-rotate", vr.refStr, err)
		}
		nh, err := rot.RewrapHandle(ctx, vr.ref, h)
		if err != nil {
			return provider.WithOp("rewrap handle", vr.refStr, err)
		}
		if len(nh) == 0 || len(nh) > provider.MaxHandle {
			return provider.Errorf(provider.EIO, "provider returned a handle of %d bytes for %s", len(nh), vr.refStr)
		}
		if bytes.Equal(nh, h) {
			r.Unchanged++
			continue
		}
		nh = slices.Clone(nh)
		if vr.inline {
			inline[i] = nh
			continue
		}
		hp := handlePath(vr.ref.ID, vr.ref.Version)
		if err := k.st.WriteFile(hp, encodeHandle(hp, nh)); err != nil {
			// The file holds the old handle or the new one (a failed
			// directory sync): both work until the commit, which this
			// failure prevents. Read it again on next use.
			vr.handle.Store(nil)
			return err
		}
		vr.handle.Store(&nh)
		r.Rewrapped++
	}
	if len(inline) == 0 {
		return nil
	}
	b := rec.body()
	for i, nh := range inline {
		b.Versions[i].Handle = nh
	}
	// On failure memory keeps the old handles and meta.json holds the old
	// ones or the new (a failed directory sync): both work until the
	// commit, which this failure prevents.
	if _, _, err := k.writeRecord(rec, b); err != nil {
		return err
	}
	for i, nh := range inline {
		rec.versions[i].handle.Store(&nh)
		r.Rewrapped++
	}
	return nil
}

// checkRotation checks a MANIFEST that records a KEK rotation (kek_next)
// against the provider's KEKs: both held is a rotation to resume; the
// next one alone is a rotation the provider committed before the
// MANIFEST said so, finished here; anything else is refused, naming what
// to restore.
func (k *Keystore) checkRotation(m manifestBody) error {
	hasOld, hasNext := slices.Contains(k.info.KEKs, m.KEK), slices.Contains(k.info.KEKs, m.KEKNext)
	switch {
	case hasOld && hasNext:
		return nil
	case hasNext:
		m.KEK, m.KEKNext = m.KEKNext, ""
		return writeManifest(k.st, m)
	case hasOld:
		return provider.Errorf(provider.EIO, "a KEK rotation from KEK %s to KEK %s was under way (recorded in %s), but the provider holds only KEK %s: "+
			"handles already rewrapped need KEK %s; restore the next KEK (for a KEK file, <kek>.next) from its backup (docs/operations.md); "+
			"refusing to open the state without it", m.KEK, m.KEKNext, manifestPath, m.KEK, m.KEKNext)
	}
	return provider.Errorf(provider.EIO, "state's keys are wrapped under KEK %s or KEK %s (a rotation was under way, recorded in %s); the provider holds KEK %s: "+
		"restore the KEKs the state was made with (see docs/operations.md) or use another state directory; "+
		"refusing to open the state with another KEK, under which none of its keys would work",
		m.KEK, m.KEKNext, manifestPath, strings.Join(k.info.KEKs, ", "))
}
