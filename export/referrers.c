/* What is attached to the exported manifests (SPEC §6): cosign's
 * signatures, attestations and SBOMs (tags "sha256-<hex>.sig", ".att",
 * ".sbom"), OCI 1.1 referrers (the referrers API where the registry
 * answers it, else the fallback tag "sha256-<hex>"), and what is attached
 * to those in turn.
 *
 * The lookups run on the --jobs pool, one image per worker.  Each
 * repository's tag list is read once, so that a repository without
 * attachment tags costs one request instead of four per manifest; a
 * registry that answers 404 to the referrers API once is not asked again.
 * Each image's findings are kept apart and added to the bundle afterwards
 * in image order, so the bundle's order does not depend on the network.
 * A hostile registry is bounded: every subject is looked up once per
 * image, nesting stops at FERRY_MAX_ATTACH_DEPTH and an image may bring
 * FERRY_MAX_ATTACHED attachments at most. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "cosign.h"
#include "internal.h"

/* Discovery workers: this many per --jobs, at most EXP_DISCOVER_MAX. */
#define EXP_DISCOVER_PER_JOB 2
#define EXP_DISCOVER_MAX EXP_POOL_MAX

/* One repository's tag list, read once for every image of it. */
struct tagset {
	char *key; /* host/repo */
	char **tags;
	size_t n;
	int state; /* 0 being read, 1 known, 2 unknown (list refused) */
};

/* Does a registry host answer the referrers API? */
struct hostapi {
	char *host;
	int state; /* 0 not asked yet, 1 yes, -1 no */
};

/* One attachment found for an image. */
struct att {
	enum bundle_attach_kind kind;
	struct digest subject;
	struct reg_manifest m;
	char *tag;
	char *artifact_type;
};

struct att_list {
	struct att *v;
	size_t n, cap;
	struct digest *subj; /* queue of subjects, and their depth */
	int *depth;
	size_t nsubj, capsubj;
	bool failed;
	struct ferr err;
	const char *key_id; /* the cosign key that verified it */
};

struct disc {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* each allocated on its own: workers keep pointers to them while
	 * others add more */
	struct tagset **ts;
	size_t nts;
	struct hostapi **ha;
	size_t nha;
	struct att_list *img; /* one per image */
};

/* ---- shared knowledge: tag lists and the referrers API ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The tag list of host/repo, read by the first worker that needs it.
 * NULL: unknown (every tag must be asked for). */
static const struct tagset *tags_of(struct exporter *x, struct reg_client *cl,
				    const char *host, const char *repo)
{
	struct disc *d = x->disc;
	struct tagset *t = NULL, **nt;
	size_t n = strlen(host) + strlen(repo) + 2, k;
	char *key = malloc(n);
	struct ferr e;
	char **tags = NULL;
	size_t ntags = 0;
	int ok;

	if (!key)
		return NULL;
	snprintf(key, n, "%s/%s", host, repo);
	pthread_mutex_lock(&d->mu);
	for (k = 0; k < d->nts; k++)
		if (!strcmp(d->ts[k]->key, key))
			break;
	if (k < d->nts) {
		t = d->ts[k];
		while (t->state == 0)
			pthread_cond_wait(&d->cv, &d->mu);
		t = t->state == 1 ? t : NULL;
		pthread_mutex_unlock(&d->mu);
		free(key);
		return t;
	}
	nt = realloc(d->ts, (d->nts + 1) * sizeof(*nt));
	if (nt)
		d->ts = nt;
	if (!nt || !(t = calloc(1, sizeof(*t)))) {
		pthread_mutex_unlock(&d->mu);
		free(key);
		return NULL;
	}
	t->key = key;
	d->ts[d->nts++] = t;
	pthread_mutex_unlock(&d->mu);

	ok = reg_list_tags(cl, repo, &tags, &ntags, &e) == 0;
	if (ok)
		qsort(tags, ntags, sizeof(*tags), cmp_str);
	pthread_mutex_lock(&d->mu);
	t->tags = tags;
	t->n = ntags;
	t->state = ok ? 1 : 2;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	return ok ? t : NULL;
}

/* Might `tag` exist?  Only a list that was read says no. */
static bool may_have(const struct tagset *t, const char *tag)
{
	return !t || bsearch(&tag, t->tags, t->n, sizeof(*t->tags), cmp_str);
}

static struct hostapi *api_of(struct exporter *x, const char *host)
{
	struct disc *d = x->disc;
	struct hostapi *h = NULL, **nh;

