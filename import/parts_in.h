/* Split volumes read as one stream, each part hashed against the signed
 * list as it is read (see parts_in.c).  Used by the bundle reader. */
#ifndef FERRY_PARTS_IN_H
#define FERRY_PARTS_IN_H

#include <stddef.h>
#include <sys/types.h>

#include "err.h"
#include "sig.h"

struct parts_in;

/* Open the parts of bundle X (X.parts beside X.001, ...): the list's
 * signature is checked with `key` (NULL: inspect, not checked), every
 * listed part must exist and no further one.  Release even on failure. */
int parts_in_open(struct parts_in **out, const char *bundle,
		  const struct sig_key *key, struct ferr *e);
/* Chunks are this size: the reader's input buffers must be too. */
#define PARTS_IN_CHUNK (1024 * 1024)

/* The next piece of the joined stream, without a copy: *buf (a buffer of
 * PARTS_IN_CHUNK bytes, or NULL) is taken back and replaced by one holding
 * the returned number of bytes; 0 at the end; -1 naming a part that is
 * unreadable or does not match the list. */
ssize_t parts_in_swap(struct parts_in *p, unsigned char **buf, struct ferr *e);
size_t parts_in_count(const struct parts_in *p);
void parts_in_release(struct parts_in *p);

#endif
