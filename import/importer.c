#include "importer.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "cosign.h"
#include "ref.h"

#define MAX_WORKERS 16

/* ---- naming ---- */

/* --keep-registry: the source registry as one repository path component
 * (lowercase, ':' as '-', an IPv6 address's brackets dropped, and no
 * separator at either end, which the reference grammar forbids):
 * "Reg.io:5000" -> "reg.io-5000", "[::1]:5000" -> "1-5000". */
static void keep_name(const char *domain, char *out, size_t n)
{
	size_t len = 0, start = 0;

	for (const char *p = domain; *p && len + 1 < n; p++) {
		if (*p == '[' || *p == ']')
			continue;
		out[len++] = *p == ':'		      ? '-'
			     : *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a')
						      : *p;
	}
	while (len && !((out[len - 1] >= 'a' && out[len - 1] <= 'z') ||
			(out[len - 1] >= '0' && out[len - 1] <= '9')))
		len--;
	out[len] = '\0';
	while (out[start] && !((out[start] >= 'a' && out[start] <= 'z') ||
			       (out[start] >= '0' && out[start] <= '9')))
		start++;
	memmove(out, out + start, len - start + 1);
}

int imp_target_repo(const char *refstr, const char *prefix, bool keep_registry,
		    char **repo, char **tag, struct ferr *e)
{
	struct ref r;
	char dom[300];
	size_t n;
	int rc = -1;

	*repo = *tag = NULL;
	if (ref_parse(&r, refstr, e) < 0)
		return -1;
	keep_name(r.domain, dom, sizeof(dom));
	n = (prefix ? strlen(prefix) + 1 : 0) +
	    (keep_registry ? strlen(dom) + 1 : 0) + strlen(r.path) + 1;
	*repo = malloc(n);
	if (!*repo) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	snprintf(*repo, n, "%s%s%s%s%s", prefix ? prefix : "",
		 prefix ? "/" : "", keep_registry ? dom : "",
		 keep_registry ? "/" : "", r.path);
	if (r.tag && !(*tag = strdup(r.tag))) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	rc = 0;
out:
	if (rc < 0) {
		free(*repo);
		*repo = NULL;
	}
	ref_release(&r);
	return rc;
}

char *imp_default_state_dir(void)
{
	const char *x = getenv("XDG_STATE_HOME");
	const char *h = getenv("HOME");
	char *s = NULL;
	size_t n;

	if (x && *x == '/') {
		n = strlen(x) + 8;
		if ((s = malloc(n)))
			snprintf(s, n, "%s/ferry", x);
	} else if (h && *h) {
		n = strlen(h) + 24;
		if ((s = malloc(n)))
			snprintf(s, n, "%s/.local/state/ferry", h);
	}
	return s;
}

/* ---- index: key -> position, open addressing ---- */

struct idx {
	size_t *slot; /* position + 1; 0: empty */
	size_t cap, n;
};
typedef const char *(*idx_key_fn)(const void *ctx, size_t pos);

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

/* The slot holding `key`, or the empty one where it would go. */
static size_t *idx_slot(const struct idx *ix, const char *key, idx_key_fn kf,
			const void *ctx)
{
	size_t m = ix->cap - 1, i = (size_t)str_hash(key) & m;

	while (ix->slot[i] && strcmp(kf(ctx, ix->slot[i] - 1), key) != 0)
		i = (i + 1) & m;
	return &ix->slot[i];
}

static bool idx_find(const struct idx *ix, const char *key, idx_key_fn kf,
		     const void *ctx, size_t *pos)
{
	size_t *s;

	if (!ix->cap)
		return false;
	s = idx_slot(ix, key, kf, ctx);
	if (!*s)
		return false;
	*pos = *s - 1;
	return true;
}

/* Record `key` (not in the index yet) at `pos`. */
static int idx_add(struct idx *ix, const char *key, size_t pos, idx_key_fn kf,
		   const void *ctx)
{
	if ((ix->n + 1) * 2 > ix->cap) {
		struct idx nx;
		nx.cap = ix->cap ? ix->cap * 2 : 64;
		nx.n = ix->n;
		nx.slot = calloc(nx.cap, sizeof(*nx.slot));
		if (!nx.slot)
			return -1;
		for (size_t i = 0; i < ix->cap; i++)
			if (ix->slot[i])
				*idx_slot(&nx, kf(ctx, ix->slot[i] - 1), kf,
					  ctx) = ix->slot[i];
		free(ix->slot);
		*ix = nx;
	}
	*idx_slot(ix, key, kf, ctx) = pos + 1;
	ix->n++;
	return 0;
}

static void idx_release(struct idx *ix)
{
	free(ix->slot);
	memset(ix, 0, sizeof(*ix));
}

/* ---- engine state ---- */

/* What this run knows about a target repository.  FRESH: it had no tag
 * and lacked the first blob asked for, so no blob of the bundle is there
 * but what this run puts there: existence checks are skipped. */
enum repo_state { REPO_UNPROBED, REPO_PROBING, REPO_FRESH, REPO_SEEN };

struct repo {
	char *name;
	enum repo_state state;
};

struct doc { /* a manifest or index, kept until the blobs are in place */
	char media_type[128];
	unsigned char *data;
	size_t len;
	int kind;
	bool has_subject; /* an OCI 1.1 referrer */
};

struct dset { /* which target repositories need a digest */
	struct digest d;
	size_t *repos;
	bool *placed; /* this run put it there (so it was not there before) */
	size_t n;
	struct doc *doc; /* manifests and indexes only */
	/* attached to an image (SPEC §6): pushed after the images' own
	 * documents; a referrers index is written by tag only, merged */
	bool attach, rindex;
};

struct job { /* one blob, from the reader to a worker */
	struct digest d;
	uint64_t size;
	struct dset *set;
	unsigned char *small; /* a small blob's whole content */
	size_t small_len;
	unsigned char *ring[IMP_CHUNKS]; /* a large blob's chunks in flight */
	size_t rlen[IMP_CHUNKS];
	size_t rhead, rcount;
	size_t rpos; /* read position inside the head chunk */
	bool data_done;
	bool discard; /* the worker wants no more data */
	int verdict;  /* 0 pending, 1 verified, -1 aborted */
	int refs;     /* reader and worker */
	struct job *next;
	struct imp *x;
};

struct item { /* a manifest to push into a repository */
	struct dset *s;
	size_t repo;
};

struct atag { /* an attachment's tag in one target repository */
	size_t repo;
	const struct bundle_attach *a;
	char *key; /* "<repository>:<tag>" */
	/* a referrers index, prepared before any tag is written: */
	bool indexed; /* the target indexes referrers: no tag */
	bool have;    /* the target has the tag already */
	bool same;    /* ... listing every entry of the bundle's */
	char *merged; /* else what to write there (NULL: the bundle's) */
	/* a cosign tag (.sig, .att), looked at before any tag is written: */
	bool looked; /* have/same say what the target holds */
	bool kept;   /* the target's holds the bundle's layers and more */
	bool merge;  /* the target's and the bundle's, merged */
	struct digest merged_digest;
	char merged_mt[128]; /* the target's manifest type, kept */
};

struct imp;
struct wctx {
	struct imp *x;
	size_t id; /* which client */
};
typedef int (*item_fn)(struct imp *x, struct reg_client *c, size_t i,
		       struct ferr *e);

struct imp {
	const struct imp_opts *o;
	struct reg_opts ropts;
	struct imp_progress dummy, *pr;
	struct reg_client *main;
	struct reg_client *clients[MAX_WORKERS];
	size_t nclients;
	struct repo *repos; /* distinct target repositories */
	size_t nrepos;
	struct idx repo_idx;
	size_t *image_repo; /* per image of the result */
	struct dset **sets;
	size_t nsets;
	struct idx set_idx;
	struct dset **docs; /* in bundle order */
	size_t ndocs;
	uint64_t doc_bytes;
	/* shared with the workers, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t mem_used;	   /* blob data in flight */
	atomic_bool no_monolithic; /* the registry wants upload sessions */
	size_t large_running;	   /* large blobs streaming */
	struct job *queue_head, *queue_tail;
	size_t queued;
	bool stop, failed;
	struct ferr err;
	pthread_t th[MAX_WORKERS];
	struct wctx wctx[MAX_WORKERS];
	size_t nth;
	const struct item *items; /* parallel phases */
	size_t nitems, next_item;
	item_fn fn;
	/* current blob (reader thread) */
	struct job *cur;
	unsigned char *cur_chunk;
	size_t cur_fill;
	bool cur_is_doc;
	struct imp_result *res;
	bool already;
	char *state_path;
	int lock_fd;
	char target_key[600];
	bool *omit_have; /* a delta: per (omitted blob, repository) item */
	struct atag *atags;
	size_t natags;
	atomic_int api; /* the target indexes referrers: 1 yes, -1 no, 0 ? */
};

/* --jobs: parallel uploads of large blobs */
static size_t upload_jobs(const struct imp_opts *o)
{
	return (size_t)(o->jobs > 0 ? o->jobs : 4);
}

static void fail(struct imp *x, const struct ferr *e)
{
	pthread_mutex_lock(&x->mu);
	if (!x->failed) {
		x->failed = true;
		x->err = *e;
	}
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
}

/* Report one action and count it; `count` is a result counter. */
static void note(struct imp *x, enum imp_event_type t, size_t repo,
		 const char *what, uint64_t size, const char *action,
		 unsigned *count, atomic_uint *progress)
{
	struct imp_event ev;

	pthread_mutex_lock(&x->mu);
	if (count)
		(*count)++;
	if (x->o->event) {
		ev.type = t;
		ev.repo = x->repos[repo].name;
		ev.what = what;
		ev.size = size;
		ev.action = action;
		x->o->event(x->o->event_ctx, &ev);
	}
	pthread_mutex_unlock(&x->mu);
	if (progress)
		atomic_fetch_add(progress, 1);
}

static const char *repo_key(const void *ctx, size_t pos)
{
	return ((const struct imp *)ctx)->repos[pos].name;
}

static const char *set_key(const void *ctx, size_t pos)
{
	return ((const struct imp *)ctx)->sets[pos]->d.str;
}

