/* Parallel prefetch of every manifest and index the export needs.
 *
 * Resolution proper (resolve.c) is serial, so that the bundle's order is
 * the order of the references; fetching is what costs round trips.  This
 * pass walks every reference's tree with the same --jobs pool, fetches each
 * manifest once per digest (however many indexes list it) and, for a
 * single-platform image, its config (to learn its platform).  It enforces
 * the caps on nesting and fan-out, so a hostile registry cannot make the
 * export fetch without bound.  resolve.c then finds everything here and
 * sends no request (it falls back to the registry only for what this pass
 * did not foresee). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "internal.h"

/* ---- the store: digest -> document, shared by the workers ---- */

static struct mdoc **slot_of(struct mstore *s, const struct digest *d)
{
	for (size_t i = digest_hash(d) % s->cap;; i = (i + 1) % s->cap)
		if (!s->v[i] || digest_equal(&s->v[i]->d, d))
			return &s->v[i];
}

static int grow(struct mstore *s)
{
	struct mstore n = {.cap = s->cap ? s->cap * 2 : 1024};

	n.v = calloc(n.cap, sizeof(*n.v));
	if (!n.v)
		return -1;
	for (size_t i = 0; i < s->cap; i++)
		if (s->v[i])
			*slot_of(&n, &s->v[i]->d) = s->v[i];
	free(s->v);
	s->v = n.v;
	s->cap = n.cap;
	return 0;
}

/* 1 when `d` was not there and is now claimed by the caller (who must
 * fill it), 0 when it was already there (fetched or being fetched). */
static int store_claim(struct exporter *x, const struct digest *d,
		       struct mdoc **out, struct ferr *e)
{
	struct mstore *s = &x->store;
	struct mdoc **sl;
	int rc = 0;

