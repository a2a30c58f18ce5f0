package server

import keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"

// opNames gives each RPC the operation name used in audit records and
// metrics labels (docs/api.md lists them).
var opNames = map[string]string{
	keystorev1.Keys_Create_FullMethodName:         "keys.create",
	keystorev1.Keys_Get_FullMethodName:            "keys.get",
	keystorev1.Keys_List_FullMethodName:           "keys.list",
	keystorev1.Keys_Rotate_FullMethodName:         "keys.rotate",
	keystorev1.Keys_Revoke_FullMethodName:         "keys.revoke",
	keystorev1.Keys_RevokeVersion_FullMethodName:  "keys.revoke-version",
	keystorev1.Keys_Destroy_FullMethodName:        "keys.destroy",
	keystorev1.Keys_SetPolicy_FullMethodName:      "keys.set-policy",
	keystorev1.Keys_PublicKey_FullMethodName:      "keys.public-key",
	keystorev1.Keys_Sign_FullMethodName:           "keys.sign",
	keystorev1.Keys_Verify_FullMethodName:         "keys.verify",
	keystorev1.Keys_Seal_FullMethodName:           "keys.seal",
	keystorev1.Keys_Unseal_FullMethodName:         "keys.unseal",
	keystorev1.Keys_Rewrap_FullMethodName:         "keys.rewrap",
	keystorev1.Keys_SignBatch_FullMethodName:      "keys.sign-batch",
	keystorev1.Keys_SealBatch_FullMethodName:      "keys.seal-batch",
	keystorev1.Keys_UnsealBatch_FullMethodName:    "keys.unseal-batch",
	keystorev1.Keys_Sweep_FullMethodName:          "keys.sweep",
	keystorev1.Keys_GetUsage_FullMethodName:       "keys.get-usage",
	keystorev1.Keys_Mac_FullMethodName:            "keys.mac",
	keystorev1.Keys_VerifyMac_FullMethodName:      "keys.verify-mac",
	keystorev1.Keys_MacBatch_FullMethodName:       "keys.mac-batch",
	keystorev1.Keys_VerifyMacBatch_FullMethodName: "keys.verify-mac-batch",

	keystorev1.Keys_GenerateDataKey_FullMethodName:                 "keys.generate-data-key",
	keystorev1.Keys_GenerateDataKeyWithoutPlaintext_FullMethodName: "keys.generate-data-key-without-plaintext",
	keystorev1.Keys_Decrypt_FullMethodName:                         "keys.decrypt",
	keystorev1.Keys_GetImportParameters_FullMethodName:             "keys.get-import-parameters",
	keystorev1.Keys_Import_FullMethodName:                          "keys.import",

	keystorev1.Store_Put_FullMethodName:    "store.put",
	keystorev1.Store_Get_FullMethodName:    "store.get",
	keystorev1.Store_Delete_FullMethodName: "store.delete",
	keystorev1.Store_List_FullMethodName:   "store.list",

	keystorev1.TrustAnchors_ListAnchors_FullMethodName: "anchors.list",
	keystorev1.TrustAnchors_Verify_FullMethodName:      "anchors.verify",

	keystorev1.Admin_WrappingKeyStatus_FullMethodName: "admin.kek-status",
	keystorev1.Admin_RotateWrappingKey_FullMethodName: "admin.kek-rotate",
}

// opUnknown is the operation name of a call to a method keystore.v1 does
// not have.
const opUnknown = "unknown"

// OpName returns the audit and metrics operation name of a full gRPC
// method name ("/keystore.v1.Keys/Sign" → "keys.sign"), or "unknown".
func OpName(fullMethod string) string {
	if op, ok := opNames[fullMethod]; ok {
		return op
	}
	if op, ok := probeOps[fullMethod]; ok {
		return op
	}
	return opUnknown
}