static size_t repo_id(struct imp *x, const char *name, struct ferr *e)
{
	struct repo *n;
	size_t pos;

	if (idx_find(&x->repo_idx, name, repo_key, x, &pos))
		return pos;
	n = realloc(x->repos, (x->nrepos + 1) * sizeof(*n));
	if (n)
		x->repos = n;
	if (!n || !(n[x->nrepos].name = strdup(name))) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		return (size_t)-1;
	}
	n[x->nrepos].state = REPO_UNPROBED;
	if (idx_add(&x->repo_idx, name, x->nrepos, repo_key, x) < 0) {
		free(n[x->nrepos].name);
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		return (size_t)-1;
	}
	return x->nrepos++;
}

static struct dset *set_find(const struct imp *x, const struct digest *d)
{
	size_t pos;

	return idx_find(&x->set_idx, d->str, set_key, x, &pos) ? x->sets[pos]
							       : NULL;
}

static struct dset *set_create(struct imp *x, const struct digest *d)
{
	struct dset *s = set_find(x, d), **n;

	if (s)
		return s;
	n = realloc(x->sets, (x->nsets + 1) * sizeof(*n));
	if (!n)
		return NULL;
	x->sets = n;
	if (!(s = calloc(1, sizeof(*s))))
		return NULL;
	s->d = *d;
	x->sets[x->nsets] = s;
	if (idx_add(&x->set_idx, d->str, x->nsets, set_key, x) < 0) {
		free(s);
		return NULL;
	}
	x->nsets++;
	return s;
}

/* Under mu: workers read a set's repositories while the reader may still
 * add to sets. */
static int set_add(struct imp *x, const struct digest *d, size_t repo,
		   struct ferr *e)
{
	struct dset *s;
	size_t *n = NULL;
	bool *p = NULL;
	int rc = -1;

	pthread_mutex_lock(&x->mu);
	if (!(s = set_create(x, d)))
		goto out;
	for (size_t i = 0; i < s->n; i++)
		if (s->repos[i] == repo) {
			rc = 0;
			goto out;
		}
	n = realloc(s->repos, (s->n + 1) * sizeof(*n));
	if (n)
		s->repos = n;
	p = n ? realloc(s->placed, (s->n + 1) * sizeof(*p)) : NULL;
	if (!p)
		goto out;
	s->placed = p;
	s->repos[s->n] = repo;
	s->placed[s->n++] = false;
	rc = 0;
out:
	pthread_mutex_unlock(&x->mu);
	return rc < 0 ? ferr_set(e, FERR_IO, ENOMEM, "out of memory") : 0;
}

static void set_mark_placed(struct imp *x, struct dset *s, size_t repo)
{
	pthread_mutex_lock(&x->mu);
	for (size_t i = 0; i < s->n; i++)
		if (s->repos[i] == repo)
			s->placed[i] = true;
	pthread_mutex_unlock(&x->mu);
}

static bool set_placed(struct imp *x, const struct digest *d, size_t repo)
{
	struct dset *s = set_find(x, d);
	bool r = false;

	pthread_mutex_lock(&x->mu);
	for (size_t i = 0; s && i < s->n; i++)
		if (s->repos[i] == repo)
			r = s->placed[i];
	pthread_mutex_unlock(&x->mu);
	return r;
}

static enum repo_state repo_state(struct imp *x, size_t r)
{
	enum repo_state st;

	pthread_mutex_lock(&x->mu);
	st = x->repos[r].state;
	pthread_mutex_unlock(&x->mu);
	return st;
}

/* ---- blob data in flight: one memory budget for chunks and small blobs ---- */

/* Reader thread: wait until `n` more bytes fit the budget. */
static unsigned char *mem_get(struct imp *x, size_t n, struct ferr *e)
{
	unsigned char *p;

	pthread_mutex_lock(&x->mu);
	while (!x->failed && x->mem_used && x->mem_used + n > IMP_MEM)
		pthread_cond_wait(&x->cv, &x->mu);
	if (x->failed) {
		*e = x->err;
		pthread_mutex_unlock(&x->mu);
		return NULL;
	}
	x->mem_used += n;
	pthread_mutex_unlock(&x->mu);
	if (!(p = malloc(n ? n : 1))) {
		pthread_mutex_lock(&x->mu);
		x->mem_used -= n;
		pthread_mutex_unlock(&x->mu);
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	return p;
}

/* Under mu. */
static void mem_put(struct imp *x, unsigned char *p, size_t n)
{
	if (!p)
		return;
	free(p);
	x->mem_used -= n;
	pthread_cond_broadcast(&x->cv);
}

/* Under mu. */
static void job_drop_chunks(struct imp *x, struct job *j)
{
	while (j->rcount) {
		mem_put(x, j->ring[j->rhead], IMP_CHUNK);
		j->rhead = (j->rhead + 1) % IMP_CHUNKS;
		j->rcount--;
	}
}

/* Under mu: the reader and the worker each hold a reference. */
static void job_unref(struct imp *x, struct job *j)
{
	if (--j->refs > 0)
		return;
	job_drop_chunks(x, j);
	mem_put(x, j->small, (size_t)j->size);
	free(j);
}

/* The worker is done with the job's data: the reader stops queueing it. */
static void job_discard(struct imp *x, struct job *j)
{
	pthread_mutex_lock(&x->mu);
	j->discard = true;
	job_drop_chunks(x, j);
	pthread_mutex_unlock(&x->mu);
}

/* curl read callback: hand out the job's queued chunks in order. */
static size_t job_read(char *out, size_t size, size_t nmemb, void *ud)
{
	struct job *j = ud;
	struct imp *x = j->x;
	size_t want = size * nmemb, n, left;
	unsigned char *b;

	pthread_mutex_lock(&x->mu);
	/* x->stop only means no new jobs: this one still completes */
	while (!j->rcount && !j->data_done && !x->failed)
		pthread_cond_wait(&x->cv, &x->mu);
	if (x->failed || j->verdict < 0) {
		pthread_mutex_unlock(&x->mu);
		return CURL_READFUNC_ABORT;
	}
	if (!j->rcount) {
		pthread_mutex_unlock(&x->mu);
		return 0;
	}
	b = j->ring[j->rhead];
	left = j->rlen[j->rhead] - j->rpos;
	pthread_mutex_unlock(&x->mu);
	n = left < want ? left : want;
	memcpy(out, b + j->rpos, n);
	pthread_mutex_lock(&x->mu);
	j->rpos += n;
	if (j->rpos == j->rlen[j->rhead]) {
		j->rpos = 0;
		j->rhead = (j->rhead + 1) % IMP_CHUNKS;
		j->rcount--;
		mem_put(x, b, IMP_CHUNK);
	}
	pthread_mutex_unlock(&x->mu);
	atomic_fetch_add(&x->pr->bytes_pushed, (unsigned long long)n);
	return n;
}

/* Wait for the reader's word on the blob: 1 verified, -1 not. */
static int job_verdict(struct imp *x, struct job *j)
{
	int v;

	pthread_mutex_lock(&x->mu);
	while (!j->verdict && !x->failed)
		pthread_cond_wait(&x->cv, &x->mu);
	v = x->failed ? -1 : j->verdict;
	pthread_mutex_unlock(&x->mu);
	return v;
}

/* ---- workers: one blob each, in parallel ---- */

/* Is the blob in `repo` already?  The first check in a repository also
 * asks for its tags: a repository without tags that lacks this blob is
 * taken as holding nothing of the bundle, and later blobs skip the
 * check. */
static int blob_present(struct imp *x, struct reg_client *c, size_t r,
			const struct job *j, bool *found, struct ferr *e)
{
	enum repo_state st;
	bool tagged = true, claim;
	struct reg_head h;
	int rc;

	pthread_mutex_lock(&x->mu);
	/* the first check is on its way: its answer may spare this one */
	while (x->repos[r].state == REPO_PROBING && !x->failed)
		pthread_cond_wait(&x->cv, &x->mu);
	st = x->repos[r].state;
	claim = st == REPO_UNPROBED;
	if (claim)
		x->repos[r].state = REPO_PROBING;
	pthread_mutex_unlock(&x->mu);
	*found = false;
	if (st == REPO_FRESH)
		return 0;
	if (claim && reg_repo_has_tags(c, x->repos[r].name, &tagged, e) < 0) {
		ferr_clear(e); /* no answer: check every blob */
		tagged = true;
	}
	rc = reg_head_blob(c, x->repos[r].name, &j->d, &h, e);
	*found = rc == 0 && h.found && (!h.size || h.size == j->size);
	if (claim) {
		pthread_mutex_lock(&x->mu);
		x->repos[r].state = rc == 0 && !tagged && !h.found ? REPO_FRESH
								   : REPO_SEEN;
		pthread_cond_broadcast(&x->cv);
		pthread_mutex_unlock(&x->mu);
	}
	return rc;
}

/* In one request where the registry takes it; once it has asked for a
 * session instead, open one first, not to send the data twice. */
static int send_small(struct imp *x, struct reg_client *c, const char *repo,
		      const struct job *j, struct ferr *e)
{
	char *url = NULL;
	bool one, mounted;
	int rc;

	if (!atomic_load(&x->no_monolithic)) {
		if (reg_upload_blob(c, repo, &j->d, j->small, j->small_len,
				    &one, e) < 0)
			return -1;
		if (!one)
			atomic_store(&x->no_monolithic, true);
		return 0;
	}
	if (reg_upload_start(c, repo, NULL, NULL, &mounted, &url, e) < 0)
		return -1;
	rc = reg_upload_finish(c, &url, &j->d, j->small, j->small_len, e);
	if (rc < 0)
		reg_upload_cancel(c, url);
	free(url);
	return rc;
}

/* Small: one request with the data, once verified.  Large: one streamed
 * PATCH fed chunk by chunk as the reader fills them (one PATCH per chunk
 * makes the registry save its hash state per chunk: 30% slower), completed
 * once verified.  1: cancelled on the reader's word. */
static int upload_large(struct imp *x, struct reg_client *c, struct job *j,
			const char *repo, struct ferr *e);

static int upload_blob(struct imp *x, struct reg_client *c, struct job *j,
		       size_t r, struct ferr *e)
{
	const char *repo = x->repos[r].name;
	int rc;

	if (j->small) {
		if (job_verdict(x, j) < 0)
			return 1;
		if (j->small_len != j->size)
			return ferr_set(e, FERR_IO, 0,
					"internal error: blob '%s' data",
					j->d.str);
		if (send_small(x, c, repo, j, e) < 0)
			return -1;
		atomic_fetch_add(&x->pr->bytes_pushed,
				 (unsigned long long)j->size);
		return 0;
	}
	pthread_mutex_lock(&x->mu);
	while (x->large_running >= upload_jobs(x->o) && !x->failed)
		pthread_cond_wait(&x->cv, &x->mu);
	x->large_running++;
	pthread_mutex_unlock(&x->mu);
	rc = upload_large(x, c, j, repo, e);
	pthread_mutex_lock(&x->mu);
	x->large_running--;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	return rc;
}

static int upload_large(struct imp *x, struct reg_client *c, struct job *j,
			const char *repo, struct ferr *e)
{
	char *url = NULL;
	bool mounted;
	int rc = -1;

	if (reg_upload_start(c, repo, NULL, NULL, &mounted, &url, e) < 0)
		return -1;
	if (reg_upload_stream(c, &url, j->size, job_read, j, e) < 0) {
		bool aborted;
		/* no waiting here: the reader may wait for these chunks */
		pthread_mutex_lock(&x->mu);
		aborted = x->failed || j->verdict < 0;
		pthread_mutex_unlock(&x->mu);
		if (e->cat == FERR_OK || aborted)
			goto cancel;
		goto cancel_err;
	}
	/* complete it only once the reader has checked the digest */
	if (job_verdict(x, j) < 0)
		goto cancel;
	rc = reg_upload_finish(c, &url, &j->d, NULL, 0, e);
	free(url);
	return rc;
cancel:
	ferr_clear(e);
cancel_err:
	reg_upload_cancel(c, url);
	free(url);
	return e->cat == FERR_OK ? 1 : -1;
}

static int mount_blob(struct imp *x, struct reg_client *c, struct job *j,
		      size_t from, size_t r, struct ferr *e)
{
	char *u = NULL;
	bool mounted;

	if (reg_upload_start(c, x->repos[r].name, &j->d, x->repos[from].name,
			     &mounted, &u, e) < 0)
		return -1;
	if (!mounted) {
		reg_upload_cancel(c, u);
		free(u);
		return ferr_set(e, FERR_NETWORK, 0,
				"registry '%s' did not mount '%s' into '%s'",
				x->o->host, j->d.str, x->repos[r].name);
	}
	free(u);
	note(x, IMP_EV_BLOB, r, j->d.str, j->size, "mounted", &x->res->mounted,
	     &x->pr->blobs_mounted);
	set_mark_placed(x, j->set, r);
	return 0;
}

/* Which of `repos` lack the blob (put in need); `from`: one that has it,
 * or -1. */
static int blob_missing(struct imp *x, struct reg_client *c, struct job *j,
			const size_t *repos, size_t n, size_t *need,
			size_t *nneed, size_t *from, struct ferr *e)
{
	*nneed = 0;
	*from = (size_t)-1;
	for (size_t i = 0; i < n; i++) {
		size_t r = repos[i];
		bool found;
		if (blob_present(x, c, r, j, &found, e) < 0)
			return -1;
		if (!found) {
			need[(*nneed)++] = r;
			continue;
		}
		*from = r;
		note(x, IMP_EV_BLOB, r, j->d.str, j->size, "skipped",
		     &x->res->skipped, &x->pr->blobs_skipped);
	}
	return 0;
}

/* Into every repository that needs it: upload once (unless the registry
 * has it in another one), mount into the rest. */
static int run_blob_job(struct imp *x, struct reg_client *c, struct job *j,
			struct ferr *e)
{
	size_t *repos, *need, n, nneed, from, k = 0;
	int rc = -1;

	/* a copy: the reader may still add to sets (in a bundle out of order) */
	pthread_mutex_lock(&x->mu);
	n = j->set->n;
	repos = calloc(2 * n + 1, sizeof(*repos));
	if (repos)
		memcpy(repos, j->set->repos, n * sizeof(*repos));
	pthread_mutex_unlock(&x->mu);
	if (!repos)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	need = repos + n;
	if (blob_missing(x, c, j, repos, n, need, &nneed, &from, e) < 0)
		goto out;
	rc = 0;
	if (!nneed)
		goto out;
	pthread_mutex_lock(&x->mu);
	x->res->bytes_to_push += j->size;
	pthread_mutex_unlock(&x->mu);
	if (x->o->dry_run) {
		for (k = 0; k < nneed; k++)
			note(x, IMP_EV_BLOB, need[k], j->d.str, j->size,
			     from != (size_t)-1 || k ? "would mount"
						     : "would push",
			     NULL, NULL);
		goto out;
	}
	if (from == (size_t)-1) {
		if ((rc = upload_blob(x, c, j, need[0], e)) != 0)
			goto out;
		note(x, IMP_EV_BLOB, need[0], j->d.str, j->size, "pushed",
		     &x->res->pushed, &x->pr->blobs_pushed);
		set_mark_placed(x, j->set, need[0]);
		from = need[k++];
	}
	job_discard(x, j);
	for (; k < nneed; k++)
		if ((rc = mount_blob(x, c, j, from, need[k], e)) < 0)
			goto out;
out:
	free(repos);
	return rc;
}

/* The worker is done with the job: drop its reference. */
static void job_finish(struct imp *x, struct job *j)
{
	pthread_mutex_lock(&x->mu);
	j->discard = true;
	job_drop_chunks(x, j);
	job_unref(x, j);
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
}

static void *blob_worker(void *arg)
{
	struct wctx *w = arg;
	struct imp *x = w->x;
	struct reg_client *c = x->clients[w->id];
	struct ferr e;

	for (;;) {
		struct job *j;
		int rc;

		pthread_mutex_lock(&x->mu);
		while (!x->queue_head && !x->stop && !x->failed)
			pthread_cond_wait(&x->cv, &x->mu);
		if (!x->queue_head || x->failed) {
			pthread_mutex_unlock(&x->mu);
			break;
		}
		j = x->queue_head;
		x->queue_head = j->next;
		if (!x->queue_head)
			x->queue_tail = NULL;
		x->queued--;
		pthread_cond_broadcast(&x->cv);
		pthread_mutex_unlock(&x->mu);
		ferr_clear(&e);
		rc = run_blob_job(x, c, j, &e);
		job_finish(x, j);
		if (rc < 0)
			fail(x, &e);
	}
	return NULL;
}

/* The later phases: items taken in turn by every worker. */
static void *item_worker(void *arg)
{
	struct wctx *w = arg;
	struct imp *x = w->x;
	struct reg_client *c = x->clients[w->id];
	struct ferr e;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&x->mu);
		i = x->next_item++;
		if (x->failed || i >= x->nitems) {
			pthread_mutex_unlock(&x->mu);
			break;
		}
		pthread_mutex_unlock(&x->mu);
		ferr_clear(&e);
		if (x->fn(x, c, i, &e) < 0)
			fail(x, &e);
	}
	return NULL;
}

