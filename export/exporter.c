#include "exporter.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "bounds.h"

#define COPY_CHUNK (1024 * 1024)
#define MAX_CLIENTS 64

enum item_kind { K_INDEX = 0, K_MANIFEST = 1, K_CONFIG = 2, K_LAYER = 3 };
enum item_state { S_PENDING = 0, S_DONE, S_FAILED };

/* One blob entry of the bundle. */
struct item {
	struct digest d;
	uint64_t size;
	enum item_kind kind;
	const char *media_type; /* manifests and indexes */
	unsigned char *data;    /* manifests and indexes live in memory */
	char *host, *repo;      /* where configs and layers are fetched */
	size_t seq;             /* order of first appearance */
	int state;
	bool cached;
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

struct exporter {
	const struct exp_opts *o;
	struct reg_opts ropts;
	volatile sig_atomic_t abort;
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
};

/* ---- small helpers ---- */

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	int n;
	char *s;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

static void emit(struct exporter *x, const struct exp_event *ev)
{
	if (!x->o->event)
		return;
	pthread_mutex_lock(&x->evmu);
	x->o->event(x->o->event_ctx, ev);
	pthread_mutex_unlock(&x->evmu);
}

static int mkdirs(const char *path, struct ferr *e)
{
	char tmp[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(tmp))
		return ferr_set(e, FERR_IO, ENAMETOOLONG, "path too long: '%s'",
				path);
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return ferr_errno(e, FERR_IO, errno,
					  "cannot create directory '%s'", tmp);
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return ferr_errno(e, FERR_IO, errno,
				  "cannot create directory '%s'", tmp);
	return 0;
}

char *exp_default_cache_dir(void)
{
	const char *x = getenv("XDG_CACHE_HOME");
	const char *h = getenv("HOME");

	if (x && *x == '/')
		return xasprintf("%s/ferry", x);
	if (h && *h)
		return xasprintf("%s/.cache/ferry", h);
	return xasprintf("/tmp/ferry-cache-%ld", (long)getuid());
}

/* ---- item table ---- */

static size_t hash_digest(const struct digest *d)
{
	size_t h = 0;
	const char *p = digest_hex(d);

	for (int i = 0; i < 16; i++)
		h = h * 16 + (size_t)(p[i] <= '9' ? p[i] - '0' : p[i] - 'a' + 10);
	return h;
}

static struct item *find_item(struct exporter *x, const struct digest *d)
{
	if (!x->htcap)
		return NULL;
	for (size_t i = hash_digest(d) % x->htcap;; i = (i + 1) % x->htcap) {
		size_t v = x->ht[i];
		if (!v)
			return NULL;
		if (digest_equal(&x->items[v - 1]->d, d))
			return x->items[v - 1];
	}
}

static int rehash(struct exporter *x, struct ferr *e)
{
	size_t ncap = x->htcap ? x->htcap * 2 : 1024;
	size_t *nt = calloc(ncap, sizeof(*nt));

	if (!nt)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t k = 0; k < x->nitems; k++) {
		size_t i = hash_digest(&x->items[k]->d) % ncap;
		while (nt[i])
			i = (i + 1) % ncap;
		nt[i] = k + 1;
	}
	free(x->ht);
	x->ht = nt;
	x->htcap = ncap;
	return 0;
}

/* Add (or find) the blob `d`.  Sizes must agree wherever it appears. */
static struct item *add_item(struct exporter *x, const struct digest *d,
			     uint64_t size, enum item_kind kind,
			     const char *host, const char *repo, struct ferr *e)
{
	struct item *it = find_item(x, d);

	if (it) {
		if (it->size != size) {
			ferr_set(e, FERR_VERIFY, 0,
				 "blob '%s' is declared with %llu bytes in one "
				 "place and %llu in another",
				 d->str, (unsigned long long)it->size,
				 (unsigned long long)size);
			return NULL;
		}
		if (kind < it->kind)
			it->kind = kind;
		return it;
	}
	if (size > FERRY_MAX_BLOB_SIZE) {
		ferr_set(e, FERR_VERIFY, 0,
			 "blob '%s' claims %llu bytes, more than the %llu-byte "
			 "limit",
			 d->str, (unsigned long long)size,
			 (unsigned long long)FERRY_MAX_BLOB_SIZE);
		return NULL;
	}
	if ((x->nitems + 1) * 2 > x->htcap && rehash(x, e) < 0)
		return NULL;
	if (x->nitems == x->cap) {
		size_t nc = x->cap ? x->cap * 2 : 256;
		struct item **ni = realloc(x->items, nc * sizeof(*ni));
		if (!ni) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			return NULL;
		}
		x->items = ni;
		x->cap = nc;
	}
	it = calloc(1, sizeof(*it));
	if (!it) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		return NULL;
	}
	it->d = *d;
	it->size = size;
	it->kind = kind;
	it->seq = x->nitems;
	it->host = strdup(host);
	it->repo = strdup(repo);
	if (!it->host || !it->repo) {
		free(it->host);
		free(it->repo);
		free(it);
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		return NULL;
	}
	x->items[x->nitems] = it;
	{
		size_t i = hash_digest(d) % x->htcap;
		while (x->ht[i])
			i = (i + 1) % x->htcap;
		x->ht[i] = x->nitems + 1;
	}
	x->nitems++;
	return it;
}

/* ---- registry clients ---- */

static struct reg_client *client_for(struct exporter *x, struct clients *cs,
				     const char *host, struct ferr *e)
{
	for (size_t i = 0; i < cs->n; i++)
		if (!strcmp(cs->v[i].host, host))
			return cs->v[i].c;
	if (cs->n == MAX_CLIENTS) {
		ferr_set(e, FERR_INPUT, 0, "more than %d registries in one export",
			 MAX_CLIENTS);
		return NULL;
	}
	if (reg_client_init(&cs->v[cs->n].c, host, &x->ropts, e) < 0)
		return NULL;
	cs->v[cs->n].host = strdup(host);
	if (!cs->v[cs->n].host) {
		reg_client_release(cs->v[cs->n].c);
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		return NULL;
	}
	return cs->v[cs->n++].c;
}