	pthread_mutex_lock(&d->mu);
	for (size_t k = 0; k < d->nha && !h; k++)
		if (!strcmp(d->ha[k]->host, host))
			h = d->ha[k];
	if (!h && (nh = realloc(d->ha, (d->nha + 1) * sizeof(*nh)))) {
		d->ha = nh;
		if ((h = calloc(1, sizeof(*h))) && (h->host = strdup(host))) {
			d->ha[d->nha++] = h;
		} else {
			free(h);
			h = NULL;
		}
	}
	pthread_mutex_unlock(&d->mu);
	return h;
}

static int api_state(struct exporter *x, struct hostapi *h)
{
	int s;

	pthread_mutex_lock(&x->disc->mu);
	s = h ? h->state : 0;
	pthread_mutex_unlock(&x->disc->mu);
	return s;
}

static void api_set(struct exporter *x, struct hostapi *h, int s)
{
	pthread_mutex_lock(&x->disc->mu);
	if (h)
		h->state = s;
	pthread_mutex_unlock(&x->disc->mu);
}

/* ---- one image ---- */

struct dimg {
	struct exporter *x;
	struct reg_client *cl;
	struct att_list *l;
	const char *host, *repo, *what;
	const struct tagset *tags;
	struct hostapi *api;
};

static bool seen_subject(const struct att_list *l, const struct digest *d)
{
	for (size_t i = 0; i < l->nsubj; i++)
		if (digest_equal(&l->subj[i], d))
			return true;
	return false;
}

static int push_subject(struct att_list *l, const struct digest *d, int depth,
			struct ferr *e)
{
	if (seen_subject(l, d))
		return 0; /* a loop, or two tags of one thing */
	if (l->nsubj == l->capsubj) {
		size_t nc = l->capsubj ? l->capsubj * 2 : 16;
		struct digest *ns = realloc(l->subj, nc * sizeof(*ns));
		int *nd = ns ? realloc(l->depth, nc * sizeof(*nd)) : NULL;
		if (ns)
			l->subj = ns;
		if (!nd)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		l->depth = nd;
		l->capsubj = nc;
	}
	l->subj[l->nsubj] = *d;
	l->depth[l->nsubj++] = depth;
	return 0;
}

/* artifactType, else (OCI 1.1's rule for referrers) the config's type. */
static char *artifact_type_of(const struct reg_manifest *m, bool referrer)
{
	json_t *root = json_loadb((const char *)m->data, m->len, 0, NULL);
	const char *at =
	    json_string_value(json_object_get(root, "artifactType"));
	char *out;

	if (!at && referrer)
		at = json_string_value(json_object_get(
		    json_object_get(root, "config"), "mediaType"));
	out = at ? strdup(at) : NULL;
	json_decref(root);
	return out;
}

/* Keep an attachment (takes m's data and tag). */
static int add_att(struct dimg *g, enum bundle_attach_kind kind,
		   const struct digest *subject, struct reg_manifest *m,
		   char *tag, int depth, struct ferr *e)
{
	struct att_list *l = g->l;
	struct att *a;

	if (l->n >= FERRY_MAX_ATTACHED) {
		free(tag);
		return ferr_set(e, FERR_INPUT, 0,
				"%s: more than %u attached signatures, "
				"attestations, SBOMs and referrers",
				g->what, FERRY_MAX_ATTACHED);
	}
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 8;
		struct att *nv = realloc(l->v, nc * sizeof(*nv));
		if (!nv) {
			free(tag);
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		}
		l->v = nv;
		l->cap = nc;
	}
	a = &l->v[l->n++];
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	a->subject = *subject;
	a->m = *m;
	memset(m, 0, sizeof(*m));
	a->tag = tag;
	a->artifact_type = artifact_type_of(&a->m, kind == BA_REFERRER);
	if (kind == BA_REFERRERS)
		return 0;
	return push_subject(l, &a->m.digest, depth + 1, e);
}

/* GET a manifest by tag; *found false on 404. */
static int get_tagged(struct dimg *g, const char *tag, struct reg_manifest *m,
		      bool *found, struct ferr *e)
{
	*found = false;
	if (!may_have(g->tags, tag))
		return 0;
	if (reg_get_manifest(g->cl, g->repo, tag, m, e) < 0) {
		if (e->code != 404)
			return ferr_prefix(e, "%s", g->what);
		ferr_clear(e);
		return 0;
	}
	*found = true;
	return 0;
}