static int start_workers(struct imp *x, struct wctx *w, size_t n,
			 void *(*fn)(void *), struct ferr *e)
{
	for (x->nth = 0; x->nth < n; x->nth++) {
		w[x->nth].x = x;
		w[x->nth].id = x->nth;
		if (pthread_create(&x->th[x->nth], NULL, fn, &w[x->nth]) != 0)
			return ferr_set(e, FERR_IO, errno,
					"cannot start a thread");
	}
	return 0;
}

static void join_workers(struct imp *x)
{
	pthread_mutex_lock(&x->mu);
	x->stop = true;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	for (size_t i = 0; i < x->nth; i++)
		pthread_join(x->th[i], NULL);
	x->nth = 0;
}

/* Run fn over items [from, n) on up to `threads` workers; 0 when all
 * succeeded. */
static int run_items(struct imp *x, const struct item *items, size_t from,
		     size_t n, item_fn fn, size_t threads, struct ferr *e)
{
	struct wctx w[MAX_WORKERS];

	x->items = items;
	x->nitems = n;
	x->next_item = from;
	x->fn = fn;
	x->stop = false;
	if (threads > x->nclients)
		threads = x->nclients;
	if (threads > n - from)
		threads = n - from;
	if (start_workers(x, w, threads, item_worker, e) < 0)
		fail(x, e);
	join_workers(x);
	if (x->failed) {
		*e = x->err;
		return -1;
	}
	return 0;
}

/* Harbor keeps repositories in projects (the first path component) that
 * must exist before a push; other registries have no such API. */
static int harbor_projects(struct imp *x, struct ferr *e)
{
	long st;
	struct ferr pe;

	ferr_clear(&pe);
	if (reg_api(x->main, "GET", "/api/v2.0/ping", NULL, &st, &pe) < 0)
		return 0; /* not Harbor */
	for (size_t i = 0; i < x->nrepos; i++) {
		char proj[256], path[400], body[400];
		size_t n = strcspn(x->repos[i].name, "/");
		bool dup = false;

		if (n >= sizeof(proj))
			n = sizeof(proj) - 1;
		memcpy(proj, x->repos[i].name, n);
		proj[n] = '\0';
		for (size_t k = 0; k < i; k++)
			dup |= !strncmp(x->repos[k].name, proj, n) &&
			       (x->repos[k].name[n] == '/' ||
				!x->repos[k].name[n]);
		if (dup)
			continue;
		snprintf(path, sizeof(path),
			 "/api/v2.0/projects?project_name=%s", proj);
		ferr_clear(&pe);
		if (reg_api(x->main, "HEAD", path, NULL, &st, &pe) == 0)
			continue;
		if (st != 404) {
			*e = pe;
			return ferr_prefix(e,
					   "cannot check Harbor project '%s'",
					   proj);
		}
		if (!x->o->create_projects)
			return ferr_set(e, FERR_NETWORK, 404,
					"Harbor project '%s' does not exist on "
					"'%s': create it, or use "
					"--create-projects",
					proj, x->o->host);
		if (x->o->dry_run) {
			x->res->projects_to_create++;
			continue;
		}
		snprintf(body, sizeof(body),
			 "{\"project_name\":\"%s\",\"metadata\":{\"public\":"
			 "\"%s\"}}",
			 proj, x->o->public_projects ? "true" : "false");
		ferr_clear(&pe);
		if (reg_api(x->main, "POST", "/api/v2.0/projects", body, &st,
			    &pe) < 0 &&
		    st != 409) {
			*e = pe;
			return ferr_prefix(e,
					   "cannot create Harbor project '%s'",
					   proj);
		}
		x->res->projects_created++;
	}
	return 0;
}

/* ---- reader callbacks (reader thread) ---- */

static int state_check(struct imp *x, const struct bundle_header *h,
		       struct ferr *e);

/* The target of every image; two images landing on one target reference
 * would silently overwrite each other: refused before anything is sent. */
