/* Bundle format v1 (docs/format.md): entry names, and the documents that
 * describe a bundle (ferry.json, index.json, manifest.json, SHA256SUMS). */
#ifndef FERRY_BUNDLE_H
#define FERRY_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "digest.h"
#include "err.h"

#define BUNDLE_FORMAT_VERSION 1
#define BUNDLE_OCI_LAYOUT "oci-layout"
#define BUNDLE_FERRY_JSON "ferry.json"
#define BUNDLE_INDEX_JSON "index.json"
#define BUNDLE_MANIFEST_JSON "manifest.json"
#define BUNDLE_SUMS "SHA256SUMS"
#define BUNDLE_SUMS_SIG "SHA256SUMS.sig"
#define BUNDLE_BLOB_PREFIX "blobs/sha256/"
#define BUNDLE_OCI_LAYOUT_CONTENT "{\"imageLayoutVersion\":\"1.0.0\"}"
#define BUNDLE_ANNOT_REF "org.opencontainers.image.ref.name"
#define BUNDLE_ANNOT_CONTAINERD "io.containerd.image.name"

/* One exported tag (or digest reference). */
struct bundle_image {
	char *ref;	      /* full normalised reference */
	struct digest digest; /* what the reference points to in the bundle */
	const char *media_type;
	uint64_t doc_size; /* size of that manifest or index */
	char **platforms;  /* "os/arch[/variant]" */
	size_t nplatforms;
	uint64_t total_size; /* every blob reachable from it, once */
	/* for manifest.json (docker load): one image manifest's parts */
	bool has_docker;
	struct digest docker_config;
	struct digest *docker_layers;
	size_t ndocker_layers;
};

/* Free what each of the n images owns, and the array; safe on NULL. */
void bundle_images_release(struct bundle_image *im, size_t n);

struct bundle_meta {
	time_t created;
	const char *channel;
	uint64_t sequence;
	const char *key_id;
	char bundle_id[65];
	/* a delta bundle: the bundles it builds on, and the configs and
	 * layers it refers to but leaves out because they carry them */
	const char *const *bases;
	size_t nbases;
	const struct digest *omitted;
	size_t nomitted;
};

/* RFC 3339 UTC, "2026-11-29T14:00:00Z". */
void bundle_time_format(time_t t, char out[32]);

/* bundleId = sha256 over the creation time, channel, sequence, the digest
 * of index.json and every blob digest (sorted); see docs/format.md. */
int bundle_compute_id(struct bundle_meta *m, const char *index_json,
		      size_t index_len, const struct digest *blobs,
		      size_t nblobs, struct ferr *e);

/* Documents, malloc'd NUL-terminated text. */
char *bundle_index_json(const struct bundle_image *im, size_t n);
char *bundle_manifest_json(const struct bundle_image *im, size_t n);
char *bundle_ferry_json(const struct bundle_meta *m,
			const struct bundle_image *im, size_t n);

/* A SHA256SUMS line source. */
struct bundle_sum {
	const char *path;
	struct digest digest;
};
/* "<hex>  <path>\n" sorted by path (byte order). */
char *bundle_sums_text(const struct bundle_sum *sums, size_t n);

#endif
