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

/* A cosign tag (".sig", ".att") that the target registry already holds
 * with other content.  cosign adds each new signature or attestation as
 * one more layer of the manifest at the tag, so a site's own signatures
 * live there beside upstream's; import keeps them.  Layers are compared
 * as whole descriptors: one payload signed by two keys is two layers. */
enum cosign_merge {
	COSIGN_MERGE_OURS,   /* the target's layers are all in ours: ours */
	COSIGN_MERGE_THEIRS, /* ours are all in the target's: leave it */
	COSIGN_MERGE_BOTH,   /* neither: the target's, ours appended */
	COSIGN_MERGE_REPLACE /* the target's is not cosign's: ours */
};

#define COSIGN_MT_DSSE "application/vnd.dsse.envelope.v1+json"

/* Which of those `have` (the target's manifest) and `ours` (the bundle's)
 * call for.  Only a target manifest whose every layer has media type
 * `layer_mt` (COSIGN_MT_SIMPLESIGNING at .sig, COSIGN_MT_DSSE at .att)
 * holds signatures to keep; anything else at the tag is replaced.
 * FERR_INPUT when the bundle's is not an image manifest, or the merge
 * would exceed FERRY_MAX_SIG_LAYERS. */
int cosign_merge_plan(const unsigned char *have, size_t hlen,
		      const unsigned char *ours, size_t olen,
		      const char *layer_mt, enum cosign_merge *out,
		      struct ferr *e);

/* The config descriptor of image manifest `m`. */
int cosign_config_of(const unsigned char *m, size_t len, struct digest *d,
		     uint64_t *size, struct ferr *e);

/* COSIGN_MERGE_BOTH: the target's config with each appended layer's
 * diff_id (and history entry, where ours has one per layer) added, as
 * cosign appends them; then the target's manifest with the layers and
 * that config.  *config and *manifest are compact JSON, to free(). */
int cosign_merge_build(const unsigned char *have, size_t hlen,
		       const unsigned char *have_cfg, size_t hclen,
		       const unsigned char *ours, size_t olen,
		       const unsigned char *ours_cfg, size_t oclen,
		       char **config, char **manifest, struct ferr *e);

#endif
