#include "internal.h"
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pwd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "bounds.h"

/* ---- small helpers ---- */

char *exp_asprintf(const char *fmt, ...)
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

void exp_emit(struct exporter *x, const struct exp_event *ev)
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
		return exp_asprintf("%s/ferry", x);
	if (h && *h == '/')
		return exp_asprintf("%s/.cache/ferry", h);
	/* Never a predictable shared path such as /tmp: another user could
	 * have created it first.  The account's home, else nothing. */
	{
		struct passwd *pw = getpwuid(getuid());
		if (pw && pw->pw_dir && *pw->pw_dir == '/')
			return exp_asprintf("%s/.cache/ferry", pw->pw_dir);
	}
	return NULL;
}

/* The cache holds what goes into bundles unchecked by anyone but us (it is
 * re-hashed, but a planted link could make us write elsewhere): it must be
 * a real directory of ours that nobody else can write to. */
static int cache_dir_check(const char *dir, struct ferr *e)
{
	struct stat st;

	if (lstat(dir, &st) < 0)
		return ferr_errno(e, FERR_IO, errno, "cannot use cache '%s'",
				  dir);
	if (!S_ISDIR(st.st_mode))
		return ferr_set(e, FERR_IO, ENOTDIR,
				"cache '%s' is not a directory (a link?)", dir);
	if (st.st_uid != getuid())
		return ferr_set(e, FERR_IO, EPERM,
				"cache '%s' belongs to another user (uid %ld)",
				dir, (long)st.st_uid);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return ferr_set(e, FERR_IO, EPERM,
				"cache '%s' is writable by other users; "
				"chmod go-w it or choose another --cache",
				dir);
	return 0;
}

/* ---- item table ---- */

