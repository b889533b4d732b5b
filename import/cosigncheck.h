/* `ferry verify --cosign-key`: check offline, while the bundle is read,
 * that each image carries a cosign signature one of the keys verifies
 * (SPEC §6).  Works as the reader's consumer: keeps the signature
 * manifests each image names and their (small) payloads, nothing else. */
#ifndef FERRY_COSIGNCHECK_H
#define FERRY_COSIGNCHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "breader.h"
#include "err.h"
#include "sig.h"

struct ccheck;

/* The keys must outlive the checker. */
int ccheck_init(struct ccheck **out, const struct sig_key *keys, size_t nkeys,
		struct ferr *e);
void ccheck_release(struct ccheck *c);
/* The reader callbacks; their context is the checker. */
extern const struct bundle_ops ccheck_ops;

/* Reader callbacks for a base of the delta just read (verify --base):
 * they take from it only the signature payloads the delta left out,
 * which this checker still lacks; the images are the delta's.  The
 * context is the checker. */
extern const struct bundle_ops ccheck_base_ops;

/* How many payloads the checker lacks (the delta left them out), and how
 * many a base supplied so far. */
size_t ccheck_missing(const struct ccheck *c);
size_t ccheck_from_bases(const struct ccheck *c);

/* After a successful read: image i's verdict.  Returns true when a
 * signature verified (*key: the key); false with `why` filled. */
bool ccheck_image(const struct ccheck *c, size_t i, const struct sig_key **key,
		  char *why, size_t n);

#endif
