#include "breader.h"
#include "parts.h"
#include "parts_in.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "bounds.h"
#include "buf.h"
#include "reg.h"

#define IN_BUF PARTS_IN_CHUNK /* split volumes swap buffers with us */

/* ---- input: file or stdin, zstd decoded here (to bound its window),
 * gzip left to libarchive (fixed 32 KiB window) ---- */

enum comp { C_NONE, C_GZIP, C_ZSTD };

struct src {
	int fd;
	bool own_fd;
	struct parts_in *parts; /* split volumes instead of fd */
	const char *name;
	enum comp comp;
	unsigned char *in;
	size_t in_len, in_pos;
	bool in_eof;
	unsigned char *out; /* zstd or gzip output */
	ZSTD_DCtx *dz;
	z_stream gz;
	bool gz_init, gz_end; /* gz_end: at the end of a gzip member */
	uint64_t total_out;   /* bytes handed to libarchive */
	const unsigned char *last;
	size_t last_len;
	size_t zret; /* last ZSTD_decompressStream result: 0 = frame done */
	bool zstarted;
	struct ferr err;
	bool failed;
	/* libarchive skips pax global headers without a word, so the stream
	 * is watched for them: offsets of 512-byte blocks of type 'g' not yet
	 * known to lie inside entry data */
	uint64_t *gh;
	size_t ngh, capgh;
	const struct bundle_ops *ops; /* for tar_data */
	void *ctx;
};

/* Hand decompressed bytes to the consumer's tar_data, if any. */
static int src_tap(struct src *s, const void *p, size_t n)
{
	if (!s->ops || !s->ops->tar_data || !n)
		return 0;
	if (s->ops->tar_data(s->ctx, p, n, &s->err) < 0) {
		s->failed = true;
		return -1;
	}
	return 0;
}

/* Pending 'g' candidates at once: libarchive holds at most a couple of
 * read buffers (2 MiB, 4096 blocks) ahead of what it has consumed. */
#define MAX_GLOBAL_CANDIDATES 16384u

static ssize_t read_some(struct src *s, unsigned char *p, size_t n)
{
	if (s->parts) {
		/* split volumes hand over whole chunks: no copy */
		ssize_t r = p == s->in && n == IN_BUF
				? parts_in_swap(s->parts, &s->in, &s->err)
				: -1;
		if (r < 0) {
			if (p != s->in || n != IN_BUF)
				ferr_set(&s->err, FERR_IO, 0,
					 "internal error: partial read of "
					 "split volumes");
			s->failed = true;
		}
		return r;
	}
	for (;;) {
		ssize_t r = read(s->fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			s->failed = true;
			ferr_errno(&s->err, FERR_IO, errno, "cannot read '%s'",
				   s->name);
		}
		return r;
	}
}

static la_ssize_t gz_read(struct src *s, const void **buf);
static int fill_in(struct src *s);

static la_ssize_t src_read_raw(struct archive *a, void *ud, const void **buf)
{
	struct src *s = ud;

	(void)a;
	if (s->failed)
		return -1;
	if (s->comp == C_GZIP)
		return gz_read(s, buf);
	if (s->comp != C_ZSTD) {
		ssize_t r;
		if (s->in_pos < s->in_len) { /* what src_open read first */
			*buf = s->in + s->in_pos;
			r = (ssize_t)(s->in_len - s->in_pos);
			s->in_pos = s->in_len;
			return r;
		}
		r = read_some(s, s->in, IN_BUF);
		*buf = s->in;
		return r < 0 ? -1 : (la_ssize_t)r;
	}
	/* zstd: produce some decompressed bytes */
	for (;;) {
		ZSTD_outBuffer o = {s->out, ZSTD_DStreamOutSize(), 0};
		ZSTD_inBuffer i;

		if (fill_in(s) < 0)
			return -1;
		if (s->in_pos == s->in_len && s->in_eof) {
			if (s->zstarted && s->zret != 0) {
				s->failed = true;
				ferr_set(&s->err, FERR_BUNDLE, 0,
					 "'%s' is truncated: its zstd stream "
					 "ends inside a frame",
					 s->name);
				return -1;
			}
			return 0;
		}
		i.src = s->in;
		i.size = s->in_len;
		i.pos = s->in_pos;
		s->zret = ZSTD_decompressStream(s->dz, &o, &i);
		s->zstarted = true;
		s->in_pos = i.pos;
		if (ZSTD_isError(s->zret)) {
			ZSTD_ErrorCode c = ZSTD_getErrorCode(s->zret);
			s->failed = true;
			if (c == ZSTD_error_frameParameter_windowTooLarge)
				ferr_set(&s->err, FERR_BUNDLE, 0,
					 "'%s': a zstd frame asks for a window "
					 "larger than the %u MiB limit",
					 s->name,
					 (1u << BREADER_ZSTD_WINDOW_LOG_MAX) >>
					     20);
			else
				ferr_set(&s->err, FERR_BUNDLE, 0,
					 "'%s': corrupt zstd stream: %s",
					 s->name, ZSTD_getErrorName(s->zret));
			return -1;
		}
		if (o.pos) {
			*buf = s->out;
			return (la_ssize_t)o.pos;
		}
	}
}

static int note_global(struct src *s, uint64_t off)
{
	if (s->ngh == s->capgh) {
		size_t nc = s->capgh ? s->capgh * 2 : 16;
		uint64_t *nv;
		if (s->ngh >= MAX_GLOBAL_CANDIDATES) {
			s->failed = true;
			return ferr_set(&s->err, FERR_BUNDLE, 0,
					"'%s' holds too many tar headers of "
					"type 'g' (pax global headers)",
					s->name);
		}
		nv = realloc(s->gh, nc * sizeof(*nv));
		if (!nv) {
			s->failed = true;
			return ferr_set(&s->err, FERR_IO, ENOMEM,
					"out of memory");
		}
		s->gh = nv;
		s->capgh = nc;
	}
	s->gh[s->ngh++] = off;
	return 0;
}

/* Note every 512-byte block of what goes to libarchive whose type byte
 * (offset 156) is 'g'; `off` is the stream offset of p[0].  Only the
 * blocks that turn out to be headers matter (global_in); a 'g' in entry
 * data is forgotten once read. */
static int watch_blocks(struct src *s, const unsigned char *p, size_t n,
			uint64_t off)
{
	uint64_t t = off - off % 512 + 156;

	if (t < off)
		t += 512;
	for (; t < off + n; t += 512)
		if (p[t - off] == 'g' && note_global(s, t - 156) < 0)
			return -1;
	return 0;
}

/* Candidates before `upto` were entry data or headers already judged. */
static void forget_globals(struct src *s, uint64_t upto)
{
	size_t k = 0;

	while (k < s->ngh && s->gh[k] < upto)
		k++;
	if (k) {
		memmove(s->gh, s->gh + k, (s->ngh - k) * sizeof(*s->gh));
		s->ngh -= k;
	}
}

/* Whether a pax global header lies in [from, to): the header blocks of
 * one entry. */
static bool global_in(const struct src *s, uint64_t from, uint64_t to)
{
	for (size_t k = 0; k < s->ngh && s->gh[k] < to; k++)
		if (s->gh[k] >= from)
			return true;
	return false;
}

static la_ssize_t src_read(struct archive *a, void *ud, const void **buf)
{
	struct src *s = ud;
	la_ssize_t n = src_read_raw(a, ud, buf);

	if (n > 0) {
		if (watch_blocks(s, *buf, (size_t)n, s->total_out) < 0 ||
		    src_tap(s, *buf, (size_t)n) < 0)
			return -1;
		s->total_out += (uint64_t)n;
		s->last = *buf;
		s->last_len = (size_t)n;
	}
	return n;
}

static int fill_in(struct src *s)
{
	ssize_t r;

	if (s->in_pos < s->in_len || s->in_eof)
		return 0;
	r = read_some(s, s->in, IN_BUF);
	if (r < 0)
		return -1;
	s->in_len = (size_t)r;
	s->in_pos = 0;
	if (r == 0)
		s->in_eof = true;
	return 0;
}

/* gzip, members concatenated as gzip(1) allows; anything else after the
 * last member is an error. */
