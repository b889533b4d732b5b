/* Reading split volumes as one stream (SPEC section 7).
 *
 * The signed list is checked first; then every part is read in order,
 * never joined on disk, and hashed as it is read.  Hashing runs in a
 * read-ahead thread, so it overlaps the reader's own work (decompression
 * and the hashing of every entry) instead of adding to it: a bundle read
 * from parts costs about what it costs from one file.  The thread hands
 * over the last chunk of a part only once that part's hash has matched
 * the list, so nothing of an altered part's end reaches the reader. */
#include "parts_in.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "breader.h"
#include "buf.h"
#include "parts.h"

#define CHUNK PARTS_IN_CHUNK
#define NCHUNKS 4

struct chunk {
	unsigned char *p;
	size_t len;
};

struct parts_in {
	char *bundle; /* X, the parts being X.001, ... */
	char *dir;    /* where they are ("" for the current directory) */
	struct parts_list list;
	/* queue from the read-ahead thread */
	pthread_t th;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct chunk q[NCHUNKS];
	size_t head, count;		  /* filled chunks: q[head], ... */
	unsigned char *pool[NCHUNKS + 2]; /* empty chunks for reuse */
	size_t npool;
	bool eof, stop, failed;
	struct ferr err;
};

static char *path_of(const struct parts_in *p, const char *name)
{
	size_t n = strlen(p->dir) + strlen(name) + 2;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "%s%s%s", p->dir, *p->dir ? "/" : "", name);
	return s;
}