static void clients_release(struct clients *cs)
{
	for (size_t i = 0; i < cs->n; i++) {
		reg_client_release(cs->v[i].c);
		free(cs->v[i].host);
	}
	cs->n = 0;
}

/* ---- fetching blobs into the cache ---- */

struct file_sink {
	int fd;
	struct exporter *x;
	const char *path;
};

static int fs_write(void *ctx, const void *p, size_t n, struct ferr *e)
{
	struct file_sink *s = ctx;
	const char *q = p;

	while (n) {
		ssize_t w = write(s->fd, q, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return ferr_errno(e, FERR_IO, errno, "cannot write '%s'",
					  s->path);
		}
		q += w;
		n -= (size_t)w;
		atomic_fetch_add(&s->x->pr->bytes_done, (unsigned long long)w);
	}
	return 0;
}

static int fs_restart(void *ctx, struct ferr *e)
{
	struct file_sink *s = ctx;
	off_t had = lseek(s->fd, 0, SEEK_CUR);

	if (ftruncate(s->fd, 0) < 0 || lseek(s->fd, 0, SEEK_SET) < 0)
		return ferr_errno(e, FERR_IO, errno, "cannot truncate '%s'",
				  s->path);
	if (had > 0)
		atomic_fetch_sub(&s->x->pr->bytes_done, (unsigned long long)had);
	return 0;
}

/* Hash a file's first `n` bytes (or all of it when check is set and
 * compare with the item).  Returns 1 if the content matches. */
static int hash_fd(int fd, uint64_t n, struct digest_ctx *c, const char *path,
		   struct ferr *e)
{
	unsigned char *buf = malloc(COPY_CHUNK);
	uint64_t left = n;

	if (!buf)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (lseek(fd, 0, SEEK_SET) < 0)
		goto fail;
	while (left) {
		ssize_t r = read(fd, buf, left < COPY_CHUNK ? (size_t)left : COPY_CHUNK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			goto fail;
		digest_ctx_update(c, buf, (size_t)r);
		left -= (uint64_t)r;
	}
	free(buf);
	return 0;
fail:
	free(buf);
	return ferr_errno(e, FERR_IO, errno ? errno : EIO, "cannot read '%s'",
			  path);
}

/* A verified blob in the cache?  Re-hashes it: the cache is outside our
 * control between runs.  A corrupt entry is removed. */
static int cache_check(struct exporter *x, struct item *it, const char *path,
		       bool *ok, struct ferr *e)
{
	struct digest_ctx c;
	struct digest got;
	struct stat st;
	int fd, rc = -1;

	*ok = false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return ferr_errno(e, FERR_IO, errno, "cannot open '%s'", path);
	}
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != it->size) {
		close(fd);
		unlink(path);
		return 0;
	}
	if (digest_ctx_init(&c, e) < 0) {
		close(fd);
		return -1;
	}
	if (hash_fd(fd, it->size, &c, path, e) < 0)
		goto out;
	digest_ctx_final(&c, &got);
	if (digest_equal(&got, &it->d))
		*ok = true;
	else
		unlink(path);
	rc = 0;
out:
	(void)x;
	digest_ctx_release(&c);
	close(fd);
	return rc;
}

static int fetch_item(struct exporter *x, struct reg_client *cl, struct item *it,
		      struct ferr *e)
{
	char *final = xasprintf("%s/%s", x->blobdir, digest_hex(&it->d));
	char *part = xasprintf("%s/%s", x->partdir, digest_hex(&it->d));
	struct digest_ctx prefix;
	struct reg_blob_req rq;
	struct file_sink sink;
	struct reg_sink rs;
	struct stat st;
	bool ok, have_prefix = false;
	int fd = -1, rc = -1;

	if (!final || !part) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	if (cache_check(x, it, final, &ok, e) < 0)
		goto out;
	if (ok)
		goto cached;
	fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot open '%s'", part);
		goto out;
	}
	/* another ferry may be fetching the same blob into this cache */
	if (flock(fd, LOCK_EX) < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot lock '%s'", part);
		goto out;
	}
	if (cache_check(x, it, final, &ok, e) < 0)
		goto out;
	if (ok)
		goto cached;
	if (fstat(fd, &st) < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot stat '%s'", part);
		goto out;
	}
	memset(&rq, 0, sizeof(rq));
	if ((uint64_t)st.st_size > it->size) {
		if (ftruncate(fd, 0) < 0) {
			ferr_errno(e, FERR_IO, errno, "cannot truncate '%s'", part);
			goto out;
		}
	} else if (st.st_size > 0) {
		/* resume: hash what we have, ask for the rest */
		if (digest_ctx_init(&prefix, e) < 0)
			goto out;
		have_prefix = true;
		if (hash_fd(fd, (uint64_t)st.st_size, &prefix, part, e) < 0)
			goto out;
		rq.offset = (uint64_t)st.st_size;
		rq.prefix = &prefix;
		atomic_fetch_add(&x->pr->bytes_done, (unsigned long long)st.st_size);
	}
	if (lseek(fd, (off_t)rq.offset, SEEK_SET) < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot seek '%s'", part);
		goto out;
	}
	rq.repo = it->repo;
	rq.digest = it->d;
	rq.size = it->size;
	sink.fd = fd;
	sink.x = x;
	sink.path = part;
	rs.write = fs_write;
	rs.restart = fs_restart;
	rs.ctx = &sink;
	if (reg_get_blob(cl, &rq, &rs, e) < 0) {
		/* Bad bytes must not be resumed from; a cut connection may. */
		if (e->cat == FERR_VERIFY)
			unlink(part);
		goto out;
	}
	if (rename(part, final) < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot rename '%s'", part);
		goto out;
	}
	rc = 0;
	goto out;
cached:
	it->cached = true;
	atomic_fetch_add(&x->pr->bytes_done, (unsigned long long)it->size);
	atomic_fetch_add(&x->pr->bytes_cached, (unsigned long long)it->size);
	rc = 0;
out:
	if (have_prefix)
		digest_ctx_release(&prefix);
	if (fd >= 0)
		close(fd);
	free(final);
	free(part);
	return rc;
}

