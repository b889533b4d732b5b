#include "arc.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct arc_writer {
	struct archive *a;
	struct archive_entry *ent;
	time_t mtime;
	char *name; /* output file name, for messages */
	uint64_t left; /* bytes still owed to the current entry */
	int finished;
};

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
	int en = archive_errno(w->a);
	const char *m = archive_error_string(w->a);

	return ferr_set(e, FERR_IO, en > 0 ? en : 0, "cannot %s '%s': %s",
			what, w->name, m ? m : "archive error");
}

int arc_writer_open(struct arc_writer **out, int fd, enum arc_compress c,
		    int threads, time_t mtime, const char *name,
		    struct ferr *e)
{
	struct arc_writer *w = calloc(1, sizeof(*w));
	char nthreads[16];

	*out = NULL;
	if (!w)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	w->mtime = mtime;
	w->name = strdup(name);
	w->a = archive_write_new();
	w->ent = archive_entry_new();
	if (!w->a || !w->ent || !w->name) {
		arc_writer_release(w);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	if (archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK)
		goto fail;
	snprintf(nthreads, sizeof(nthreads), "%d", threads > 0 ? threads : 1);
	switch (c) {
	case ARC_ZSTD:
		if (archive_write_add_filter_zstd(w->a) != ARCHIVE_OK ||
		    archive_write_set_filter_option(w->a, "zstd",
						    "compression-level",
						    "3") != ARCHIVE_OK ||
		    archive_write_set_filter_option(w->a, "zstd", "threads",
						    nthreads) != ARCHIVE_OK)
			goto fail;
		break;
	case ARC_GZIP:
		/* no timestamp in the gzip header: output must be
		 * reproducible */
		if (archive_write_add_filter_gzip(w->a) != ARCHIVE_OK ||
		    archive_write_set_filter_option(w->a, "gzip", "timestamp",
						    NULL) != ARCHIVE_OK)
			goto fail;
		break;
	case ARC_NONE:
		break;
	}
	/* 1 MiB blocks: fewer, larger writes; the last block is padded. */
	archive_write_set_bytes_per_block(w->a, 1024 * 1024);
	archive_write_set_bytes_in_last_block(w->a, 1);
	if (archive_write_open_fd(w->a, fd) != ARCHIVE_OK)
		goto fail;
	*out = w;
	return 0;
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
	if (archive_write_header(w->a, w->ent) != ARCHIVE_OK)
		return arc_fail(w, e, "write");
	w->left = size;
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
	free(w->name);
	free(w);
}
