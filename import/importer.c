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
#include "ref.h"

#define MAX_WORKERS 16

/* ---- naming ---- */

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
	snprintf(dom, sizeof(dom), "%s", r.domain);
	for (char *p = dom; *p; p++) {
		if (*p == ':')
			*p = '-';
		else if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
		else if (*p == '[' || *p == ']')
			*p = '-';
	}
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

/* ---- engine state ---- */

struct job {
	struct digest d;
	uint64_t size;
	size_t repo;     /* upload here */
	size_t *mounts;  /* then mount into these */
	size_t nmounts;
	int ring[IMP_CHUNKS];
	size_t rlen[IMP_CHUNKS];
	size_t rhead, rcount;
	size_t rpos; /* read position inside the head chunk */
	bool data_done;
	int verdict; /* 0 pending, 1 verified, -1 aborted */
	int state;   /* 0 queued, 1 running, 2 done */
	struct job *next;     /* in the queue */
	struct job *all_next; /* every job, for release */
	struct imp *x;
};

struct doc {
	struct digest d;
	char media_type[128];
	unsigned char *data;
	size_t len;
	int kind;
};

struct dset { /* which target repositories need a digest */
	struct digest d;
	size_t *repos;
	size_t n;
};

struct imp {
	const struct imp_opts *o;
	struct reg_opts ropts;
	struct imp_progress dummy, *pr;
	struct reg_client *main;
	char **repos; /* distinct target repositories */
	size_t nrepos;
	struct dset *sets;
	size_t nsets;
	struct doc *docs;
	size_t ndocs;
	/* workers */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned char *bufs[IMP_CHUNKS];
	bool used[IMP_CHUNKS];
	struct job *queue_head, *queue_tail, *all;
	bool stop, failed;
	struct ferr err;
	pthread_t th[MAX_WORKERS];
	size_t nth;
	/* current blob */
	struct job *cur;
	int cur_buf;
	size_t cur_fill;
	bool cur_is_doc;
	struct imp_result *res;
	bool already;
	char *state_path;
	char target_key[600];
};

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

static void emit(struct imp *x, enum imp_event_type t, size_t repo,
		 const char *what, uint64_t size, const char *action)
{
	struct imp_event ev;

	if (!x->o->event)
		return;
	ev.type = t;
	ev.repo = x->repos[repo];
	ev.what = what;
	ev.size = size;
	ev.action = action;
	pthread_mutex_lock(&x->mu);
	x->o->event(x->o->event_ctx, &ev);
	pthread_mutex_unlock(&x->mu);
}

static size_t repo_id(struct imp *x, const char *repo, struct ferr *e)
{
	char **n;

	for (size_t i = 0; i < x->nrepos; i++)
		if (!strcmp(x->repos[i], repo))
			return i;
	n = realloc(x->repos, (x->nrepos + 1) * sizeof(*n));
	if (!n || !(n[x->nrepos] = strdup(repo))) {
		if (n)
			x->repos = n;
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		return (size_t)-1;
	}
	x->repos = n;
	return x->nrepos++;
}

static struct dset *set_for(struct imp *x, const struct digest *d, bool create)
{
	struct dset *n;

	for (size_t i = 0; i < x->nsets; i++)
		if (digest_equal(&x->sets[i].d, d))
			return &x->sets[i];
	if (!create)
		return NULL;
	n = realloc(x->sets, (x->nsets + 1) * sizeof(*n));
	if (!n)
		return NULL;
	x->sets = n;
	memset(&x->sets[x->nsets], 0, sizeof(*n));
	x->sets[x->nsets].d = *d;
	return &x->sets[x->nsets++];
}

static int set_add(struct imp *x, const struct digest *d, size_t repo,
		   struct ferr *e)
{
	struct dset *s = set_for(x, d, true);
	size_t *n;

	if (!s)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < s->n; i++)
		if (s->repos[i] == repo)
			return 0;
	n = realloc(s->repos, (s->n + 1) * sizeof(*n));
	if (!n)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	s->repos = n;
	s->repos[s->n++] = repo;
	return 0;
}

/* ---- workers ---- */

static void release_chunk(struct imp *x, int b)
{
	x->used[b] = false;
	pthread_cond_broadcast(&x->cv);
}

