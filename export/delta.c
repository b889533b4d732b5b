/* Delta bundles (SPEC section 7): an export over earlier bundles leaves out
 * every config and layer they carry or themselves leave out.  Only each
 * base's leading entries are read (through SHA256SUMS.sig), so a base of
 * any size costs milliseconds; its signature must verify with the public
 * half of the signing key: a delta only builds on bundles of the same
 * signer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "breader.h"
#include "internal.h"

static int cmp_digest(const void *a, const void *b)
{
	return memcmp(((const struct digest *)a)->str,
		      ((const struct digest *)b)->str, DIGEST_STR_LEN);
}

static int add_digests(struct exporter *x, const struct digest *d, size_t n,
		       struct ferr *e)
{
	struct digest *nh;

	if (!n)
		return 0;
	nh = realloc(x->base_has, (x->nbase_has + n) * sizeof(*nh));
	if (!nh)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	x->base_has = nh;
	memcpy(x->base_has + x->nbase_has, d, n * sizeof(*d));
	x->nbase_has += n;
	return 0;
}

static int load_base(struct exporter *x, const char *path, struct ferr *e)
{
	struct bundle_header h;
	int rc = -1;

	memset(&h, 0, sizeof(h));
	if (bundle_read_head(path, x->o->key, &h, e) < 0) {
		ferr_prefix(e, "base bundle '%s'", path);
		goto out;
	}
	for (size_t i = 0; i < x->nbases; i++)
		if (!strcmp(x->base_ids[i], h.bundle_id)) {
			rc = 0; /* the same base named twice */
			goto out;
		}
	x->base_ids[x->nbases] = strdup(h.bundle_id);
	if (!x->base_ids[x->nbases]) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	x->nbases++;
	if (add_digests(x, h.listed, h.nlisted, e) < 0 ||
	    add_digests(x, h.omitted, h.nomitted, e) < 0)
		goto out;
	rc = 0;
out:
	bundle_header_release(&h);
	return rc;
}

int exp_load_bases(struct exporter *x, struct ferr *e)
{
	if (!x->o->nbases)
		return 0;
	x->base_ids = calloc(x->o->nbases + 1, sizeof(*x->base_ids));
	if (!x->base_ids)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < x->o->nbases; i++)
		if (load_base(x, x->o->bases[i], e) < 0)
			return -1;
	qsort(x->base_has, x->nbase_has, sizeof(*x->base_has), cmp_digest);
	return 0;
}

bool exp_base_has(const struct exporter *x, const struct digest *d)
{
	return x->nbase_has && bsearch(d, x->base_has, x->nbase_has,
				       sizeof(*x->base_has), cmp_digest);
}

void exp_bases_release(struct exporter *x)
{
	for (size_t i = 0; i < x->nbases; i++)
		free(x->base_ids[i]);
	free(x->base_ids);
	free(x->base_has);
	x->base_ids = NULL;
	x->base_has = NULL;
	x->nbases = x->nbase_has = 0;
}