static int find_cosign(struct dimg *g, const struct digest *s, int depth,
		       struct ferr *e)
{
	static const enum bundle_attach_kind kinds[] = {BA_SIGNATURE,
							BA_ATTESTATION,
							BA_SBOM};

	for (size_t k = 0; k < 3; k++) {
		char tag[BUNDLE_ATTACH_TAG_MAX], *t;
		struct reg_manifest m;
		bool found;

		bundle_attach_tag(kinds[k], s, tag);
		if (get_tagged(g, tag, &m, &found, e) < 0)
			return -1;
		if (!found)
			continue;
		if (exp_is_index_type(m.media_type)) {
			reg_manifest_release(&m);
			return ferr_set(e, FERR_INPUT, 0,
					"%s: tag '%s' is an index, not the "
					"image manifest cosign writes",
					g->what, tag);
		}
		if (!(t = strdup(tag))) {
			reg_manifest_release(&m);
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		}
		if (add_att(g, kinds[k], s, &m, t, depth, e) < 0) {
			reg_manifest_release(&m);
			return -1;
		}
	}
	return 0;
}

static int cmp_desc(const void *a, const void *b)
{
	const char *x =
	    json_string_value(json_object_get(*(json_t *const *)a, "digest"));
	const char *y =
	    json_string_value(json_object_get(*(json_t *const *)b, "digest"));
	return strcmp(x ? x : "", y ? y : "");
}

/* The referrers the API lists, as the index a fallback tag would hold
 * (sorted by digest: the same referrers give the same bundle). */
static int api_index(json_t *mans, struct reg_manifest *m, struct ferr *e)
{
	size_t n = json_array_size(mans);
	json_t **v = calloc(n + 1, sizeof(*v)), *root, *arr;
	char *s;

	if (!v)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(mans, i);
	qsort(v, n, sizeof(*v), cmp_desc);
	root = json_object();
	arr = json_array();
	json_object_set_new(root, "schemaVersion", json_integer(2));
	json_object_set_new(root, "mediaType", json_string(MT_OCI_INDEX));
	for (size_t i = 0; i < n; i++)
		json_array_append(arr, v[i]);
	json_object_set_new(root, "manifests", arr);
	free(v);
	s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	memset(m, 0, sizeof(*m));
	if (!s || !(m->media_type = strdup(MT_OCI_INDEX))) {
		free(s);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	m->data = (unsigned char *)s;
	m->len = strlen(s);
	return digest_of(m->data, m->len, &m->digest, e);
}

/* Is `d` already carried as a referrer of `s`? */
static bool has_referrer(const struct att_list *l, const struct digest *s,
			 const struct digest *d)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].kind == BA_REFERRER &&
		    digest_equal(&l->v[i].subject, s) &&
		    digest_equal(&l->v[i].m.digest, d))
			return true;
	return false;
}

/* One referrer the index lists: fetched by digest, and it must name
 * `s` as its subject. */
static int take_referrer(struct dimg *g, const struct digest *s, json_t *d,
			 int depth, struct ferr *e)
{
	struct reg_manifest m;
	struct digest dg;
	uint64_t size;
	const char *mt, *subj;
	json_t *root;
	bool ok;

	memset(&m, 0, sizeof(m));
	if (exp_parse_desc(d, &dg, &size, &mt, g->what, e) < 0)
		return -1;
	if (has_referrer(g->l, s, &dg))
		return 0; /* listed again: fetched and carried once */
	if (!mt || exp_is_index_type(mt) ||
	    (strcmp(mt, MT_OCI_MANIFEST) && strcmp(mt, MT_DOCKER_MANIFEST)))
		return ferr_set(e, FERR_INPUT, 0,
				"%s: referrer '%s' of '%s' has media type "
				"'%.100s'; ferry carries image manifests only",
				g->what, dg.str, s->str, mt ? mt : "(none)");
	if (exp_fetch_child(g->cl, g->repo, &dg, size, mt, &m, e) < 0)
		return ferr_prefix(e, "%s", g->what);
	root = json_loadb((const char *)m.data, m.len, 0, NULL);
	subj = json_string_value(
	    json_object_get(json_object_get(root, "subject"), "digest"));
	ok = subj && !strcmp(subj, s->str);
	json_decref(root);
	if (!ok) {
		reg_manifest_release(&m);
		return ferr_set(e, FERR_VERIFY, 0,
				"%s: referrer '%s' is listed for '%s' but does "
				"not name it as its subject",
				g->what, dg.str, s->str);
	}
	if (add_att(g, BA_REFERRER, s, &m, NULL, depth, e) < 0) {
		reg_manifest_release(&m);
		return -1;
	}
	return 0;
}

