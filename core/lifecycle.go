package core

import "github.com/nexus-os/keystored/core/provider"

// The lifecycle state machine, as ONE table: for each operation and the
// state of the key it names, the result. allow means the operation
// proceeds (to the version table below, then to its work); any other value
// is the error code returned, before any work. docs/lifecycle.md prints
// this table; TestLifecycleTable checks every cell through the public API.
//
// Columns: active, revoked, destroyed, missing.
const allow provider.Code = 0

type keyColumn uint8

const (
	colActive keyColumn = iota
	colRevoked
	colDestroyed
	colMissing
	keyColumns
)

var lifecycle = [opEnd]*[keyColumns]provider.Code{
	//                   active          revoked               destroyed             missing
	OpCreate:                          {provider.EALREADY, provider.EALREADY, provider.EALREADY, allow},
	OpRotate:                          {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpRevoke:                          {allow, provider.EALREADY, provider.EALREADY, provider.ENOENT},
	OpDestroy:                         {provider.EPERM, allow, provider.EALREADY, provider.ENOENT},
	OpSign:                            {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpSeal:                            {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpVerify:                          {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpUnseal:                          {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpRewrap:                          {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpRevokeVersion:                   {allow, provider.EALREADY, provider.EALREADY, provider.ENOENT},
	OpSetPolicy:                       {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpPublicKey:                       {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpGet:                             {allow, allow, allow, provider.ENOENT},
	OpMAC:                             {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpVerifyMAC:                       {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpGenerateDataKey:                 {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpGenerateDataKeyWithoutPlaintext: {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpDecrypt:                         {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	// import-parameters and import create a missing key, add a version to
	// an active (imported) one
	OpImportParameters: {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, allow},
	OpImport:           {allow, provider.EKEYREVOKED, provider.EKEYREVOKED, allow},
}

// The version table: for operations that name one version, the result by
// the state of that version. Seal and MAC always use the primary version
// and need no row; Sign does too unless the caller names a version (a
// long-lived signer bound to the public key it reports), which it may
// while that version is primary or retired. Unseal and Rewrap read the
// version from an untrusted envelope, so a version the key never had is a
// malformed message.
//
// Columns: primary, retired, revoked, destroyed, missing.
type versionColumn uint8

const (
	colPrimary versionColumn = iota
	colRetired
	colVersionRevoked
	colVersionDestroyed
	colVersionMissing
	versionColumns
)

var versionTable = [opEnd]*[versionColumns]provider.Code{
	//                   primary          retired  revoked               destroyed             missing
	OpSign:          {allow, allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpVerify:        {allow, allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpVerifyMAC:     {allow, allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpUnseal:        {allow, allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.EBADMSG},
	OpRewrap:        {allow, allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.EBADMSG},
	OpPublicKey:     {allow, allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
	OpRevokeVersion: {provider.EPERM, allow, provider.EALREADY, provider.EALREADY, provider.ENOENT},
	OpDecrypt:       {allow, allow, provider.EKEYREVOKED, provider.EKEYREVOKED, provider.ENOENT},
}

func keyColumnOf(m *Metadata) keyColumn {
	if m == nil {
		return colMissing
	}
	switch m.State {
	case StateActive:
		return colActive
	case StateRevoked:
		return colRevoked
	}
	return colDestroyed
}

func versionColumnOf(m *Metadata, v Version) versionColumn {
	vi, ok := m.Version(v)
	if !ok {
		return colVersionMissing
	}
	switch vi.State {
	case VersionPrimary:
		return colPrimary
	case VersionRetired:
		return colRetired
	case VersionRevoked:
		return colVersionRevoked
	}
	return colVersionDestroyed
}

// checkKey applies the key table: nil to proceed, else the refusal.
func checkKey(op Op, m *Metadata) error {
	if op >= opEnd || lifecycle[op] == nil {
		return provider.Errorf(provider.EINVAL, "operation %s has no lifecycle row", op)
	}
	code := lifecycle[op][keyColumnOf(m)]
	if code == allow {
		return nil
	}
	return provider.Errorf(code, "%s", keyRefusal(op, m, code))
}

// checkVersion applies the version table for ops naming a version.
func checkVersion(op Op, m *Metadata, v Version) error {
	if op >= opEnd || versionTable[op] == nil {
		return provider.Errorf(provider.EINVAL, "operation %s has no version row", op)
	}
	code := versionTable[op][versionColumnOf(m, v)]
	if code == allow {
		return nil
	}
	return provider.Errorf(code, "%s", versionRefusal(op, m, v, code))
}

func keyRefusal(op Op, m *Metadata, code provider.Code) string {
	switch {
	case m == nil:
		return "no such key"
	case op == OpCreate:
		return "key exists (" + m.State.String() + "); key IDs are never reused"
	case op == OpDestroy && m.State == StateActive:
		return "key is active; revoke it before destroying it"
	case code == provider.EALREADY:
		return "key is already " + m.State.String()
	case code == provider.EKEYREVOKED:
		return "key is " + m.State.String()
	}
	return code.Error()
}

func versionRefusal(op Op, m *Metadata, v Version, code provider.Code) string {
	vi, ok := m.Version(v)
	switch {
	case !ok && code == provider.EBADMSG:
		return "sealed data names a version the key never had"
	case !ok:
		return "no such version"
	case op == OpRevokeVersion && vi.State == VersionPrimary:
		return "version " + v.String() + " is the primary version; rotate before revoking it"
	case code == provider.EALREADY:
		return "version " + v.String() + " is already " + vi.State.String()
	}
	return "version " + v.String() + " is " + vi.State.String()
}