struct item *exp_find_item(struct exporter *x, const struct digest *d)
{
	if (!x->htcap)
		return NULL;
	for (size_t i = digest_hash(d) % x->htcap;; i = (i + 1) % x->htcap) {
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
		size_t i = digest_hash(&x->items[k]->d) % ncap;
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
struct item *exp_add_item(struct exporter *x, const struct digest *d,
			  uint64_t size, enum item_kind kind, const char *host,
			  const char *repo, struct ferr *e)
{
	struct item *it = exp_find_item(x, d);

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
		size_t i = digest_hash(d) % x->htcap;
		while (x->ht[i])
			i = (i + 1) % x->htcap;
		x->ht[i] = x->nitems + 1;
	}
	x->nitems++;
	return it;
}

/* ---- registry clients ---- */

struct reg_client *exp_client_for(struct exporter *x, struct clients *cs,
				  const char *host, struct ferr *e)
{
	for (size_t i = 0; i < cs->n; i++)
		if (!strcmp(cs->v[i].host, host))
			return cs->v[i].c;
	if (cs->n == MAX_CLIENTS) {
		ferr_set(e, FERR_INPUT, 0,
			 "more than %d registries in one export", MAX_CLIENTS);
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

void exp_clients_release(struct clients *cs)
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
			return ferr_errno(e, FERR_IO, errno,
					  "cannot write '%s'", s->path);
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
		atomic_fetch_sub(&s->x->pr->bytes_done,
				 (unsigned long long)had);
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
		ssize_t r = read(fd, buf,
				 left < COPY_CHUNK ? (size_t)left : COPY_CHUNK);
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
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == ELOOP) /* planted link: not ours, refetch */
			return unlink(path) == 0
				   ? 0
				   : ferr_errno(e, FERR_IO, errno,
						"cannot remove '%s'", path);
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

/* The partial download of a blob, locked: another ferry may be fetching
 * the same blob into this cache.  Never through a link planted there. */
static int open_partial(const char *part, struct ferr *e)
{
	int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0 && errno == ELOOP && unlink(part) == 0)
		fd = open(part,
			  O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
			  0600);
	if (fd < 0)
		return ferr_errno(e, FERR_IO, errno, "cannot open '%s'", part);
	if (flock(fd, LOCK_EX) < 0) {
		ferr_errno(e, FERR_IO, errno, "cannot lock '%s'", part);
		close(fd);
		return -1;
	}
	return fd;
}

/* Put a blob the caller has fetched and checked into the cache, so that
 * the download does not fetch it again (a signature payload that the
 * --verify-cosign-key gate read).  Best effort: when this fails, the
 * download fetches it. */
void exp_cache_put(struct exporter *x, const struct digest *d, const void *p,
		   size_t n)
{
	char *final = exp_asprintf("%s/%s", x->blobdir, digest_hex(d));
	char *part = exp_asprintf("%s/%s", x->partdir, digest_hex(d));
	const unsigned char *q = p;
	struct ferr e;
	struct stat st;
	int fd = -1;

	if (!final || !part || (fd = open_partial(part, &e)) < 0)
		goto out;
	/* under the lock: another ferry may have renamed this very file
	 * into place meanwhile, and fd is then the cached blob */
	if (lstat(final, &st) == 0 || ftruncate(fd, 0) < 0)
		goto out;
	while (n) {
		ssize_t w = write(fd, q, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			unlink(part);
			goto out;
		}
		q += w;
		n -= (size_t)w;
	}
	if (rename(part, final) < 0)
		unlink(part);
out:
	if (fd >= 0)
		close(fd);
	free(final);
	free(part);
}

int exp_fetch_item(struct exporter *x, struct reg_client *cl, struct item *it,
		   struct ferr *e)
{
	char *final = exp_asprintf("%s/%s", x->blobdir, digest_hex(&it->d));
	char *part = exp_asprintf("%s/%s", x->partdir, digest_hex(&it->d));
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
	if ((fd = open_partial(part, e)) < 0)
		goto out;
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
			ferr_errno(e, FERR_IO, errno, "cannot truncate '%s'",
				   part);
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
		atomic_fetch_add(&x->pr->bytes_done,
				 (unsigned long long)st.st_size);
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
	/* "last used" for ferry cache prune, even where atime is not kept */
	utimensat(AT_FDCWD, final, NULL, 0);
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

void exp_blob_done_event(struct exporter *x, struct item *it)
{
	struct exp_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = EXP_EV_BLOB;
	ev.digest = it->d.str;
	ev.size = it->size;
	ev.cached = it->cached;
	ev.count = atomic_fetch_add(&x->pr->blobs_done, 1) + 1;
	exp_emit(x, &ev);
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
			exp_emit(x, &ev);
		}
	}
}

/* A config described as JSON must be a JSON object of at most 4 MiB, as
 * verify and import require: refuse to carry one that is not. */
static int check_config(struct exporter *x, const struct item *it,
			struct ferr *e)
{
	char *path;
	json_t *root;
	json_error_t jerr;
	bool ok;

	if (it->kind != K_CONFIG || !it->json)
		return 0;
	if (it->size > FERRY_MAX_JSON)
		return ferr_set(e, FERR_VERIFY, 0,
				"config '%s' is larger than the %u-byte limit",
				it->d.str, FERRY_MAX_JSON);
	path = exp_asprintf("%s/%s", x->blobdir, digest_hex(&it->d));
	if (!path)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	ok = json_is_object(root);
	json_decref(root);
	free(path);
	if (!ok)
		return ferr_set(e, FERR_INPUT, 0,
				"config '%s' (from '%s') is not a JSON object",
				it->d.str, it->repo);
	return 0;
}

static void *worker(void *arg)
{
	struct wslot *ws = arg;
	struct exporter *x = ws->x;
	struct clients own = {0}, *cs;

	cs = ws->k < EXP_POOL_MAX ? &x->pool[ws->k] : &own;
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
		cl = exp_client_for(x, cs, it->host, &e);
		rc = cl ? exp_fetch_item(x, cl, it, &e) : -1;
		if (rc == 0)
			rc = check_config(x, it, &e);
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
			exp_blob_done_event(x, it);
	}
	exp_clients_release(&own);
	return NULL;
}

