/* Split volumes (SPEC section 7): a bundle written as parts BUNDLE.001,
 * BUNDLE.002, ... of a fixed size, listed in BUNDLE.parts in sha256sum
 * format ("<hex>  BUNDLE.001", one line per part, in order) and signed in
 * BUNDLE.parts.sig (base64, the same scheme as SHA256SUMS.sig).  The list
 * names parts by base name only: the parts sit next to it. */
#ifndef FERRY_PARTS_H
#define FERRY_PARTS_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"

/* Parts of one bundle: three-digit suffixes, so `cat BUNDLE.0*` (and any
 * shell glob) keeps them in order. */
#define PARTS_MAX 999u
/* A parts list: PARTS_MAX lines of "<64 hex>  <name>\n". */
#define PARTS_MAX_LIST (256u * 1024u)
/* A split size below this makes no sense on any medium. */
#define PARTS_MIN_SIZE 4096u

struct parts_list {
	char **names; /* base names: "b.tar.zst.001" */
	struct digest *sums;
	size_t n;
};

/* "SIZE" in bytes, or with K, M or G (powers of 1024). */
int parts_size_parse(const char *s, uint64_t *out);

/* "BUNDLE.NNN" for part i (1-based); malloc'd, NULL when out of memory. */
char *parts_name(const char *bundle, unsigned i);

/* Parse a list for bundle base name `base`: every line well-formed, the
 * names exactly base.001, base.002, ... in order. */
int parts_list_parse(const char *text, size_t len, const char *base,
		     struct parts_list *out, struct ferr *e);
/* The list's text; malloc'd, NULL when out of memory. */
char *parts_list_text(const struct parts_list *l);
void parts_list_release(struct parts_list *l);

/* Given "X.parts" or "X.001" (with X.parts beside it), the bundle path X;
 * NULL (and no error) when `path` is neither. */
char *parts_bundle_of(const char *path);

#endif