static int plan_images(struct imp *x, const struct bundle_header *h,
		       struct ferr *e)
{
	struct imp_result *res = x->res;

	res->images = calloc(h->nimages + 1, sizeof(*res->images));
	x->image_repo = calloc(h->nimages + 1, sizeof(*x->image_repo));
	if (!res->images || !x->image_repo)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < h->nimages; i++) {
		struct imp_image *im = &res->images[i];
		char *tag = NULL, *repo = NULL;
		size_t n;

		if (imp_target_repo(h->images[i].ref, x->o->prefix,
				    x->o->keep_registry, &repo, &tag, e) < 0)
			return ferr_prefix(e, "bundle image");
		im->source = strdup(h->images[i].ref);
		im->repo = repo;
		im->digest = h->images[i].digest;
		n = strlen(x->o->host) + strlen(repo) + 80 +
		    (tag ? strlen(tag) : 0);
		im->target = malloc(n);
		if (!im->source || !im->target) {
			free(tag);
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		}
		snprintf(im->target, n, "%s/%s%s%s", x->o->host, repo,
			 tag ? ":" : "@", tag ? tag : im->digest.str);
		free(tag);
		res->nimages++;
		x->image_repo[i] = repo_id(x, repo, e);
		if (x->image_repo[i] == (size_t)-1 ||
		    set_add(x, &im->digest, x->image_repo[i], e) < 0)
			return -1;
	}
	return 0;
}

static const char *atag_key(const void *ctx, size_t pos)
{
	return ((const struct imp *)ctx)->atags[pos].key;
}

/* An attachment's tag in `repo`, once; two different attachments that
 * would land on one tag (images of two registries or prefixes mapped to
 * one repository) are refused before anything is pushed, as for images. */
static int atag_add(struct imp *x, struct idx *ix, size_t repo,
		    const struct bundle_attach *a, struct ferr *e)
{
	struct atag *t = &x->atags[x->natags];
	size_t n = strlen(x->repos[repo].name) + strlen(a->tag) + 2, k;

	if (!(t->key = malloc(n)))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	snprintf(t->key, n, "%s:%s", x->repos[repo].name, a->tag);
	if (idx_find(ix, t->key, atag_key, x, &k)) {
		int rc = 0;
		if (!digest_equal(&x->atags[k].a->digest, &a->digest))
			rc = ferr_set(e, FERR_INPUT, 0,
				      "two attachments ('%s' and '%s') would "
				      "both land on '%s' (--keep-registry "
				      "keeps them apart)",
				      x->atags[k].a->digest.str, a->digest.str,
				      t->key);
		free(t->key);
		t->key = NULL;
		return rc;
	}
	t->repo = repo;
	t->a = a;
	if (idx_add(ix, t->key, x->natags, atag_key, x) < 0)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	x->natags++;
	return 0;
}

/* Every attachment goes to its image's repository; each tag once. */
static int plan_attached(struct imp *x, const struct bundle_header *h,
			 struct ferr *e)
{
	struct idx ix = {0};
	size_t cap = 0;

	for (size_t i = 0; i < h->nimages; i++)
		cap += h->images[i].nattached;
	x->atags = calloc(cap + 1, sizeof(*x->atags));
	if (!x->atags)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < h->nimages; i++) {
		size_t repo = x->image_repo[i];
		for (size_t k = 0; k < h->images[i].nattached; k++) {
			const struct bundle_attach *a =
			    &h->images[i].attached[k];
			bool existed = set_find(x, &a->digest) != NULL;
			struct dset *s;

			if (set_add(x, &a->digest, repo, e) < 0)
				return -1;
			s = set_find(x, &a->digest);
			if (!existed)
				s->attach = true;
			if (a->kind == BA_REFERRERS)
				s->attach = s->rindex = true;
			if (!a->tag)
				continue;
			if (atag_add(x, &ix, repo, a, e) < 0) {
				idx_release(&ix);
				return -1;
			}
		}
	}
	idx_release(&ix);
	return 0;
}

static const char *image_target_key(const void *ctx, size_t pos)
{
	return ((const struct imp_result *)ctx)->images[pos].target;
}

static int check_collisions(struct imp *x, struct ferr *e)
{
	const struct imp_result *res = x->res;
	struct idx ix = {0};
	int rc = 0;

	for (size_t i = 0; i < res->nimages && !rc; i++) {
		const struct imp_image *im = &res->images[i];
		size_t k;

		if (idx_find(&ix, im->target, image_target_key, res, &k)) {
			if (strcmp(res->images[k].source, im->source) != 0)
				rc = ferr_set(e, FERR_INPUT, 0,
					      "images '%s' and '%s' would both "
					      "land on '%s' (--keep-registry "
					      "keeps them apart)",
					      res->images[k].source, im->source,
					      im->target);
			continue;
		}
		if (idx_add(&ix, im->target, i, image_target_key, res) < 0)
			rc = ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	idx_release(&ix);
	return rc;
}

/* Does `repo` still have `tag` pointing at `d`?  When not, *all is
 * false and the result names `what` as the stale tag. */
static int tag_in_place(struct imp *x, const char *repo, const char *tag,
			const struct digest *d, const char *what, bool *all,
			struct ferr *e)
{
	struct reg_head h;

	if (reg_head_manifest(x->main, repo, tag, &h, e) < 0)
		return -1;
	if (h.found && (!h.has_digest || digest_equal(&h.digest, d)))
		return 0;
	*all = false;
	free(x->res->stale);
	x->res->stale = strdup(what);
	return 0;
}

/* A bundle recorded as imported counts only while the target still has
 * every one of its tags (the images' and their cosign tags), pointing
 * where the bundle says. */
static int tags_in_place(struct imp *x, bool *all, struct ferr *e)
{
	const struct imp_result *res = x->res;

	*all = true;
	for (size_t i = 0; i < res->nimages && *all; i++) {
		const struct imp_image *im = &res->images[i];
		const char *at = strrchr(im->target, '@');
		const char *tag = strrchr(im->target, ':');

		if (at || !tag || strchr(tag, '/'))
			tag = im->digest.str;
		else
			tag++;
		if (tag_in_place(x, im->repo, tag, &im->digest, im->target, all,
				 e) < 0)
			return -1;
	}
	/* the fallback referrers tag is left out: a target that indexes
	 * referrers never gets one */
	for (size_t i = 0; i < x->natags && *all; i++) {
		const struct atag *t = &x->atags[i];

		if (t->a->kind != BA_REFERRERS &&
		    tag_in_place(x, x->repos[t->repo].name, t->a->tag,
				 &t->a->digest, t->key, all, e) < 0)
			return -1;
	}
	return 0;
}

static int on_header(void *ctx, const struct bundle_header *h, struct ferr *e)
{
	struct imp *x = ctx;
	bool all;

	if (plan_images(x, h, e) < 0 || plan_attached(x, h, e) < 0 ||
	    check_collisions(x, e) < 0 || state_check(x, h, e) < 0)
		return -1;
	if (x->already) {
		if (tags_in_place(x, &all, e) < 0)
			return -1;
		if (all)
			return ferr_set(e, FERR_OK, 0, "already imported");
		x->already = false;
	}
	return harbor_projects(x, e);
}

/* Manifests and indexes are kept (they are pushed after the blobs they
 * name); every other blob goes to the workers. */
static int on_blob_begin(void *ctx, const struct bundle_blob *b, struct ferr *e)
{
	struct imp *x = ctx;
	struct dset *s = set_find(x, &b->digest);
	struct job *j;

	x->cur = NULL;
	x->cur_is_doc = b->kind <= BK_MANIFEST;
	pthread_mutex_lock(&x->mu);
	while (!x->failed && x->queued >= IMP_MAX_QUEUED)
		pthread_cond_wait(&x->cv, &x->mu);
	if (x->failed) {
		*e = x->err;
		pthread_mutex_unlock(&x->mu);
		return -1;
	}
	pthread_mutex_unlock(&x->mu);
	if (!s || !s->n)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'%s' is not part of any image in the bundle",
				b->path);
	if (x->cur_is_doc)
		return 0;
	if (!(j = calloc(1, sizeof(*j))))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	j->x = x;
	j->d = b->digest;
	j->size = b->size;
	j->set = s;
	j->refs = 2;
	if (b->size <= IMP_SMALL &&
	    !(j->small = mem_get(x, (size_t)b->size, e))) {
		free(j);
		return -1;
	}
	pthread_mutex_lock(&x->mu);
	if (x->queue_tail)
		x->queue_tail->next = j;
	else
		x->queue_head = j;
	x->queue_tail = j;
	x->queued++;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	x->cur = j;
	x->cur_chunk = NULL;
	x->cur_fill = 0;
	return 0;
}

/* Hand the current chunk to the job (or drop it: the worker wants no
 * more). */
static void push_chunk(struct imp *x)
{
	struct job *j = x->cur;

	pthread_mutex_lock(&x->mu);
	if (j->discard) {
		mem_put(x, x->cur_chunk, IMP_CHUNK);
	} else {
		j->ring[(j->rhead + j->rcount) % IMP_CHUNKS] = x->cur_chunk;
		j->rlen[(j->rhead + j->rcount) % IMP_CHUNKS] = x->cur_fill;
		j->rcount++;
	}
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	x->cur_chunk = NULL;
	x->cur_fill = 0;
}

static int on_blob_data(void *ctx, const void *p, size_t n, struct ferr *e)
{
	struct imp *x = ctx;
	const unsigned char *q = p;
	struct job *j = x->cur;

	atomic_fetch_add(&x->pr->bytes_read, (unsigned long long)n);
	if (!j)
		return 0;
	if (j->small) {
		if (n > j->size - j->small_len)
			return ferr_set(e, FERR_BUNDLE, 0,
					"blob '%s' is larger than its size",
					j->d.str);
		memcpy(j->small + j->small_len, q, n);
		j->small_len += n;
		return 0;
	}
	while (n) {
		size_t k;
		if (!x->cur_chunk && !(x->cur_chunk = mem_get(x, IMP_CHUNK, e)))
			return -1;
		k = IMP_CHUNK - x->cur_fill;
		if (k > n)
			k = n;
		memcpy(x->cur_chunk + x->cur_fill, q, k);
		x->cur_fill += k;
		q += k;
		n -= k;
		if (x->cur_fill == IMP_CHUNK)
			push_chunk(x);
	}
	return 0;
}