/* ---- a pool over the images ---- */

size_t exp_jobs(const struct exporter *x)
{
	return (size_t)(x->o->jobs > 0 ? x->o->jobs : 4);
}

static void *each_worker(void *arg)
{
	struct wslot *ws = arg;
	struct exporter *x = ws->x;
	struct clients own = {0}, *cs;

	cs = ws->k < EXP_POOL_MAX ? &x->pool[ws->k] : &own;
	for (;;) {
		size_t i;

		pthread_mutex_lock(&x->mu);
		i = x->next_image++;
		pthread_mutex_unlock(&x->mu);
		if (i >= x->nimages ||
		    (x->o->reg->cancel && *x->o->reg->cancel))
			break;
		x->each_fn(x, cs, i);
	}
	exp_clients_release(&own);
	return NULL;
}

int exp_each_image(struct exporter *x, size_t n,
		   void (*fn)(struct exporter *x, struct clients *cs, size_t i),
		   struct ferr *e)
{
	size_t started = 0;
	pthread_t *t;
	struct wslot *ws;

	if (n > x->nimages)
		n = x->nimages;
	t = calloc(n + 1, sizeof(*t));
	ws = calloc(n + 1, sizeof(*ws));
	if (!t || !ws) {
		free(t);
		free(ws);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	x->next_image = 0;
	x->each_fn = fn;
	for (size_t k = 0; k <= n; k++)
		ws[k] = (struct wslot){.x = x, .k = k};
	for (; started < n; started++)
		if (pthread_create(&t[started], NULL, each_worker,
				   &ws[started]) != 0)
			break;
	if (!started) /* no thread at all: do it here */
		each_worker(&ws[0]);
	for (size_t i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	free(t);
	free(ws);
	if (x->o->reg->cancel && *x->o->reg->cancel)
		return ferr_set(e, FERR_INTERRUPT, 0, "interrupted");
	return 0;
}

/* ---- resolution: every reference, in order ---- */

/* The images to export: one per distinct normalised reference. */
static int list_images(struct exporter *x, const struct ref *refs, size_t nrefs,
		       struct ferr *e)
{
	x->images = calloc(nrefs + 1, sizeof(*x->images));
	x->refs = calloc(nrefs + 1, sizeof(*x->refs));
	if (!x->images || !x->refs)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < nrefs; i++) {
		struct bundle_image *im = &x->images[x->nimages];
		bool dup = false;

		im->ref = ref_string(&refs[i]);
		if (!im->ref)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		for (size_t k = 0; k < x->nimages && !dup; k++)
			dup = !strcmp(x->images[k].ref, im->ref);
		if (dup) {
			free(im->ref);
			im->ref = NULL;
			continue;
		}
		x->refs[x->nimages++] = &refs[i];
	}
	return 0;
}

/* Every reference was tried: report each that failed (all but the first,
 * which resolution returns), so one run lists every missing image. */
static void report_failures(struct exporter *x)
{
	size_t nfailed = 0;

	for (size_t i = 0; i < x->nimages; i++) {
		struct exp_event ev;

		if (!x->tops[i].failed ||
		    x->tops[i].err.cat == FERR_INTERRUPT || !nfailed++)
			continue;
		memset(&ev, 0, sizeof(ev));
		ev.type = EXP_EV_FAILED;
		ev.ref = x->images[i].ref;
		ev.err = &x->tops[i].err;
		exp_emit(x, &ev);
	}
	for (size_t i = 0; i < x->nimages && nfailed > 1; i++) {
		struct ferr *f = &x->tops[i].err;
		size_t len;

		if (!x->tops[i].failed)
			continue;
		len = strlen(f->msg);
		snprintf(f->msg + len, sizeof(f->msg) - len,
			 " (and %zu more image%s that cannot be exported)",
			 nfailed - 1, nfailed == 2 ? "" : "s");
		break;
	}
}

/* Fetch every manifest in parallel, then resolve in order (the bundle's
 * order follows the references', whatever the network did). */
static int resolve_all(struct exporter *x, const struct ref *refs, size_t nrefs,
		       struct ferr *e)
{
	int rc = -1;