static void blob_done_event(struct exporter *x, struct item *it)
{
	struct exp_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = EXP_EV_BLOB;
	ev.digest = it->d.str;
	ev.size = it->size;
	ev.cached = it->cached;
	ev.count = atomic_fetch_add(&x->pr->blobs_done, 1) + 1;
	emit(x, &ev);
	/* images whose last blob this was are complete */
	for (size_t i = 0; i < it->nimages; i++) {
		size_t im = it->images[i];
		bool done = false;

		pthread_mutex_lock(&x->mu);
		if (x->img_left && x->img_left[im] > 0)
			done = --x->img_left[im] == 0;
		pthread_mutex_unlock(&x->mu);
		if (done) {
			memset(&ev, 0, sizeof(ev));
			ev.type = EXP_EV_IMAGE_DONE;
			ev.ref = x->images[im].ref;
			ev.digest = x->images[im].digest.str;
			ev.size = x->images[im].total_size;
			atomic_fetch_add(&x->pr->images_done, 1);
			emit(x, &ev);
		}
	}
}

static void *worker(void *arg)
{
	struct exporter *x = arg;
	struct clients cs;

	memset(&cs, 0, sizeof(cs));
	for (;;) {
		struct item *it;
		struct reg_client *cl;
		struct ferr e;
		int rc;

		pthread_mutex_lock(&x->mu);
		if (x->abort || x->qnext == x->nqueue) {
			pthread_mutex_unlock(&x->mu);
			break;
		}
		it = x->items[x->queue[x->qnext++]];
		pthread_mutex_unlock(&x->mu);
		ferr_clear(&e);
		cl = client_for(x, &cs, it->host, &e);
		rc = cl ? fetch_item(x, cl, it, &e) : -1;
		pthread_mutex_lock(&x->mu);
		it->state = rc == 0 ? S_DONE : S_FAILED;
		if (rc < 0 && !x->failed) {
			x->failed = true;
			x->werr = e;
			x->abort = 1;
		}
		pthread_cond_broadcast(&x->cv);
		pthread_mutex_unlock(&x->mu);
		if (rc == 0)
			blob_done_event(x, it);
	}
	clients_release(&cs);
	return NULL;
}

/* ---- resolution ---- */

struct platform {
	char os[64], arch[64], variant[64];
};

static int platform_parse(const char *s, struct platform *p)
{
	const char *a, *b;

	memset(p, 0, sizeof(*p));
	a = strchr(s, '/');
	if (!a || a == s || (size_t)(a - s) >= sizeof(p->os))
		return -1;
	memcpy(p->os, s, (size_t)(a - s));
	a++;
	b = strchr(a, '/');
	if (b) {
		if (b == a || (size_t)(b - a) >= sizeof(p->arch) || !b[1] ||
		    strlen(b + 1) >= sizeof(p->variant) || strchr(b + 1, '/'))
			return -1;
		memcpy(p->arch, a, (size_t)(b - a));
		memcpy(p->variant, b + 1, strlen(b + 1));
	} else {
		if (!*a || strlen(a) >= sizeof(p->arch))
			return -1;
		memcpy(p->arch, a, strlen(a));
	}
	return 0;
}

static void platform_of_json(json_t *o, struct platform *p)
{
	const char *os = json_string_value(json_object_get(o, "os"));
	const char *arch = json_string_value(json_object_get(o, "architecture"));
	const char *v = json_string_value(json_object_get(o, "variant"));

	memset(p, 0, sizeof(*p));
	snprintf(p->os, sizeof(p->os), "%s", os ? os : "");
	snprintf(p->arch, sizeof(p->arch), "%s", arch ? arch : "");
	snprintf(p->variant, sizeof(p->variant), "%s", v ? v : "");
}

static char *platform_str(const struct platform *p)
{
	return xasprintf("%s/%s%s%s", p->os, p->arch, p->variant[0] ? "/" : "",
			 p->variant);
}

static bool platform_match(const struct platform *want,
			   const struct platform *have)
{
	if (strcmp(want->os, have->os) || strcmp(want->arch, have->arch))
		return false;
	if (!want->variant[0] || !strcmp(want->variant, have->variant))
		return true;
	/* arm64 images often omit their (only) variant v8 */
	return !strcmp(have->arch, "arm64") && !have->variant[0] &&
	       !strcmp(want->variant, "v8");
}

static bool is_index_type(const char *mt)
{
	return mt && (!strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST));
}

/* Parse a descriptor: digest, size, media type. */
static int parse_desc(json_t *d, struct digest *dg, uint64_t *size,
		      const char **mt, const char *where, struct ferr *e)
{
	json_t *sz = json_object_get(d, "size");
	const char *ds = json_string_value(json_object_get(d, "digest"));

	if (!json_is_object(d) || !ds || !json_is_integer(sz) ||
	    json_integer_value(sz) < 0)
		return ferr_set(e, FERR_VERIFY, 0,
				"%s has a descriptor without a valid digest "
				"and size",
				where);
	if (digest_parse(dg, ds, e) < 0) {
		e->cat = FERR_VERIFY;
		return ferr_prefix(e, "%s", where);
	}
	*size = (uint64_t)json_integer_value(sz);
	if (mt)
		*mt = json_string_value(json_object_get(d, "mediaType"));
	return 0;
}

/* Per-image accumulation while walking. */
struct walk {
	struct bundle_image *im;
	struct digest *seen;
	size_t nseen, capseen;
	char **plats;
	size_t nplats;
};

static int walk_count(struct walk *w, const struct digest *d, uint64_t size,
		      struct ferr *e)
{
	for (size_t i = 0; i < w->nseen; i++)
		if (digest_equal(&w->seen[i], d))
			return 0;
	if (w->nseen == w->capseen) {
		size_t nc = w->capseen ? w->capseen * 2 : 32;
		struct digest *n = realloc(w->seen, nc * sizeof(*n));
		if (!n)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		w->seen = n;
		w->capseen = nc;
	}
	w->seen[w->nseen++] = *d;
	w->im->total_size += size;
	return 0;
}