/* The referrers index of `s`: from the API, else the fallback tag. */
static int referrers_index(struct dimg *g, const struct digest *s,
			   struct reg_manifest *ix, bool *found, struct ferr *e)
{
	char tag[BUNDLE_ATTACH_TAG_MAX];
	json_t *mans = NULL;
	bool supported = false;

	*found = false;
	if (api_state(g->x, g->api) >= 0) {
		if (reg_get_referrers(g->cl, g->repo, s, &mans, &supported, e) <
		    0)
			return ferr_prefix(e, "%s", g->what);
		api_set(g->x, g->api, supported ? 1 : -1);
	}
	if (supported) {
		int rc = 0;
		if (json_array_size(mans)) {
			rc = api_index(mans, ix, e);
			*found = rc == 0;
		}
		json_decref(mans);
		return rc;
	}
	bundle_attach_tag(BA_REFERRERS, s, tag);
	if (get_tagged(g, tag, ix, found, e) < 0)
		return -1;
	if (!*found)
		return 0;
	if (!exp_is_index_type(ix->media_type)) {
		reg_manifest_release(ix);
		*found = false;
		return ferr_set(e, FERR_INPUT, 0,
				"%s: the referrers tag '%s' is not an index",
				g->what, tag);
	}
	return 0;
}

static int find_referrers(struct dimg *g, const struct digest *s, int depth,
			  struct ferr *e)
{
	char tag[BUNDLE_ATTACH_TAG_MAX], *t;
	struct reg_manifest ix;
	json_t *root, *mans, *d;
	bool found;
	size_t i;
	int rc = -1;

	memset(&ix, 0, sizeof(ix));
	if (referrers_index(g, s, &ix, &found, e) < 0)
		return -1;
	if (!found)
		return 0;
	root = json_loadb((const char *)ix.data, ix.len, 0, NULL);
	mans = json_object_get(root, "manifests");
	if (json_array_size(mans) > FERRY_MAX_INDEX_ENTRIES) {
		ferr_set(e, FERR_INPUT, 0,
			 "%s: '%s' has %zu referrers, more than the limit of "
			 "%u",
			 g->what, s->str, json_array_size(mans),
			 FERRY_MAX_INDEX_ENTRIES);
		goto out;
	}
	bundle_attach_tag(BA_REFERRERS, s, tag);
	if (!(t = strdup(tag))) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	if (add_att(g, BA_REFERRERS, s, &ix, t, depth, e) < 0)
		goto out;
	json_array_foreach(mans, i, d)
	{
		if (take_referrer(g, s, d, depth, e) < 0)
			goto out;
	}
	rc = 0;
out:
	json_decref(root);
	reg_manifest_release(&ix);
	return rc;
}

/* ---- the signature gate (--verify-cosign-key) ---- */

/* Does one layer of signature manifest `a` verify for `signed_d`? */
static int check_layer(struct dimg *g, const struct cosign_layer *cl,
		       const struct digest *signed_d, size_t *which,
		       struct ferr *e)
{
	const struct exp_opts *o = g->x->o;
	unsigned char *p = NULL;
	int rc;

	if (cl->size > FERRY_MAX_COSIGN_PAYLOAD)
		return ferr_set(e, FERR_VERIFY, 0,
				"a signature payload of %llu bytes, over the "
				"limit of %u",
				(unsigned long long)cl->size,
				FERRY_MAX_COSIGN_PAYLOAD);
	rc = reg_get_blob_mem(g->cl, g->repo, &cl->digest, cl->size,
			      FERRY_MAX_COSIGN_PAYLOAD, &p, e);
	if (rc == 0) /* checked against its digest: the bundle needs it too */
		exp_cache_put(g->x, &cl->digest, p, (size_t)cl->size);
	if (rc == 0)
		rc = cosign_verify(o->cosign_keys, o->ncosign_keys, p,
				   (size_t)cl->size, cl->sig_b64, signed_d,
				   which, e);
	free(p);
	return rc;
}