	atomic_store(&x->pr->phase, EXP_RESOLVING);
	if (list_images(x, refs, nrefs, e) < 0)
		goto out;
	atomic_store(&x->pr->images_total, (unsigned)x->nimages);
	if (exp_prefetch(x, e) < 0)
		goto out;
	report_failures(x);
	for (size_t i = 0; i < x->nimages; i++) {
		struct bundle_image *im = &x->images[i];
		struct exp_event ev;

		if (exp_resolve_one(x, x->refs[i], im, e) < 0)
			goto out;
		atomic_fetch_add(&x->pr->images_resolved, 1);
		memset(&ev, 0, sizeof(ev));
		ev.type = EXP_EV_RESOLVED;
		ev.ref = im->ref;
		ev.digest = im->digest.str;
		ev.size = im->total_size;
		exp_emit(x, &ev);
	}
	if (exp_discover(x, e) < 0)
		goto out;
	rc = 0;
out:
	exp_discover_release(x);
	exp_clients_release(&x->main_clients);
	exp_store_release(x);
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
	char *path = exp_asprintf("%s/%s", x->blobdir, digest_hex(&it->d));
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
		ssize_t r = read(fd, buf,
				 left < COPY_CHUNK ? (size_t)left : COPY_CHUNK);
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

void exp_result_release(struct exp_result *r)
{
	if (!r)
		return;
	bundle_images_release(r->images, r->nimages);
	r->images = NULL;
	r->nimages = 0;
}

/* What the bundle will hold, decided before a blob is fetched: the order
 * of its blob entries and its leading documents, signed. */
struct plan {
	size_t *order; /* item indexes in bundle order: what it carries */
	size_t n;
	struct digest *omitted; /* a delta: what the bases carry */
	size_t nomitted;
	struct bundle_sum *sums;
	size_t nsums;
	char *index_json, *manifest_json, *ferry_json, *sums_text, *sig_b64;
};

static void plan_release(struct plan *p)
{
	for (size_t i = 4; i < p->nsums; i++)
		free((char *)p->sums[i].path);
	free(p->sums);
	free(p->order);
	free(p->omitted);
	free(p->index_json);
	free(p->manifest_json);
	free(p->ferry_json);
	free(p->sums_text);
	free(p->sig_b64);
}

/* Indexes, then manifests, configs and layers, each in order of first
 * appearance; for a delta, the configs and layers its bases carry are
 * left out (and listed as omitted, in the same order). */
static int plan_order(struct exporter *x, struct plan *p, struct ferr *e)
{
	struct order_key *k = calloc(x->nitems + 1, sizeof(*k));

	p->order = calloc(x->nitems + 1, sizeof(*p->order));
	p->omitted = calloc(x->nitems + 1, sizeof(*p->omitted));
	if (!k || !p->order || !p->omitted) {
		free(k);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < x->nitems; i++) {
		k[i].kind = (int)x->items[i]->kind;
		k[i].seq = x->items[i]->seq;
		k[i].idx = i;
	}
	qsort(k, x->nitems, sizeof(*k), cmp_order);
	for (size_t i = 0; i < x->nitems; i++) {
		struct item *it = x->items[k[i].idx];
		if (it->kind >= K_CONFIG && exp_base_has(x, &it->d)) {
			it->omitted = true;
			p->omitted[p->nomitted++] = it->d;
		} else {
			p->order[p->n++] = k[i].idx;
		}
	}
	free(k);
	return 0;
}

/* index.json, manifest.json and ferry.json (with the bundle id). */
static int plan_documents(struct exporter *x, struct plan *p,
			  struct exp_result *res, struct ferr *e)
{
	struct digest *alld = calloc(p->n + 1, sizeof(*alld));
	int rc = -1;