static int walk_platform(struct walk *w, const char *p, struct ferr *e)
{
	char **n;

	for (size_t i = 0; i < w->nplats; i++)
		if (!strcmp(w->plats[i], p))
			return 0;
	n = realloc(w->plats, (w->nplats + 1) * sizeof(*n));
	if (!n)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	w->plats = n;
	if (!(w->plats[w->nplats] = strdup(p)))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	w->nplats++;
	return 0;
}

/* Register an image manifest held in `m` (takes its data). */
static struct item *add_manifest_doc(struct exporter *x, const char *host,
				     const char *repo, struct reg_manifest *m,
				     struct walk *w, const char *what,
				     struct ferr *e)
{
	json_t *root = NULL, *layers, *l;
	struct item *it = NULL, *res = NULL;
	struct digest dg;
	uint64_t size;
	size_t i;

	root = json_loadb((const char *)m->data, m->len, 0, NULL);
	if (!root) {
		ferr_set(e, FERR_INPUT, 0, "%s does not parse", what);
		goto out;
	}
	it = add_item(x, &m->digest, m->len, K_MANIFEST, host, repo, e);
	if (!it || walk_count(w, &m->digest, m->len, e) < 0)
		goto out;
	if (!it->data) {
		it->data = m->data;
		m->data = NULL;
		it->media_type = m->media_type && !strcmp(m->media_type,
							  MT_DOCKER_MANIFEST)
				     ? MT_DOCKER_MANIFEST
				     : MT_OCI_MANIFEST;
		if (parse_desc(json_object_get(root, "config"), &it->cfg, &size,
			       NULL, what, e) < 0)
			goto out;
		layers = json_object_get(root, "layers");
		it->layers = calloc(json_array_size(layers) + 1,
				    sizeof(*it->layers));
		if (!it->layers) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		json_array_foreach(layers, i, l)
		{
			if (parse_desc(l, &it->layers[i], &size, NULL, what, e) < 0)
				goto out;
			it->nlayers++;
		}
	}
	/* (re)register the parts for this image's accounting */
	{
		struct item *c;
		if (parse_desc(json_object_get(root, "config"), &dg, &size, NULL,
			       what, e) < 0)
			goto out;
		c = add_item(x, &dg, size, K_CONFIG, host, repo, e);
		if (!c || walk_count(w, &dg, size, e) < 0)
			goto out;
		/* the items array may have moved */
		it = find_item(x, &m->digest);
		layers = json_object_get(root, "layers");
		json_array_foreach(layers, i, l)
		{
			if (parse_desc(l, &dg, &size, NULL, what, e) < 0 ||
			    !add_item(x, &dg, size, K_LAYER, host, repo, e) ||
			    walk_count(w, &dg, size, e) < 0)
				goto out;
		}
		it = find_item(x, &m->digest);
	}
	res = it;
out:
	json_decref(root);
	return res;
}

/* Fetch the config of a single-platform image early, to learn its
 * platform. */
static int config_platform(struct exporter *x, struct reg_client *cl,
			   struct item *man, char **out, struct ferr *e)
{
	struct item *cfg = find_item(x, &man->cfg);
	char *path = NULL;
	struct platform p;
	json_t *root = NULL;
	json_error_t jerr;
	int rc = -1;

	*out = NULL;
	if (!cfg)
		return ferr_set(e, FERR_INPUT, 0, "internal error: no config");
	if (cfg->size > FERRY_MAX_JSON)
		return ferr_set(e, FERR_VERIFY, 0,
				"config '%s' is larger than the %u-byte limit",
				cfg->d.str, FERRY_MAX_JSON);
	if (cfg->state != S_DONE) {
		if (fetch_item(x, cl, cfg, e) < 0)
			return -1;
		cfg->state = S_DONE;
		blob_done_event(x, cfg);
	}
	path = xasprintf("%s/%s", x->blobdir, digest_hex(&cfg->d));
	if (!path)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		ferr_set(e, FERR_INPUT, 0, "config '%s' is not a JSON object",
			 cfg->d.str);
		goto out;
	}
	platform_of_json(root, &p);
	*out = platform_str(&p);
	rc = *out ? 0 : ferr_set(e, FERR_IO, ENOMEM, "out of memory");
out:
	json_decref(root);
	free(path);
	return rc;
}

static int fetch_child(struct reg_client *cl, const char *repo,
		       const struct digest *d, uint64_t size, const char *dmt,
		       struct reg_manifest *m, struct ferr *e)
{
	if (size > FERRY_MAX_JSON)
		return ferr_set(e, FERR_VERIFY, 0,
				"manifest '%s' claims %llu bytes, more than the "
				"%u-byte limit",
				d->str, (unsigned long long)size, FERRY_MAX_JSON);
	if (reg_get_manifest(cl, repo, d->str, m, e) < 0)
		return -1;
	if (m->len != size) {
		reg_manifest_release(m);
		return ferr_set(e, FERR_VERIFY, 0,
				"manifest '%s' is %zu bytes but its descriptor "
				"says %llu",
				d->str, m->len, (unsigned long long)size);
	}
	if (dmt && strcmp(dmt, m->media_type) != 0) {
		char mt[128];
		snprintf(mt, sizeof(mt), "%s", m->media_type);
		reg_manifest_release(m);
		return ferr_set(e, FERR_VERIFY, 0,
				"manifest '%s' is a '%s' but its descriptor "
				"says '%.100s'",
				d->str, mt, dmt);
	}
	return 0;
}

/* Walk an index with every platform kept, byte-exact (recursive). */
static int walk_index_all(struct exporter *x, struct reg_client *cl,
			  const char *host, const char *repo,
			  struct reg_manifest *m, struct walk *w, int depth,
			  struct item **docker_pick, const char *what,
			  struct ferr *e)
{
	json_t *root = NULL, *mans, *d;
	struct item *it;
	size_t i;
	int rc = -1;

