/* The export engine's internals, shared by its files: the item table
 * (exporter.c), resolution (resolve.c) and the parallel prefetch of
 * manifests (prefetch.c).  Not a public interface. */
#ifndef FERRY_EXPORT_INTERNAL_H
#define FERRY_EXPORT_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

#include <jansson.h>

#include "exporter.h"

#define COPY_CHUNK (1024 * 1024)
#define MAX_CLIENTS 64
/* Workers of one parallel phase, at most (--jobs is at most 64, and the
 * download workers past this many use clients of their own). */
#define EXP_POOL_MAX 32

enum item_kind { K_INDEX = 0, K_MANIFEST = 1, K_CONFIG = 2, K_LAYER = 3 };
enum item_state { S_PENDING = 0, S_DONE, S_FAILED };

/* One blob entry of the bundle. */
struct item {
	struct digest d;
	uint64_t size;
	enum item_kind kind;
	const char *media_type; /* manifests and indexes */
	unsigned char *data;	/* manifests and indexes live in memory */
	char *host, *repo;	/* where configs and layers are fetched */
	size_t seq;		/* order of first appearance */
	int state;
	bool cached;
	bool omitted; /* a delta's bases carry it */
	bool json;    /* a config a descriptor calls JSON */
	/* image manifests: their parts, for manifest.json */
	struct digest cfg;
	struct digest *layers;
	size_t nlayers;
	char *platform; /* from the config, when fetched early */
	size_t *images; /* configs and layers: images that need it */
	size_t nimages;
};

struct client_slot {
	char *host;
	struct reg_client *c;
};

struct clients {
	struct client_slot v[MAX_CLIENTS];
	size_t n;
};

/* A manifest or index fetched by the prefetch pass, or a config it put in
 * the blob cache (media type MDOC_CONFIG, no data). */
#define MDOC_CONFIG "config"
struct mdoc {
	struct digest d;
	char *media_type;
	unsigned char *data;
	size_t len;
	bool ready;
	bool cached; /* a config: already in the blob cache before this run */
};

struct mstore {
	struct mdoc **v; /* open addressing by digest */
	size_t n, cap;
};

/* What the prefetch pass learnt of each reference. */
struct ref_top {
	bool ok, failed;
	struct digest d; /* its top manifest or index */
	struct ferr err; /* when failed */
};

struct exporter;
/* A worker's argument: the exporter, and which worker it is. */
struct wslot {
	struct exporter *x;
	size_t k;
};

struct exporter {
	const struct exp_opts *o;
	struct reg_opts ropts;
	atomic_int abort; /* read by the registry clients of every thread */
	/* Items are allocated one by one and never move: callers keep
	 * pointers to them across add_item (the array of pointers grows). */
	struct item **items;
	size_t nitems, cap;
	size_t *ht; /* open addressing: index+1, 0 = empty */
	size_t htcap;
	struct bundle_image *images;
	size_t nimages;
	size_t *img_left; /* configs and layers each image still waits for */
	struct clients main_clients;
	char *blobdir, *partdir;
	/* workers */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t *queue;
	size_t nqueue, qnext;
	bool failed;
	struct ferr werr;
	pthread_mutex_t evmu;
	struct exp_progress dummy_progress;
	struct exp_progress *pr;
	/* prefetch (one entry per image) */
	const struct ref **refs;
	struct mstore store;
	struct ref_top *tops;
	size_t next_image; /* exp_each_image */
	/* Worker k's registry clients, kept from one parallel phase to the
	 * next (prefetch, discovery, downloads): a connection opened once is
	 * reused, not opened again by the next phase's workers. */
	struct clients pool[EXP_POOL_MAX];
	struct wslot *wslots; /* the download workers' */
	void (*each_fn)(struct exporter *x, struct clients *cs, size_t i);
	/* referrers.c */
	struct disc *disc;
	/* delta: the bases' ids, and every digest they carry or omit */
	char **base_ids;
	size_t nbases;
	struct digest *base_has; /* sorted */
	size_t nbase_has;
};

char *exp_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void exp_emit(struct exporter *x, const struct exp_event *ev);
struct item *exp_find_item(struct exporter *x, const struct digest *d);
struct item *exp_add_item(struct exporter *x, const struct digest *d,
			  uint64_t size, enum item_kind kind, const char *host,
			  const char *repo, struct ferr *e);
struct reg_client *exp_client_for(struct exporter *x, struct clients *cs,
				  const char *host, struct ferr *e);
void exp_clients_release(struct clients *cs);
int exp_fetch_item(struct exporter *x, struct reg_client *cl, struct item *it,
		   struct ferr *e);
/* A blob the caller fetched and checked, into the cache (best effort). */
void exp_cache_put(struct exporter *x, const struct digest *d, const void *p,
		   size_t n);
void exp_blob_done_event(struct exporter *x, struct item *it);

/* Run fn(x, clients, i) for every image i on n workers, each with
 * registry clients of its own; fn records its own failure.  Images are
 * taken in order; an interrupt stops the taking (FERR_INTERRUPT). */
int exp_each_image(struct exporter *x, size_t n,
		   void (*fn)(struct exporter *x, struct clients *cs, size_t i),
		   struct ferr *e);
/* --jobs (default 4). */
size_t exp_jobs(const struct exporter *x);

/* resolve.c: platforms and descriptors */
struct platform {
	char os[64], arch[64], variant[64];
};
int exp_platform_parse(const char *s, struct platform *p);
void exp_platform_of_json(json_t *o, struct platform *p);
char *exp_platform_str(const struct platform *p);
bool exp_platform_match(const struct platform *want,
			const struct platform *have);
bool exp_is_index_type(const char *mt);
int exp_parse_desc(json_t *d, struct digest *dg, uint64_t *size,
		   const char **mt, const char *where, struct ferr *e);

int exp_fetch_child(struct reg_client *cl, const char *repo,
		    const struct digest *d, uint64_t size, const char *dmt,
		    struct reg_manifest *m, struct ferr *e);

/* prefetch.c: fetch every image's manifests in parallel, once per digest,
 * into x->store (x->refs and x->images are set). */
int exp_prefetch(struct exporter *x, struct ferr *e);
const struct mdoc *exp_store_get(struct exporter *x, const struct digest *d);
void exp_store_release(struct exporter *x);

/* delta.c: read the --base bundles' heads (signature checked with the
 * public half of the signing key); is `d` one they carry or omit? */
int exp_load_bases(struct exporter *x, struct ferr *e);
bool exp_base_has(const struct exporter *x, const struct digest *d);
void exp_bases_release(struct exporter *x);

/* resolve.c: an attached manifest or referrers index of image `img` (its
 * data taken), with its config and layers. */
int exp_add_attached(struct exporter *x, size_t img, const char *host,
		     const char *repo, struct reg_manifest *m, const char *what,
		     struct ferr *e);

/* referrers.c: what is attached to every image's manifests (SPEC §6):
 * found in parallel, checked against --verify-cosign-key, then added to
 * the item table and to each image's `attached`, in image order. */
int exp_discover(struct exporter *x, struct ferr *e);
void exp_discover_release(struct exporter *x);

/* resolve.c: resolve one reference into x->images[i] and the item table. */
int exp_resolve_one(struct exporter *x, const struct ref *r,
		    struct bundle_image *im, struct ferr *e);

#endif
