/* Where a bundle goes: one file, standard output, or split volumes.
 *
 * A file and every part are written under temporary names next to their
 * final ones and linked into place only when the whole bundle is written
 * and synced (link, not rename: a file that appeared meanwhile is never
 * replaced); until then, and on any failure or interrupt, the temporary
 * files are removed and nothing is left behind.  Standard output has no
 * such protection: a failure there shows in the exit status (and breaks
 * the pipeline), which is what a pipe can do. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "output.h"
#include "parts.h"

struct exp_out {
	const char *path; /* as given: "-", a file, or the parts' stem */
	bool to_stdout;
	uint64_t split; /* 0: one file */
	/* the file being written (the current part) */
	int fd;
	char *tmp;
	uint64_t cur; /* bytes in the current part */
	struct digest_ctx h;
	bool hashing;
	/* parts done so far, and the whole */
	char **tmps;
	struct parts_list list;
	uint64_t total;
	bool published;
	char **linked; /* final names created, removed if publishing fails */
	size_t nlinked;
};

static char *tmp_next_to(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? exp_asprintf("%.*s/.%s.ferry-XXXXXX",
				    (int)(slash - path), path, slash + 1)
		     : exp_asprintf(".%s.ferry-XXXXXX", path);
}

static int open_tmp(struct exp_out *o, const char *final, struct ferr *e)
{
	mode_t um;

	o->tmp = tmp_next_to(final);
	if (!o->tmp)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	o->fd = mkstemp(o->tmp);
	if (o->fd < 0) {
		ferr_errno(e, FERR_IO, errno,
			   "cannot create a file next to '%s'", final);
		free(o->tmp);
		o->tmp = NULL;
		return -1;
	}
	um = umask(0);
	umask(um);
	fchmod(o->fd, 0644 & ~um);
	return 0;
}

static int fsync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = !slash	    ? strdup(".")
		    : slash == path ? strdup("/")
				    : strndup(path, (size_t)(slash - path));
	int fd, rc = -1;

	if (!dir)
		return -1;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		rc = fsync(fd);
		close(fd);
	}
	free(dir);
	return rc;
}

static int exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Refuse to start when any output name is taken: nothing is replaced. */
static int check_free(struct exp_out *o, struct ferr *e)
{
	char *n;
	int taken;

	if (!o->split)
		return exists(o->path)
			   ? ferr_set(e, FERR_IO, EEXIST,
				      "'%s' already exists; refusing to "
				      "overwrite it",
				      o->path)
			   : 0;
	for (int k = 0; k < 3; k++) {
		n = k == 0   ? exp_asprintf("%s.parts", o->path)
		    : k == 1 ? exp_asprintf("%s.parts.sig", o->path)
			     : parts_name(o->path, 1);
		if (!n)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		taken = exists(n);
		if (taken)
			ferr_set(
			    e, FERR_IO, EEXIST,
			    "'%s' already exists; refusing to overwrite it", n);
		free(n);
		if (taken)
			return -1;
	}
	return 0;
}

static int part_start(struct exp_out *o, struct ferr *e)
{
	char *final = parts_name(o->path, (unsigned)o->list.n + 1);
	int rc;

	if (!final)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (o->list.n == PARTS_MAX) {
		free(final);
		return ferr_set(e, FERR_INPUT, 0,
				"the bundle needs more than %u parts of %llu "
				"bytes: choose a larger --split-size",
				PARTS_MAX, (unsigned long long)o->split);
	}
	rc = open_tmp(o, final, e);
	free(final);
	if (rc < 0 || digest_ctx_init(&o->h, e) < 0)
		return -1;
	o->hashing = true;
	o->cur = 0;
	return 0;
}

