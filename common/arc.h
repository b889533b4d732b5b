/* Archive output: a deterministic POSIX (pax) tar stream, compressed as a
 * whole with zstd (multi-threaded), gzip, or not at all.  Entries are
 * regular files only, owned by 0:0, mode 0644, all with one fixed mtime,
 * so the same content always gives the same bytes. */
#ifndef FERRY_ARC_H
#define FERRY_ARC_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"

enum arc_compress { ARC_NONE, ARC_GZIP, ARC_ZSTD };

/* "none", "gzip", "zstd" -> value; -1 if unknown. */
int arc_compress_parse(const char *s, enum arc_compress *out);
const char *arc_compress_name(enum arc_compress c);

struct arc_writer;

/* Where the archive's bytes go: all `n` bytes or -1 with errno set. */
struct arc_sink {
	int (*write)(void *ctx, const void *p, size_t n);
	void *ctx;
};

int arc_writer_open_sink(struct arc_writer **out, const struct arc_sink *sink,
			 enum arc_compress c, int threads, time_t mtime,
			 const char *name, struct ferr *e);
/* Write to `fd` (not closed by the writer).  `threads` is used by zstd. */
int arc_writer_open(struct arc_writer **out, int fd, enum arc_compress c,
		    int threads, time_t mtime, const char *name,
		    struct ferr *e);
/* Start a regular file entry of exactly `size` bytes. */
int arc_entry_begin(struct arc_writer *w, const char *path, uint64_t size,
		    struct ferr *e);
int arc_entry_data(struct arc_writer *w, const void *p, size_t n,
		   struct ferr *e);
/* A whole entry from memory. */
int arc_entry_mem(struct arc_writer *w, const char *path, const void *p,
		  size_t n, struct ferr *e);
/* Finish the stream (end-of-archive blocks, compression trailer). */
int arc_writer_finish(struct arc_writer *w, struct ferr *e);
void arc_writer_release(struct arc_writer *w);

#endif