/* A whole small file, capped. */
static int slurp(const char *path, size_t max, struct buf *b, struct ferr *e)
{
	unsigned char tmp[16384];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = -1;

	buf_init(b, max);
	if (fd < 0)
		return ferr_errno(e, errno == ENOENT ? FERR_BUNDLE : FERR_IO,
				  errno, "cannot open '%s'", path);
	for (;;) {
		ssize_t r = read(fd, tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ferr_errno(e, FERR_IO, errno, "cannot read '%s'", path);
			goto out;
		}
		if (r == 0)
			break;
		if (buf_append(b, tmp, (size_t)r) < 0) {
			ferr_set(e, FERR_BUNDLE, 0,
				 "'%s' is larger than %zu bytes", path, max);
			goto out;
		}
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

static int check_list_sig(const char *list_path, const struct buf *list,
			  const struct sig_key *key, struct ferr *e)
{
	char *sig_path = malloc(strlen(list_path) + 5);
	unsigned char *sig = NULL;
	size_t siglen = 0;
	struct buf b;
	int rc = -1;

	if (!sig_path)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	snprintf(sig_path, strlen(list_path) + 5, "%s.sig", list_path);
	buf_init(&b, 0);
	if (slurp(sig_path, BREADER_MAX_SIG, &b, e) < 0)
		goto out;
	if (sig_base64_decode((const char *)b.data, b.len, &sig, &siglen, e) <
	    0) {
		e->cat = FERR_VERIFY;
		ferr_prefix(e, "invalid signature in '%s'", sig_path);
		goto out;
	}
	if (sig_verify(key, list->data, list->len, sig, siglen, e) < 0) {
		ferr_set(e, FERR_VERIFY, 0,
			 "the signature in '%s' does not verify '%s' with key "
			 "'%s'",
			 sig_path, list_path, key->key_id);
		goto out;
	}
	rc = 0;
out:
	free(sig);
	buf_release(&b);
	free(sig_path);
	return rc;
}

/* Every listed part is there, and the next number is not. */
static int check_present(struct parts_in *p, struct ferr *e)
{
	struct stat st;
	char *extra, *path;
	int rc = 0;

	for (size_t i = 0; i < p->list.n && rc == 0; i++) {
		if (!(path = path_of(p, p->list.names[i])))
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			rc = ferr_set(e, FERR_BUNDLE, 0,
				      "part '%s' is missing (%zu parts are "
				      "listed in '%s.parts')",
				      path, p->list.n, p->bundle);
		free(path);
	}
	if (rc < 0)
		return rc;
	extra = parts_name(p->bundle, (unsigned)p->list.n + 1);
	if (!extra)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (lstat(extra, &st) == 0)
		rc =
		    ferr_set(e, FERR_BUNDLE, 0,
			     "'%s' is not listed in '%s.parts' (an extra part)",
			     extra, p->bundle);
	free(extra);
	return rc;
}

/* ---- the read-ahead thread ---- */

/* An empty chunk: from the pool, else a new one (the pool refills as
 * the consumer hands chunks back, so at most a few are ever made). */
static unsigned char *chunk_get(struct parts_in *p)
{
	unsigned char *b = NULL;

	pthread_mutex_lock(&p->mu);
	if (p->npool)
		b = p->pool[--p->npool];
	pthread_mutex_unlock(&p->mu);
	return b ? b : malloc(CHUNK);
}

static void chunk_put(struct parts_in *p, unsigned char *b)
{
	if (!b)
		return;
	if (p->npool < NCHUNKS + 2)
		p->pool[p->npool++] = b; /* under mu */
	else
		free(b);
}

/* Fill a chunk from fd as far as the part goes. */
static ssize_t read_full(int fd, unsigned char *b, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static int push(struct parts_in *p, unsigned char *data, size_t len)
{
	pthread_mutex_lock(&p->mu);
	while (p->count == NCHUNKS && !p->stop)
		pthread_cond_wait(&p->cv, &p->mu);
	if (p->stop) {
		pthread_mutex_unlock(&p->mu);
		return -1;
	}
	p->q[(p->head + p->count) % NCHUNKS] = (struct chunk){data, len};
	p->count++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

static void finish(struct parts_in *p, const struct ferr *e)
{
	pthread_mutex_lock(&p->mu);
	if (e) {
		p->failed = true;
		p->err = *e;
	}
	p->eof = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* Read part i, hashing; every chunk but its last is pushed at once, the
 * last only once the hash has matched. */
static int read_part(struct parts_in *p, size_t i, struct ferr *e)
{
	char *path = path_of(p, p->list.names[i]);
	unsigned char *held = NULL, *buf;
	size_t held_len = 0;
	struct digest_ctx h;
	struct digest got;
	int fd = -1, rc = -1;

	if (!path)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (digest_ctx_init(&h, e) < 0) {
		free(path);
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ferr_errno(e, FERR_BUNDLE, errno, "cannot open part '%s'",
			   path);
		goto out;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (;;) {
		ssize_t r;
		if (!(buf = chunk_get(p))) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		r = read_full(fd, buf, CHUNK);
		if (r <= 0) {
			free(buf);
			if (r < 0) {
				ferr_errno(e, FERR_IO, errno,
					   "cannot read '%s'", path);
				goto out;
			}
			break;
		}
		digest_ctx_update(&h, buf, (size_t)r);
		if (held && push(p, held, held_len) < 0) {
			free(buf);
			goto out; /* stopped */
		}
		held = buf;
		held_len = (size_t)r;
	}
	digest_ctx_final(&h, &got);
	if (!digest_equal(&got, &p->list.sums[i])) {
		ferr_set(e, FERR_VERIFY, 0,
			 "part '%s' does not match its hash in '%s.parts' "
			 "(altered, swapped or from another bundle)",
			 path, p->bundle);
		goto out;
	}
	if (held && push(p, held, held_len) < 0)
		goto out;
	held = NULL;
	rc = 0;
out:
	free(held);
	digest_ctx_release(&h);
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

static void *reader_thread(void *arg)
{
	struct parts_in *p = arg;
	struct ferr e;

	ferr_clear(&e);
	for (size_t i = 0; i < p->list.n; i++) {
		if (read_part(p, i, &e) < 0) {
			finish(p, e.cat == FERR_OK ? NULL : &e);
			return NULL;
		}
	}
	finish(p, NULL);
	return NULL;
}

/* ---- the consumer side ---- */

int parts_in_open(struct parts_in **out, const char *bundle,
		  const struct sig_key *key, struct ferr *e)
{
	struct parts_in *p = calloc(1, sizeof(*p));
	const char *slash = strrchr(bundle, '/');
	char *list_path = NULL;
	struct buf list;
	int rc = -1;

	*out = p;
	buf_init(&list, 0);
	if (!p)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->bundle = strdup(bundle);
	p->dir = slash ? strndup(bundle, (size_t)(slash - bundle)) : strdup("");
	list_path = malloc(strlen(bundle) + 7);
	if (!p->bundle || !p->dir || !list_path) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	snprintf(list_path, strlen(bundle) + 7, "%s.parts", bundle);
	if (slurp(list_path, PARTS_MAX_LIST, &list, e) < 0 ||
	    (key && check_list_sig(list_path, &list, key, e) < 0))
		goto out;
	if (parts_list_parse((const char *)list.data, list.len,
			     slash ? slash + 1 : bundle, &p->list, e) < 0) {
		ferr_prefix(e, "'%s'", list_path);
		goto out;
	}
	if (check_present(p, e) < 0)
		goto out;
	if (pthread_create(&p->th, NULL, reader_thread, p) != 0) {
		ferr_set(e, FERR_IO, errno, "cannot start a thread");
		goto out;
	}
	p->started = true;
	rc = 0;
out:
	buf_release(&list);
	free(list_path);
	return rc;
}

/* The next filled chunk (waiting for it); false at the end or on error. */
static int next_chunk(struct parts_in *p, struct chunk *c, struct ferr *e)
{
	int rc = 0;

	pthread_mutex_lock(&p->mu);
	while (!p->count && !p->eof)
		pthread_cond_wait(&p->cv, &p->mu);
	if (p->count) {
		*c = p->q[p->head];
		p->head = (p->head + 1) % NCHUNKS;
		p->count--;
		pthread_cond_broadcast(&p->cv);
		rc = 1;
	} else if (p->failed) {
		*e = p->err;
		rc = -1;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

ssize_t parts_in_swap(struct parts_in *p, unsigned char **buf, struct ferr *e)
{
	struct chunk c;
	int rc = next_chunk(p, &c, e);

	if (rc <= 0)
		return rc;
	pthread_mutex_lock(&p->mu);
	chunk_put(p, *buf);
	pthread_mutex_unlock(&p->mu);
	*buf = c.p;
	return (ssize_t)c.len;
}

size_t parts_in_count(const struct parts_in *p)
{
	return p ? p->list.n : 0;
}

void parts_in_release(struct parts_in *p)
{
	if (!p)
		return;
	if (p->started) {
		pthread_mutex_lock(&p->mu);
		p->stop = true;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->th, NULL);
	}
	for (size_t i = 0; i < p->count; i++)
		free(p->q[(p->head + i) % NCHUNKS].p);
	for (size_t i = 0; i < p->npool; i++)
		free(p->pool[i]);
	parts_list_release(&p->list);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->bundle);
	free(p->dir);
	free(p);
}