static la_ssize_t gz_read(struct src *s, const void **buf)
{
	for (;;) {
		int zr;

		if (fill_in(s) < 0)
			return -1;
		if (s->in_pos == s->in_len && s->in_eof) {
			if (!s->gz_end) {
				s->failed = true;
				ferr_set(&s->err, FERR_BUNDLE, 0,
					 "'%s' is truncated: its gzip stream "
					 "ends early",
					 s->name);
				return -1;
			}
			return 0;
		}
		if (s->gz_end) { /* another member follows */
			if (inflateReset(&s->gz) != Z_OK)
				goto corrupt;
			s->gz_end = false;
		}
		s->gz.next_in = s->in + s->in_pos;
		s->gz.avail_in = (uInt)(s->in_len - s->in_pos);
		s->gz.next_out = s->out;
		s->gz.avail_out = IN_BUF;
		zr = inflate(&s->gz, Z_NO_FLUSH);
		s->in_pos = s->in_len - s->gz.avail_in;
		if (zr == Z_STREAM_END)
			s->gz_end = true;
		else if (zr != Z_OK && zr != Z_BUF_ERROR)
			goto corrupt;
		if (s->gz.avail_out < IN_BUF) {
			*buf = s->out;
			return (la_ssize_t)(IN_BUF - s->gz.avail_out);
		}
	}
corrupt:
	s->failed = true;
	ferr_set(&s->err, FERR_BUNDLE, 0,
		 "'%s': corrupt gzip stream or trailing data after it: %s",
		 s->name, s->gz.msg ? s->gz.msg : "inflate error");
	return -1;
}

static int src_open(struct src *s, const char *path, const struct sig_key *key,
		    struct ferr *e)
{
	ssize_t r;
	size_t got = 0;
	char *stem;

	memset(s, 0, sizeof(*s));
	s->name = path;
	s->fd = -1;
	if ((stem = parts_bundle_of(path))) {
		int rc = parts_in_open(&s->parts, stem, key, e);
		free(stem);
		if (rc < 0)
			return -1;
	} else if (!strcmp(path, "-")) {
		s->fd = 0;
		s->name = "(standard input)";
	} else {
		struct stat st;
		s->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (s->fd < 0)
			return ferr_errno(e, FERR_IO, errno, "cannot open '%s'",
					  path);
		s->own_fd = true;
		if (fstat(s->fd, &st) == 0 && S_ISDIR(st.st_mode))
			return ferr_set(e, FERR_IO, EISDIR,
					"'%s' is a directory", path);
		posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	}
	s->in = malloc(IN_BUF);
	if (!s->in)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	/* the first bytes tell the compression; reading them as part of a
	 * full buffer keeps every later read aligned (a first part holds at
	 * least 4 KiB, or the whole bundle) */
	while (got < 4 && (!s->parts || !got)) {
		r = read_some(s, s->parts ? s->in : s->in + got,
			      s->parts ? IN_BUF : IN_BUF - got);
		if (r < 0) {
			*e = s->err;
			return -1;
		}
		if (r == 0) {
			s->in_eof = true;
			break;
		}
		got += (size_t)r;
	}
	s->in_len = got;
	s->in_pos = 0;
	if (got >= 4 && s->in[0] == 0x28 && s->in[1] == 0xb5 &&
	    s->in[2] == 0x2f && s->in[3] == 0xfd) {
		s->comp = C_ZSTD;
		s->out = malloc(ZSTD_DStreamOutSize());
		s->dz = ZSTD_createDCtx();
		if (!s->out || !s->dz)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		ZSTD_DCtx_setParameter(s->dz, ZSTD_d_windowLogMax,
				       BREADER_ZSTD_WINDOW_LOG_MAX);
	} else if (got >= 2 && s->in[0] == 0x1f && s->in[1] == 0x8b) {
		s->comp = C_GZIP;
		s->out = malloc(IN_BUF);
		if (!s->out)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		if (inflateInit2(&s->gz, 16 + MAX_WBITS) != Z_OK)
			return ferr_set(e, FERR_IO, ENOMEM,
					"cannot set up gzip decoding");
		s->gz_init = true;
	}
	return 0;
}

static void src_close(struct src *s)
{
	parts_in_release(s->parts);
	if (s->own_fd && s->fd >= 0)
		close(s->fd);
	free(s->in);
	free(s->out);
	ZSTD_freeDCtx(s->dz);
	if (s->gz_init)
		inflateEnd(&s->gz);
	free(s->gh);
}

/* After the tar end-of-archive marker: only zero padding may follow (at
 * most 16 MiB of it), and the compressed stream must end cleanly. */
#define MAX_TAIL (16u * 1024u * 1024u)
static int src_drain(struct archive *a, struct src *s, struct ferr *e)
{
	uint64_t consumed = (uint64_t)archive_filter_bytes(a, 0);
	uint64_t tail = s->total_out - consumed, seen = 0;
	const void *b;
	la_ssize_t n;

	if (tail > s->last_len)
		tail = s->last_len; /* cannot happen; stay in bounds */
	for (uint64_t i = s->last_len - tail; i < s->last_len; i++)
		if (s->last[i])
			goto trailing;
	seen = tail;
	while ((n = src_read_raw(NULL, s, &b)) > 0) {
		const unsigned char *q = b;
		if (src_tap(s, b, (size_t)n) < 0) {
			*e = s->err;
			return -1;
		}
		for (la_ssize_t i = 0; i < n; i++)
			if (q[i])
				goto trailing;
		seen += (uint64_t)n;
		if (seen > MAX_TAIL)
			return ferr_set(e, FERR_BUNDLE, 0,
					"'%s' has more than %u MiB of padding "
					"after the end of the archive",
					s->name, MAX_TAIL >> 20);
	}
	if (n < 0) {
		*e = s->err;
		return -1;
	}
	return 0;
trailing:
	return ferr_set(e, FERR_BUNDLE, 0,
			"'%s' has trailing data after the end of the archive",
			s->name);
}

/* ---- blob table ---- */

struct bref {
	struct digest d;
	uint64_t size;
	int kind; /* -1: not yet referenced */
	char media_type[128];
	bool listed, seen, omitted;
};

struct table {
	struct bref *v;
	size_t n, cap;
	size_t *ht;
	size_t htcap;
};

static struct bref *tfind(struct table *t, const struct digest *d)
{
	if (!t->htcap)
		return NULL;
	for (size_t i = digest_hash(d) % t->htcap;; i = (i + 1) % t->htcap) {
		if (!t->ht[i])
			return NULL;
		if (digest_equal(&t->v[t->ht[i] - 1].d, d))
			return &t->v[t->ht[i] - 1];
	}
}

static struct bref *tadd(struct table *t, const struct digest *d)
{
	struct bref *b = tfind(t, d);

	if (b)
		return b;
	if ((t->n + 1) * 2 > t->htcap) {
		size_t nc = t->htcap ? t->htcap * 2 : 1024;
		size_t *nh = calloc(nc, sizeof(*nh));
		if (!nh)
			return NULL;
		for (size_t k = 0; k < t->n; k++) {
			size_t i = digest_hash(&t->v[k].d) % nc;
			while (nh[i])
				i = (i + 1) % nc;
			nh[i] = k + 1;
		}
		free(t->ht);
		t->ht = nh;
		t->htcap = nc;
	}
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 256;
		struct bref *nv = realloc(t->v, nc * sizeof(*nv));
		if (!nv)
			return NULL;
		t->v = nv;
		t->cap = nc;
	}
	b = &t->v[t->n];
	memset(b, 0, sizeof(*b));
	b->d = *d;
	b->kind = -1;
	{
		size_t i = digest_hash(d) % t->htcap;
		while (t->ht[i])
			i = (i + 1) % t->htcap;
		t->ht[i] = t->n + 1;
	}
	t->n++;
	return b;
}

/* ---- the reader ---- */

static const char *const fixed_names[6] = {
    BUNDLE_OCI_LAYOUT,	  BUNDLE_FERRY_JSON, BUNDLE_INDEX_JSON,
    BUNDLE_MANIFEST_JSON, BUNDLE_SUMS,	     BUNDLE_SUMS_SIG};
static const size_t fixed_caps[6] = {BREADER_MAX_OCI_LAYOUT, FERRY_MAX_JSON,
				     FERRY_MAX_JSON,	     FERRY_MAX_JSON,
				     BREADER_MAX_SUMS,	     BREADER_MAX_SIG};

