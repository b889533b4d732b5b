#include "arc.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define OUT_BUF (1024 * 1024)
/* Largest zstd block; raw blocks carry at most this much. */
#define ZSTD_BLOCK_MAX (128 * 1024)

/*
 * Output path.  gzip goes through libarchive's filter.  For none and zstd
 * libarchive hands us the tar bytes unblocked and we do the rest: zstd
 * output is a sequence of frames, where the data of an entry that is
 * already compressed (gzip or zstd layers: most of any image) is stored in
 * frames of raw blocks instead of being compressed again -- same format,
 * any zstd decoder reads it, at the cost of a copy.
 */
struct arc_writer {
	struct archive *a;
	struct archive_entry *ent;
	time_t mtime;
	char *name;    /* output file name, for messages */
	uint64_t left; /* bytes still owed to the current entry */
	int finished;
	struct arc_sink sink;
	enum arc_compress comp;
	ZSTD_CCtx *zc;
	bool in_frame;	  /* a compressed frame is open */
	bool entry_start; /* next data is an entry's first */
	bool raw;	  /* current entry's data is stored as is */
	unsigned char *out;
	size_t outlen;
	unsigned char *zout;
	int err; /* errno of a failed write */
};

static int sink_put(struct arc_writer *w, const void *p, size_t n)
{
	if (n && w->sink.write(w->sink.ctx, p, n) < 0) {
		w->err = errno ? errno : EIO;
		return -1;
	}
	return 0;
}

static int out_flush(struct arc_writer *w)
{
	if (sink_put(w, w->out, w->outlen) < 0)
		return -1;
	w->outlen = 0;
	return 0;
}

static int out_put(struct arc_writer *w, const void *p, size_t n)
{
	const unsigned char *q = p;

	if ((w->outlen + n > OUT_BUF || n >= OUT_BUF / 2) && out_flush(w) < 0)
		return -1;
	if (n >= OUT_BUF / 2) /* large: straight through, in order */
		return sink_put(w, q, n);
	memcpy(w->out + w->outlen, q, n);
	w->outlen += n;
	return 0;
}

static int zstd_feed(struct arc_writer *w, const void *p, size_t n,
		     ZSTD_EndDirective mode)
{
	ZSTD_inBuffer in = {p, n, 0};
	size_t rem;

	do {
		ZSTD_outBuffer o = {w->zout, ZSTD_CStreamOutSize(), 0};
		rem = ZSTD_compressStream2(w->zc, &o, &in, mode);
		if (ZSTD_isError(rem)) {
			w->err = EIO;
			return -1;
		}
		if (o.pos && out_put(w, w->zout, o.pos) < 0)
			return -1;
	} while (mode == ZSTD_e_end ? rem != 0 : in.pos < in.size);
	return 0;
}

static int zstd_end_frame(struct arc_writer *w)
{
	if (!w->in_frame)
		return 0;
	w->in_frame = false;
	return zstd_feed(w, NULL, 0, ZSTD_e_end);
}

/* One frame of raw blocks: magic, header without content size (window
 * 128 KiB), blocks of at most 128 KiB, the last one flagged. */
static int zstd_raw_frame(struct arc_writer *w, const unsigned char *p,
			  size_t n)
{
	static const unsigned char hdr[6] = {0x28, 0xb5, 0x2f,
					     0xfd, 0x00, (17 - 10) << 3};

	if (out_put(w, hdr, sizeof(hdr)) < 0)
		return -1;
	while (n) {
		size_t b = n > ZSTD_BLOCK_MAX ? ZSTD_BLOCK_MAX : n;
		unsigned v = (unsigned)(b << 3) | (b == n ? 1u : 0u);
		unsigned char bh[3] = {(unsigned char)v,
				       (unsigned char)(v >> 8),
				       (unsigned char)(v >> 16)};
		if (out_put(w, bh, 3) < 0 || out_put(w, p, b) < 0)
			return -1;
		p += b;
		n -= b;
	}
	return 0;
}

