/* The import engine: stream a bundle through the verifying reader into a
 * registry.  Blobs are uploaded while they stream (each upload completed
 * only once the reader has checked the blob's digest, cancelled
 * otherwise), skipped when the registry has them, mounted across
 * repositories; manifests and indexes are pushed by digest only after the
 * whole bundle has been read and verified and every blob is in place; tags
 * come last.  Existence checks, uploads, manifests and tags run on
 * parallel workers, each with its own registry connection.  Prints
 * nothing. */
#ifndef FERRY_IMPORTER_H
#define FERRY_IMPORTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "breader.h"
#include "err.h"
#include "reg.h"
#include "sig.h"

/* Memory for blob data in flight, IMP_MEM bytes: large blobs take it in
 * chunks of IMP_CHUNK bytes (at most IMP_CHUNKS queued per blob), small
 * ones their exact size. */
#define IMP_CHUNK (4u * 1024u * 1024u)
#define IMP_CHUNKS 6
#define IMP_MEM ((uint64_t)IMP_CHUNKS * IMP_CHUNK)
/* Blobs up to this size go in one request once verified (POST with the
 * digest, or POST then PUT where the registry wants a session); larger
 * ones are sent in one streamed PATCH, chunk by chunk as they are read,
 * completed by a PUT once verified. */
#define IMP_SMALL (1024u * 1024u)
/* Blobs read but not yet taken by a worker. */
#define IMP_MAX_QUEUED 256u
/* Manifests and indexes are kept in memory until the blobs are in place:
 * at most this many bytes of them. */
#define IMP_MAX_DOC_BYTES (256ull * 1024u * 1024u)

struct imp_progress {
	atomic_ullong bytes_read;   /* blob bytes read from the bundle */
	atomic_ullong bytes_total;  /* blob bytes in the bundle */
	atomic_ullong bytes_pushed; /* blob bytes uploaded */
	atomic_uint blobs_pushed, blobs_skipped, blobs_mounted;
	atomic_uint manifests_pushed, tags_pushed;
	atomic_int phase; /* 0 reading, 1 manifests, 2 tags, 3 done */
};

enum imp_event_type { IMP_EV_BLOB, IMP_EV_MANIFEST, IMP_EV_TAG };

struct imp_event {
	enum imp_event_type type;
	const char *repo;
	const char *what; /* digest or tag */
	uint64_t size;
	const char *action; /* "pushed", "skipped", "mounted", "would push" */
};

struct imp_opts {
	const struct reg_opts *reg;
	const char *host;   /* target registry API host */
	const char *prefix; /* repository prefix or NULL */
	bool keep_registry;
	int jobs;
	bool dry_run;
	bool allow_rollback;
	const char *state_dir; /* rollback state; NULL: default */
	bool create_projects;
	bool public_projects;
	const struct sig_key *key;
	struct imp_progress *progress;
	void (*event)(void *ctx, const struct imp_event *ev);
	void *event_ctx;
};

struct imp_image {
	char *source; /* reference in the bundle */
	char *target; /* HOST/REPO[:TAG|@DIGEST] */
	char *repo;
	struct digest digest;
	unsigned pushed, skipped, mounted;
	uint64_t bytes_pushed;
};

struct imp_result {
	struct bundle_header hdr;
	struct imp_image *images;
	size_t nimages;
	bool already_imported;
	char *stale; /* recorded as imported, but this target lacked its tag */
	uint64_t blobs, blob_bytes;
	unsigned pushed, skipped, mounted;
	uint64_t bytes_pushed, bytes_to_push;
	unsigned manifests_pushed, manifests_skipped, tags;
	unsigned projects_created, projects_to_create; /* Harbor */
	/* SPEC §6: attachment tags written, referrers indexes written or
	 * merged; whether the target indexes referrers (1 yes, -1 no, 0 not
	 * known: nothing attached needed it) */
	unsigned attach_tags, referrers_indexes;
	int target_indexes_referrers;
};

int imp_run(const struct imp_opts *o, const char *bundle,
	    struct imp_result *res, struct ferr *e);
void imp_result_release(struct imp_result *r);

/* Where a bundle reference goes: "docker.io/goharbor/x:v1" with prefix
 * "mirror" -> repo "mirror/goharbor/x" (keep_registry: "mirror/docker.io/
 * goharbor/x"); a registry's ':' port separator becomes '-'. */
int imp_target_repo(const char *ref, const char *prefix, bool keep_registry,
		    char **repo, char **tag, struct ferr *e);

char *imp_default_state_dir(void);

/* The key of a target in the rollback record: host lowercased, the
 * scheme's default port dropped (443 for "https", 80 for "http"), the
 * prefix without leading or trailing '/'.  -1 when it does not fit. */
int imp_target_key(const char *host, const char *prefix, const char *scheme,
		   char *out, size_t n);

#endif