struct rd {
	const struct sig_key *key;
	const struct bundle_ops *ops;
	void *ctx;
	struct bundle_header *h;
	struct bundle_stats *st;
	struct table t;
	struct buf fixed[6];
	struct digest fixed_d[6];
	int last_kind;
	bool in_blob; /* consumer saw blob_begin but not blob_end */
	struct src s;
	struct archive *a;
	size_t idx;	/* entries read so far */
	struct buf doc; /* the JSON blob being read */
};

/* The entry being read. */
struct entry {
	const char *name;
	char q[256]; /* name as printed */
	uint64_t size;
};

static void quote_name(const char *s, char *out, size_t n)
{
	size_t k = 0;

	for (; *s && k + 1 < n && k < 200; s++)
		out[k++] = ((unsigned char)*s >= 0x20 &&
			    (unsigned char)*s < 0x7f)
			       ? *s
			       : '?';
	out[k] = '\0';
}

/* Names: exactly the fixed ones and blobs/sha256/<64 lowercase hex>. */
static int check_name(const char *name, struct ferr *e)
{
	char q[256];

	quote_name(name, q, sizeof(q));
	if (!*name)
		return ferr_set(e, FERR_BUNDLE, 0,
				"an entry has an empty name");
	if (name[0] == '/')
		return ferr_set(e, FERR_BUNDLE, 0,
				"entry '%s' has an absolute path", q);
	if (!strcmp(name, "..") || !strncmp(name, "../", 3) ||
	    strstr(name, "/../") ||
	    (strlen(name) >= 3 && !strcmp(name + strlen(name) - 3, "/..")))
		return ferr_set(e, FERR_BUNDLE, 0, "entry '%s' contains '..'",
				q);
	if (!strncmp(name, "./", 2))
		return ferr_set(e, FERR_BUNDLE, 0,
				"entry '%s' starts with './'", q);
	return 0;
}

static int blob_name(const char *name, struct digest *d, struct ferr *e)
{
	char q[256];

	quote_name(name, q, sizeof(q));
	if (strncmp(name, "blobs/", 6) != 0)
		return ferr_set(e, FERR_BUNDLE, 0, "unexpected entry '%s'", q);
	if (strncmp(name, BUNDLE_BLOB_PREFIX, strlen(BUNDLE_BLOB_PREFIX)) != 0)
		return ferr_set(e, FERR_BUNDLE, 0,
				"entry '%s': only sha256 blobs are allowed", q);
	if (!digest_hex_valid(name + 13, strlen(name + 13)))
		return ferr_set(e, FERR_BUNDLE, 0,
				"entry '%s' is not named by a valid digest "
				"(64 lowercase hex digits)",
				q);
	memcpy(d->str, DIGEST_PREFIX, 7);
	memcpy(d->str + 7, name + 13, DIGEST_HEX_LEN);
	d->str[DIGEST_STR_LEN] = '\0';
	return 0;
}

static json_t *parse_json(const unsigned char *p, size_t n, const char *what,
			  struct ferr *e)
{
	json_error_t je;
	json_t *j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &je);

	if (!j)
		ferr_set(e, FERR_BUNDLE, 0, "'%s' is not valid JSON: %s", what,
			 je.text);
	return j;
}

/* Parse SHA256SUMS strictly; registers every blob as listed. */
static int parse_sums(struct rd *r, struct ferr *e)
{
	const char *p = (const char *)r->fixed[4].data,
		   *end = p + r->fixed[4].len;
	char prev[200] = "";
	bool have[4] = {false, false, false, false};
	size_t n = 0;

	if (!r->fixed[4].len)
		return ferr_set(e, FERR_BUNDLE, 0, "'SHA256SUMS' is empty");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len, plen;
		char path[200];
		struct digest d;

		if (!nl)
			return ferr_set(e, FERR_BUNDLE, 0,
					"'SHA256SUMS' line %zu has no newline",
					n + 1);
		len = (size_t)(nl - p);
		if (len < 67 || p[64] != ' ' || p[65] != ' ' ||
		    !digest_hex_valid(p, 64))
			return ferr_set(
			    e, FERR_BUNDLE, 0,
			    "'SHA256SUMS' line %zu is not '<64 hex>  "
			    "<path>'",
			    n + 1);
		plen = len - 66;
		if (plen >= sizeof(path) || memchr(p + 66, '\0', plen))
			return ferr_set(e, FERR_BUNDLE, 0,
					"'SHA256SUMS' line %zu: bad path",
					n + 1);
		memcpy(path, p + 66, plen);
		path[plen] = '\0';
		if (check_name(path, e) < 0)
			return ferr_prefix(e, "'SHA256SUMS' line %zu", n + 1);
		if (n && strcmp(prev, path) >= 0)
			return ferr_set(
			    e, FERR_BUNDLE, 0,
			    "'SHA256SUMS' is not sorted or lists '%s' "
			    "twice",
			    path);
		memcpy(prev, path, plen + 1);
		memcpy(d.str, DIGEST_PREFIX, 7);
		memcpy(d.str + 7, p, 64);
		d.str[DIGEST_STR_LEN] = '\0';
		{
			int k = -1;
			for (int i = 0; i < 4; i++)
				if (!strcmp(path, fixed_names[i]))
					k = i;
			if (k >= 0) {
				have[k] = true;
				if (!digest_equal(&d, &r->fixed_d[k]))
					return ferr_set(
					    e, FERR_VERIFY, 0,
					    "'%s' does not match its checksum "
					    "in 'SHA256SUMS'",
					    path);
			} else {
				struct digest nd;
				struct bref *b;
				if (blob_name(path, &nd, e) < 0)
					return ferr_prefix(e, "'SHA256SUMS'");
				if (!digest_equal(&nd, &d))
					return ferr_set(
					    e, FERR_VERIFY, 0,
					    "'SHA256SUMS' gives '%s' a checksum "
					    "that does not match its name",
					    path);
				b = tadd(&r->t, &d);
				if (!b)
					return ferr_set(e, FERR_IO, ENOMEM,
							"out of memory");
				b->listed = true;
				r->h->nblobs++;
			}
		}
		n++;
		p = nl + 1;
	}
	for (int i = 0; i < 4; i++)
		if (!have[i])
			return ferr_set(
			    e, FERR_BUNDLE, 0,
			    "entry '%s' is not listed in 'SHA256SUMS'",
			    fixed_names[i]);
	r->h->nentries = n;
	return 0;
}

static int kind_of_type(const char *mt)
{
	if (!mt)
		return -1;
	if (!strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST))
		return BK_INDEX;
	if (!strcmp(mt, MT_OCI_MANIFEST) || !strcmp(mt, MT_DOCKER_MANIFEST))
		return BK_MANIFEST;
	return -1;
}

/* Record that a document refers to `d` with this size and kind. */
static int refer(struct rd *r, json_t *desc, int kind, const char *from,
		 struct ferr *e)
{
	const char *ds = json_string_value(json_object_get(desc, "digest"));
	json_t *sz = json_object_get(desc, "size");
	const char *mt = json_string_value(json_object_get(desc, "mediaType"));
	struct digest d;
	struct bref *b;
	uint64_t size;