	if (depth > 4)
		return ferr_set(e, FERR_INPUT, 0, "%s: indexes nested too deep",
				what);
	root = json_loadb((const char *)m->data, m->len, 0, NULL);
	if (!root)
		return ferr_set(e, FERR_INPUT, 0, "%s does not parse", what);
	it = add_item(x, &m->digest, m->len, K_INDEX, host, repo, e);
	if (!it || walk_count(w, &m->digest, m->len, e) < 0)
		goto out;
	if (!it->data) {
		it->data = m->data;
		m->data = NULL;
		it->media_type = !strcmp(m->media_type, MT_DOCKER_LIST)
				     ? MT_DOCKER_LIST
				     : MT_OCI_INDEX;
	}
	mans = json_object_get(root, "manifests");
	json_array_foreach(mans, i, d)
	{
		struct reg_manifest child;
		struct digest dg;
		uint64_t size;
		const char *dmt;
		struct platform p;

		if (parse_desc(d, &dg, &size, &dmt, what, e) < 0)
			goto out;
		if (fetch_child(cl, repo, &dg, size, dmt, &child, e) < 0)
			goto out;
		if (is_index_type(child.media_type)) {
			rc = walk_index_all(x, cl, host, repo, &child, w,
					    depth + 1, docker_pick, what, e);
			reg_manifest_release(&child);
			if (rc < 0)
				goto out;
			rc = -1;
			continue;
		}
		struct item *mi = add_manifest_doc(x, host, repo, &child, w,
						   what, e);
		reg_manifest_release(&child);
		if (!mi)
			goto out;
		platform_of_json(json_object_get(d, "platform"), &p);
		if (p.os[0] && strcmp(p.os, "unknown") != 0) {
			char *s = platform_str(&p);
			int r = s ? walk_platform(w, s, e) : -1;
			free(s);
			if (r < 0)
				goto out;
			if (!*docker_pick || (!strcmp(p.os, "linux") &&
					      !strcmp(p.arch, "amd64") &&
					      !(*docker_pick)->platform))
				*docker_pick = mi;
			if (!strcmp(p.os, "linux") && !strcmp(p.arch, "amd64"))
				mi->platform = mi->platform ? mi->platform
							    : strdup("linux/amd64");
		}
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

static int resolve_one(struct exporter *x, const struct ref *r,
		       struct bundle_image *im, struct ferr *e)
{
	const char *host = ref_api_host(r);
	struct reg_client *cl;
	struct reg_manifest m;
	struct walk w;
	struct item *pick = NULL;
	char what[600];
	int rc = -1;

	memset(&m, 0, sizeof(m));
	memset(&w, 0, sizeof(w));
	w.im = im;
	snprintf(what, sizeof(what), "image '%s'", im->ref);
	cl = client_for(x, &x->main_clients, host, e);
	if (!cl)
		return -1;
	if (reg_get_manifest(cl, r->path, ref_object(r), &m, e) < 0) {
		ferr_prefix(e, "%s", what);
		return -1;
	}
	if (is_index_type(m.media_type) && !x->o->nplatforms) {
		im->digest = m.digest;
		im->doc_size = m.len;
		im->media_type = !strcmp(m.media_type, MT_DOCKER_LIST)
				     ? MT_DOCKER_LIST
				     : MT_OCI_INDEX;
		if (walk_index_all(x, cl, host, r->path, &m, &w, 0, &pick, what,
				   e) < 0)
			goto out;
	} else if (is_index_type(m.media_type)) {
		/* keep only the platforms asked for */
		json_t *root = json_loadb((const char *)m.data, m.len, 0, NULL);
		json_t *mans = json_object_get(root, "manifests"), *keep, *d;
		struct item *one = NULL;
		size_t i, nkept = 0;
		char have[512] = "";

		keep = json_array();
		for (size_t k = 0; k < x->o->nplatforms; k++) {
			struct platform want;
			bool found = false;
			platform_parse(x->o->platforms[k], &want);
			json_array_foreach(mans, i, d)
			{
				struct platform p;
				struct reg_manifest child;
				struct digest dg;
				uint64_t size;
				const char *dmt;

				platform_of_json(json_object_get(d, "platform"), &p);
				if (!platform_match(&want, &p))
					continue;
				found = true;
				if (parse_desc(d, &dg, &size, &dmt, what, e) < 0)
					break;
				if (is_index_type(dmt)) {
					ferr_set(e, FERR_INPUT, 0,
						 "%s: nested index for platform "
						 "'%s' is not supported with "
						 "--platform",
						 what, x->o->platforms[k]);
					break;
				}
				if (fetch_child(cl, r->path, &dg, size, dmt,
						&child, e) < 0)
					break;
				one = add_manifest_doc(x, host, r->path, &child,
						       &w, what, e);
				reg_manifest_release(&child);
				if (!one)
					break;
				char *s = platform_str(&p);
				if (!s || walk_platform(&w, s, e) < 0) {
					free(s);
					one = NULL;
					break;
				}
				free(s);
				if (!pick)
					pick = one;
				json_array_append(keep, d);
				nkept++;
				break;
			}
			if (e->cat != FERR_OK)
				break;
			if (!found) {
				json_array_foreach(mans, i, d)
				{
					struct platform p;
					char *s;
					platform_of_json(json_object_get(d, "platform"),
							 &p);
					if (!p.os[0] || !strcmp(p.os, "unknown"))
						continue;
					s = platform_str(&p);
					if (s && strlen(have) + strlen(s) + 3 <
							 sizeof(have)) {
						if (have[0])
							strcat(have, ", ");
						strcat(have, s);
					}
					free(s);
				}
				ferr_set(e, FERR_INPUT, 0,
					 "%s has no platform '%s' (it has: %s)",
					 what, x->o->platforms[k],
					 have[0] ? have : "none");
				break;
			}
		}
		if (e->cat == FERR_OK && nkept == 1) {
			im->digest = one ? one->d : pick->d;
			im->doc_size = pick->size;
			im->media_type = pick->media_type;
		} else if (e->cat == FERR_OK) {
			/* a filtered index: a new document of our own */
			json_t *copy = json_deep_copy(root);
			char *s;
			struct item *ix;
			json_object_set(copy, "manifests", keep);
			s = json_dumps(copy, JSON_COMPACT);
			json_decref(copy);
			if (!s) {
				ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			} else {
				struct digest dg;
				digest_of(s, strlen(s), &dg, e);
				ix = add_item(x, &dg, strlen(s), K_INDEX, host,
					      r->path, e);
				if (ix && !ix->data) {
					ix->data = (unsigned char *)s;
					ix->media_type = m.media_type &&
							 !strcmp(m.media_type,
								 MT_DOCKER_LIST)
							     ? MT_DOCKER_LIST
							     : MT_OCI_INDEX;
				} else {
					free(s);
				}
				if (ix) {
					walk_count(&w, &dg, ix->size, e);
					im->digest = dg;
					im->doc_size = ix->size;
					im->media_type = ix->media_type;
				}
			}
		}
		json_decref(keep);
		json_decref(root);
		if (e->cat != FERR_OK)
			goto out;
	} else {
		char *plat = NULL;
		struct item *mi = add_manifest_doc(x, host, r->path, &m, &w, what,
						   e);
		if (!mi)
			goto out;
		im->digest = mi->d;
		im->doc_size = mi->size;
		im->media_type = mi->media_type;
		if (config_platform(x, cl, find_item(x, &im->digest), &plat, e) <
		    0) {
			ferr_prefix(e, "%s", what);
			goto out;
		}
		if (x->o->nplatforms) {
			struct platform p;
			platform_parse(plat, &p);
			for (size_t k = 0; k < x->o->nplatforms; k++) {
				struct platform want;
				platform_parse(x->o->platforms[k], &want);
				if (!platform_match(&want, &p)) {
					ferr_set(e, FERR_INPUT, 0,
						 "%s has no platform '%s' (it "
						 "has: %s)",
						 what, x->o->platforms[k], plat);
					free(plat);
					goto out;
				}
			}
		}
		if (walk_platform(&w, plat, e) < 0) {
			free(plat);
			goto out;
		}
		free(plat);
		pick = find_item(x, &im->digest);
	}
	if (pick) {
		pick = find_item(x, &pick->d);
		im->has_docker = true;
		im->docker_config = pick->cfg;
		im->ndocker_layers = pick->nlayers;
		im->docker_layers = calloc(pick->nlayers + 1, sizeof(struct digest));
		if (!im->docker_layers) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		memcpy(im->docker_layers, pick->layers,
		       pick->nlayers * sizeof(struct digest));
	}
	for (size_t i = 0; i < w.nseen; i++) {
		struct item *it = find_item(x, &w.seen[i]);
		size_t *n;

		if (!it || it->kind < K_CONFIG || it->state == S_DONE)
			continue;
		n = realloc(it->images, (it->nimages + 1) * sizeof(*n));
		if (!n) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		it->images = n;
		it->images[it->nimages++] = (size_t)(im - x->images);
	}
	im->platforms = w.plats;
	im->nplatforms = w.nplats;
	w.plats = NULL;
	w.nplats = 0;
	rc = 0;
out:
	for (size_t i = 0; i < w.nplats; i++)
		free(w.plats[i]);
	free(w.plats);
	free(w.seen);
	reg_manifest_release(&m);
	return rc;
}

/* ---- writing ---- */

struct order_key {
	int kind;
	size_t seq;
	size_t idx;
};

static int cmp_order(const void *a, const void *b)
{
	const struct order_key *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Wait until a blob is in the cache (or the export failed). */
static int wait_item(struct exporter *x, struct item *it, struct ferr *e)
{
	pthread_mutex_lock(&x->mu);
	while (it->state == S_PENDING && !x->failed) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&x->cv, &x->mu, &ts);
		if (x->o->reg->cancel && *x->o->reg->cancel && !x->failed) {
			x->failed = true;
			x->abort = 1;
			ferr_set(&x->werr, FERR_INTERRUPT, 0, "interrupted");
		}
	}
	if (x->failed) {
		*e = x->werr;
		pthread_mutex_unlock(&x->mu);
		return -1;
	}
	pthread_mutex_unlock(&x->mu);
	return 0;
}

static int copy_blob(struct exporter *x, struct arc_writer *w, struct item *it,
		     unsigned char *buf, struct ferr *e)
{
	char *path = xasprintf("%s/%s", x->blobdir, digest_hex(&it->d));
	uint64_t left = it->size;
	struct stat st;
	int fd = -1, rc = -1;

	if (!path)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot open '%s'", path);
		goto out;
	}
	if ((uint64_t)st.st_size != it->size) {
		ferr_set(e, FERR_IO, 0,
			 "cached blob '%s' changed size while in use", path);
		goto out;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	while (left) {
		ssize_t r = read(fd, buf, left < COPY_CHUNK ? (size_t)left : COPY_CHUNK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			ferr_errno(e, FERR_IO, r < 0 ? errno : EIO,
				   "cannot read '%s'", path);
			goto out;
		}
		if (arc_entry_data(w, buf, (size_t)r, e) < 0)
			goto out;
		left -= (uint64_t)r;
		atomic_fetch_add(&x->pr->bytes_written, (unsigned long long)r);
		if (x->o->reg->cancel && *x->o->reg->cancel) {
			ferr_set(e, FERR_INTERRUPT, 0, "interrupted");
			goto out;
		}
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

static int fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, rc;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

void exp_result_release(struct exp_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nimages; i++) {
		free(r->images[i].ref);
		for (size_t k = 0; k < r->images[i].nplatforms; k++)
			free(r->images[i].platforms[k]);
		free(r->images[i].platforms);
		free(r->images[i].docker_layers);
	}
	free(r->images);
	r->images = NULL;
	r->nimages = 0;
}

int exp_run(const struct exp_opts *o, const struct ref *refs, size_t nrefs,
	    const char *out_path, struct exp_result *res, struct ferr *e)
{
	struct exporter X, *x = &X;
	struct arc_writer *w = NULL;
	pthread_t *threads = NULL;
	size_t nthreads = 0, *order = NULL;
	struct bundle_sum *sums = NULL;
	struct digest *alld = NULL;
	char *tmp = NULL, *index_json = NULL, *manifest_json = NULL,
	     *ferry_json = NULL, *sums_text = NULL, *sig_b64 = NULL;
	unsigned char *sig = NULL, *copybuf = NULL;
	size_t siglen = 0, nsums = 0;
	struct stat st;
	int fd = -1, rc = -1;
	bool linked = false;

	memset(x, 0, sizeof(*x));
	memset(res, 0, sizeof(*res));
	x->o = o;
	x->pr = o->progress ? o->progress : &x->dummy_progress;
	x->ropts = *o->reg;
	x->ropts.cancel = &x->abort;
	pthread_mutex_init(&x->mu, NULL);
	pthread_cond_init(&x->cv, NULL);
	pthread_mutex_init(&x->evmu, NULL);

	if (lstat(out_path, &st) == 0) {
		ferr_set(e, FERR_IO, EEXIST,
			 "'%s' already exists; refusing to overwrite it",
			 out_path);
		goto out;
	}
	x->blobdir = xasprintf("%s/blobs/sha256", o->cache_dir);
	x->partdir = xasprintf("%s/partial", o->cache_dir);
	if (!x->blobdir || !x->partdir) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	if (mkdirs(x->blobdir, e) < 0 || mkdirs(x->partdir, e) < 0)
		goto out;

	/* 1. resolve every reference (interrupt via the caller's flag) */
	x->images = calloc(nrefs + 1, sizeof(*x->images));
	if (!x->images) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	atomic_store(&x->pr->phase, EXP_RESOLVING);
	atomic_store(&x->pr->images_total, (unsigned)nrefs);
	x->ropts.cancel = o->reg->cancel;
	for (size_t i = 0; i < nrefs; i++) {
		struct bundle_image *im = &x->images[x->nimages];
		struct exp_event ev;
		bool dup = false;

		im->ref = ref_string(&refs[i]);
		if (!im->ref) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		for (size_t k = 0; k < x->nimages; k++)
			if (!strcmp(x->images[k].ref, im->ref))
				dup = true;
		if (dup) {
			free(im->ref);
			im->ref = NULL;
			continue;
		}
		x->nimages++;
		if (resolve_one(x, &refs[i], im, e) < 0)
			goto out;
		atomic_fetch_add(&x->pr->images_resolved, 1);
		memset(&ev, 0, sizeof(ev));
		ev.type = EXP_EV_RESOLVED;
		ev.ref = im->ref;
		ev.digest = im->digest.str;
		ev.size = im->total_size;
		emit(x, &ev);
	}
	clients_release(&x->main_clients);
	x->ropts.cancel = &x->abort;

	/* 2. bundle order and documents */
	order = calloc(x->nitems + 1, sizeof(*order));
	sums = calloc(x->nitems + 4, sizeof(*sums));
	alld = calloc(x->nitems + 1, sizeof(*alld));
	if (!order || !sums || !alld) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < x->nitems; i++) {
		order[i] = i;
		alld[i] = x->items[i]->d;
	}
	{
		struct order_key *k = calloc(x->nitems + 1, sizeof(*k));
		if (!k) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < x->nitems; i++) {
			k[i].kind = (int)x->items[i]->kind;
			k[i].seq = x->items[i]->seq;
			k[i].idx = i;
		}
		qsort(k, x->nitems, sizeof(*k), cmp_order);
		for (size_t i = 0; i < x->nitems; i++)
			order[i] = k[i].idx;
		free(k);
	}
	index_json = bundle_index_json(x->images, x->nimages);
	manifest_json = bundle_manifest_json(x->images, x->nimages);
	if (!index_json || !manifest_json) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	res->meta.created = o->created;
	res->meta.channel = o->channel;
	res->meta.sequence = o->sequence;
	res->meta.key_id = o->key->key_id;
	if (bundle_compute_id(&res->meta, index_json, strlen(index_json), alld,
			      x->nitems, e) < 0)
		goto out;
	ferry_json = bundle_ferry_json(&res->meta, x->images, x->nimages);
	if (!ferry_json) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	{
		static const char *names[4] = {BUNDLE_OCI_LAYOUT, BUNDLE_FERRY_JSON,
					       BUNDLE_INDEX_JSON,
					       BUNDLE_MANIFEST_JSON};
		const char *docs[4] = {BUNDLE_OCI_LAYOUT_CONTENT, ferry_json,
				       index_json, manifest_json};
		for (int i = 0; i < 4; i++) {
			sums[nsums].path = names[i];
			if (digest_of(docs[i], strlen(docs[i]),
				      &sums[nsums++].digest, e) < 0)
				goto out;
		}
	}
	for (size_t i = 0; i < x->nitems; i++) {
		struct item *it = x->items[order[i]];
		char *p = xasprintf(BUNDLE_BLOB_PREFIX "%s", digest_hex(&it->d));
		if (!p) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		sums[nsums].path = p;
		sums[nsums++].digest = it->d;
	}
	sums_text = bundle_sums_text(sums, nsums);
	if (!sums_text) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	if (sig_sign(o->key, sums_text, strlen(sums_text), &sig, &siglen, e) < 0)
		goto out;
	{
		char *b = sig_base64_encode(sig, siglen);
		sig_b64 = b ? xasprintf("%s\n", b) : NULL;
		free(b);
		if (!sig_b64) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
	}