static int gate(struct dimg *g, const struct digest *signed_d, struct ferr *e)
{
	const struct exp_opts *o = g->x->o;
	char tag[BUNDLE_ATTACH_TAG_MAX];
	struct ferr why;
	size_t tried = 0;

	ferr_clear(&why);
	bundle_attach_tag(BA_SIGNATURE, signed_d, tag);
	for (size_t i = 0; i < g->l->n; i++) {
		const struct att *a = &g->l->v[i];
		struct cosign_layer *ls = NULL;
		size_t nls = 0, which;

		if (a->kind != BA_SIGNATURE ||
		    !digest_equal(&a->subject, signed_d))
			continue;
		if (cosign_sig_layers(a->m.data, a->m.len, &ls, &nls, &why) < 0)
			continue;
		for (size_t k = 0; k < nls; k++, tried++) {
			if (check_layer(g, &ls[k], signed_d, &which, &why) <
			    0) {
				if (why.cat == FERR_INTERRUPT ||
				    why.cat == FERR_NETWORK ||
				    why.cat == FERR_AUTH ||
				    why.cat == FERR_IO) {
					cosign_layers_release(ls, nls);
					*e = why;
					return ferr_prefix(e, "%s", g->what);
				}
				continue;
			}
			g->l->key_id = o->cosign_keys[which].key_id;
			cosign_layers_release(ls, nls);
			return 0;
		}
		cosign_layers_release(ls, nls);
	}
	if (!tried)
		return ferr_set(e, FERR_VERIFY, 0,
				"%s has no cosign signature (no '%s' at the "
				"source)",
				g->what, tag);
	(void)o;
	if (tried == 1)
		return ferr_set(e, FERR_VERIFY, 0,
				"%s: its cosign signature: %s", g->what,
				why.msg);
	return ferr_set(e, FERR_VERIFY, 0,
			"%s: none of its %zu cosign signatures verifies (last: "
			"%s)",
			g->what, tried, why.msg);
}

/* ---- the workers ---- */

static int disc_image(struct exporter *x, struct clients *cs, size_t i,
		      struct ferr *e)
{
	const struct ref *r = x->refs[i];
	char what[600];
	struct dimg g = {.x = x,
			 .l = &x->disc->img[i],
			 .host = ref_api_host(r),
			 .repo = r->path,
			 .what = what};

	snprintf(what, sizeof(what), "image '%s'", x->images[i].ref);
	if (!(g.cl = exp_client_for(x, cs, g.host, e)))
		return ferr_prefix(e, "%s", what);
	g.tags = tags_of(x, g.cl, g.host, g.repo);
	g.api = api_of(x, g.host);
	for (size_t k = 0; k < g.l->nsubj; k++) {
		struct digest s = g.l->subj[k]; /* the array may move */
		int depth = g.l->depth[k];

		if (x->o->reg->cancel && *x->o->reg->cancel)
			return ferr_set(e, FERR_INTERRUPT, 0, "interrupted");
		if (depth > FERRY_MAX_ATTACH_DEPTH)
			return ferr_set(e, FERR_INPUT, 0,
					"%s: attachments nested more than %d "
					"deep",
					what, FERRY_MAX_ATTACH_DEPTH);
		if (find_cosign(&g, &s, depth, e) < 0 ||
		    find_referrers(&g, &s, depth, e) < 0)
			return -1;
	}
	if (x->o->ncosign_keys && gate(&g, &x->tops[i].d, e) < 0)
		return -1;
	return 0;
}

static void disc_one(struct exporter *x, struct clients *cs, size_t i)
{
	struct att_list *l = &x->disc->img[i];

	ferr_clear(&l->err);
	if (disc_image(x, cs, i, &l->err) < 0)
		l->failed = true;
}

/* The manifests of image i the bundle carries (and the top digest at the
 * source, which a --platform subset replaces): the first subjects. */
static int first_subjects(struct exporter *x, size_t i, struct ferr *e)
{
	struct att_list *l = &x->disc->img[i];

	if (push_subject(l, &x->tops[i].d, 0, e) < 0 ||
	    push_subject(l, &x->images[i].digest, 0, e) < 0)
		return -1;
	/* walk the exported indexes (the queue grows as it goes) */
	for (size_t k = 0; k < l->nsubj; k++) {
		struct item *it = exp_find_item(x, &l->subj[k]);
		json_t *root, *d;
		size_t j;

		if (!it || it->kind != K_INDEX || !it->data)
			continue;
		root = json_loadb((const char *)it->data, it->size, 0, NULL);
		json_array_foreach(json_object_get(root, "manifests"), j, d)
		{
			struct digest cd;
			if (digest_parse(&cd,
					 json_string_value(
					     json_object_get(d, "digest")),
					 NULL) == 0 &&
			    exp_find_item(x, &cd) &&
			    push_subject(l, &cd, 0, e) < 0) {
				json_decref(root);
				return -1;
			}
		}
		json_decref(root);
	}
	return 0;
}