	if (!json_is_object(desc) || !ds || !json_is_integer(sz))
		return ferr_set(e, FERR_BUNDLE, 0,
				"'%s' has a descriptor without digest and size",
				from);
	if (digest_parse(&d, ds, e) < 0) {
		e->cat = FERR_BUNDLE;
		return ferr_prefix(e, "'%s'", from);
	}
	if (json_integer_value(sz) < 0 ||
	    (uint64_t)json_integer_value(sz) > FERRY_MAX_BLOB_SIZE)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'%s' gives '%s' a size of %lld bytes, outside "
				"the limit of %llu",
				from, d.str, (long long)json_integer_value(sz),
				(unsigned long long)FERRY_MAX_BLOB_SIZE);
	size = (uint64_t)json_integer_value(sz);
	if (kind < 0) { /* from an index: by media type */
		kind = kind_of_type(mt);
		if (kind < 0)
			return ferr_set(e, FERR_BUNDLE, 0,
					"'%s' refers to '%s' with unsupported "
					"media type '%.100s'",
					from, d.str, mt ? mt : "(none)");
	}
	b = tfind(&r->t, &d);
	if (!b || (!b->listed && !b->omitted))
		return ferr_set(e, FERR_BUNDLE, 0,
				"'%s' refers to '%s', which is not in the "
				"bundle",
				from, d.str);
	if (b->kind >= 0) {
		if (b->size != size)
			return ferr_set(e, FERR_VERIFY, 0,
					"descriptors give '%s' sizes %llu and "
					"%llu",
					d.str, (unsigned long long)b->size,
					(unsigned long long)size);
		if (b->seen && kind != b->kind)
			return ferr_set(e, FERR_BUNDLE, 0,
					"'%s' is used as two kinds of object",
					d.str);
		/* the document is checked against one media type only:
		 * every descriptor of it must name that one (configs and
		 * layers may be shared by OCI and Docker manifests, which
		 * name them differently) */
		if (kind <= BK_MANIFEST && b->kind <= BK_MANIFEST &&
		    strcmp(b->media_type, mt ? mt : "") != 0)
			return ferr_set(e, FERR_VERIFY, 0,
					"'%s' refers to '%s' with media type "
					"'%.100s', another descriptor with "
					"'%.100s'",
					from, d.str, mt ? mt : "(none)",
					b->media_type);
		if (kind < b->kind)
			b->kind = kind;
		return 0;
	}
	if (b->seen)
		return ferr_set(e, FERR_BUNDLE, 0,
				"out of order: '%s' refers to '%s', which came "
				"before it",
				from, d.str);
	b->kind = kind;
	b->size = size;
	snprintf(b->media_type, sizeof(b->media_type), "%s", mt ? mt : "");
	return 0;
}

/* An index or manifest blob: check its type against the descriptor and
 * register what it refers to. */
static int take_doc(struct rd *r, struct bref *b, const unsigned char *doc,
		    size_t len, const char *path, struct ferr *e)
{
	const char *kind;
	json_t *root = NULL, *arr, *d;
	size_t i;
	int rc = -1;

	kind = reg_manifest_kind(doc, len, b->media_type, e);
	if (!kind) {
		e->cat = FERR_BUNDLE;
		return ferr_prefix(e, "'%s'", path);
	}
	if (strcmp(kind, b->media_type) != 0)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'%s' is a '%s' but its descriptor says media "
				"type '%.100s'",
				path, kind, b->media_type);
	root = parse_json(doc, len, path, e);
	if (!root)
		return -1;
	if (b->kind == BK_INDEX) {
		arr = json_object_get(root, "manifests");
		json_array_foreach(arr, i, d)
		{
			if (refer(r, d, -1, path, e) < 0)
				goto out;
		}
	} else {
		if (refer(r, json_object_get(root, "config"), BK_CONFIG, path,
			  e) < 0)
			goto out;
		arr = json_object_get(root, "layers");
		json_array_foreach(arr, i, d)
		{
			if (refer(r, d, BK_LAYER, path, e) < 0)
				goto out;
		}
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

void bundle_header_release(struct bundle_header *h)
{
	if (!h)
		return;
	bundle_images_release(h->images, h->nimages);
	free(h->channel);
	for (size_t i = 0; i < h->nbases; i++)
		free(h->bases[i]);
	free(h->bases);
	free(h->omitted);
	free(h->listed);
	h->images = NULL;
	h->channel = NULL;
	h->nimages = 0;
	h->bases = NULL;
	h->nbases = 0;
	h->omitted = NULL;
	h->nomitted = 0;
	h->listed = NULL;
	h->nlisted = 0;
}

static int check_oci_layout(struct rd *r, struct ferr *e)
{
	json_t *ol = parse_json(r->fixed[0].data, r->fixed[0].len,
				BUNDLE_OCI_LAYOUT, e);
	const char *v =
	    json_string_value(json_object_get(ol, "imageLayoutVersion"));
	bool ok = v && !strcmp(v, "1.0.0");

	json_decref(ol);
	if (!ok)
		return e->cat != FERR_OK
			   ? -1
			   : ferr_set(e, FERR_BUNDLE, 0,
				      "'oci-layout' does not declare "
				      "imageLayoutVersion 1.0.0");
	return 0;
}

/* ferry.json's own fields: version, id, time, channel, sequence, key. */
static int take_meta(struct rd *r, json_t *fj, struct ferr *e)
{
	struct bundle_header *h = r->h;
	json_t *fv = json_object_get(fj, "formatVersion");
	const char *id = json_string_value(json_object_get(fj, "bundleId"));
	const char *cr = json_string_value(json_object_get(fj, "created"));
	const char *ch = json_string_value(json_object_get(fj, "channel"));
	const char *kid =
	    json_string_value(json_object_get(fj, "signingKeyId"));
	json_t *sq = json_object_get(fj, "sequence");

	if (!json_is_integer(fv) || json_integer_value(fv) != 1)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json': unsupported formatVersion "
				"(this ferry reads version 1)");
	if (!id || !digest_hex_valid(id, strlen(id)) || !cr ||
	    strlen(cr) >= sizeof(h->created) || !ch || !kid ||
	    strlen(kid) >= sizeof(h->key_id) || !json_is_integer(sq) ||
	    json_integer_value(sq) < 0)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json' lacks bundleId, created, "
				"channel, sequence or signingKeyId");
	memcpy(h->bundle_id, id, 65);
	snprintf(h->created, sizeof(h->created), "%s", cr);
	h->channel = strdup(ch);
	h->sequence = (uint64_t)json_integer_value(sq);
	snprintf(h->key_id, sizeof(h->key_id), "%s", kid);
	if (!h->channel)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (r->key && strcmp(kid, r->key->key_id) != 0)
		return ferr_set(e, FERR_VERIFY, 0,
				"'ferry.json' names signing key '%.80s' but "
				"the bundle is signed by '%s'",
				kid, r->key->key_id);
	return 0;
}

/* A delta's base ids: 64 lowercase hex each. */
static int take_bases(struct rd *r, json_t *bases, struct ferr *e)
{
	struct bundle_header *h = r->h;
	json_t *b;
	size_t i;

	if (!json_is_array(bases) || !json_array_size(bases) ||
	    json_array_size(bases) > BREADER_MAX_BASES)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json': delta 'bases' is not a list of "
				"1 to %u bundle ids",
				BREADER_MAX_BASES);
	h->bases = calloc(json_array_size(bases), sizeof(*h->bases));
	if (!h->bases)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	json_array_foreach(bases, i, b)
	{
		const char *s = json_string_value(b);
		if (!s || strlen(s) != 64 ||
		    strspn(s, "0123456789abcdef") != 64)
			return ferr_set(e, FERR_BUNDLE, 0,
					"'ferry.json': delta base %zu is not a "
					"bundle id",
					i + 1);
		if (!(h->bases[h->nbases++] = strdup(s)))
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	return 0;
}

/* A delta names blobs it does not carry. */
static int take_delta(struct rd *r, json_t *fj, struct ferr *e)
{
	json_t *delta = json_object_get(fj, "delta"), *om, *d;
	struct bundle_header *h = r->h;
	size_t i;

	if (!delta)
		return 0;
	om = json_object_get(delta, "omitted");
	if (!json_is_object(delta) || !json_is_array(om))
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json': malformed 'delta'");
	if (take_bases(r, json_object_get(delta, "bases"), e) < 0)
		return -1;
	h->omitted = calloc(json_array_size(om) + 1, sizeof(*h->omitted));
	if (!h->omitted)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	json_array_foreach(om, i, d)
	{
		struct digest dg;
		struct bref *b;
		const char *s = json_string_value(d);

		if (digest_parse(&dg, s ? s : "", e) < 0) {
			e->cat = FERR_BUNDLE;
			return ferr_prefix(e, "'ferry.json' delta");
		}
		b = tadd(&r->t, &dg);
		if (!b)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		if (b->listed)
			return ferr_set(e, FERR_BUNDLE, 0,
					"'ferry.json': delta omits '%s', which "
					"the bundle carries",
					dg.str);
		b->omitted = true;
		h->omitted[h->nomitted++] = dg;
	}
	return 0;
}

/* The media type as a static string: the table is gone after
 * bundle_read. */
static const char *static_media_type(const char *mt)
{
	static const char *const known[] = {MT_OCI_INDEX, MT_OCI_MANIFEST,
					    MT_DOCKER_LIST, MT_DOCKER_MANIFEST};

	for (size_t t = 0; t < 4; t++)
		if (!strcmp(mt, known[t]))
			return known[t];
	return "";
}