	/* 3. fetch configs and layers in parallel, in bundle order */
	x->queue = calloc(x->nitems + 1, sizeof(*x->queue));
	if (!x->queue) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < x->nitems; i++) {
		struct item *it = x->items[order[i]];
		if (it->kind == K_CONFIG || it->kind == K_LAYER) {
			atomic_fetch_add(&x->pr->blobs_total, 1);
			atomic_fetch_add(&x->pr->bytes_total,
					 (unsigned long long)it->size);
			if (it->state == S_DONE) { /* fetched while resolving */
				atomic_fetch_add(&x->pr->bytes_total, 0);
				continue;
			}
			x->queue[x->nqueue++] = order[i];
		} else {
			it->state = S_DONE;
		}
	}
	x->img_left = calloc(x->nimages + 1, sizeof(*x->img_left));
	if (!x->img_left) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < x->nitems; i++)
		for (size_t k = 0; k < x->items[i]->nimages; k++)
			x->img_left[x->items[i]->images[k]]++;
	for (size_t i = 0; i < x->nimages; i++) {
		if (!x->img_left[i]) { /* nothing left to fetch */
			struct exp_event ev;
			memset(&ev, 0, sizeof(ev));
			ev.type = EXP_EV_IMAGE_DONE;
			ev.ref = x->images[i].ref;
			ev.digest = x->images[i].digest.str;
			ev.size = x->images[i].total_size;
			atomic_fetch_add(&x->pr->images_done, 1);
			emit(x, &ev);
		}
	}
	atomic_store(&x->pr->phase, EXP_FETCHING);
	nthreads = (size_t)(o->jobs > 0 ? o->jobs : 4);
	if (nthreads > x->nqueue)
		nthreads = x->nqueue;
	threads = calloc(nthreads + 1, sizeof(*threads));
	if (!threads) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nthreads; i++) {
		if (pthread_create(&threads[i], NULL, worker, x) != 0) {
			nthreads = i;
			x->abort = 1;
			ferr_set(e, FERR_IO, errno, "cannot start a thread");
			goto out;
		}
	}

	/* 4. write the bundle while blobs arrive */
	{
		char *slash = strrchr(out_path, '/');
		tmp = slash ? xasprintf("%.*s/.%s.ferry-XXXXXX",
					(int)(slash - out_path), out_path, slash + 1)
			    : xasprintf(".%s.ferry-XXXXXX", out_path);
	}
	if (!tmp) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot create a file next to '%s'",
			   out_path);
		free(tmp);
		tmp = NULL;
		goto out;
	}
	{
		mode_t um = umask(0);
		umask(um);
		fchmod(fd, 0644 & ~um);
	}
	if (arc_writer_open(&w, fd, o->compress, o->threads, o->created,
			    out_path, e) < 0)
		goto out;
	if (arc_entry_mem(w, BUNDLE_OCI_LAYOUT, BUNDLE_OCI_LAYOUT_CONTENT,
			  strlen(BUNDLE_OCI_LAYOUT_CONTENT), e) < 0 ||
	    arc_entry_mem(w, BUNDLE_FERRY_JSON, ferry_json, strlen(ferry_json),
			  e) < 0 ||
	    arc_entry_mem(w, BUNDLE_INDEX_JSON, index_json, strlen(index_json),
			  e) < 0 ||
	    arc_entry_mem(w, BUNDLE_MANIFEST_JSON, manifest_json,
			  strlen(manifest_json), e) < 0 ||
	    arc_entry_mem(w, BUNDLE_SUMS, sums_text, strlen(sums_text), e) < 0 ||
	    arc_entry_mem(w, BUNDLE_SUMS_SIG, sig_b64, strlen(sig_b64), e) < 0)
		goto out;
	copybuf = malloc(COPY_CHUNK);
	if (!copybuf) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < x->nitems; i++) {
		struct item *it = x->items[order[i]];
		char path[128];

		snprintf(path, sizeof(path), BUNDLE_BLOB_PREFIX "%s",
			 digest_hex(&it->d));
		if (wait_item(x, it, e) < 0)
			goto out;
		if (arc_entry_begin(w, path, it->size, e) < 0)
			goto out;
		if (it->data) {
			if (arc_entry_data(w, it->data, it->size, e) < 0)
				goto out;
		} else if (copy_blob(x, w, it, copybuf, e) < 0) {
			goto out;
		}
		res->blob_bytes += it->size;
		if (it->kind >= K_CONFIG) {
			if (it->cached)
				res->bytes_cached += it->size;
			else
				res->bytes_fetched += it->size;
		}
	}
	res->nblobs = x->nitems;
	if (arc_writer_finish(w, e) < 0)
		goto out;
	if (fsync(fd) < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot write '%s'", out_path);
		goto out;
	}
	if (fstat(fd, &st) == 0)
		res->bundle_bytes = (uint64_t)st.st_size;
	/* link, not rename: never replace a file that appeared meanwhile */
	if (link(tmp, out_path) < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot create '%s'", out_path);
		goto out;
	}
	linked = true;
	fsync_dir_of(out_path);
	atomic_store(&x->pr->phase, EXP_DONE);
	res->images = x->images;
	res->nimages = x->nimages;
	x->images = NULL;
	x->nimages = 0;
	rc = 0;