/* curl read callback: hand out the job's queued chunks in order. */
static size_t job_read(char *out, size_t size, size_t nmemb, void *ud)
{
	struct job *j = ud;
	struct imp *x = j->x;
	size_t want = size * nmemb, n;

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
	{
		int b = j->ring[j->rhead];
		size_t left = j->rlen[j->rhead] - j->rpos;
		pthread_mutex_unlock(&x->mu);
		n = left < want ? left : want;
		memcpy(out, x->bufs[b] + j->rpos, n);
		pthread_mutex_lock(&x->mu);
		j->rpos += n;
		if (j->rpos == j->rlen[j->rhead]) {
			j->rpos = 0;
			j->rhead = (j->rhead + 1) % IMP_CHUNKS;
			j->rcount--;
			release_chunk(x, b);
		}
	}
	pthread_mutex_unlock(&x->mu);
	atomic_fetch_add(&x->pr->bytes_pushed, (unsigned long long)n);
	return n;
}

static void job_drop_chunks(struct imp *x, struct job *j)
{
	while (j->rcount) {
		release_chunk(x, j->ring[j->rhead]);
		j->rhead = (j->rhead + 1) % IMP_CHUNKS;
		j->rcount--;
	}
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

static int run_job(struct imp *x, struct reg_client *c, struct job *j,
		   struct ferr *e)
{
	char *url = NULL;
	bool mounted;
	int rc = -1;

	if (reg_upload_start(c, x->repos[j->repo], NULL, NULL, &mounted, &url,
			     e) < 0)
		goto out;
	if (j->size <= IMP_SMALL) {
		/* small: one PUT with the data, once verified */
		int b = -1;
		size_t len = 0;
		if (job_verdict(x, j) < 0)
			goto cancel;
		pthread_mutex_lock(&x->mu);
		if (j->rcount) {
			b = j->ring[j->rhead];
			len = j->rlen[j->rhead];
		}
		pthread_mutex_unlock(&x->mu);
		if (len != j->size) {
			ferr_set(e, FERR_IO, 0, "internal error: blob '%s' data",
				 j->d.str);
			goto cancel;
		}
		rc = reg_upload_finish(c, &url, &j->d, b >= 0 ? (const void *)x->bufs[b] : "",
				       len, e);
		if (rc == 0)
			atomic_fetch_add(&x->pr->bytes_pushed,
					 (unsigned long long)len);
		if (rc < 0)
			goto out;
	} else {
		/* large: one streamed PATCH, fed chunk by chunk as the reader
		 * fills the buffers (one PATCH per chunk instead makes the
		 * registry save its hash state per chunk: 30% slower) */
		if (reg_upload_stream(c, &url, j->size, job_read, j, e) < 0) {
			if (e->cat == FERR_OK || x->failed || j->verdict < 0)
				goto cancel;
			goto cancel_err;
		}
		/* complete it only once the reader has checked the digest */
		if (job_verdict(x, j) < 0)
			goto cancel;
		if (reg_upload_finish(c, &url, &j->d, NULL, 0, e) < 0)
			goto out;
	}
	atomic_fetch_add(&x->pr->blobs_pushed, 1);
	emit(x, IMP_EV_BLOB, j->repo, j->d.str, j->size, "pushed");
	x->res->pushed++;
	for (size_t i = 0; i < j->nmounts; i++) {
		char *u2 = NULL;
		if (reg_upload_start(c, x->repos[j->mounts[i]], &j->d,
				     x->repos[j->repo], &mounted, &u2, e) < 0)
			goto out;
		if (!mounted) {
			reg_upload_cancel(c, u2);
			free(u2);
			ferr_set(e, FERR_NETWORK, 0,
				 "registry '%s' did not mount '%s' into '%s'",
				 x->o->host, j->d.str, x->repos[j->mounts[i]]);
			goto out;
		}
		free(u2);
		atomic_fetch_add(&x->pr->blobs_mounted, 1);
		x->res->mounted++;
		emit(x, IMP_EV_BLOB, j->mounts[i], j->d.str, j->size, "mounted");
	}
	rc = 0;
	goto out;
cancel:
	ferr_clear(e);
cancel_err:
	if (url)
		reg_upload_cancel(c, url);
	rc = e->cat == FERR_OK ? 1 : -1; /* 1: cancelled on the reader's word */
out:
	free(url);
	return rc;
}

static void *worker(void *arg)
{
	struct imp *x = arg;
	struct reg_client *c = NULL;
	struct ferr e;

	ferr_clear(&e);
	if (reg_client_init(&c, x->o->host, &x->ropts, &e) < 0) {
		fail(x, &e);
		return NULL;
	}
	for (;;) {
		struct job *j;
		int rc;

		pthread_mutex_lock(&x->mu);
		while (!x->queue_head && !x->stop)
			pthread_cond_wait(&x->cv, &x->mu);
		if (!x->queue_head) {
			pthread_mutex_unlock(&x->mu);
			break;
		}
		j = x->queue_head;
		x->queue_head = j->next;
		if (!x->queue_head)
			x->queue_tail = NULL;
		j->state = 1;
		pthread_mutex_unlock(&x->mu);
		ferr_clear(&e);
		rc = x->failed ? 1 : run_job(x, c, j, &e);
		pthread_mutex_lock(&x->mu);
		job_drop_chunks(x, j);
		j->state = 2;
		pthread_cond_broadcast(&x->cv);
		pthread_mutex_unlock(&x->mu);
		if (rc < 0)
			fail(x, &e);
	}
	reg_client_release(c);
	return NULL;
}

/* ---- reader callbacks (reader thread) ---- */

static int state_check(struct imp *x, const struct bundle_header *h,
		       struct ferr *e);

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
		size_t n = strcspn(x->repos[i], "/");
		bool dup = false;

		if (n >= sizeof(proj))
			n = sizeof(proj) - 1;
		memcpy(proj, x->repos[i], n);
		proj[n] = '\0';
		for (size_t k = 0; k < i; k++)
			dup |= !strncmp(x->repos[k], proj, n) &&
			       (x->repos[k][n] == '/' || !x->repos[k][n]);
		if (dup)
			continue;
		snprintf(path, sizeof(path), "/api/v2.0/projects?project_name=%s",
			 proj);
		ferr_clear(&pe);
		if (reg_api(x->main, "HEAD", path, NULL, &st, &pe) == 0)
			continue;
		if (st != 404) {
			*e = pe;
			return ferr_prefix(e, "cannot check Harbor project '%s'",
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
			return ferr_prefix(e, "cannot create Harbor project '%s'",
					   proj);
		}
		x->res->projects_created++;
	}
	return 0;
}