	if (!alld)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < p->n; i++)
		alld[i] = x->items[p->order[i]]->d;
	p->index_json = bundle_index_json(x->images, x->nimages);
	p->manifest_json = bundle_manifest_json(x->images, x->nimages);
	if (!p->index_json || !p->manifest_json) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	res->meta.created = x->o->created;
	res->meta.channel = x->o->channel;
	res->meta.sequence = x->o->sequence;
	res->meta.key_id = x->o->key->key_id;
	res->meta.bases = (const char *const *)x->base_ids;
	res->meta.nbases = x->nbases;
	res->meta.omitted = p->omitted;
	res->meta.nomitted = p->nomitted;
	if (bundle_compute_id(&res->meta, p->index_json, strlen(p->index_json),
			      alld, p->n, e) < 0)
		goto out;
	p->ferry_json = bundle_ferry_json(&res->meta, x->images, x->nimages);
	if (!p->ferry_json) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	rc = 0;
out:
	free(alld);
	return rc;
}

/* SHA256SUMS over every other entry, and its signature. */
static int plan_sign(struct exporter *x, struct plan *p, struct ferr *e)
{
	static const char *names[4] = {BUNDLE_OCI_LAYOUT, BUNDLE_FERRY_JSON,
				       BUNDLE_INDEX_JSON, BUNDLE_MANIFEST_JSON};
	const char *docs[4] = {BUNDLE_OCI_LAYOUT_CONTENT, p->ferry_json,
			       p->index_json, p->manifest_json};
	unsigned char *sig = NULL;
	size_t siglen = 0;
	char *b;

	p->sums = calloc(p->n + 4, sizeof(*p->sums));
	if (!p->sums)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (int i = 0; i < 4; i++) {
		p->sums[p->nsums].path = names[i];
		if (digest_of(docs[i], strlen(docs[i]),
			      &p->sums[p->nsums++].digest, e) < 0)
			return -1;
	}
	for (size_t i = 0; i < p->n; i++) {
		struct item *it = x->items[p->order[i]];
		char *path = exp_asprintf(BUNDLE_BLOB_PREFIX "%s",
					  digest_hex(&it->d));
		if (!path)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		p->sums[p->nsums].path = path;
		p->sums[p->nsums++].digest = it->d;
	}
	p->sums_text = bundle_sums_text(p->sums, p->nsums);
	if (!p->sums_text)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (sig_sign(x->o->key, p->sums_text, strlen(p->sums_text), &sig,
		     &siglen, e) < 0)
		return -1;
	b = sig_base64_encode(sig, siglen);
	free(sig);
	p->sig_b64 = b ? exp_asprintf("%s\n", b) : NULL;
	free(b);
	return p->sig_b64 ? 0 : ferr_set(e, FERR_IO, ENOMEM, "out of memory");
}

static void image_done_event(struct exporter *x, size_t i)
{
	struct exp_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = EXP_EV_IMAGE_DONE;
	ev.ref = x->images[i].ref;
	ev.digest = x->images[i].digest.str;
	ev.size = x->images[i].total_size;
	atomic_fetch_add(&x->pr->images_done, 1);
	exp_emit(x, &ev);
}

/* Queue every config and layer not fetched yet, in bundle order, and
 * count what each image still waits for. */
static int plan_queue(struct exporter *x, const struct plan *p, struct ferr *e)
{
	x->queue = calloc(x->nitems + 1, sizeof(*x->queue));
	x->img_left = calloc(x->nimages + 1, sizeof(*x->img_left));
	if (!x->queue || !x->img_left)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < p->n; i++) {
		struct item *it = x->items[p->order[i]];
		if (it->kind == K_CONFIG || it->kind == K_LAYER) {
			atomic_fetch_add(&x->pr->blobs_total, 1);
			atomic_fetch_add(&x->pr->bytes_total,
					 (unsigned long long)it->size);
			if (it->state !=
			    S_DONE) /* else fetched while resolving */
				x->queue[x->nqueue++] = p->order[i];
		} else {
			it->state = S_DONE;
		}
	}
	for (size_t i = 0; i < x->nitems; i++)
		for (size_t k = 0;
		     !x->items[i]->omitted && k < x->items[i]->nimages; k++)
			x->img_left[x->items[i]->images[k]]++;
	for (size_t i = 0; i < x->nimages; i++)
		if (!x->img_left[i]) /* nothing left to fetch */
			image_done_event(x, i);
	return 0;
}