/* The reader's word on the current blob: 1 verified, -1 not. */
static void blob_done(struct imp *x, int verdict)
{
	struct job *j = x->cur;

	if (!j)
		return;
	if (verdict > 0 && x->cur_chunk && x->cur_fill)
		push_chunk(x);
	pthread_mutex_lock(&x->mu);
	mem_put(x, x->cur_chunk, IMP_CHUNK);
	x->cur_chunk = NULL;
	j->data_done = true;
	j->verdict = verdict;
	job_unref(x, j);
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	x->cur = NULL;
}

/* Keep a verified manifest or index; what it names goes where it goes. */
static int keep_doc(struct imp *x, const struct bundle_blob *b, struct ferr *e)
{
	struct dset *s = set_find(x, &b->digest), **nd;
	size_t nrepos = s ? s->n : 0;
	json_t *root, *arr, *d;
	struct digest cd;
	size_t i;
	int rc = -1;

	if (!s || s->doc)
		return 0;
	if (x->doc_bytes + b->doc_len > IMP_MAX_DOC_BYTES)
		return ferr_set(
		    e, FERR_INPUT, 0,
		    "the bundle's manifests exceed %u MiB, more than "
		    "import keeps in memory",
		    (unsigned)(IMP_MAX_DOC_BYTES / FERRY_MIB));
	nd = realloc(x->docs, (x->ndocs + 1) * sizeof(*nd));
	if (!nd || !(s->doc = calloc(1, sizeof(*s->doc))) ||
	    !(s->doc->data = malloc(b->doc_len + 1)))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	x->docs = nd;
	x->docs[x->ndocs++] = s;
	x->doc_bytes += b->doc_len;
	s->doc->kind = b->kind;
	snprintf(s->doc->media_type, sizeof(s->doc->media_type), "%s",
		 b->media_type);
	memcpy(s->doc->data, b->doc, b->doc_len);
	s->doc->len = b->doc_len;
	root = json_loadb((const char *)b->doc, b->doc_len, 0, NULL);
	if (!root)
		return ferr_set(e, FERR_BUNDLE, 0, "'%s' does not parse",
				b->path);
	s->doc->has_subject = json_object_get(root, "subject") != NULL;
	arr = json_object_get(root,
			      b->kind == BK_INDEX ? "manifests" : "layers");
	for (size_t r = 0; r < nrepos; r++) {
		size_t repo = s->repos[r];
		json_array_foreach(arr, i, d)
		{
			struct dset *cs;
			if (digest_parse(&cd,
					 json_string_value(
					     json_object_get(d, "digest")),
					 e) < 0 ||
			    set_add(x, &cd, repo, e) < 0)
				goto out;
			/* what an image's index lists goes with the image
			 * (before the index), even if also attached */
			if (!s->attach && (cs = set_find(x, &cd)) &&
			    !cs->rindex)
				cs->attach = false;
		}
		if (b->kind == BK_MANIFEST &&
		    (digest_parse(&cd,
				  json_string_value(json_object_get(
				      json_object_get(root, "config"),
				      "digest")),
				  e) < 0 ||
		     set_add(x, &cd, repo, e) < 0))
			goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

static int on_blob_end(void *ctx, const struct bundle_blob *b, struct ferr *e)
{
	struct imp *x = ctx;

	if (x->cur_is_doc)
		return keep_doc(x, b, e);
	blob_done(x, 1);
	return 0;
}

static void on_blob_abort(void *ctx)
{
	blob_done(ctx, -1);
}

/* ---- rollback state ---- */

static int state_load(struct imp *x, json_t **out, struct ferr *e)
{
	json_error_t je;
	json_t *root;
	struct stat st;

	*out = NULL;
	if (stat(x->state_path, &st) < 0) {
		if (errno != ENOENT)
			return ferr_errno(e, FERR_IO, errno, "cannot read '%s'",
					  x->state_path);
		*out = json_object();
		json_object_set_new(*out, "version", json_integer(1));
		json_object_set_new(*out, "imports", json_array());
		return 0;
	}
	if (st.st_size > (off_t)FERRY_MAX_JSON)
		return ferr_set(e, FERR_IO, 0, "state file '%s' is too large",
				x->state_path);
	root = json_load_file(x->state_path, JSON_REJECT_DUPLICATES, &je);
	if (!root || !json_is_array(json_object_get(root, "imports"))) {
		json_decref(root);
		return ferr_set(
		    e, FERR_IO, 0,
		    "state file '%s' is damaged: %s (move it away to "
		    "start over)",
		    x->state_path, je.text);
	}
	*out = root;
	return 0;
}

static json_t *state_find(json_t *root, const char *target, const char *key,
			  const char *channel)
{
	size_t i;
	json_t *v;

	json_array_foreach(json_object_get(root, "imports"), i, v)
	{
		const char *t = json_string_value(json_object_get(v, "target"));
		const char *k = json_string_value(json_object_get(v, "keyId"));
		const char *c =
		    json_string_value(json_object_get(v, "channel"));
		if (t && k && c && !strcmp(t, target) && !strcmp(k, key) &&
		    !strcmp(c, channel))
			return v;
	}
	return NULL;
}

int imp_target_key(const char *host, const char *prefix, const char *scheme,
		   char *out, size_t n)
{
	char h[300];
	size_t len = strlen(host), pl = prefix ? strlen(prefix) : 0;
	const char *dflt = scheme && !strcmp(scheme, "http") ? ":80" : ":443";

	if (len >= sizeof(h))
		return -1;
	for (size_t i = 0; i <= len; i++)
		h[i] = (char)(host[i] >= 'A' && host[i] <= 'Z'
				  ? host[i] - 'A' + 'a'
				  : host[i]);
	if (len > strlen(dflt) && !strcmp(h + len - strlen(dflt), dflt))
		h[len - strlen(dflt)] = '\0';
	while (pl && prefix[pl - 1] == '/')
		pl--;
	while (pl && *prefix == '/') {
		prefix++;
		pl--;
	}
	if ((size_t)snprintf(out, n, "%s%s%.*s", h, pl ? "/" : "", (int)pl,
			     pl ? prefix : "") >= n)
		return -1;
	return 0;
}

/* Taken before the rollback check and held until the state is saved, so
 * that two imports cannot both pass the check. */
static int state_lock(struct imp *x, struct ferr *e)
{
	char *dir = NULL, *lk = NULL;
	size_t n = strlen(x->state_path) + 8;
	int rc = -1;

	if (!(dir = strdup(x->state_path)) || !(lk = malloc(n))) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	*strrchr(dir, '/') = '\0';
	for (char *p = dir + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(dir, 0700);
			*p = '/';
		}
	mkdir(dir, 0700);
	snprintf(lk, n, "%s.lock", x->state_path);
	x->lock_fd = open(lk, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (x->lock_fd < 0 || flock(x->lock_fd, LOCK_EX) < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot lock '%s'", lk);
		goto out;
	}
	rc = 0;
out:
	free(dir);
	free(lk);
	return rc;
}

/* Refuse an older bundle; note one imported before (x->already). A dry run
 * only reads. */
static int state_check(struct imp *x, const struct bundle_header *h,
		       struct ferr *e)
{
	json_t *root = NULL, *ent;
	int rc = -1;

	if (!x->o->dry_run && x->lock_fd < 0 && state_lock(x, e) < 0)
		return -1;
	if (state_load(x, &root, e) < 0)
		return -1;
	ent = state_find(root, x->target_key, h->key_id, h->channel);
	if (ent) {
		uint64_t seq = (uint64_t)json_integer_value(
		    json_object_get(ent, "sequence"));
		const char *id =
		    json_string_value(json_object_get(ent, "bundleId"));
		if (id && !strcmp(id, h->bundle_id)) {
			x->already = true;
		} else if (seq >= h->sequence && !x->o->allow_rollback) {
			ferr_set(e, FERR_VERIFY, 0,
				 "rollback refused: '%s' already has sequence "
				 "%llu of channel '%s' from this key, and this "
				 "bundle is sequence %llu (use --allow-rollback "
				 "to import it anyway)",
				 x->target_key, (unsigned long long)seq,
				 h->channel, (unsigned long long)h->sequence);
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* Under the lock taken by state_check. */
static int state_save(struct imp *x, const struct bundle_header *h,
		      struct ferr *e)
{
	json_t *root = NULL, *ent;
	char *tmp = NULL, when[32];
	int fd = -1, rc = -1;
	size_t n = strlen(x->state_path) + 16;

	if (!(tmp = malloc(n)))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (state_load(x, &root, e) < 0)
		goto out;
	ent = state_find(root, x->target_key, h->key_id, h->channel);
	if (!ent) {
		ent = json_object();
		json_array_append_new(json_object_get(root, "imports"), ent);
	}
	if ((uint64_t)json_integer_value(json_object_get(ent, "sequence")) >
	    h->sequence) {
		rc = 0; /* an allowed rollback: keep the highest */
		goto out;
	}
	bundle_time_format(time(NULL), when);
	json_object_set_new(ent, "target", json_string(x->target_key));
	json_object_set_new(ent, "keyId", json_string(h->key_id));
	json_object_set_new(ent, "channel", json_string(h->channel));
	json_object_set_new(ent, "sequence",
			    json_integer((json_int_t)h->sequence));
	json_object_set_new(ent, "bundleId", json_string(h->bundle_id));
	json_object_set_new(ent, "imported", json_string(when));
	snprintf(tmp, n, "%s.XXXXXX", x->state_path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot write '%s'",
			   x->state_path);
		goto out;
	}
	if (json_dumpfd(root, fd, JSON_INDENT(2)) < 0 || fsync(fd) < 0 ||
	    rename(tmp, x->state_path) < 0) {
		ferr_errno(e, FERR_IO, errno ? errno : EIO, "cannot write '%s'",
			   x->state_path);
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	json_decref(root);
	free(tmp);
	return rc;
}

/* ---- after the bundle: manifests, indexes, tags ---- */

/* Did this run put any blob or manifest that `doc` names into `repo`?
 * Then the registry cannot have had the document there (it accepts one
 * only once all it names is present). */
static bool doc_child_placed(struct imp *x, const struct doc *doc, size_t repo)
{
	json_t *root = json_loadb((const char *)doc->data, doc->len, 0, NULL);
	json_t *arr, *d;
	struct digest cd;
	bool placed = false;
	size_t i;

	arr = json_object_get(root,
			      doc->kind == BK_INDEX ? "manifests" : "layers");
	json_array_foreach(arr, i, d)
	{
		if (placed)
			break;
		placed = digest_parse(&cd,
				      json_string_value(
					  json_object_get(d, "digest")),
				      NULL) == 0 &&
			 set_placed(x, &cd, repo);
	}
	if (!placed && doc->kind == BK_MANIFEST &&
	    digest_parse(&cd,
			 json_string_value(json_object_get(
			     json_object_get(root, "config"), "digest")),
			 NULL) == 0)
		placed = set_placed(x, &cd, repo);
	json_decref(root);
	return placed;
}

/* Push one manifest or index by digest into one repository. */
static int push_doc(struct imp *x, struct reg_client *c, size_t i,
		    struct ferr *e)
{
	const struct item *it = &x->items[i];
	const struct doc *d = it->s->doc;
	const char *repo = x->repos[it->repo].name;
	const char *dg = it->s->d.str;

	if (repo_state(x, it->repo) != REPO_FRESH &&
	    !doc_child_placed(x, d, it->repo)) {
		struct reg_head h;
		if (reg_head_manifest(c, repo, dg, &h, e) < 0)
			return -1;
		if (h.found) {
			note(x, IMP_EV_MANIFEST, it->repo, dg, d->len,
			     "skipped", &x->res->manifests_skipped, NULL);
			return 0;
		}
	}
	if (x->o->dry_run) {
		note(x, IMP_EV_MANIFEST, it->repo, dg, d->len, "would push",
		     NULL, NULL);
		return 0;
	}
	{
		bool indexed = false;
		if (reg_put_manifest_subject(c, repo, dg, d->media_type,
					     d->data, d->len, &it->s->d,
					     &indexed, e) < 0)
			return -1;
		/* OCI 1.1: a registry that indexes referrers says so in its
		 * answer to a manifest with a subject */
		if (d->has_subject)
			atomic_store(&x->api, indexed ? 1 : -1);
	}
	set_mark_placed(x, it->s, it->repo);
	note(x, IMP_EV_MANIFEST, it->repo, dg, d->len, "pushed",
	     &x->res->manifests_pushed, &x->pr->manifests_pushed);
	return 0;
}

/* The documents of one kind, as (document, repository) items, innermost
 * first.  *nested: an index names another index of the bundle. */
static struct item *doc_items(struct imp *x, int kind, bool attach, size_t *n,
			      bool *nested)
{
	struct item *items;
	size_t cap = 0;

	*n = 0;
	*nested = false;
	for (size_t k = 0; k < x->ndocs; k++)
		if (x->docs[k]->doc->kind == kind)
			cap += x->docs[k]->n;
	if (!(items = calloc(cap ? cap : 1, sizeof(*items))))
		return NULL;
	for (size_t k = x->ndocs; k-- > 0;) {
		struct dset *s = x->docs[k];
		if (s->doc->kind != kind || s->attach != attach || s->rindex)
			continue;
		for (size_t r = 0; r < s->n; r++) {
			items[*n].s = s;
			items[(*n)++].repo = s->repos[r];
		}
		if (kind == BK_INDEX && !*nested) {
			json_t *root = json_loadb((const char *)s->doc->data,
						  s->doc->len, 0, NULL),
			       *d;
			struct digest cd;
			size_t i;
			json_array_foreach(json_object_get(root, "manifests"),
					   i, d)
			{
				struct dset *cs;
				if (digest_parse(&cd,
						 json_string_value(
						     json_object_get(d,
								     "digest")),
						 NULL) == 0 &&
				    (cs = set_find(x, &cd)) && cs->doc &&
				    cs->doc->kind == BK_INDEX)
					*nested = true;
			}
			json_decref(root);
		}
	}
	return items;
}

/* Image manifests in parallel, then indexes (one at a time, innermost
 * first, when indexes nest). */
/* ---- a delta: what it leaves out must already be in the target ---- */

/* Blobs searched for in every repository before the rest are counted. */
#define IMP_DELTA_SEARCH 3

static int omitted_head(struct imp *x, struct reg_client *c, size_t i,
			struct ferr *e)
{
	const struct item *it = &x->items[i];
	struct reg_head h;

	if (reg_head_blob(c, x->repos[it->repo].name, &it->s->d, &h, e) < 0)
		return -1;
	x->omit_have[i] = h.found; /* each worker writes its own items */
	return 0;
}

/* The (blob, repository) pairs of every blob the delta leaves out. */
static struct item *omitted_items(struct imp *x, size_t *n)
{
	const struct bundle_header *h = &x->res->hdr;
	struct item *items = NULL, *ni;

	*n = 0;
	for (size_t k = 0; k < h->nomitted; k++) {
		struct dset *s = set_find(x, &h->omitted[k]);
		for (size_t r = 0; s && r < s->n; r++) {
			ni = realloc(items, (*n + 1) * sizeof(*ni));
			if (!ni) {
				free(items);
				return NULL;
			}
			items = ni;
			items[(*n)++] = (struct item){s, s->repos[r]};
		}
	}
	return items ? items : calloc(1, sizeof(*items));
}

/* Mount `d` into repository r from repository from (which has it). */
static int omitted_mount_from(struct imp *x, const struct item *it, size_t from,
			      bool *mounted, struct ferr *e)
{
	char *u = NULL;

	*mounted = false;
	if (x->o->dry_run) {
		*mounted = true;
		return 0;
	}
	if (reg_upload_start(x->main, x->repos[it->repo].name, &it->s->d,
			     x->repos[from].name, mounted, &u, e) < 0)
		return -1;
	if (!*mounted)
		reg_upload_cancel(x->main, u);
	free(u);
	if (*mounted) {
		set_mark_placed(x, it->s, it->repo);
		note(x, IMP_EV_BLOB, it->repo, it->s->d.str, 0, "mounted",
		     &x->res->mounted, &x->pr->blobs_mounted);
	}
	return 0;
}

/* A pair the repository lacks: mount it from another repository of the
 * target that has it (one of this bundle's: where the base put it).
 * 0 placed, 1 nowhere to be had. */
static int omitted_mount(struct imp *x, const struct item *items, size_t n,
			 size_t i, struct ferr *e)
{
	const struct item *it = &items[i];
	bool mounted;

	for (size_t j = 0; j < n; j++) /* known to have it */
		if (items[j].s == it->s && x->omit_have[j]) {
			if (omitted_mount_from(x, it, items[j].repo, &mounted,
					       e) < 0)
				return -1;
			if (mounted)
				return 0;
		}
	for (size_t r = 0; r < x->nrepos; r++) {
		struct reg_head h;
		if (r == it->repo)
			continue;
		if (reg_head_blob(x->main, x->repos[r].name, &it->s->d, &h, e) <
		    0)
			return -1;
		if (!h.found)
			continue;
		if (omitted_mount_from(x, it, r, &mounted, e) < 0)
			return -1;
		if (mounted)
			return 0;
	}
	return 1;
}

static int delta_missing(struct imp *x, size_t missing, const char *first,
			 const char *repo, struct ferr *e)
{
	const struct bundle_header *h = &x->res->hdr;
	char ids[600] = "";
	size_t len = 0;

	for (size_t i = 0; i < h->nbases && len + 70 < sizeof(ids); i++)
		len += (size_t)snprintf(ids + len, sizeof(ids) - len, "%s%s",
					i ? ", " : "", h->bases[i]);
	return ferr_set(e, FERR_INPUT, 0,
			"this delta bundle builds on bundle%s %s: import %s "
			"into '%s' first (%zu blob%s it leaves out %s not in "
			"the repositories that need %s; no repository here "
			"has '%s', which '%s' needs)",
			h->nbases == 1 ? "" : "s", ids,
			h->nbases == 1 ? "it" : "them", x->o->host, missing,
			missing == 1 ? "" : "s", missing == 1 ? "is" : "are",
			missing == 1 ? "it" : "them", first, repo);
}

/* Before any manifest or tag: every blob a delta leaves out is in each
 * repository that needs it, or mountable there from another one. */
static int check_omitted(struct imp *x, struct ferr *e)
{
	struct item *items;
	size_t n, missing = 0, first = 0;
	int rc = -1;

	if (!x->res->hdr.nomitted)
		return 0;
	if (!(items = omitted_items(x, &n)) ||
	    !(x->omit_have = calloc(n + 1, sizeof(*x->omit_have)))) {
		free(items);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	if (n && run_items(x, items, 0, n, omitted_head, x->nclients, e) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		/* searching the other repositories costs requests: once a few
		 * blobs are nowhere, the rest are only counted */
		int r = x->omit_have[i] ? 0
			: missing >= IMP_DELTA_SEARCH
			    ? 1
			    : omitted_mount(x, items, n, i, e);
		if (r < 0)
			goto out;
		if (r > 0 && !missing++)
			first = i;
	}
	rc = missing ? delta_missing(x, missing, items[first].s->d.str,
				     x->repos[items[first].repo].name, e)
		     : 0;
out:
	free(items);
	return rc;
}

/* The images' documents first, then what is attached to them (a registry
 * may check that a referrer's subject is there). */
static int push_docs(struct imp *x, size_t threads, struct ferr *e)
{
	static const int kinds[] = {BK_MANIFEST, BK_INDEX};
	int rc = 0;

	atomic_store(&x->pr->phase, 1);
	for (size_t p = 0; p < 4 && !rc; p++) {
		size_t n;
		bool nested;
		struct item *items = doc_items(x, kinds[p % 2], p >= 2, &n,
					       &nested);
		if (!items)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		rc = run_items(x, items, 0, n, push_doc, nested ? 1 : threads,
			       e);
		free(items);
	}
	return rc;
}

static bool has_tag(const struct imp_image *im)
{
	const char *tag = strrchr(im->target, ':');

	return tag && !strchr(tag, '/') && !strchr(im->target, '@');
}

/* Write one image's tag (digest references have none). */
static int push_tag(struct imp *x, struct reg_client *c, size_t i,
		    struct ferr *e)
{
	const struct imp_image *im = &x->res->images[i];
	struct dset *s = set_find(x, &im->digest);
	size_t rid = x->image_repo[i];
	const char *tag;
	bool moved = false;

	if (!has_tag(im))
		return 0;
	tag = strrchr(im->target, ':') + 1;
	if (!s || !s->doc)
		return ferr_set(e, FERR_BUNDLE, 0,
				"image '%s' has no manifest in the bundle",
				im->source);
	/* a manifest this run pushed there had no tag pointing at it */
	if (repo_state(x, rid) != REPO_FRESH &&
	    !set_placed(x, &im->digest, rid)) {
		struct reg_head h;
		if (reg_head_manifest(c, im->repo, tag, &h, e) < 0)
			return -1;
		if (h.found && h.has_digest &&
		    digest_equal(&h.digest, &im->digest)) {
			note(x, IMP_EV_TAG, rid, tag, 0, "skipped", NULL, NULL);
			return 0;
		}
		moved = h.found;
	}
	if (x->o->dry_run) {
		note(x, IMP_EV_TAG, rid, tag, 0,
		     moved ? "would move" : "would push", NULL, NULL);
		return 0;
	}
	if (reg_put_manifest(c, im->repo, tag, s->doc->media_type, s->doc->data,
			     s->doc->len, &im->digest, e) < 0)
		return -1;
	note(x, IMP_EV_TAG, rid, tag, 0, "pushed", &x->res->tags,
	     &x->pr->tags_pushed);
	return 0;
}

/* The first tag alone: a registry that refuses tags (permissions, tag
 * immutability, quota) then refuses it before any other is written; the
 * rest in parallel. */
static int push_tags(struct imp *x, size_t threads, struct ferr *e)
{
	size_t first = 0, n = x->res->nimages;

	atomic_store(&x->pr->phase, 2);
	while (first < n && !has_tag(&x->res->images[first]))
		first++;
	if (first == n)
		return 0;
	if (run_items(x, NULL, first, first + 1, push_tag, 1, e) < 0)
		return -1;
	return run_items(x, NULL, first + 1, n, push_tag, threads, e);
}

/* ---- attachment tags, and referrers indexes (SPEC §6) ---- */

/* The merge of a cosign tag: both configs from the target (the bundle's
 * is in place by now), the merged config and manifest pushed (untagged). */
static int merge_ctag(struct imp *x, struct reg_client *c, struct atag *t,
		      const struct reg_manifest *have, const struct doc *ours,
		      struct ferr *e)
{
	const char *repo = x->repos[t->repo].name;
	unsigned char *hc = NULL, *oc = NULL;
	char *cfg = NULL;
	struct digest hd, od, cd;
	uint64_t hs, os;
	bool one;
	int rc = -1;

	t->merge = true;
	snprintf(t->merged_mt, sizeof(t->merged_mt), "%s",
		 have->media_type ? have->media_type : "");
	if (x->o->dry_run)
		return 0; /* the bundle's config is not in the target */
	if (cosign_config_of(have->data, have->len, &hd, &hs, e) < 0 ||
	    cosign_config_of(ours->data, ours->len, &od, &os, e) < 0 ||
	    reg_get_blob_mem(c, repo, &hd, hs, FERRY_MAX_JSON, &hc, e) < 0 ||
	    reg_get_blob_mem(c, repo, &od, os, FERRY_MAX_JSON, &oc, e) < 0 ||
	    cosign_merge_build(have->data, have->len, hc, (size_t)hs,
			       ours->data, ours->len, oc, (size_t)os, &cfg,
			       &t->merged, e) < 0 ||
	    digest_of(cfg, strlen(cfg), &cd, e) < 0 ||
	    digest_of(t->merged, strlen(t->merged), &t->merged_digest, e) < 0 ||
	    reg_upload_blob(c, repo, &cd, cfg, strlen(cfg), &one, e) < 0 ||
	    /* by digest first: what the registry refuses, it refuses
	     * before any tag moves */
	    reg_put_manifest(c, repo, t->merged_digest.str, t->merged_mt,
			     t->merged, strlen(t->merged), &t->merged_digest,
			     e) < 0)
		goto out;
	rc = 0;
out:
	free(hc);
	free(oc);
	free(cfg);
	return rc;
}

/* What the target holds at a cosign tag, worked out before any tag is
 * written.  A .sig or .att tag may hold signatures the site added: merged
 * (see cosign_merge), so that a tag that cannot be merged fails the
 * import while no tag has moved.  A .sbom tag is replaced, as cosign
 * does.  Nothing is asked where the tag cannot be there yet: its subject
 * only arrived in this run (cosign signs what the registry holds). */
static int prep_ctag(struct imp *x, struct reg_client *c, size_t i,
		     struct ferr *e)
{
	struct atag *t = &x->atags[i];
	const struct bundle_attach *a = t->a;
	const char *repo = x->repos[t->repo].name;
	struct dset *s = set_find(x, &a->digest);
	struct reg_manifest have;
	enum cosign_merge how;
	int rc = -1;

	if (a->kind == BA_REFERRERS)
		return 0;
	if (!s || !s->doc)
		return ferr_set(e, FERR_BUNDLE, 0,
				"attachment '%s' has no manifest in the bundle",
				a->digest.str);
	t->looked = true;
	if (set_placed(x, &a->subject, t->repo) ||
	    (a->kind == BA_SBOM && set_placed(x, &a->digest, t->repo)))
		return 0;
	memset(&have, 0, sizeof(have));
	if (reg_get_manifest(c, repo, a->tag, &have, e) < 0) {
		/* 404: none; a document ferry does not take (another type,
		 * too large): no signatures, replaced */
		if (e->code != 404 && e->cat != FERR_INPUT)
			return -1;
		t->have = e->code != 404;
		ferr_clear(e);
		return 0;
	}
	t->have = true;
	if ((t->same = digest_equal(&have.digest, &a->digest)) ||
	    a->kind == BA_SBOM) {
		rc = 0;
	} else if (cosign_merge_plan(have.data, have.len, s->doc->data,
				     s->doc->len,
				     a->kind == BA_SIGNATURE
					 ? COSIGN_MT_SIMPLESIGNING
					 : COSIGN_MT_DSSE,
				     &how, e) == 0) {
		t->same = t->kept = how == COSIGN_MERGE_THEIRS;
		rc = how == COSIGN_MERGE_BOTH
			 ? merge_ctag(x, c, t, &have, s->doc, e)
			 : 0;
	}
	if (rc < 0)
		ferr_prefix(e, "'%s:%s'", repo, a->tag);
	reg_manifest_release(&have);
	return rc;
}

/* Write a cosign tag as prep_ctag worked it out. */
static int push_ctag(struct imp *x, struct reg_client *c, const struct atag *t,
		     const struct doc *ours, struct ferr *e)
{
	const char *repo = x->repos[t->repo].name, *tag = t->a->tag;

	if (t->same) {
		note(x, IMP_EV_TAG, t->repo, tag, 0,
		     t->kept ? "kept (a superset)" : "skipped", NULL, NULL);
		return 0;
	}
	if (x->o->dry_run) {
		note(x, IMP_EV_TAG, t->repo, tag, 0,
		     t->merge ? "would merge" : "would push", NULL, NULL);
		return 0;
	}
	if (t->merge
		? reg_put_manifest(c, repo, tag, t->merged_mt, t->merged,
				   strlen(t->merged), &t->merged_digest, e)
		: reg_put_manifest(c, repo, tag, ours->media_type, ours->data,
				   ours->len, &t->a->digest, e))
		return -1;
	note(x, IMP_EV_TAG, t->repo, tag, 0, t->merge ? "merged" : "pushed",
	     &x->res->attach_tags, &x->pr->tags_pushed);
	return 0;
}

/* Write one attachment's tag (a cosign .sig, .att or .sbom). */
static int push_atag(struct imp *x, struct reg_client *c, size_t i,
		     struct ferr *e)
{
	const struct atag *t = &x->atags[i];
	struct dset *s = set_find(x, &t->a->digest);

	if (t->a->kind == BA_REFERRERS)
		return 0; /* merged, after every tag */
	if (!t->looked || !s || !s->doc)
		return ferr_set(e, FERR_BUNDLE, 0,
				"attachment '%s' has no manifest in the bundle",
				t->a->digest.str);
	return push_ctag(x, c, t, s->doc, e);
}

/* Does the target index referrers itself?  Known from the answers to
 * this run's pushes of referrers; else asked once. */
static int target_indexes(struct imp *x, struct reg_client *c, const char *repo,
			  const struct digest *subject, struct ferr *e)
{
	json_t *mans = NULL;
	bool supported;

	if (atomic_load(&x->api))
		return atomic_load(&x->api);
	if (reg_get_referrers(c, repo, subject, &mans, &supported, e) < 0)
		return 0;
	json_decref(mans);
	atomic_store(&x->api, supported ? 1 : -1);
	return supported ? 1 : -1;
}

/* The target's referrers index at `tag` with the bundle's entries added
 * (each digest once); *same when it already lists them all. */
static int merge_index(const struct reg_manifest *have, const struct doc *ours,
		       char **out, bool *same, struct ferr *e)
{
	json_t *h = json_loadb((const char *)have->data, have->len, 0, NULL);
	json_t *o = json_loadb((const char *)ours->data, ours->len, 0, NULL);
	json_t *hm = json_object_get(h, "manifests"), *d;
	size_t i, added = 0;
	int rc = -1;

	*out = NULL;
	/* a Docker manifest list has "manifests" too, but merging into it
	 * and writing the result as an OCI index would change what the
	 * tag is */
	if (!have->media_type || strcmp(have->media_type, MT_OCI_INDEX)) {
		ferr_set(e, FERR_INPUT, 0,
			 "the target's referrers tag is not an OCI index "
			 "('%.100s')",
			 have->media_type ? have->media_type : "(none)");
		goto out;
	}
	if (!json_is_array(hm) ||
	    !json_is_array(json_object_get(o, "manifests"))) {
		ferr_set(e, FERR_INPUT, 0,
			 "the target's referrers index is "
			 "not an index with 'manifests'");
		goto out;
	}
	json_array_foreach(json_object_get(o, "manifests"), i, d)
	{
		const char *dg =
		    json_string_value(json_object_get(d, "digest"));
		json_t *hd;
		size_t k;
		bool found = false;

		json_array_foreach(hm, k, hd)
		{
			const char *hdg =
			    json_string_value(json_object_get(hd, "digest"));
			if (hdg && dg && !strcmp(hdg, dg))
				found = true;
		}
		if (!found) {
			json_array_append(hm, d);
			added++;
		}
	}
	if (json_array_size(hm) > FERRY_MAX_INDEX_ENTRIES) {
		ferr_set(e, FERR_INPUT, 0,
			 "the merged referrers index would list %zu entries, "
			 "more than %u",
			 json_array_size(hm), FERRY_MAX_INDEX_ENTRIES);
		goto out;
	}
	*same = added == 0;
	if (!*same && !(*out = json_dumps(h, JSON_COMPACT))) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	rc = 0;
out:
	json_decref(h);
	json_decref(o);
	return rc;
}

/* Where the target does not index referrers itself, the fallback tag
 * gets the bundle's referrers index merged with what the tag lists.
 * Worked out before any tag is written, so that a target whose tag
 * cannot be merged (not an index, too many entries, refused) fails the
 * import while it has moved no tag. */
static int prep_rindex(struct imp *x, struct reg_client *c, size_t i,
		       struct ferr *e)
{
	struct atag *t = &x->atags[i];
	const struct bundle_attach *a = t->a;
	const char *repo = x->repos[t->repo].name;
	struct dset *s = set_find(x, &a->digest);
	struct reg_manifest have;
	int api, rc = -1;

	if (a->kind != BA_REFERRERS)
		return 0;
	if (!s || !s->doc)
		return ferr_set(e, FERR_BUNDLE, 0,
				"referrers index '%s' is not in the bundle",
				a->digest.str);
	if ((api = target_indexes(x, c, repo, &a->subject, e)) == 0)
		return -1;
	if ((t->indexed = api > 0))
		return 0;
	memset(&have, 0, sizeof(have));
	if (reg_get_manifest(c, repo, a->tag, &have, e) < 0) {
		if (e->code != 404)
			return -1;
		ferr_clear(e);
		return 0;
	}
	t->have = true;
	if (merge_index(&have, s->doc, &t->merged, &t->same, e) < 0)
		ferr_prefix(e, "'%s:%s'", repo, a->tag);
	else
		rc = 0;
	reg_manifest_release(&have);
	return rc;
}

static int push_rindex(struct imp *x, struct reg_client *c, size_t i,
		       struct ferr *e)
{
	const struct atag *t = &x->atags[i];
	const struct bundle_attach *a = t->a;
	struct dset *s = set_find(x, &a->digest);

	if (a->kind != BA_REFERRERS)
		return 0;
	if (t->indexed) {
		note(x, IMP_EV_TAG, t->repo, a->tag, 0,
		     "not needed (the registry indexes referrers)", NULL, NULL);
		return 0;
	}
	if (t->have && t->same) {
		note(x, IMP_EV_TAG, t->repo, a->tag, 0, "skipped", NULL, NULL);
		return 0;
	}
	if (x->o->dry_run) {
		note(x, IMP_EV_TAG, t->repo, a->tag, 0,
		     t->have ? "would merge" : "would push", NULL, NULL);
		return 0;
	}
	if (reg_put_manifest(c, x->repos[t->repo].name, a->tag, MT_OCI_INDEX,
			     t->merged ? (void *)t->merged
				       : (void *)s->doc->data,
			     t->merged ? strlen(t->merged) : s->doc->len,
			     t->merged ? NULL : &a->digest, e) < 0)
		return -1;
	note(x, IMP_EV_TAG, t->repo, a->tag, 0, t->merged ? "merged" : "pushed",
	     &x->res->referrers_indexes, &x->pr->tags_pushed);
	return 0;
}

/* Before any tag: what the referrers indexes need (every attachment
 * manifest is in place by now, and its push said whether the target
 * indexes referrers). */
static int prep_attached(struct imp *x, size_t threads, struct ferr *e)
{
	if (!x->natags)
		return 0;
	if (run_items(x, NULL, 0, x->natags, prep_ctag, threads, e) < 0)
		return -1;
	return run_items(x, NULL, 0, x->natags, prep_rindex, threads, e);
}

/* After the images' tags: attachment tags, then referrers indexes (which
 * need to know whether the target indexes referrers). */
static int push_attached(struct imp *x, size_t threads, struct ferr *e)
{
	if (!x->natags)
		return 0;
	if (run_items(x, NULL, 0, x->natags, push_atag, threads, e) < 0 ||
	    run_items(x, NULL, 0, x->natags, push_rindex, threads, e) < 0)
		return -1;
	x->res->target_indexes_referrers = atomic_load(&x->api);
	return 0;
}

void imp_result_release(struct imp_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nimages; i++) {
		free(r->images[i].source);
		free(r->images[i].target);
		free(r->images[i].repo);
	}
	free(r->images);
	r->images = NULL;
	r->nimages = 0;
	free(r->stale);
	r->stale = NULL;
	bundle_header_release(&r->hdr);
}

/* ---- the run ---- */

/* Small blobs and manifests cost the registry a request or two each, not
 * bandwidth or memory: twice the connections for them keeps it busy while
 * each answer is on its way.  Large blobs stream on at most `jobs`. */
static size_t worker_count(const struct imp_opts *o)
{
	size_t n = 2 * upload_jobs(o);

	return n > MAX_WORKERS ? MAX_WORKERS : n;
}

static int imp_init(struct imp *x, const struct imp_opts *o,
		    struct imp_result *res, struct ferr *e)
{
	char *sd;
	size_t n;

	memset(x, 0, sizeof(*x));
	memset(res, 0, sizeof(*res));
	x->o = o;
	x->res = res;
	x->lock_fd = -1;
	x->pr = o->progress ? o->progress : &x->dummy;
	x->ropts = *o->reg;
	pthread_mutex_init(&x->mu, NULL);
	pthread_cond_init(&x->cv, NULL);
	sd = o->state_dir ? strdup(o->state_dir) : imp_default_state_dir();
	if (!sd)
		return ferr_set(
		    e, FERR_IO, 0,
		    "no state directory: set HOME or use --state-dir");
	n = strlen(sd) + 32;
	x->state_path = malloc(n);
	if (x->state_path)
		snprintf(x->state_path, n, "%s/import-state.json", sd);
	free(sd);
	if (!x->state_path)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (reg_client_init(&x->main, o->host, &x->ropts, e) < 0 ||
	    reg_ping(x->main, e) < 0)
		return -1;
	/* the rollback record is keyed by the registry, not by its spelling */
	if (imp_target_key(o->host, o->prefix, reg_client_scheme(x->main),
			   x->target_key, sizeof(x->target_key)) < 0)
		return ferr_set(e, FERR_USAGE, 0, "target '%s' is too long",
				o->host);
	for (x->nclients = 0; x->nclients < worker_count(o); x->nclients++)
		if (reg_client_init(&x->clients[x->nclients], o->host,
				    &x->ropts, e) < 0)
			return -1;
	return 0;
}

/* Read and verify the bundle while the workers upload its blobs.  1: the
 * bundle was imported before and the target still has all its tags. */
static int imp_read(struct imp *x, const char *bundle, struct ferr *e)
{
	struct bundle_ops ops = {on_header,   on_blob_begin, on_blob_data,
				 on_blob_end, on_blob_abort, NULL};
	struct bundle_stats st;
	int rr;

	if (start_workers(x, x->wctx, x->nclients, blob_worker, e) < 0)
		return -1;
	memset(&st, 0, sizeof(st));
	rr = bundle_read(bundle, x->o->key, &ops, x, &x->res->hdr, &st, e);
	x->res->blobs = st.blobs;
	x->res->blob_bytes = st.blob_bytes;
	if (rr < 0 && x->already) {
		ferr_clear(e);
		return 1;
	}
	if (rr < 0) {
		/* the worker's error is the cause when it set one */
		pthread_mutex_lock(&x->mu);
		if (x->failed && (e->cat == FERR_OK || e->cat == x->err.cat ||
				  !strcmp(e->msg, x->err.msg)))
			*e = x->err;
		pthread_mutex_unlock(&x->mu);
		return -1;
	}
	join_workers(x); /* every upload complete */
	if (x->failed) {
		*e = x->err;
		return -1;
	}
	return 0;
}

static void imp_release(struct imp *x, bool failed, const struct ferr *e)
{
	pthread_mutex_lock(&x->mu);
	if (failed && !x->failed) {
		x->failed = true; /* wake workers waiting for data */
		x->err = *e;
	}
	pthread_mutex_unlock(&x->mu);
	join_workers(x);
	pthread_mutex_lock(&x->mu);
	if (x->cur)
		job_unref(x, x->cur);
	mem_put(x, x->cur_chunk, IMP_CHUNK);
	for (struct job *j = x->queue_head, *n; j; j = n) {
		n = j->next;
		job_unref(x, j);
	}
	pthread_mutex_unlock(&x->mu);
	reg_client_release(x->main);
	for (size_t i = 0; i < x->nclients; i++)
		reg_client_release(x->clients[i]);
	for (size_t i = 0; i < x->nrepos; i++)
		free(x->repos[i].name);
	free(x->repos);
	idx_release(&x->repo_idx);
	free(x->image_repo);
	for (size_t i = 0; i < x->nsets; i++) {
		if (x->sets[i]->doc)
			free(x->sets[i]->doc->data);
		free(x->sets[i]->doc);
		free(x->sets[i]->repos);
		free(x->sets[i]->placed);
		free(x->sets[i]);
	}
	free(x->sets);
	idx_release(&x->set_idx);
	free(x->docs);
	free(x->omit_have);
	for (size_t i = 0; x->atags && i <= x->natags; i++) {
		free(x->atags[i].merged);
		free(x->atags[i].key);
	}
	free(x->atags);
	free(x->state_path);
	if (x->lock_fd >= 0)
		close(x->lock_fd);
	pthread_mutex_destroy(&x->mu);
	pthread_cond_destroy(&x->cv);
}

int imp_run(const struct imp_opts *o, const char *bundle,
	    struct imp_result *res, struct ferr *e)
{
	struct imp X, *x = &X;
	int rc = -1, rr;

	if (imp_init(x, o, res, e) < 0)
		goto out;
	rr = imp_read(x, bundle, e);
	if (rr < 0)
		goto out;
	if (rr == 1) {
		res->already_imported = true;
		rc = 0;
		goto out;
	}
	if (check_omitted(x, e) < 0 || push_docs(x, x->nclients, e) < 0 ||
	    prep_attached(x, x->nclients, e) < 0 ||
	    push_tags(x, x->nclients, e) < 0 ||
	    push_attached(x, x->nclients, e) < 0)
		goto out;
	if (!o->dry_run && state_save(x, &res->hdr, e) < 0)
		goto out;
	res->bytes_pushed = atomic_load(&x->pr->bytes_pushed);
	atomic_store(&x->pr->phase, 3);
	rc = 0;
out:
	imp_release(x, rc < 0, e);
	return rc;
}