/* Image i: its index.json descriptor `d` and ferry.json entry `fi`. */
static int take_image(struct rd *r, json_t *d, json_t *fi, size_t i,
		      struct ferr *e)
{
	struct bundle_header *h = r->h;
	struct bundle_image *im = &h->images[i];
	json_t *pl, *p;
	const char *ref = json_string_value(json_object_get(
	    json_object_get(d, "annotations"), BUNDLE_ANNOT_REF));
	const char *fref = json_string_value(json_object_get(fi, "reference"));
	const char *fdg = json_string_value(json_object_get(fi, "digest"));
	const char *ddg = json_string_value(json_object_get(d, "digest"));
	size_t k;

	if (refer(r, d, -1, BUNDLE_INDEX_JSON, e) < 0)
		return -1;
	if (!ref || !fref || strcmp(ref, fref) || !fdg || !ddg ||
	    strcmp(fdg, ddg))
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json' and 'index.json' disagree about "
				"image %zu",
				i + 1);
	im->ref = strdup(ref);
	if (!im->ref)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	h->nimages++;
	digest_parse(&im->digest, ddg, NULL);
	im->media_type =
	    static_media_type(tfind(&r->t, &im->digest)->media_type);
	im->doc_size = (uint64_t)json_integer_value(json_object_get(d, "size"));
	im->total_size =
	    (uint64_t)json_integer_value(json_object_get(fi, "size"));
	pl = json_object_get(fi, "platforms");
	im->platforms = calloc(json_array_size(pl) + 1, sizeof(char *));
	if (!im->platforms)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	json_array_foreach(pl, k, p)
	{
		if (json_string_value(p) && (im->platforms[im->nplatforms] =
						 strdup(json_string_value(p))))
			im->nplatforms++;
	}
	return 0;
}

/* One entry of an image's "attached" list in ferry.json. */
static int take_attach(struct rd *r, json_t *o, struct bundle_attach *a,
		       size_t i, struct ferr *e)
{
	const char *kind = json_string_value(json_object_get(o, "kind"));
	const char *mt = json_string_value(json_object_get(o, "mediaType"));
	const char *at = json_string_value(json_object_get(o, "artifactType"));
	const char *tag = json_string_value(json_object_get(o, "tag"));
	json_t *sz = json_object_get(o, "size");
	const struct bundle_image *im = &r->h->images[i];
	char want[BUNDLE_ATTACH_TAG_MAX];
	struct bref *b;
	int k = kind ? bundle_attach_kind_parse(kind) : -1;

	if (k < 0 || !mt || !*static_media_type(mt) || !json_is_integer(sz) ||
	    json_integer_value(sz) < 0 ||
	    json_integer_value(sz) > FERRY_MAX_JSON ||
	    digest_parse(&a->digest,
			 json_string_value(json_object_get(o, "digest")),
			 NULL) < 0 ||
	    digest_parse(&a->subject,
			 json_string_value(json_object_get(o, "subject")),
			 NULL) < 0 ||
	    (at && strlen(at) > BREADER_MAX_ARTIFACT_TYPE))
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json': image %zu has a malformed "
				"attached entry",
				i + 1);
	a->kind = (enum bundle_attach_kind)k;
	a->media_type = static_media_type(mt);
	a->size = (uint64_t)json_integer_value(sz);
	/* the only tags a bundle may make import write for an attachment
	 * are the ones its subject's digest names */
	bundle_attach_tag(a->kind, &a->subject, want);
	if (a->kind == BA_REFERRER ? tag != NULL : !tag || strcmp(tag, want))
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json': image %zu has an attached %s "
				"with the tag '%.100s' (its subject '%s' "
				"gives '%s')",
				i + 1, kind, tag ? tag : "(none)",
				a->subject.str,
				a->kind == BA_REFERRER ? "none" : want);
	/* a subject the bundle does not carry would let its tag replace
	 * another image's signature at the target: only the image's own
	 * digests (and what upstream signed) or what the bundle holds */
	b = tfind(&r->t, &a->subject);
	if (!digest_equal(&a->subject, &im->digest) &&
	    !(im->has_signed &&
	      digest_equal(&a->subject, &im->signed_digest)) &&
	    (!b || (!b->listed && !b->omitted)))
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json': image %zu has an attached %s on "
				"'%s', which is neither the image nor in the "
				"bundle",
				i + 1, kind, a->subject.str);
	b = tfind(&r->t, &a->digest);
	if (!b || !b->listed)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json': image %zu names attached '%s', "
				"which is not in the bundle",
				i + 1, a->digest.str);
	if ((at && !(a->artifact_type = strdup(at))) ||
	    (tag && !(a->tag = strdup(tag))))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	return 0;
}

static int take_attached(struct rd *r, json_t *fi, size_t i, struct ferr *e)
{
	struct bundle_image *im = &r->h->images[i];
	json_t *arr = json_object_get(fi, "attached"), *o;
	const char *kid = json_string_value(json_object_get(fi, "cosignKeyId"));
	json_t *sd = json_object_get(fi, "signedDigest");
	size_t k;

	if (kid && (strlen(kid) != 71 || strncmp(kid, "sha256:", 7) ||
		    !digest_valid(kid)))
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json': image %zu has a malformed "
				"cosignKeyId",
				i + 1);
	if (kid && !(im->cosign_key_id = strdup(kid)))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	im->has_signed = kid || sd;
	im->signed_digest = im->digest;
	if (sd &&
	    digest_parse(&im->signed_digest, json_string_value(sd), NULL) < 0)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json': image %zu has a malformed "
				"signedDigest",
				i + 1);
	if (!arr)
		return 0;
	if (!json_is_array(arr) || json_array_size(arr) > FERRY_MAX_ATTACHED)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json': image %zu: 'attached' is not a "
				"list of at most %u entries",
				i + 1, FERRY_MAX_ATTACHED);
	im->attached = calloc(json_array_size(arr) + 1, sizeof(*im->attached));
	if (!im->attached)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	json_array_foreach(arr, k, o)
	{
		if (take_attach(r, o, &im->attached[im->nattached++], i, e) < 0)
			return -1;
	}
	return 0;
}

/* The index.json entries after the images: one per attachment tag that
 * ferry.json lists, each once, pointing where ferry.json says. */
static int take_attach_tags(struct rd *r, json_t *mans, size_t from,
			    struct ferr *e)
{
	struct bundle_header *h = r->h;
	json_t *want = json_object(), *d;
	size_t nwant = 0;
	int rc = -1;

	if (!want)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < h->nimages; i++) {
		char *repo = bundle_ref_repo(h->images[i].ref);
		for (size_t k = 0; repo && k < h->images[i].nattached; k++) {
			const struct bundle_attach *a =
			    &h->images[i].attached[k];
			char ref[700];
			const char *had;

			if (!a->tag)
				continue;
			snprintf(ref, sizeof(ref), "%s:%s", repo, a->tag);
			had = json_string_value(json_object_get(want, ref));
			if (had && strcmp(had, a->digest.str)) {
				free(repo);
				ferr_set(e, FERR_BUNDLE, 0,
					 "'ferry.json' attaches two things "
					 "as '%s'",
					 ref);
				goto out;
			}
			if (!had) {
				json_object_set_new(want, ref,
						    json_string(a->digest.str));
				nwant++;
			}
		}
		free(repo);
	}
	if (json_array_size(mans) - from != nwant) {
		ferr_set(e, FERR_BUNDLE, 0,
			 "'index.json' has %zu attachment tags, 'ferry.json' "
			 "lists %zu",
			 json_array_size(mans) - from, nwant);
		goto out;
	}
	for (size_t k = from; k < json_array_size(mans); k++) {
		const char *ref, *dg, *w;

		d = json_array_get(mans, k);
		ref = json_string_value(json_object_get(
		    json_object_get(d, "annotations"), BUNDLE_ANNOT_REF));
		dg = json_string_value(json_object_get(d, "digest"));
		w = ref ? json_string_value(json_object_get(want, ref)) : NULL;
		if (!w || !dg || strcmp(w, dg)) {
			ferr_set(e, FERR_BUNDLE, 0,
				 "'index.json' entry %zu is not an "
				 "attachment tag 'ferry.json' lists",
				 k + 1);
			goto out;
		}
		json_object_del(want, ref); /* each once */
		if (refer(r, d, -1, BUNDLE_INDEX_JSON, e) < 0)
			goto out;
	}
	rc = 0;
