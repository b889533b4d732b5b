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
/* Up to n bytes of the joined stream; 0 at its end; -1 naming a part that
 * is unreadable or does not match the list. */
ssize_t parts_in_read(struct parts_in *p, void *dst, size_t n, struct ferr *e);
size_t parts_in_count(const struct parts_in *p);
void parts_in_release(struct parts_in *p);

#endif