static int start_workers(struct exporter *x, pthread_t **threads,
			 size_t *nthreads, struct ferr *e)
{
	size_t n = (size_t)(x->o->jobs > 0 ? x->o->jobs : 4);

	atomic_store(&x->pr->phase, EXP_FETCHING);
	if (n > x->nqueue)
		n = x->nqueue;
	*threads = calloc(n + 1, sizeof(**threads));
	x->wslots = calloc(n + 1, sizeof(*x->wslots));
	if (!*threads || !x->wslots)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t k = 0; k <= n; k++)
		x->wslots[k] = (struct wslot){.x = x, .k = k};
	for (*nthreads = 0; *nthreads < n; (*nthreads)++) {
		if (pthread_create(&(*threads)[*nthreads], NULL, worker,
				   &x->wslots[*nthreads]) != 0) {
			x->abort = 1;
			return ferr_set(e, FERR_IO, errno,
					"cannot start a thread");
		}
	}
	return 0;
}

static int write_documents(struct arc_writer *w, const struct plan *p,
			   struct ferr *e)
{
	const char *names[6] = {BUNDLE_OCI_LAYOUT, BUNDLE_FERRY_JSON,
				BUNDLE_INDEX_JSON, BUNDLE_MANIFEST_JSON,
				BUNDLE_SUMS,	   BUNDLE_SUMS_SIG};
	const char *docs[6] = {
	    BUNDLE_OCI_LAYOUT_CONTENT, p->ferry_json, p->index_json,
	    p->manifest_json,	       p->sums_text,  p->sig_b64};

	for (int i = 0; i < 6; i++)
		if (arc_entry_mem(w, names[i], docs[i], strlen(docs[i]), e) < 0)
			return -1;
	return 0;
}

/* Every blob entry, in bundle order, as soon as the workers have it. */
static int write_blobs(struct exporter *x, struct arc_writer *w,
		       const struct plan *p, struct exp_result *res,
		       struct ferr *e)
{
	unsigned char *copybuf = malloc(COPY_CHUNK);
	int rc = -1;

	if (!copybuf)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < p->n; i++) {
		struct item *it = x->items[p->order[i]];
		char path[128];

		snprintf(path, sizeof(path), BUNDLE_BLOB_PREFIX "%s",
			 digest_hex(&it->d));
		if (wait_item(x, it, e) < 0 ||
		    arc_entry_begin(w, path, it->size, e) < 0)
			goto out;
		if (it->data ? arc_entry_data(w, it->data, it->size, e) < 0
			     : copy_blob(x, w, it, copybuf, e) < 0)
			goto out;
		res->blob_bytes += it->size;
		if (it->kind >= K_CONFIG && it->cached)
			res->bytes_cached += it->size;
		else if (it->kind >= K_CONFIG)
			res->bytes_fetched += it->size;
	}
	res->nblobs = p->n;
	rc = 0;
out:
	free(copybuf);
	return rc;
}