out:
	json_decref(want);
	return rc;
}

/* index.json against ferry.json's image list. */
static int take_images(struct rd *r, json_t *fj, json_t *ix, struct ferr *e)
{
	struct bundle_header *h = r->h;
	json_t *mans = json_object_get(ix, "manifests"), *imgs, *d;
	size_t i;

	if (!json_is_object(ix) || !json_is_array(mans) ||
	    json_integer_value(json_object_get(ix, "schemaVersion")) != 2)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'index.json' is not an OCI index with "
				"'manifests'");
	imgs = json_object_get(fj, "images");
	if (!json_is_array(imgs) ||
	    json_array_size(imgs) > json_array_size(mans))
		return ferr_set(e, FERR_BUNDLE, 0,
				"'ferry.json' and 'index.json' list different "
				"images");
	h->images = calloc(json_array_size(imgs) + 1, sizeof(*h->images));
	if (!h->images)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	json_array_foreach(imgs, i, d)
	{
		if (take_image(r, json_array_get(mans, i), d, i, e) < 0 ||
		    take_attached(r, d, i, e) < 0)
			return -1;
	}
	return take_attach_tags(r, mans, json_array_size(imgs), e);
}

/* The bundle id is derived from the content: recompute it. */
static int check_bundle_id(struct rd *r, struct ferr *e)
{
	struct bundle_header *h = r->h;
	struct bundle_meta m;
	struct digest *all = calloc(r->t.n + 1, sizeof(*all));
	size_t na = 0;
	struct tm tm;
	char z = 0, tail = 0;
	int ok;

	if (!all)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t k = 0; k < r->t.n; k++)
		if (r->t.v[k].listed)
			all[na++] = r->t.v[k].d;
	memset(&m, 0, sizeof(m));
	memset(&tm, 0, sizeof(tm));
	ok = sscanf(h->created, "%4d-%2d-%2dT%2d:%2d:%2d%c%c", &tm.tm_year,
		    &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
		    &tm.tm_sec, &z, &tail) == 7 &&
	     z == 'Z';
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	m.created = timegm(&tm);
	m.channel = h->channel;
	m.sequence = h->sequence;
	if (ok)
		ok = bundle_compute_id(&m, (const char *)r->fixed[2].data,
				       r->fixed[2].len, all, na, e) == 0;
	free(all);
	if (!ok || strcmp(m.bundle_id, h->bundle_id) != 0) {
		if (e->cat == FERR_OK)
			ferr_set(e, FERR_VERIFY, 0,
				 "'ferry.json': bundleId does not match "
				 "the bundle's content");
		return -1;
	}
	return 0;
}

/* manifest.json: a JSON array. */
static int check_manifest_json(struct rd *r, struct ferr *e)
{
	json_t *mj = parse_json(r->fixed[3].data, r->fixed[3].len,
				BUNDLE_MANIFEST_JSON, e);
	bool ok = json_is_array(mj);

	json_decref(mj);
	if (!ok) {
		if (e->cat == FERR_OK)
			ferr_set(e, FERR_BUNDLE, 0,
				 "'manifest.json' is not a JSON array");
		return -1;
	}
	return 0;
}

/* ferry.json and index.json, after the signature and sums are good. */
static int take_header(struct rd *r, struct ferr *e)
{
	json_t *fj = NULL, *ix = NULL;
	int rc = -1;

	if (check_oci_layout(r, e) < 0)
		return -1;
	fj = parse_json(r->fixed[1].data, r->fixed[1].len, BUNDLE_FERRY_JSON,
			e);
	if (!fj || take_meta(r, fj, e) < 0 || take_delta(r, fj, e) < 0)
		goto out;
	ix = parse_json(r->fixed[2].data, r->fixed[2].len, BUNDLE_INDEX_JSON,
			e);
	if (!ix || take_images(r, fj, ix, e) < 0 || check_bundle_id(r, e) < 0 ||
	    check_manifest_json(r, e) < 0)
		goto out;
	rc = 0;
out:
	json_decref(fj);
	json_decref(ix);
	return rc;
}

static int entry_type_ok(struct archive_entry *ent, const char *q,
			 struct ferr *e)
{
	if (archive_entry_hardlink(ent))
		return ferr_set(e, FERR_BUNDLE, 0,
				"entry '%s' is a hard link; only regular files "
				"are allowed",
				q);
	switch (archive_entry_filetype(ent)) {
	case AE_IFREG:
		break;
	case AE_IFLNK:
		return ferr_set(e, FERR_BUNDLE, 0,
				"entry '%s' is a symbolic link; only regular "
				"files are allowed",
				q);
	case AE_IFDIR:
		return ferr_set(e, FERR_BUNDLE, 0,
				"entry '%s' is a directory; only regular files "
				"are allowed",
				q);
	default:
		return ferr_set(e, FERR_BUNDLE, 0,
				"entry '%s' is a device, fifo or socket; only "
				"regular files are allowed",
				q);
	}
	if (archive_entry_sparse_count(ent) > 0)
		return ferr_set(e, FERR_BUNDLE, 0, "entry '%s' is sparse", q);
	if (!archive_entry_size_is_set(ent) || archive_entry_size(ent) < 0)
		return ferr_set(e, FERR_BUNDLE, 0, "entry '%s' has no size", q);
	return 0;
}

/* Read an entry's data, hashing it; `sink` gets every block. */
static int read_entry(struct archive *a, struct src *s, const char *q,
		      uint64_t size, struct digest *out,
		      int (*sink)(void *, const void *, size_t, struct ferr *),
		      void *sctx, struct rd *r, struct ferr *e)
{
	struct digest_ctx c;
	uint64_t got = 0;
	int rc = -1;

	if (digest_ctx_init(&c, e) < 0)
		return -1;
	for (;;) {
		const void *p;
		size_t n;
		la_int64_t off;
		int ar = archive_read_data_block(a, &p, &n, &off);

		if (ar == ARCHIVE_EOF)
			break;
		if (ar != ARCHIVE_OK) {
			if (s->failed)
				*e = s->err;
			else
				ferr_set(e, FERR_BUNDLE, 0,
					 "bundle is truncated or corrupt in "
					 "entry '%s': %s",
					 q,
					 archive_error_string(a)
					     ? archive_error_string(a)
					     : "read error");
			goto out;
		}
		if (off < 0 || (uint64_t)off != got) {
			ferr_set(e, FERR_BUNDLE, 0, "entry '%s' has holes", q);
			goto out;
		}
		forget_globals(s, (uint64_t)archive_filter_bytes(a, 0));
		digest_ctx_update(&c, p, n);
		got += n;
		if (got > size) {
			ferr_set(e, FERR_BUNDLE, 0,
				 "entry '%s' is longer than its header says",
				 q);
			goto out;
		}
		if (sink && sink(sctx, p, n, e) < 0)
			goto out;
	}
	if (got != size) {
		ferr_set(
		    e, FERR_BUNDLE, 0,
		    "bundle is truncated: entry '%s' has %llu of %llu bytes", q,
		    (unsigned long long)got, (unsigned long long)size);
		goto out;
	}
	r->st->tar_bytes += got;
	digest_ctx_final(&c, out);
	rc = 0;
out:
	digest_ctx_release(&c);
	return rc;
}

static int to_buf(void *ctx, const void *p, size_t n, struct ferr *e)
{
	struct buf *b = ctx;

	if (buf_append(b, p, n) < 0)
		return ferr_set(e, FERR_BUNDLE, 0, "entry too large");
	return 0;
}

struct blob_sink {
	struct rd *r;
	struct buf *doc; /* JSON kinds */
};

static int to_consumer(void *ctx, const void *p, size_t n, struct ferr *e)
{
	struct blob_sink *bs = ctx;

	if (bs->doc && buf_append(bs->doc, p, n) < 0)
		return ferr_set(e, FERR_BUNDLE, 0, "document too large");
	if (bs->r->ops && bs->r->ops->blob_data)
		return bs->r->ops->blob_data(bs->r->ctx, p, n, e);
	return 0;
}

static const char *kind_name(int k)
{
	static const char *const n[] = {"index", "manifest", "config", "layer"};
	return k >= 0 && k < 4 ? n[k] : "blob";
}

