/* Content digests.  ferry accepts exactly one form: "sha256:" followed by 64
 * lowercase hex digits.  Anything else is refused before it is used in a
 * path or a URL. */
#ifndef FERRY_DIGEST_H
#define FERRY_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define DIGEST_PREFIX "sha256:"
#define DIGEST_HEX_LEN 64
#define DIGEST_STR_LEN (7 + DIGEST_HEX_LEN)

struct digest {
	char str[DIGEST_STR_LEN + 1]; /* "sha256:<hex>" */
};

/* Strict parse; on failure sets e (FERR_INPUT) naming the offending text. */
int digest_parse(struct digest *d, const char *s, struct ferr *e);
/* Same check without an error message. */
bool digest_valid(const char *s);
/* Is `s` exactly 64 lowercase hex digits? */
bool digest_hex_valid(const char *s, size_t n);
static inline const char *digest_hex(const struct digest *d)
{
	return d->str + 7;
}
bool digest_equal(const struct digest *a, const struct digest *b);
/* A table hash: the digest's first 64 bits (uniform already). */
size_t digest_hash(const struct digest *d);

/* Streaming SHA-256 (OpenSSL EVP, so the CPU's SHA extensions are used). */
struct digest_ctx {
	void *md; /* EVP_MD_CTX */
};
int digest_ctx_init(struct digest_ctx *c, struct ferr *e);
void digest_ctx_update(struct digest_ctx *c, const void *p, size_t n);
void digest_ctx_final(struct digest_ctx *c, struct digest *out);
/* Start over without reallocating. */
void digest_ctx_restart(struct digest_ctx *c);
void digest_ctx_release(struct digest_ctx *c);

int digest_of(const void *p, size_t n, struct digest *out, struct ferr *e);

#endif