static int on_header(void *ctx, const struct bundle_header *h, struct ferr *e)
{
	struct imp *x = ctx;

	if (state_check(x, h, e) < 0)
		return -1;
	if (x->already)
		return ferr_set(e, FERR_OK, 0, "already imported");
	x->res->images = calloc(h->nimages + 1, sizeof(*x->res->images));
	if (!x->res->images)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < h->nimages; i++) {
		struct imp_image *im = &x->res->images[i];
		char *tag = NULL, *repo = NULL;
		size_t id;
		size_t n;

		if (imp_target_repo(h->images[i].ref, x->o->prefix,
				    x->o->keep_registry, &repo, &tag, e) < 0)
			return ferr_prefix(e, "bundle image");
		im->source = strdup(h->images[i].ref);
		im->repo = repo;
		im->digest = h->images[i].digest;
		n = strlen(x->o->host) + strlen(repo) + 80 + (tag ? strlen(tag) : 0);
		im->target = malloc(n);
		if (!im->source || !im->target)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		snprintf(im->target, n, "%s/%s%s%s", x->o->host, repo,
			 tag ? ":" : "@", tag ? tag : im->digest.str);
		free(tag);
		x->res->nimages++;
		id = repo_id(x, repo, e);
		if (id == (size_t)-1 || set_add(x, &im->digest, id, e) < 0)
			return -1;
	}
	return harbor_projects(x, e);
}

static int get_buffer(struct imp *x, struct ferr *e)
{
	pthread_mutex_lock(&x->mu);
	for (;;) {
		if (x->failed) {
			*e = x->err;
			pthread_mutex_unlock(&x->mu);
			return -1;
		}
		for (int i = 0; i < IMP_CHUNKS; i++)
			if (!x->used[i]) {
				x->used[i] = true;
				pthread_mutex_unlock(&x->mu);
				return i;
			}
		pthread_cond_wait(&x->cv, &x->mu);
	}
}

static void push_chunk(struct imp *x)
{
	struct job *j = x->cur;

	pthread_mutex_lock(&x->mu);
	j->ring[(j->rhead + j->rcount) % IMP_CHUNKS] = x->cur_buf;
	j->rlen[(j->rhead + j->rcount) % IMP_CHUNKS] = x->cur_fill;
	j->rcount++;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	x->cur_buf = -1;
	x->cur_fill = 0;
}