static void rd_init(struct rd *r, const struct sig_key *key,
		    const struct bundle_ops *ops, void *ctx,
		    struct bundle_header *hdr, struct bundle_stats *st)
{
	memset(r, 0, sizeof(*r));
	memset(hdr, 0, sizeof(*hdr));
	memset(st, 0, sizeof(*st));
	r->key = key;
	r->ops = ops;
	r->ctx = ctx;
	r->h = hdr;
	r->st = st;
	r->last_kind = BK_INDEX;
	r->s.fd = -1;
	for (int i = 0; i < 6; i++)
		buf_init(&r->fixed[i], fixed_caps[i]);
	buf_init(&r->doc, FERRY_MAX_JSON);
	hdr->verified = key != NULL;
}

static void rd_release(struct rd *r)
{
	if (r->a)
		archive_read_free(r->a);
	src_close(&r->s);
	for (int i = 0; i < 6; i++)
		buf_release(&r->fixed[i]);
	buf_release(&r->doc);
	free(r->t.v);
	free(r->t.ht);
}

/* Open the input and start libarchive on it: tar only; zstd and gzip are
 * decoded here, with our limits. */
static int open_archive(struct rd *r, const char *path, struct ferr *e)
{
	struct src *s = &r->s;
	const char *why;

	if (src_open(s, path, r->key, e) < 0)
		return -1;
	s->ops = r->ops;
	s->ctx = r->ctx;
	r->h->nparts = parts_in_count(s->parts);
	r->h->compression = s->comp == C_ZSTD	? "zstd"
			    : s->comp == C_GZIP ? "gzip"
						: "none";
	r->a = archive_read_new();
	if (!r->a)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	archive_read_support_format_tar(r->a);
	archive_read_support_filter_none(r->a);
	if (archive_read_open(r->a, s, NULL, src_read, NULL) == ARCHIVE_OK)
		return 0;
	if (s->failed) {
		*e = s->err;
		return -1;
	}
	why = archive_error_string(r->a);
	return ferr_set(e, FERR_BUNDLE, 0,
			"'%s' is not a tar archive (nor a zstd or gzip "
			"compressed one): %s",
			s->name, why ? why : "unknown format");
}

/* At the end of the entries: two zero blocks must close the archive;
 * without them it may have been cut at an entry boundary. */
static int check_end_marker(struct rd *r, uint64_t before, struct ferr *e)
{
	if (r->idx >= 6 && (uint64_t)archive_filter_bytes(r->a, 0) <
			       ((before + 511) & ~(uint64_t)511) + 1024)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'%s' is truncated: the end-of-archive marker "
				"is missing",
				r->s.name);
	return 0;
}

/* The next entry's header, its name and type checked: 1, or 0 at the
 * end of the archive, or -1. */
static int next_entry(struct rd *r, struct entry *en, struct ferr *e)
{
	uint64_t before = (uint64_t)archive_filter_bytes(r->a, 0), after;
	struct archive_entry *ent;
	int ar = archive_read_next_header(r->a, &ent);

	after = (uint64_t)archive_filter_bytes(r->a, 0);
	/* also when libarchive fails after one: it is the clearer reason */
	if (!r->s.failed && global_in(&r->s, before, after))
		return ferr_set(e, FERR_BUNDLE, 0,
				"'%s' holds a pax global header (tar entry "
				"type 'g') after %zu entries; only regular "
				"files are allowed",
				r->s.name, r->idx);
	forget_globals(&r->s, after);
	if (ar == ARCHIVE_EOF)
		return check_end_marker(r, before, e) < 0 ? -1 : 0;
	if (ar != ARCHIVE_OK) {
		const char *why = archive_error_string(r->a);
		if (r->s.failed) {
			*e = r->s.err;
			return -1;
		}
		return ferr_set(e, FERR_BUNDLE, 0,
				"'%s' is truncated or not a valid tar stream "
				"after %zu entries: %s",
				r->s.name, r->idx, why ? why : "read error");
	}
	en->name = archive_entry_pathname(ent);
	if (!en->name)
		return ferr_set(e, FERR_BUNDLE, 0, "entry %zu has no name",
				r->idx + 1);
	quote_name(en->name, en->q, sizeof(en->q));
	if (check_name(en->name, e) < 0 || entry_type_ok(ent, en->q, e) < 0)
		return -1;
	en->size = (uint64_t)archive_entry_size(ent);
	r->st->entries++;
	return 1;
}

/* ---- head: the six fixed entries, the signature, the header ---- */

/* Entry idx is not the fixed entry that belongs there. */
static int fixed_misplaced(size_t idx, const struct entry *en, struct ferr *e)
{
	int known = -1;

	for (int i = 0; i < 6; i++)
		if (!strcmp(en->name, fixed_names[i]))
			known = i;
	if (known >= 0 && (size_t)known < idx)
		return ferr_set(e, FERR_BUNDLE, 0, "duplicate entry '%s'",
				en->q);
	if (known >= 0)
		return ferr_set(e, FERR_BUNDLE, 0,
				"entry '%s' is missing or out of order: found "
				"'%s' where it belongs",
				fixed_names[idx], en->q);
	return ferr_set(e, FERR_BUNDLE, 0,
			"unexpected entry '%s' where '%s' belongs (missing or "
			"out of order)",
			en->q, fixed_names[idx]);
}

/* The archive ended before fixed entry idx. */
static int fixed_missing(struct rd *r, struct ferr *e)
{
	if (r->s.failed) {
		*e = r->s.err;
		return -1;
	}
	return ferr_set(e, FERR_BUNDLE, 0,
			r->idx == 0
			    ? "'%s' is empty or not a bundle: entry "
			      "'%s' is missing"
			    : "'%s' is truncated: entry '%s' is missing",
			r->s.name, fixed_names[r->idx]);
}

static int read_fixed(struct rd *r, const struct entry *en, struct ferr *e)
{
	size_t i = r->idx;

	if (strcmp(en->name, fixed_names[i]) != 0)
		return fixed_misplaced(i, en, e);
	if (en->size > fixed_caps[i])
		return ferr_set(
		    e, FERR_BUNDLE, 0,
		    "entry '%s' is %llu bytes, over its limit of %zu", en->q,
		    (unsigned long long)en->size, fixed_caps[i]);
	if (read_entry(r->a, &r->s, en->q, en->size, &r->fixed_d[i], to_buf,
		       &r->fixed[i], r, e) < 0 ||
	    buf_append(&r->fixed[i], "", 0) < 0)
		return -1;
	return 0;
}

/* The signature did not verify: which key does ferry.json (unverified)
 * say signed it?  Kept in the header's key_id for the report, "" when it
 * does not say. */
static const char *claimed_key_id(struct rd *r)
{
	json_t *fj = json_loadb((const char *)r->fixed[1].data, r->fixed[1].len,
				0, NULL);
	const char *kid =
	    json_string_value(json_object_get(fj, "signingKeyId"));

	if (kid && strlen(kid) < sizeof(r->h->key_id))
		snprintf(r->h->key_id, sizeof(r->h->key_id), "%s", kid);
	json_decref(fj);
	return r->h->key_id;
}

/* Both keys, so that a wrong --key is told from a bundle changed after
 * signing. */
static int signature_mismatch(struct rd *r, struct ferr *e)
{
	const char *kid = claimed_key_id(r);

	if (!*kid)
		return ferr_set(e, FERR_VERIFY, 0,
				"the signature in 'SHA256SUMS.sig' does not "
				"verify 'SHA256SUMS' with key '%s' (given with "
				"--key); 'ferry.json' names no signing key",
				r->key->key_id);
	if (strcmp(kid, r->key->key_id) == 0)
		return ferr_set(e, FERR_VERIFY, 0,
				"the signature in 'SHA256SUMS.sig' does not "
				"verify 'SHA256SUMS' with key '%s' (given with "
				"--key); the bundle names that key too: it was "
				"changed after signing",
				r->key->key_id);
	return ferr_set(e, FERR_VERIFY, 0,
			"the signature in 'SHA256SUMS.sig' does not verify "
			"'SHA256SUMS' with key '%s' (given with --key); the "
			"bundle says it was signed by key '%s'",
			r->key->key_id, kid);
}

