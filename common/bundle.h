/* Bundle format v1 (docs/format.md): entry names, and the documents that
 * describe a bundle (ferry.json, index.json, manifest.json, SHA256SUMS). */
#ifndef FERRY_BUNDLE_H
#define FERRY_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

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

/* Supply-chain metadata attached to an image's manifests (SPEC §6):
 * a cosign signature, attestation or SBOM (reached by its tag
 * "sha256-<hex>.sig", ".att", ".sbom"), an OCI 1.1 referrer (a manifest
 * whose "subject" is the digest), or the index of a subject's referrers
 * (the fallback tag "sha256-<hex>").  Tags are in the image's repository;
 * in the bundle, each tag has its own descriptor in index.json. */
enum bundle_attach_kind {
	BA_SIGNATURE = 0, /* .sig */
	BA_ATTESTATION,	  /* .att */
	BA_SBOM,	  /* .sbom */
	BA_REFERRER,	  /* untagged, found through the referrers */
	BA_REFERRERS	  /* the referrers index (fallback tag) */
};

struct bundle_attach {
	enum bundle_attach_kind kind;
	struct digest subject; /* what it is attached to */
	struct digest digest;
	const char *media_type; /* static: one of the MT_ manifest types */
	uint64_t size;
	char *artifact_type; /* or NULL */
	char *tag;	     /* BA_REFERRER: NULL */
};

/* "sha256-<hex>" plus the kind's suffix; BA_REFERRER has none ("").
 * out holds at least BUNDLE_ATTACH_TAG_MAX bytes. */
#define BUNDLE_ATTACH_TAG_MAX 80
void bundle_attach_tag(enum bundle_attach_kind k, const struct digest *subject,
		       char *out);
const char *bundle_attach_kind_name(enum bundle_attach_kind k);
/* The kind named so in ferry.json, or -1. */
int bundle_attach_kind_parse(const char *name);
/* Free what n attachments own, and the array; safe on NULL. */
void bundle_attached_release(struct bundle_attach *a, size_t n);
/* Kind of a tag of that shape for `subject`: -1 when it is none. */
int bundle_attach_kind_of_tag(const char *tag, const struct digest *subject);

/* The repository part of a normalised reference (no tag, no digest). */
char *bundle_ref_repo(const char *ref);

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
	/* what is attached to its manifests, in bundle order */
	struct bundle_attach *attached;
	size_t nattached;
	/* --verify-cosign-key: the key id that verified its signature, and
	 * the digest that signature names when the bundle carries another
	 * top (a --platform subset of an index) */
	char *cosign_key_id;
	bool has_signed;
	struct digest signed_digest;
};

/* An image's attachments as ferry.json lists them (a new reference). */
json_t *bundle_attached_json(const struct bundle_image *im);

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