static la_ssize_t on_write(struct archive *a, void *ud, const void *p, size_t n)
{
	struct arc_writer *w = ud;

	(void)a;
	if (w->comp == ARC_NONE) {
		if (out_put(w, p, n) < 0)
			return -1;
	} else if (w->raw) {
		if (zstd_end_frame(w) < 0 || zstd_raw_frame(w, p, n) < 0)
			return -1;
	} else {
		w->in_frame = true;
		if (zstd_feed(w, p, n, ZSTD_e_continue) < 0)
			return -1;
	}
	return (la_ssize_t)n;
}

static int on_close(struct archive *a, void *ud)
{
	struct arc_writer *w = ud;

	(void)a;
	if (w->comp == ARC_ZSTD && zstd_end_frame(w) < 0)
		return ARCHIVE_FATAL;
	return out_flush(w) < 0 ? ARCHIVE_FATAL : ARCHIVE_OK;
}

/* gzip: libarchive compresses and blocks; we only carry its output. */
static la_ssize_t on_write_gz(struct archive *a, void *ud, const void *p,
			      size_t n)
{
	(void)a;
	return sink_put(ud, p, n) < 0 ? -1 : (la_ssize_t)n;
}

static int fd_write(void *ctx, const void *p, size_t n)
{
	int fd = (int)(intptr_t)ctx;
	const unsigned char *q = p;

	while (n) {
		ssize_t r = write(fd, q, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		q += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Data that starts like a gzip or zstd stream is not worth compressing. */
static bool looks_compressed(const unsigned char *p, size_t n)
{
	return (n >= 2 && p[0] == 0x1f && p[1] == 0x8b) ||
	       (n >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f &&
		p[3] == 0xfd);
}

int arc_compress_parse(const char *s, enum arc_compress *out)
{
	if (!strcmp(s, "none"))
		*out = ARC_NONE;
	else if (!strcmp(s, "gzip"))
		*out = ARC_GZIP;
	else if (!strcmp(s, "zstd"))
		*out = ARC_ZSTD;
	else
		return -1;
	return 0;
}

const char *arc_compress_name(enum arc_compress c)
{
	switch (c) {
	case ARC_GZIP:
		return "gzip";
	case ARC_ZSTD:
		return "zstd";
	case ARC_NONE:
		break;
	}
	return "none";
}

static int arc_fail(struct arc_writer *w, struct ferr *e, const char *what)
{
	int en = w->err ? w->err : archive_errno(w->a);
	const char *m = w->err ? strerror(w->err) : archive_error_string(w->a);

	return ferr_set(e, FERR_IO, en > 0 ? en : 0, "cannot %s '%s': %s", what,
			w->name, m ? m : "archive error");
}

int arc_writer_open(struct arc_writer **out, int fd, enum arc_compress c,
		    int threads, time_t mtime, const char *name, struct ferr *e)
{
	struct arc_sink s = {fd_write, (void *)(intptr_t)fd};

	return arc_writer_open_sink(out, &s, c, threads, mtime, name, e);
}

int arc_writer_open_sink(struct arc_writer **out, const struct arc_sink *sink,
			 enum arc_compress c, int threads, time_t mtime,
			 const char *name, struct ferr *e)
{
	struct arc_writer *w = calloc(1, sizeof(*w));

	*out = NULL;
	if (!w)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	w->mtime = mtime;
	w->sink = *sink;
	w->comp = c;
	w->name = strdup(name);
	w->a = archive_write_new();
	w->ent = archive_entry_new();
	if (!w->a || !w->ent || !w->name) {
		arc_writer_release(w);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	if (archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK)
		goto fail;
	if (c == ARC_GZIP) {
		/* no timestamp in the gzip header: output must be
		 * reproducible */
		if (archive_write_add_filter_gzip(w->a) != ARCHIVE_OK ||
		    archive_write_set_filter_option(w->a, "gzip", "timestamp",
						    NULL) != ARCHIVE_OK)
			goto fail;
		archive_write_set_bytes_per_block(w->a, 1024 * 1024);
		archive_write_set_bytes_in_last_block(w->a, 1);
		if (archive_write_open2(w->a, w, NULL, on_write_gz, NULL,
					NULL) != ARCHIVE_OK)
			goto fail;
		*out = w;
		return 0;
	}
	w->out = malloc(OUT_BUF);
	if (!w->out)
		goto oom;
	if (c == ARC_ZSTD) {
		w->zc = ZSTD_createCCtx();
		w->zout = malloc(ZSTD_CStreamOutSize());
		if (!w->zc || !w->zout)
			goto oom;
		/* nbWorkers >= 1 gives the same bytes for any worker count:
		 * bundles stay reproducible across machines */
		if (ZSTD_isError(ZSTD_CCtx_setParameter(
			w->zc, ZSTD_c_compressionLevel, 3)) ||
		    ZSTD_isError(ZSTD_CCtx_setParameter(
			w->zc, ZSTD_c_nbWorkers, threads > 1 ? threads : 1))) {
			arc_writer_release(w);
			return ferr_set(e, FERR_IO, 0,
					"cannot set up zstd compression");
		}
	}
	/* unblocked: entries reach on_write as they are written */
	archive_write_set_bytes_per_block(w->a, 0);
	if (archive_write_open2(w->a, w, NULL, on_write, on_close, NULL) !=
	    ARCHIVE_OK)
		goto fail;
	*out = w;
	return 0;
oom:
	arc_writer_release(w);
	return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
fail:
	arc_fail(w, e, "write");
	arc_writer_release(w);
	return -1;
}

int arc_entry_begin(struct arc_writer *w, const char *path, uint64_t size,
		    struct ferr *e)
{
	if (w->left)
		return ferr_set(e, FERR_IO, 0,
				"internal error: entry before '%s' is short",
				path);
	archive_entry_clear(w->ent);
	archive_entry_set_pathname(w->ent, path);
	archive_entry_set_filetype(w->ent, AE_IFREG);
	archive_entry_set_perm(w->ent, 0644);
	archive_entry_set_size(w->ent, (la_int64_t)size);
	archive_entry_set_uid(w->ent, 0);
	archive_entry_set_gid(w->ent, 0);
	archive_entry_set_mtime(w->ent, w->mtime, 0);
	w->raw = false;
	if (archive_write_header(w->a, w->ent) != ARCHIVE_OK)
		return arc_fail(w, e, "write");
	w->left = size;
	w->entry_start = true;
	return 0;
}

int arc_entry_data(struct arc_writer *w, const void *p, size_t n,
		   struct ferr *e)
{
	const char *q = p;

	if (n > w->left)
		return ferr_set(e, FERR_IO, 0,
				"internal error: entry data longer than its "
				"size in '%s'",
				w->name);
	if (w->entry_start && n) {
		w->entry_start = false;
		w->raw = w->comp == ARC_ZSTD && looks_compressed(p, n);
	}
	while (n > 0) {
		la_ssize_t r = archive_write_data(w->a, q, n);
		if (r <= 0)
			return arc_fail(w, e, "write");
		q += r;
		n -= (size_t)r;
		w->left -= (uint64_t)r;
	}
	return 0;
}

int arc_entry_mem(struct arc_writer *w, const char *path, const void *p,
		  size_t n, struct ferr *e)
{
	if (arc_entry_begin(w, path, n, e) < 0)
		return -1;
	return arc_entry_data(w, p, n, e);
}

int arc_writer_finish(struct arc_writer *w, struct ferr *e)
{
	if (w->left)
		return ferr_set(e, FERR_IO, 0,
				"internal error: last entry of '%s' is short",
				w->name);
	w->finished = 1;
	w->raw = false;
	if (archive_write_close(w->a) != ARCHIVE_OK)
		return arc_fail(w, e, "write");
	return 0;
}

void arc_writer_release(struct arc_writer *w)
{
	if (!w)
		return;
	if (w->a)
		archive_write_free(w->a);
	if (w->ent)
		archive_entry_free(w->ent);
	ZSTD_freeCCtx(w->zc);
	free(w->out);
	free(w->zout);
	free(w->name);
	free(w);
}
