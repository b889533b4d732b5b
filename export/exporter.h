/* The export engine: resolve references, fetch and verify everything they
 * need (in parallel, through a resumable cache), and write one signed
 * bundle (docs/format.md).  Prints nothing: progress is reported through
 * counters and an event callback. */
#ifndef FERRY_EXPORTER_H
#define FERRY_EXPORTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "arc.h"
#include "bundle.h"
#include "err.h"
#include "ref.h"
#include "reg.h"
#include "sig.h"

/* --base bundles one export may name. */
#define EXP_MAX_BASES 16
#define EXP_MAX_BASES_STR "16"
/* --verify-cosign-key keys one export may name. */
#define EXP_MAX_COSIGN_KEYS 16
#define EXP_MAX_COSIGN_KEYS_STR "16"

enum exp_phase { EXP_RESOLVING, EXP_FETCHING, EXP_DONE };

/* Live counters, readable from any thread. */
struct exp_progress {
	atomic_int phase;
	atomic_uint images_total, images_resolved, images_done;
	atomic_uint blobs_total, blobs_done;
	atomic_ullong bytes_total;   /* configs + layers */
	atomic_ullong bytes_done;    /* fetched or found in the cache */
	atomic_ullong bytes_cached;  /* of which from the cache */
	atomic_ullong bytes_written; /* uncompressed bytes in the bundle */
};

enum exp_event_type {
	EXP_EV_RESOLVED,
	EXP_EV_BLOB,
	EXP_EV_IMAGE_DONE,
	EXP_EV_FAILED /* an image that cannot be exported (all are listed) */
};

struct exp_event {
	enum exp_event_type type;
	const char *ref;    /* EXP_EV_RESOLVED, EXP_EV_IMAGE_DONE */
	const char *digest; /* EXP_EV_RESOLVED: top digest; EXP_EV_BLOB */
	uint64_t size;
	bool cached;	/* EXP_EV_BLOB: taken from the cache */
	unsigned count; /* EXP_EV_BLOB: blobs done so far, this one included */
	const struct ferr *err; /* EXP_EV_FAILED: why */
};

struct exp_opts {
	const struct reg_opts *reg;
	const char *cache_dir;
	int jobs;
	enum arc_compress compress;
	int threads;		      /* compression threads */
	const char *const *platforms; /* NULL: all */
	size_t nplatforms;
	const struct sig_key *key;
	const char *channel;
	uint64_t sequence;
	time_t created;
	uint64_t split_size; /* 0: one file; else parts of this many bytes */
	/* a delta over these earlier bundles (files or .parts) */
	const char *const *bases;
	size_t nbases;
	/* SPEC §6: leave out what is attached to the images (--referrers
	 * none); else carry it.  With cosign keys, every reference's top
	 * digest must carry a signature that one of them verifies. */
	bool no_referrers;
	const struct sig_key *cosign_keys;
	size_t ncosign_keys;
	struct exp_progress *progress; /* may be NULL */
	/* Serialised: called from one thread at a time. */
	void (*event)(void *ctx, const struct exp_event *ev);
	void *event_ctx;
};

struct exp_result {
	struct bundle_meta meta;
	struct bundle_image *images;
	size_t nimages;
	size_t nblobs;		/* every blob entry, manifests included */
	uint64_t blob_bytes;	/* sum of blob entry sizes */
	uint64_t bytes_fetched; /* configs and layers downloaded */
	uint64_t bytes_cached;	/* configs and layers taken from the cache */
	uint64_t bundle_bytes;	/* size of the bundle (all parts) */
	size_t nparts;		/* split volumes written; 0: one file */
};

/* Export `refs` into `out_path` ("-": standard output; with split_size,
 * out_path.001, ... and out_path.parts and .parts.sig).  Files appear only
 * on success (written to temporary names, fsynced, then linked into
 * place); an existing file is never replaced. */
int exp_run(const struct exp_opts *o, const struct ref *refs, size_t nrefs,
	    const char *out_path, struct exp_result *res, struct ferr *e);
void exp_result_release(struct exp_result *r);

/* Default cache directory: $XDG_CACHE_HOME/ferry or ~/.cache/ferry. */
char *exp_default_cache_dir(void);

#endif
