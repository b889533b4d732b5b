/* A growable byte buffer with a hard maximum size.  Used for everything read
 * from outside, so that no input can make us allocate more than `max`. */
#ifndef FERRY_BUF_H
#define FERRY_BUF_H

#include <stddef.h>

struct buf {
	unsigned char *data; /* always NUL-terminated after a successful append */
	size_t len;
	size_t cap;
	size_t max;
};

void buf_init(struct buf *b, size_t max);
void buf_release(struct buf *b);
void buf_reset(struct buf *b);
/* 0 on success; -1 with errno E2BIG when `max` would be exceeded (nothing is
 * appended then) or ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
/* Hand the data to the caller (NUL-terminated, to free()); b is reset. */
unsigned char *buf_detach(struct buf *b, size_t *len);

#endif