static int on_blob_begin(void *ctx, const struct bundle_blob *b, struct ferr *e)
{
	struct imp *x = ctx;
	struct dset *s = set_for(x, &b->digest, false);
	size_t *missing = NULL, nmiss = 0, have = (size_t)-1;
	struct job *j;
	int rc = -1;

	x->cur = NULL;
	x->cur_is_doc = b->kind <= BK_MANIFEST;
	if (x->failed) {
		*e = x->err;
		return -1;
	}
	if (!s || !s->n)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'%s' is not part of any image in the bundle",
				b->path);
	if (x->cur_is_doc)
		return 0; /* kept in memory, pushed at the end */
	missing = calloc(s->n, sizeof(*missing));
	if (!missing)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < s->n; i++) {
		struct reg_head h;
		if (reg_head_blob(x->main, x->repos[s->repos[i]], &b->digest, &h,
				  e) < 0)
			goto out;
		if (h.found && (!h.size || h.size == b->size))
			have = s->repos[i];
		else
			missing[nmiss++] = s->repos[i];
	}
	for (size_t i = 0; i < s->n; i++) {
		bool m = false;
		for (size_t k = 0; k < nmiss; k++)
			m |= missing[k] == s->repos[i];
		if (!m) {
			atomic_fetch_add(&x->pr->blobs_skipped, 1);
			x->res->skipped++;
			emit(x, IMP_EV_BLOB, s->repos[i], b->digest.str, b->size,
			     "skipped");
		}
	}
	if (!nmiss) {
		rc = 0;
		goto out;
	}
	x->res->bytes_to_push += b->size;
	if (x->o->dry_run) {
		for (size_t k = 0; k < nmiss; k++)
			emit(x, IMP_EV_BLOB, missing[k], b->digest.str, b->size,
			     have != (size_t)-1 || k ? "would mount"
						     : "would push");
		rc = 0;
		goto out;
	}
	if (have != (size_t)-1) {
		/* the registry has it elsewhere: mount instead of sending */
		size_t keep = 0;
		for (size_t k = 0; k < nmiss; k++) {
			bool mounted;
			char *u = NULL;
			if (reg_upload_start(x->main, x->repos[missing[k]],
					     &b->digest, x->repos[have], &mounted,
					     &u, e) < 0)
				goto out;
			if (mounted) {
				atomic_fetch_add(&x->pr->blobs_mounted, 1);
				x->res->mounted++;
				emit(x, IMP_EV_BLOB, missing[k], b->digest.str,
				     b->size, "mounted");
			} else {
				reg_upload_cancel(x->main, u);
				missing[keep++] = missing[k];
			}
			free(u);
		}
		nmiss = keep;
		if (!nmiss) {
			rc = 0;
			goto out;
		}
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	j->x = x;
	j->d = b->digest;
	j->size = b->size;
	j->repo = missing[0];
	j->nmounts = nmiss - 1;
	j->mounts = missing;
	memmove(missing, missing + 1, (nmiss - 1) * sizeof(*missing));
	missing = NULL;
	pthread_mutex_lock(&x->mu);
	j->next = NULL;
	if (x->queue_tail)
		x->queue_tail->next = j;
	else
		x->queue_head = j;
	x->queue_tail = j;
	j->all_next = x->all; /* every job is released at the end */
	x->all = j;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	x->cur = j;
	x->cur_buf = -1;
	x->cur_fill = 0;
	rc = 0;
out:
	free(missing);
	return rc;
}

static int on_blob_data(void *ctx, const void *p, size_t n, struct ferr *e)
{
	struct imp *x = ctx;
	const unsigned char *q = p;

	atomic_fetch_add(&x->pr->bytes_read, (unsigned long long)n);
	if (!x->cur)
		return 0;
	while (n) {
		size_t k;
		if (x->cur_buf < 0) {
			x->cur_buf = get_buffer(x, e);
			if (x->cur_buf < 0)
				return -1;
		}
		k = IMP_CHUNK - x->cur_fill;
		if (k > n)
			k = n;
		memcpy(x->bufs[x->cur_buf] + x->cur_fill, q, k);
		x->cur_fill += k;
		q += k;
		n -= k;
		if (x->cur_fill == IMP_CHUNK)
			push_chunk(x);
	}
	return 0;
}