	pthread_mutex_lock(&x->mu);
	if ((s->n + 1) * 2 > s->cap && grow(s) < 0) {
		rc = ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	sl = slot_of(s, d);
	if (!*sl) {
		*sl = calloc(1, sizeof(**sl));
		if (!*sl) {
			rc = ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		(*sl)->d = *d;
		s->n++;
		rc = 1;
	}
	*out = *sl;
out:
	pthread_mutex_unlock(&x->mu);
	return rc;
}

/* Publish a claimed document (takes its data). */
static void store_fill(struct exporter *x, struct mdoc *doc,
		       struct reg_manifest *m)
{
	pthread_mutex_lock(&x->mu);
	doc->data = m->data;
	doc->len = m->len;
	doc->media_type = m->media_type;
	doc->ready = true;
	m->data = NULL;
	m->media_type = NULL;
	pthread_mutex_unlock(&x->mu);
}

const struct mdoc *exp_store_get(struct exporter *x, const struct digest *d)
{
	struct mdoc *doc;

	if (!x->store.cap)
		return NULL;
	doc = *slot_of(&x->store, d);
	return doc && doc->ready ? doc : NULL;
}

void exp_store_release(struct exporter *x)
{
	for (size_t i = 0; i < x->store.cap; i++) {
		struct mdoc *doc = x->store.v[i];
		if (!doc)
			continue;
		free(doc->data);
		free(doc->media_type);
		free(doc);
	}
	free(x->store.v);
	memset(&x->store, 0, sizeof(x->store));
	free(x->tops);
	x->tops = NULL;
}

/* ---- the walk ---- */

struct pf {
	struct exporter *x;
	struct reg_client *cl;
	const char *host, *repo, *what;
	size_t budget; /* manifests this reference may still fetch */
};

static int pf_index(struct pf *p, const unsigned char *data, size_t len,
		    int depth, struct ferr *e);

/* Is this index entry one the export keeps? */
static bool pf_wanted(const struct exporter *x, json_t *d, const char *dmt)
{
	struct platform have, want;

	if (!x->o->nplatforms)
		return true;
	if (exp_is_index_type(dmt))
		return false; /* refused by resolution with --platform */
	exp_platform_of_json(json_object_get(d, "platform"), &have);
	for (size_t k = 0; k < x->o->nplatforms; k++)
		if (exp_platform_parse(x->o->platforms[k], &want) == 0 &&
		    exp_platform_match(&want, &have))
			return true;
	return false;
}

static int pf_child(struct pf *p, json_t *d, int depth, struct ferr *e)
{
	struct reg_manifest m;
	struct mdoc *doc;
	struct digest dg;
	uint64_t size;
	const char *dmt;
	int rc;

	memset(&m, 0, sizeof(m));
	if (exp_parse_desc(d, &dg, &size, &dmt, p->what, e) < 0)
		return -1;
	if (!pf_wanted(p->x, d, dmt))
		return 0;
	rc = store_claim(p->x, &dg, &doc, e);
	if (rc <= 0)
		return rc; /* error, or fetched once already */
	if (p->budget-- == 0)
		return ferr_set(e, FERR_INPUT, 0,
				"%s: more than %u manifests in one image",
				p->what, FERRY_MAX_IMAGE_MANIFESTS);
	if (exp_fetch_child(p->cl, p->repo, &dg, size, dmt, &m, e) < 0)
		return ferr_prefix(e, "%s", p->what);
	store_fill(p->x, doc, &m);
	if (exp_is_index_type(doc->media_type))
		return pf_index(p, doc->data, doc->len, depth + 1, e);
	return 0;
}

static int pf_index(struct pf *p, const unsigned char *data, size_t len,
		    int depth, struct ferr *e)
{
	json_t *root, *mans, *d;
	size_t i;
	int rc = -1;

	if (depth > FERRY_MAX_INDEX_DEPTH)
		return ferr_set(e, FERR_INPUT, 0, "%s: indexes nested too deep",
				p->what);
	root = json_loadb((const char *)data, len, 0, NULL);
	if (!root)
		return ferr_set(e, FERR_INPUT, 0, "%s does not parse", p->what);
	mans = json_object_get(root, "manifests");
	if (json_array_size(mans) > FERRY_MAX_INDEX_ENTRIES) {
		ferr_set(e, FERR_INPUT, 0,
			 "%s: an index lists %zu manifests, more than the "
			 "limit of %u",
			 p->what, json_array_size(mans),
			 FERRY_MAX_INDEX_ENTRIES);
		goto out;
	}
	json_array_foreach(mans, i, d)
	{
		if (p->x->o->reg->cancel && *p->x->o->reg->cancel) {
			ferr_set(e, FERR_INTERRUPT, 0, "interrupted");
			goto out;
		}
		if (pf_child(p, d, depth, e) < 0)
			goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* A single-platform image: fetch its (small) config into the cache now,
 * so resolution learns the platform without a request of its own. */
static int pf_config(struct pf *p, const struct mdoc *man, struct ferr *e)
{
	struct reg_manifest m;
	struct item it;
	struct mdoc *doc;
	json_t *root;
	int rc;

	memset(&it, 0, sizeof(it));
	root = json_loadb((const char *)man->data, man->len, 0, NULL);
	if (!root)
		return 0; /* resolution reports it */
	rc = exp_parse_desc(json_object_get(root, "config"), &it.d, &it.size,
			    NULL, p->what, e);
	json_decref(root);
	if (rc < 0 || it.size > FERRY_MAX_JSON) {
		ferr_clear(e);
		return 0; /* resolution reports it */
	}
	rc = store_claim(p->x, &it.d, &doc, e);
	if (rc <= 0)
		return rc;
	it.host = (char *)p->host;
	it.repo = (char *)p->repo;
	if (exp_fetch_item(p->x, p->cl, &it, e) < 0)
		return ferr_prefix(e, "%s", p->what);
	memset(&m, 0, sizeof(m));
	m.media_type = strdup(MDOC_CONFIG);
	if (!m.media_type)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	doc->cached = it.cached;
	store_fill(p->x, doc, &m);
	return 0;
}

static int pf_ref(struct exporter *x, struct clients *cs, size_t i,
		  struct ferr *e)
{
	const struct ref *r = x->refs[i];
	struct reg_manifest m;
	struct mdoc *doc;
	struct pf p = {.x = x,
		       .host = ref_api_host(r),
		       .repo = r->path,
		       .budget = FERRY_MAX_IMAGE_MANIFESTS};
	char what[600];
	int rc;

	snprintf(what, sizeof(what), "image '%s'", x->images[i].ref);
	p.what = what;
	memset(&m, 0, sizeof(m));
	if (!(p.cl = exp_client_for(x, cs, p.host, e)))
		return ferr_prefix(e, "%s", what);
	if (reg_get_manifest(p.cl, r->path, ref_object(r), &m, e) < 0)
		return ferr_prefix(e, "%s", what);
	x->tops[i].d = m.digest;
	x->tops[i].ok = true;
	rc = store_claim(x, &m.digest, &doc, e);
	if (rc < 0) {
		reg_manifest_release(&m);
		return -1;
	}
	if (rc == 0) { /* another reference has the same tree */
		reg_manifest_release(&m);
		return 0;
	}
	store_fill(x, doc, &m);
	reg_manifest_release(&m);
	if (exp_is_index_type(doc->media_type))
		return pf_index(&p, doc->data, doc->len, 0, e);
	return pf_config(&p, doc, e);
}

static void pf_one(struct exporter *x, struct clients *cs, size_t i)
{
	ferr_clear(&x->tops[i].err);
	if (pf_ref(x, cs, i, &x->tops[i].err) < 0)
		x->tops[i].failed = true;
}

int exp_prefetch(struct exporter *x, struct ferr *e)
{
	x->tops = calloc(x->nimages + 1, sizeof(*x->tops));
	if (!x->tops)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	return exp_each_image(x, exp_jobs(x), pf_one, e);
}
