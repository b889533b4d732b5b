/* cosign's signatures, checked with ferry's own code (SPEC §6).
 *
 * cosign stores the signatures of an image at the tag "sha256-<hex>.sig" of
 * its repository: an image manifest whose layers are simple-signing
 * payloads (media type COSIGN_MT_SIMPLESIGNING), each with its signature
 * in the COSIGN_ANNOT_SIG annotation (base64).  A payload is JSON naming
 * the image's digest in critical.image.docker-manifest-digest; a key-based
 * signature is ECDSA P-256 with SHA-256 over the payload bytes (DER), which
 * is what sig_verify checks for an ECDSA key (RSA and Ed25519 keys are
 * checked the way sig.h describes).  Keyless (certificate and transparency
 * log) signatures need the internet and are not checked here.
 */
#ifndef FERRY_COSIGN_H
#define FERRY_COSIGN_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"
#include "sig.h"

#define COSIGN_MT_SIMPLESIGNING                                                \
	"application/vnd.dev.cosign.simplesigning.v1+json"
#define COSIGN_ANNOT_SIG "dev.cosignproject.cosign/signature"
#define COSIGN_PAYLOAD_TYPE "cosign container image signature"

struct cosign_layer {
	struct digest digest; /* the payload blob */
	uint64_t size;
	char *sig_b64; /* the annotation, as given */
};

/* The simple-signing layers of a signature manifest (other layers are
 * skipped); *out is NULL when there are none. */
int cosign_sig_layers(const unsigned char *manifest, size_t len,
		      struct cosign_layer **out, size_t *n, struct ferr *e);
void cosign_layers_release(struct cosign_layer *l, size_t n);

/* Is `payload` a cosign simple-signing payload for `image`?  FERR_VERIFY
 * when it names another digest or is not one (over FERRY_MAX_COSIGN_PAYLOAD
 * bytes, not JSON, another type). */
int cosign_payload_check(const unsigned char *payload, size_t n,
			 const struct digest *image, struct ferr *e);

/* Check one signature layer: the payload names `image` and `sig_b64`
 * verifies over it with one of the keys (*which: its index).  FERR_VERIFY
 * otherwise. */
int cosign_verify(const struct sig_key *keys, size_t nkeys,
		  const unsigned char *payload, size_t n, const char *sig_b64,
		  const struct digest *image, size_t *which, struct ferr *e);

#endif