static int on_blob_end(void *ctx, const struct bundle_blob *b, struct ferr *e)
{
	struct imp *x = ctx;

	if (x->cur_is_doc) {
		struct dset *s = set_for(x, &b->digest, false);
		struct doc *nd = realloc(x->docs, (x->ndocs + 1) * sizeof(*nd));
		json_t *root;
		size_t i;
		json_t *d;

		if (!nd)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		x->docs = nd;
		nd = &x->docs[x->ndocs];
		memset(nd, 0, sizeof(*nd));
		nd->d = b->digest;
		nd->kind = b->kind;
		snprintf(nd->media_type, sizeof(nd->media_type), "%s",
			 b->media_type);
		nd->data = malloc(b->doc_len + 1);
		if (!nd->data)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		memcpy(nd->data, b->doc, b->doc_len);
		nd->len = b->doc_len;
		x->ndocs++;
		/* children go where their parent goes */
		root = json_loadb((const char *)b->doc, b->doc_len, 0, NULL);
		if (!root)
			return ferr_set(e, FERR_BUNDLE, 0, "'%s' does not parse",
					b->path);
		for (size_t r = 0; s && r < s->n; r++) {
			size_t repo = s->repos[r];
			json_t *arr = json_object_get(root, b->kind == BK_INDEX
								? "manifests"
								: "layers");
			struct digest cd;
			json_array_foreach(arr, i, d)
			{
				if (digest_parse(&cd,
						 json_string_value(json_object_get(
						     d, "digest")),
						 e) < 0 ||
				    set_add(x, &cd, repo, e) < 0) {
					json_decref(root);
					return -1;
				}
			}
			if (b->kind == BK_MANIFEST &&
			    (digest_parse(&cd,
					  json_string_value(json_object_get(
					      json_object_get(root, "config"),
					      "digest")),
					  e) < 0 ||
			     set_add(x, &cd, repo, e) < 0)) {
				json_decref(root);
				return -1;
			}
			s = set_for(x, &b->digest, false); /* may have moved */
		}
		json_decref(root);
		return 0;
	}
	if (!x->cur)
		return 0;
	if (x->cur_buf >= 0 && x->cur_fill)
		push_chunk(x);
	else if (x->cur_buf >= 0) {
		pthread_mutex_lock(&x->mu);
		release_chunk(x, x->cur_buf);
		pthread_mutex_unlock(&x->mu);
		x->cur_buf = -1;
	}
	pthread_mutex_lock(&x->mu);
	x->cur->data_done = true;
	x->cur->verdict = 1;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	x->cur = NULL;
	return 0;
}

static void on_blob_abort(void *ctx)
{
	struct imp *x = ctx;

	if (!x->cur)
		return;
	pthread_mutex_lock(&x->mu);
	if (x->cur_buf >= 0)
		release_chunk(x, x->cur_buf);
	x->cur_buf = -1;
	x->cur->data_done = true;
	x->cur->verdict = -1;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	x->cur = NULL;
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
		return ferr_set(e, FERR_IO, 0,
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
		const char *c = json_string_value(json_object_get(v, "channel"));
		if (t && k && c && !strcmp(t, target) && !strcmp(k, key) &&
		    !strcmp(c, channel))
			return v;
	}
	return NULL;
}

static int state_check(struct imp *x, const struct bundle_header *h,
		       struct ferr *e)
{
	json_t *root = NULL, *ent;
	int rc = -1;