out:
	if (rc < 0 && !x->failed) {
		pthread_mutex_lock(&x->mu);
		x->abort = 1;
		pthread_mutex_unlock(&x->mu);
	}
	x->abort = 1; /* stop idle workers from taking more */
	for (size_t i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	if (rc < 0 && x->failed && x->werr.cat != FERR_OK &&
	    e->cat == FERR_INTERRUPT)
		*e = x->werr;
	arc_writer_release(w);
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp); /* after link() the bundle lives on */
		free(tmp);
	}
	(void)linked;
	clients_release(&x->main_clients);
	for (size_t i = 4; i < nsums; i++)
		free((char *)sums[i].path);
	free(sums);
	free(alld);
	free(order);
	free(threads);
	free(x->queue);
	free(index_json);
	free(manifest_json);
	free(ferry_json);
	free(sums_text);
	free(sig);
	free(sig_b64);
	free(copybuf);
	for (size_t i = 0; i < x->nitems; i++) {
		free(x->items[i]->data);
		free(x->items[i]->host);
		free(x->items[i]->repo);
		free(x->items[i]->layers);
		free(x->items[i]->platform);
		free(x->items[i]->images);
		free(x->items[i]);
	}
	free(x->img_left);
	free(x->items);
	free(x->ht);
	if (x->images) {
		struct exp_result tmpres = {0};
		tmpres.images = x->images;
		tmpres.nimages = x->nimages;
		exp_result_release(&tmpres);
	}
	free(x->blobdir);
	free(x->partdir);
	pthread_mutex_destroy(&x->mu);
	pthread_cond_destroy(&x->cv);
	pthread_mutex_destroy(&x->evmu);
	return rc;
}