/* The first image that failed, in order, naming how many others did. */
static int first_failure(struct exporter *x, struct ferr *e)
{
	size_t nfailed = 0, first = 0;

	for (size_t i = 0; i < x->nimages; i++)
		if (x->disc->img[i].failed && !nfailed++)
			first = i;
	if (!nfailed)
		return 0;
	*e = x->disc->img[first].err;
	if (nfailed > 1) {
		size_t len = strlen(e->msg);
		snprintf(e->msg + len, sizeof(e->msg) - len,
			 " (and %zu more image%s)", nfailed - 1,
			 nfailed == 2 ? "" : "s");
	}
	return -1;
}

/* Add image i's attachments to the item table and its `attached`. */
static int adopt(struct exporter *x, size_t i, struct ferr *e)
{
	struct att_list *l = &x->disc->img[i];
	struct bundle_image *im = &x->images[i];
	const struct ref *r = x->refs[i];
	char what[600];

	snprintf(what, sizeof(what), "image '%s'", im->ref);
	im->cosign_key_id = l->key_id ? strdup(l->key_id) : NULL;
	if (l->key_id && !im->cosign_key_id)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	/* what upstream signed: the source's top, which a --platform
	 * subset replaces (ferry.json says so then) */
	im->has_signed = true;
	im->signed_digest = x->tops[i].d;
	if (!l->n)
		return 0;
	im->attached = calloc(l->n, sizeof(*im->attached));
	if (!im->attached)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t k = 0; k < l->n; k++) {
		struct att *a = &l->v[k];
		struct bundle_attach *b = &im->attached[im->nattached++];

		b->kind = a->kind;
		b->subject = a->subject;
		b->digest = a->m.digest;
		b->size = a->m.len;
		b->tag = a->tag;
		b->artifact_type = a->artifact_type;
		a->tag = a->artifact_type = NULL;
		if (exp_add_attached(x, i, ref_api_host(r), r->path, &a->m,
				     what, e) < 0)
			return -1;
		b->media_type = exp_find_item(x, &b->digest)->media_type;
	}
	return 0;
}

/* Lookups are small requests whose cost is the round trip (a registry
 * with the referrers API answers one per manifest): more of them at once
 * than --jobs downloads. */
static size_t disc_workers(const struct exporter *x)
{
	size_t n = EXP_DISCOVER_PER_JOB * exp_jobs(x);

	return n > EXP_DISCOVER_MAX ? EXP_DISCOVER_MAX : n;
}

int exp_discover(struct exporter *x, struct ferr *e)
{
	if (x->o->no_referrers)
		return 0;
	if (!(x->disc = calloc(1, sizeof(*x->disc))) ||
	    !(x->disc->img = calloc(x->nimages + 1, sizeof(*x->disc->img))))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	pthread_mutex_init(&x->disc->mu, NULL);
	pthread_cond_init(&x->disc->cv, NULL);
	for (size_t i = 0; i < x->nimages; i++)
		if (first_subjects(x, i, e) < 0)
			return -1;
	if (exp_each_image(x, disc_workers(x), disc_one, e) < 0 ||
	    first_failure(x, e) < 0)
		return -1;
	for (size_t i = 0; i < x->nimages; i++)
		if (adopt(x, i, e) < 0)
			return -1;
	return 0;
}

void exp_discover_release(struct exporter *x)
{
	struct disc *d = x->disc;

	if (!d)
		return;
	for (size_t i = 0; i < x->nimages && d->img; i++) {
		struct att_list *l = &d->img[i];
		for (size_t k = 0; k < l->n; k++) {
			reg_manifest_release(&l->v[k].m);
			free(l->v[k].tag);
			free(l->v[k].artifact_type);
		}
		free(l->v);
		free(l->subj);
		free(l->depth);
	}
	free(d->img);
	for (size_t k = 0; k < d->nts; k++) {
		for (size_t j = 0; j < d->ts[k]->n; j++)
			free(d->ts[k]->tags[j]);
		free(d->ts[k]->tags);
		free(d->ts[k]->key);
		free(d->ts[k]);
	}
	free(d->ts);
	for (size_t k = 0; k < d->nha; k++) {
		free(d->ha[k]->host);
		free(d->ha[k]);
	}
	free(d->ha);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	free(d);
	x->disc = NULL;
}