	if (state_load(x, &root, e) < 0)
		return -1;
	ent = state_find(root, x->target_key, h->key_id, h->channel);
	if (ent) {
		uint64_t seq = (uint64_t)json_integer_value(
		    json_object_get(ent, "sequence"));
		const char *id = json_string_value(json_object_get(ent, "bundleId"));
		if (id && !strcmp(id, h->bundle_id)) {
			x->already = true;
		} else if ((seq > h->sequence || (seq == h->sequence)) &&
			   !x->o->allow_rollback) {
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

static int state_save(struct imp *x, const struct bundle_header *h,
		      struct ferr *e)
{
	json_t *root = NULL, *ent;
	char *tmp = NULL, *dir = NULL, when[32];
	int fd = -1, lock = -1, rc = -1;
	size_t n;

	dir = strdup(x->state_path);
	if (!dir)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	*strrchr(dir, '/') = '\0';
	for (char *p = dir + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			mkdir(dir, 0700);
			*p = '/';
		}
	mkdir(dir, 0700);
	n = strlen(x->state_path) + 16;
	tmp = malloc(n);
	if (!tmp) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	snprintf(tmp, n, "%s.lock", x->state_path);
	lock = open(tmp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock < 0 || flock(lock, LOCK_EX) < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot lock '%s'", tmp);
		goto out;
	}
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
	json_object_set_new(ent, "sequence", json_integer((json_int_t)h->sequence));
	json_object_set_new(ent, "bundleId", json_string(h->bundle_id));
	json_object_set_new(ent, "imported", json_string(when));
	snprintf(tmp, n, "%s.XXXXXX", x->state_path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot write '%s'", x->state_path);
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
	if (lock >= 0)
		close(lock);
	json_decref(root);
	free(tmp);
	free(dir);
	return rc;
}

/* ---- after the bundle: manifests, indexes, tags ---- */

static int push_docs(struct imp *x, struct ferr *e)
{
	atomic_store(&x->pr->phase, 1);
	/* image manifests first, then indexes from the innermost out */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = 0; k < x->ndocs; k++) {
			size_t i = pass == 0 ? k : x->ndocs - 1 - k;
			struct doc *d = &x->docs[i];
			struct dset *s = set_for(x, &d->d, false);

			if ((pass == 0) != (d->kind == BK_MANIFEST))
				continue;
			for (size_t r = 0; s && r < s->n; r++) {
				struct reg_head h;
				const char *repo = x->repos[s->repos[r]];
				if (reg_head_manifest(x->main, repo, d->d.str, &h,
						      e) < 0)
					return -1;
				if (h.found) {
					x->res->manifests_skipped++;
					emit(x, IMP_EV_MANIFEST, s->repos[r],
					     d->d.str, d->len, "skipped");
					continue;
				}
				if (x->o->dry_run) {
					emit(x, IMP_EV_MANIFEST, s->repos[r],
					     d->d.str, d->len, "would push");
					continue;
				}
				if (reg_put_manifest(x->main, repo, d->d.str,
						     d->media_type, d->data,
						     d->len, &d->d, e) < 0)
					return -1;
				x->res->manifests_pushed++;
				atomic_fetch_add(&x->pr->manifests_pushed, 1);
				emit(x, IMP_EV_MANIFEST, s->repos[r], d->d.str,
				     d->len, "pushed");
			}
		}
	}
	return 0;
}

static struct doc *doc_for(struct imp *x, const struct digest *d)
{
	for (size_t i = 0; i < x->ndocs; i++)
		if (digest_equal(&x->docs[i].d, d))
			return &x->docs[i];
	return NULL;
}

static int push_tags(struct imp *x, struct ferr *e)
{
	atomic_store(&x->pr->phase, 2);
	for (size_t i = 0; i < x->res->nimages; i++) {
		struct imp_image *im = &x->res->images[i];
		const char *tag = strrchr(im->target, ':');
		struct doc *d = doc_for(x, &im->digest);
		struct reg_head h;
		size_t rid;

		if (!tag || strchr(tag, '/') || strchr(im->target, '@'))
			continue; /* digest reference: nothing to tag */
		tag++;
		if (!d)
			return ferr_set(e, FERR_BUNDLE, 0,
					"image '%s' has no manifest in the bundle",
					im->source);
		rid = repo_id(x, im->repo, e);
		if (reg_head_manifest(x->main, im->repo, tag, &h, e) < 0)
			return -1;
		if (h.found && h.has_digest && digest_equal(&h.digest, &im->digest)) {
			emit(x, IMP_EV_TAG, rid, tag, 0, "skipped");
			continue;
		}
		if (x->o->dry_run) {
			emit(x, IMP_EV_TAG, rid, tag, 0,
			     h.found ? "would move" : "would push");
			continue;
		}
		if (reg_put_manifest(x->main, im->repo, tag, d->media_type,
				     d->data, d->len, &im->digest, e) < 0)
			return -1;
		x->res->tags++;
		atomic_fetch_add(&x->pr->tags_pushed, 1);
		emit(x, IMP_EV_TAG, rid, tag, 0, "pushed");
	}
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
	bundle_header_release(&r->hdr);
}

int imp_run(const struct imp_opts *o, const char *bundle,
	    struct imp_result *res, struct ferr *e)
{
	struct imp X, *x = &X;
	struct bundle_ops ops = {on_header, on_blob_begin, on_blob_data,
				 on_blob_end, on_blob_abort, NULL};
	struct bundle_stats st;
	char *sd = NULL;
	int rc = -1, rr;

	memset(x, 0, sizeof(*x));
	memset(res, 0, sizeof(*res));
	x->o = o;
	x->res = res;
	x->pr = o->progress ? o->progress : &x->dummy;
	x->ropts = *o->reg;
	x->cur_buf = -1;
	pthread_mutex_init(&x->mu, NULL);
	pthread_cond_init(&x->cv, NULL);
	snprintf(x->target_key, sizeof(x->target_key), "%s%s%s", o->host,
		 o->prefix ? "/" : "", o->prefix ? o->prefix : "");
	sd = o->state_dir ? strdup(o->state_dir) : imp_default_state_dir();
	if (!sd) {
		ferr_set(e, FERR_IO, 0,
			 "no state directory: set HOME or use --state-dir");
		goto out;
	}
	x->state_path = malloc(strlen(sd) + 32);
	if (!x->state_path) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	snprintf(x->state_path, strlen(sd) + 32, "%s/import-state.json", sd);
	if (reg_client_init(&x->main, o->host, &x->ropts, e) < 0 ||
	    reg_ping(x->main, e) < 0)
		goto out;
	for (int i = 0; i < IMP_CHUNKS; i++) {
		x->bufs[i] = malloc(IMP_CHUNK);
		if (!x->bufs[i]) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
	}
	if (!o->dry_run) {
		size_t n = (size_t)(o->jobs > 0 ? o->jobs : 4);
		if (n > MAX_WORKERS)
			n = MAX_WORKERS;
		for (x->nth = 0; x->nth < n; x->nth++)
			if (pthread_create(&x->th[x->nth], NULL, worker, x) != 0) {
				ferr_set(e, FERR_IO, errno, "cannot start a thread");
				goto out;
			}
	}
	rr = bundle_read(bundle, o->key, &ops, x, &res->hdr, &st, e);
	res->blobs = st.blobs;
	res->blob_bytes = st.blob_bytes;
	if (rr < 0 && x->already) {
		res->already_imported = true;
		ferr_clear(e);
		rc = 0;
		goto out;
	}
	if (rr < 0) {
		/* the worker's error is the cause when it set one */
		if (x->failed && (e->cat == FERR_OK || e->cat == x->err.cat ||
				  !strcmp(e->msg, x->err.msg)))
			*e = x->err;
		goto out;
	}
	/* wait until every upload is complete */
	pthread_mutex_lock(&x->mu);
	x->stop = true;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	for (size_t i = 0; i < x->nth; i++)
		pthread_join(x->th[i], NULL);
	x->nth = 0;
	if (x->failed) {
		*e = x->err;
		goto out;
	}
	if (push_docs(x, e) < 0 || push_tags(x, e) < 0)
		goto out;
	if (!o->dry_run && state_save(x, &res->hdr, e) < 0)
		goto out;
	res->bytes_pushed = atomic_load(&x->pr->bytes_pushed);
	atomic_store(&x->pr->phase, 3);
	rc = 0;
out:
	pthread_mutex_lock(&x->mu);
	x->stop = true;
	if (rc < 0 && !x->failed) {
		x->failed = true; /* wake workers waiting for data */
		x->err = *e;
	}
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	for (size_t i = 0; i < x->nth; i++)
		pthread_join(x->th[i], NULL);
	for (struct job *j = x->all, *n; j; j = n) {
		n = j->all_next;
		free(j->mounts);
		free(j);
	}
	reg_client_release(x->main);
	for (int i = 0; i < IMP_CHUNKS; i++)
		free(x->bufs[i]);
	for (size_t i = 0; i < x->nrepos; i++)
		free(x->repos[i]);
	free(x->repos);
	for (size_t i = 0; i < x->nsets; i++)
		free(x->sets[i].repos);
	free(x->sets);
	for (size_t i = 0; i < x->ndocs; i++)
		free(x->docs[i].data);
	free(x->docs);
	free(x->state_path);
	free(sd);
	pthread_mutex_destroy(&x->mu);
	pthread_cond_destroy(&x->cv);
	return rc;
}