static int exporter_init(struct exporter *x, const struct exp_opts *o,
			 struct ferr *e)
{
	memset(x, 0, sizeof(*x));
	x->o = o;
	x->pr = o->progress ? o->progress : &x->dummy_progress;
	x->ropts = *o->reg;
	x->ropts.cancel = &x->abort;
	pthread_mutex_init(&x->mu, NULL);
	pthread_cond_init(&x->cv, NULL);
	pthread_mutex_init(&x->evmu, NULL);
	x->blobdir = exp_asprintf("%s/blobs/sha256", o->cache_dir);
	x->partdir = exp_asprintf("%s/partial", o->cache_dir);
	if (!x->blobdir || !x->partdir)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (mkdirs(x->blobdir, e) < 0 || mkdirs(x->partdir, e) < 0 ||
	    cache_dir_check(o->cache_dir, e) < 0 ||
	    cache_dir_check(x->partdir, e) < 0 ||
	    cache_dir_check(x->blobdir, e) < 0)
		return -1;
	return 0;
}

static void exporter_release(struct exporter *x)
{
	exp_clients_release(&x->main_clients);
	for (size_t k = 0; k < EXP_POOL_MAX; k++)
		exp_clients_release(&x->pool[k]);
	free(x->wslots);
	free(x->queue);
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
	free(x->refs);
	exp_store_release(x);
	exp_bases_release(x);
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
}

/* Stop the workers; a worker's error explains an interrupt better. */
static void stop_workers(struct exporter *x, pthread_t *threads,
			 size_t nthreads, int rc, struct ferr *e)
{
	pthread_mutex_lock(&x->mu);
	x->abort = 1; /* stop idle workers from taking more */
	pthread_mutex_unlock(&x->mu);
	for (size_t i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	if (rc < 0 && x->failed && x->werr.cat != FERR_OK &&
	    e->cat == FERR_INTERRUPT)
		*e = x->werr;
}

int exp_run(const struct exp_opts *o, const struct ref *refs, size_t nrefs,
	    const char *out_path, struct exp_result *res, struct ferr *e)
{
	struct exporter X, *x = &X;
	struct plan plan = {0};
	struct arc_writer *w = NULL;
	struct exp_out *out = NULL;
	struct arc_sink sink;
	pthread_t *threads = NULL;
	size_t nthreads = 0;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (exporter_init(x, o, e) < 0 ||
	    exp_out_open(&out, out_path, o->split_size, &sink, e) < 0 ||
	    exp_load_bases(x, e) < 0)
		goto out;
	/* 1. resolve every reference (interrupt via the caller's flag) */
	x->ropts.cancel = o->reg->cancel;
	if (resolve_all(x, refs, nrefs, e) < 0)
		goto out;
	x->ropts.cancel = &x->abort;
	/* 2. bundle order and documents, signed */
	if (plan_order(x, &plan, e) < 0 ||
	    plan_documents(x, &plan, res, e) < 0 || plan_sign(x, &plan, e) < 0)
		goto out;
	/* 3. fetch configs and layers in parallel, in bundle order */
	if (plan_queue(x, &plan, e) < 0 ||
	    start_workers(x, &threads, &nthreads, e) < 0)
		goto out;
	/* 4. write the bundle while blobs arrive */
	if (arc_writer_open_sink(&w, &sink, o->compress, o->threads, o->created,
				 out_path, e) < 0 ||
	    write_documents(w, &plan, e) < 0 ||
	    write_blobs(x, w, &plan, res, e) < 0 ||
	    arc_writer_finish(w, e) < 0 ||
	    exp_out_publish(out, o->key, &res->bundle_bytes, e) < 0)
		goto out;
	res->nparts = exp_out_parts(out);
	atomic_store(&x->pr->phase, EXP_DONE);
	rc = 0;
out:
	stop_workers(x, threads, nthreads, rc, e);
	if (rc == 0) { /* only now: a worker may still be reporting on them */
		res->images = x->images;
		res->nimages = x->nimages;
		x->images = NULL;
		x->nimages = 0;
	}
	arc_writer_release(w);
	exp_out_release(out);
	free(threads);
	plan_release(&plan);
	exporter_release(x);
	return rc;
}
