package pkcs11

/*
// CK_EDDSA_PARAMS (PKCS#11 3.0, section 2.3.14), which
// github.com/miekg/pkcs11 v1.1.2 lacks, with the C types the PKCS#11
// headers give its fields (CK_BBOOL, CK_ULONG, CK_BYTE_PTR), so the C
// compiler lays it out.
typedef struct {
	unsigned char phFlag;
	unsigned long ulContextDataLen;
	unsigned char *pContextData;
} keystored_eddsa_params;
*/
import "C"

import "unsafe"

// eddsaParams returns CK_EDDSA_PARAMS with an empty context and the
// prehash flag ph, as the bytes of a CKM_EDDSA mechanism parameter. The
// structure holds no pointer (pContextData is NULL), so its bytes can be
// copied like any parameter.
func eddsaParams(ph bool) []byte {
	var p C.keystored_eddsa_params
	if ph {
		p.phFlag = 1
	}
	return C.GoBytes(unsafe.Pointer(&p), C.int(unsafe.Sizeof(p)))
}