/* SHA256SUMS.sig over SHA256SUMS, with the operator's key. */
static int check_signature(struct rd *r, struct ferr *e)
{
	unsigned char *sig = NULL;
	size_t siglen = 0;
	int v;

	if (!r->fixed[5].len)
		return ferr_set(e, FERR_VERIFY, 0,
				"'SHA256SUMS.sig' is empty: no signature");
	if (sig_base64_decode((const char *)r->fixed[5].data, r->fixed[5].len,
			      &sig, &siglen, e) < 0) {
		e->cat = FERR_VERIFY;
		return ferr_prefix(e, "invalid signature in 'SHA256SUMS.sig'");
	}
	v = sig_verify(r->key, r->fixed[4].data, r->fixed[4].len, sig, siglen,
		       e);
	free(sig);
	if (v < 0)
		return signature_mismatch(r, e);
	return 0;
}

/* The fixed entries, then the signature before anything else in them is
 * believed, then SHA256SUMS and the header they vouch for. */
static int read_head(struct rd *r, struct ferr *e)
{
	struct entry en;

	for (; r->idx < 6; r->idx++) {
		int n = next_entry(r, &en, e);
		if (n < 0)
			return -1;
		if (n == 0)
			return fixed_missing(r, e);
		if (read_fixed(r, &en, e) < 0)
			return -1;
	}
	if (r->key && check_signature(r, e) < 0)
		return -1;
	return parse_sums(r, e) < 0 || take_header(r, e) < 0 ? -1 : 0;
}

/* ---- entries: the blobs ---- */

/* Whether a blob entry may come here: listed, new, referenced by a
 * document before it, in kind order, of its descriptor's size. */
static int admit_blob(struct rd *r, const struct entry *en, struct digest *d,
		      struct bref **out, struct ferr *e)
{
	struct bref *b;

	if (blob_name(en->name, d, e) < 0)
		return -1;
	b = tfind(&r->t, d);
	if (!b || !b->listed)
		return ferr_set(e, FERR_BUNDLE, 0,
				"entry '%s' is not listed in 'SHA256SUMS'",
				en->q);
	if (b->seen)
		return ferr_set(e, FERR_BUNDLE, 0, "duplicate entry '%s'",
				en->q);
	if (b->kind < 0)
		return ferr_set(e, FERR_BUNDLE, 0,
				"entry '%s' is out of order or unreferenced: "
				"no document before it refers to it",
				en->q);
	if (b->kind < r->last_kind)
		return ferr_set(e, FERR_BUNDLE, 0,
				"entries out of order: %s '%s' after a %s",
				kind_name(b->kind), en->q,
				kind_name(r->last_kind));
	r->last_kind = b->kind;
	if (en->size != b->size)
		return ferr_set(e, FERR_VERIFY, 0,
				"entry '%s' is %llu bytes but its descriptor "
				"says %llu (size mismatch)",
				en->q, (unsigned long long)en->size,
				(unsigned long long)b->size);
	b->seen = true;
	if (b->kind != BK_LAYER && en->size > FERRY_MAX_JSON)
		return ferr_set(e, FERR_BUNDLE, 0,
				"%s '%s' is %llu bytes, over the %u-byte limit "
				"for JSON documents",
				kind_name(b->kind), en->q,
				(unsigned long long)en->size, FERRY_MAX_JSON);
	*out = b;
	return 0;
}

/* A JSON config must be a JSON object. */
static int check_config(struct rd *r, const struct bref *b, const char *q,
			struct ferr *e)
{
	json_t *cj;
	bool ok;

	if (!strstr(b->media_type, "json"))
		return 0;
	cj = parse_json(r->doc.data, r->doc.len, q, e);
	ok = json_is_object(cj);
	json_decref(cj);
	if (!ok) {
		if (e->cat == FERR_OK)
			ferr_set(e, FERR_BUNDLE, 0,
				 "config '%s' is not a JSON object", q);
		return -1;
	}
	return 0;
}

/* A blob: streamed to the consumer, which may act on it only once its
 * content matched its name (blob_end). */
static int take_blob(struct rd *r, const struct entry *en, struct ferr *e)
{
	const struct bundle_ops *ops = r->ops;
	struct digest d, got;
	struct bref *b = NULL;
	struct bundle_blob bb;
	struct blob_sink bs;
	bool json_kind;

	if (admit_blob(r, en, &d, &b, e) < 0)
		return -1;
	json_kind = b->kind != BK_LAYER;
	memset(&bb, 0, sizeof(bb));
	bb.path = en->name;
	bb.digest = d;
	bb.size = en->size;
	bb.kind = (enum bkind)b->kind;
	bb.media_type = b->media_type;
	buf_reset(&r->doc);
	bs.r = r;
	bs.doc = json_kind ? &r->doc : NULL;
	if (ops && ops->blob_begin) {
		if (ops->blob_begin(r->ctx, &bb, e) < 0)
			return -1;
		r->in_blob = true;
	}
	if (read_entry(r->a, &r->s, en->q, en->size, &got, to_consumer, &bs, r,
		       e) < 0)
		return -1;
	if (!digest_equal(&got, &d))
		return ferr_set(e, FERR_VERIFY, 0,
				"entry '%s' does not match its digest "
				"(content hashes to '%s')",
				en->q, got.str);
	if (b->kind <= BK_MANIFEST &&
	    take_doc(r, b, r->doc.data, r->doc.len, en->q, e) < 0)
		return -1;
	if (b->kind == BK_CONFIG && check_config(r, b, en->q, e) < 0)
		return -1;
	bb.doc = json_kind ? r->doc.data : NULL;
	bb.doc_len = json_kind ? r->doc.len : 0;
	r->in_blob = false;
	if (ops && ops->blob_end && ops->blob_end(r->ctx, &bb, e) < 0)
		return -1;
	r->st->blobs++;
	r->st->blob_bytes += en->size;
	return 0;
}

static int read_blobs(struct rd *r, struct ferr *e)
{
	struct entry en;
	int n;

	for (; (n = next_entry(r, &en, e)) > 0; r->idx++)
		if (take_blob(r, &en, e) < 0)
			return -1;
	return n;
}

/* ---- tail: nothing missing, nothing after the end ---- */

static int check_complete(struct rd *r, struct ferr *e)
{
	for (size_t k = 0; k < r->t.n; k++) {
		struct bref *b = &r->t.v[k];
		if (b->listed && !b->seen)
			return ferr_set(e, FERR_BUNDLE, 0,
					"entry 'blobs/sha256/%s' is listed in "
					"'SHA256SUMS' but missing from the "
					"bundle (truncated?)",
					digest_hex(&b->d));
		if (b->kind >= 0 && !b->seen && !b->omitted)
			return ferr_set(e, FERR_BUNDLE, 0,
					"'%s' is referenced but missing from "
					"the bundle",
					b->d.str);
	}
	return src_drain(r->a, &r->s, e);
}

/* Every blob SHA256SUMS lists, for a delta export over this bundle. */
static int take_listed(struct rd *r, struct ferr *e)
{
	struct bundle_header *h = r->h;

	h->listed = calloc(r->t.n + 1, sizeof(*h->listed));
	if (!h->listed)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t k = 0; k < r->t.n; k++)
		if (r->t.v[k].listed)
			h->listed[h->nlisted++] = r->t.v[k].d;
	return 0;
}

int bundle_read_head(const char *path, const struct sig_key *key,
		     struct bundle_header *hdr, struct ferr *e)
{
	struct bundle_stats st;
	struct rd r;
	int rc = -1;

	rd_init(&r, key, NULL, NULL, hdr, &st);
	if (open_archive(&r, path, e) < 0 || read_head(&r, e) < 0 ||
	    take_listed(&r, e) < 0)
		goto out;
	rc = 0;
out:
	rd_release(&r);
	return rc;
}

int bundle_read(const char *path, const struct sig_key *key,
		const struct bundle_ops *ops, void *ctx,
		struct bundle_header *hdr, struct bundle_stats *st,
		struct ferr *e)
{
	struct bundle_stats dummy;
	struct rd r;
	int rc = -1;

	rd_init(&r, key, ops, ctx, hdr, st ? st : &dummy);
	if (open_archive(&r, path, e) < 0 || read_head(&r, e) < 0)
		goto out;
	if (!key) { /* inspect: the header is all we read */
		rc = 0;
		goto out;
	}
	if (ops && ops->header && ops->header(ctx, hdr, e) < 0)
		goto out;
	if (read_blobs(&r, e) < 0 || check_complete(&r, e) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0 && r.in_blob && ops && ops->blob_abort)
		ops->blob_abort(ctx);
	rd_release(&r);
	return rc;
}