/* Sync and close the current part and record it. */
static int part_end(struct exp_out *o, struct ferr *e)
{
	struct digest d, *ns;
	char **nt, **nn, *base;
	const char *slash = strrchr(o->path, '/');

	if (fsync(o->fd) < 0)
		return ferr_errno(e, FERR_IO, errno, "cannot write '%s'",
				  o->tmp);
	close(o->fd);
	o->fd = -1;
	digest_ctx_final(&o->h, &d);
	digest_ctx_release(&o->h);
	o->hashing = false;
	base = parts_name(slash ? slash + 1 : o->path, (unsigned)o->list.n + 1);
	nt = realloc(o->tmps, (o->list.n + 1) * sizeof(*nt));
	if (nt)
		o->tmps = nt;
	if (!base || !nt) {
		free(base);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	nn = realloc(o->list.names, (o->list.n + 1) * sizeof(*nn));
	if (nn)
		o->list.names = nn;
	ns = nn ? realloc(o->list.sums, (o->list.n + 1) * sizeof(*ns)) : NULL;
	if (!ns) {
		free(base);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	o->list.sums = ns;
	o->list.names[o->list.n] = base;
	o->list.sums[o->list.n] = d;
	o->tmps[o->list.n++] = o->tmp;
	o->tmp = NULL;
	return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int out_write(void *ctx, const void *p, size_t n)
{
	struct exp_out *o = ctx;
	const unsigned char *q = p;
	struct ferr e;

	while (n) {
		size_t k = n;
		if (o->split) {
			if (o->cur == o->split &&
			    (part_end(o, &e) < 0 || part_start(o, &e) < 0)) {
				errno = e.code ? e.code : EIO;
				return -1;
			}
			if (k > o->split - o->cur)
				k = (size_t)(o->split - o->cur);
			digest_ctx_update(&o->h, q, k);
		}
		if (write_all(o->fd, q, k) < 0)
			return -1;
		o->cur += k;
		o->total += k;
		q += k;
		n -= k;
	}
	return 0;
}

int exp_out_open(struct exp_out **out, const char *path, uint64_t split,
		 struct arc_sink *sink, struct ferr *e)
{
	struct exp_out *o = calloc(1, sizeof(*o));

	*out = NULL;
	if (!o)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	o->path = path;
	o->fd = -1;
	o->split = split;
	o->to_stdout = !strcmp(path, "-");
	*out = o;
	if (o->to_stdout && split)
		return ferr_set(e, FERR_USAGE, 0,
				"--split-size needs a file name, not '-o -'");
	if (o->to_stdout) {
		o->fd = STDOUT_FILENO;
	} else if (check_free(o, e) < 0 ||
		   (split ? part_start(o, e) : open_tmp(o, path, e)) < 0) {
		return -1;
	}
	sink->write = out_write;
	sink->ctx = o;
	return 0;
}

/* Link every finished temporary file to its final name; on failure the
 * names linked so far are removed again (they are ours). */
static int link_all(struct exp_out *o, char **tmps, char **finals, size_t n,
		    struct ferr *e)
{
	o->linked = calloc(n + 1, sizeof(*o->linked));
	if (!o->linked)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		if (link(tmps[i], finals[i]) < 0)
			return ferr_errno(e, FERR_IO, errno,
					  "cannot create '%s'", finals[i]);
		o->linked[o->nlinked++] = finals[i];
		finals[i] = NULL;
	}
	return 0;
}

/* The parts list and its signature, as two more temporary files. */
static int write_list(struct exp_out *o, const struct sig_key *key, char **tmps,
		      struct ferr *e)
{
	char *text = parts_list_text(&o->list), *b64 = NULL, *sigline = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	const char *docs[2];
	int rc = -1;

	if (!text)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (sig_sign(key, text, strlen(text), &sig, &siglen, e) < 0)
		goto out;
	b64 = sig_base64_encode(sig, siglen);
	sigline = b64 ? exp_asprintf("%s\n", b64) : NULL;
	if (!sigline) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	docs[0] = text;
	docs[1] = sigline;
	for (int k = 0; k < 2; k++) {
		if (open_tmp(o, o->path, e) < 0)
			goto out;
		tmps[k] = o->tmp;
		o->tmp = NULL;
		if (write_all(o->fd, (const unsigned char *)docs[k],
			      strlen(docs[k])) < 0 ||
		    fsync(o->fd) < 0) {
			ferr_errno(e, FERR_IO, errno, "cannot write '%s'",
				   tmps[k]);
			goto out;
		}
		close(o->fd);
		o->fd = -1;
	}
	rc = 0;
out:
	free(text);
	free(b64);
	free(sigline);
	free(sig);
	return rc;
}

static int publish_parts(struct exp_out *o, const struct sig_key *key,
			 struct ferr *e)
{
	size_t n;
	char **tmps, **finals;
	int rc = -1;

	if (part_end(o, e) < 0)
		return -1;
	n = o->list.n + 2;
	tmps = calloc(n, sizeof(*tmps));
	finals = calloc(n, sizeof(*finals));
	if (!tmps || !finals) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	if (write_list(o, key, tmps + o->list.n, e) < 0)
		goto out;
	for (size_t i = 0; i < o->list.n; i++) {
		tmps[i] = o->tmps[i];
		finals[i] = parts_name(o->path, (unsigned)i + 1);
	}
	finals[n - 2] = exp_asprintf("%s.parts", o->path);
	finals[n - 1] = exp_asprintf("%s.parts.sig", o->path);
	for (size_t i = 0; i < n; i++)
		if (!finals[i]) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
	/* parts first, the list last: a list on disk means all parts are */
	rc = link_all(o, tmps, finals, n, e);
out:
	if (tmps) {
		for (size_t i = o->list.n; i < n; i++)
			if (tmps[i]) {
				unlink(tmps[i]);
				free(tmps[i]);
			}
	}
	for (size_t i = 0; finals && i < n; i++)
		free(finals[i]);
	free(tmps);
	free(finals);
	return rc;
}

int exp_out_publish(struct exp_out *o, const struct sig_key *key,
		    uint64_t *bytes, struct ferr *e)
{
	*bytes = o->total;
	if (o->to_stdout) {
		o->published = true;
		return 0;
	}
	if (o->split) {
		if (publish_parts(o, key, e) < 0)
			return -1;
	} else {
		char *finals[1] = {(char *)o->path};
		if (fsync(o->fd) < 0)
			return ferr_errno(e, FERR_IO, errno,
					  "cannot write '%s'", o->path);
		if (link_all(o, &o->tmp, finals, 1, e) < 0)
			return -1;
		o->linked[0] = NULL; /* not ours to free: the caller's */
	}
	fsync_dir(o->path);
	o->published = true;
	return 0;
}

size_t exp_out_parts(const struct exp_out *o)
{
	return o ? o->list.n : 0;
}

void exp_out_release(struct exp_out *o)
{
	if (!o)
		return;
	if (o->fd >= 0 && !o->to_stdout)
		close(o->fd);
	if (o->hashing)
		digest_ctx_release(&o->h);
	if (o->tmp) {
		unlink(o->tmp); /* after link() the bundle lives on */
		free(o->tmp);
	}
	for (size_t i = 0; i < o->list.n; i++) {
		if (o->tmps && o->tmps[i]) {
			unlink(o->tmps[i]);
			free(o->tmps[i]);
		}
	}
	for (size_t i = 0; i < o->nlinked; i++) {
		if (!o->published && o->linked[i])
			unlink(o->linked[i]);
		free(o->linked[i]);
	}
	free(o->linked);
	free(o->tmps);
	parts_list_release(&o->list);
	free(o);
}
