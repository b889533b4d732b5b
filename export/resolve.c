/* Resolution: from a reference to the items of the bundle.  Walks an
 * image's index and manifests (fetched by prefetch.c, or from the registry
 * when not), keeps the platforms asked for, and records each config and
 * layer once, in order of first appearance (the bundle's order). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "internal.h"

int exp_platform_parse(const char *s, struct platform *p)
{
	const char *a, *b;

	memset(p, 0, sizeof(*p));
	a = strchr(s, '/');
	if (!a || a == s || (size_t)(a - s) >= sizeof(p->os))
		return -1;
	memcpy(p->os, s, (size_t)(a - s));
	a++;
	b = strchr(a, '/');
	if (b) {
		if (b == a || (size_t)(b - a) >= sizeof(p->arch) || !b[1] ||
		    strlen(b + 1) >= sizeof(p->variant) || strchr(b + 1, '/'))
			return -1;
		memcpy(p->arch, a, (size_t)(b - a));
		memcpy(p->variant, b + 1, strlen(b + 1));
	} else {
		if (!*a || strlen(a) >= sizeof(p->arch))
			return -1;
		memcpy(p->arch, a, strlen(a));
	}
	return 0;
}

void exp_platform_of_json(json_t *o, struct platform *p)
{
	const char *os = json_string_value(json_object_get(o, "os"));
	const char *arch =
	    json_string_value(json_object_get(o, "architecture"));
	const char *v = json_string_value(json_object_get(o, "variant"));

	memset(p, 0, sizeof(*p));
	snprintf(p->os, sizeof(p->os), "%s", os ? os : "");
	snprintf(p->arch, sizeof(p->arch), "%s", arch ? arch : "");
	snprintf(p->variant, sizeof(p->variant), "%s", v ? v : "");
}

char *exp_platform_str(const struct platform *p)
{
	return exp_asprintf("%s/%s%s%s", p->os, p->arch,
			    p->variant[0] ? "/" : "", p->variant);
}

bool exp_platform_match(const struct platform *want,
			const struct platform *have)
{
	if (strcmp(want->os, have->os) || strcmp(want->arch, have->arch))
		return false;
	if (!want->variant[0] || !strcmp(want->variant, have->variant))
		return true;
	/* arm64 images often omit their (only) variant v8 */
	return !strcmp(have->arch, "arm64") && !have->variant[0] &&
	       !strcmp(want->variant, "v8");
}

bool exp_is_index_type(const char *mt)
{
	return mt && (!strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST));
}

/* Parse a descriptor: digest, size, media type. */
int exp_parse_desc(json_t *d, struct digest *dg, uint64_t *size,
		   const char **mt, const char *where, struct ferr *e)
{
	json_t *sz = json_object_get(d, "size");
	const char *ds = json_string_value(json_object_get(d, "digest"));

	if (!json_is_object(d) || !ds || !json_is_integer(sz) ||
	    json_integer_value(sz) < 0)
		return ferr_set(e, FERR_VERIFY, 0,
				"%s has a descriptor without a valid digest "
				"and size",
				where);
	if (digest_parse(dg, ds, e) < 0) {
		e->cat = FERR_VERIFY;
		return ferr_prefix(e, "%s", where);
	}
	*size = (uint64_t)json_integer_value(sz);
	if (mt)
		*mt = json_string_value(json_object_get(d, "mediaType"));
	return 0;
}

/* Per-image accumulation while walking. */
struct walk {
	struct bundle_image *im;
	struct digest *seen;
	size_t nseen, capseen;
	char **plats;
	size_t nplats;
};

static bool walk_has(const struct walk *w, const struct digest *d)
{
	for (size_t i = 0; i < w->nseen; i++)
		if (digest_equal(&w->seen[i], d))
			return true;
	return false;
}

static int walk_count(struct walk *w, const struct digest *d, uint64_t size,
		      struct ferr *e)
{
	for (size_t i = 0; i < w->nseen; i++)
		if (digest_equal(&w->seen[i], d))
			return 0;
	if (w->nseen == w->capseen) {
		size_t nc = w->capseen ? w->capseen * 2 : 32;
		struct digest *n = realloc(w->seen, nc * sizeof(*n));
		if (!n)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		w->seen = n;
		w->capseen = nc;
	}
	w->seen[w->nseen++] = *d;
	w->im->total_size += size;
	return 0;
}

static int walk_platform(struct walk *w, const char *p, struct ferr *e)
{
	char **n;

	for (size_t i = 0; i < w->nplats; i++)
		if (!strcmp(w->plats[i], p))
			return 0;
	n = realloc(w->plats, (w->nplats + 1) * sizeof(*n));
	if (!n)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	w->plats = n;
	if (!(w->plats[w->nplats] = strdup(p)))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	w->nplats++;
	return 0;
}

/* Register an index held in `m` (takes its data). */
static struct item *add_index_doc(struct exporter *x, const char *host,
				  const char *repo, struct reg_manifest *m,
				  struct ferr *e)
{
	struct item *it = exp_add_item(x, &m->digest, m->len, K_INDEX, host,
				       repo, e);

	if (it && !it->data) {
		it->data = m->data;
		m->data = NULL;
		it->media_type = !strcmp(m->media_type, MT_DOCKER_LIST)
				     ? MT_DOCKER_LIST
				     : MT_OCI_INDEX;
	}
	return it;
}

/* Register an image manifest held in `m` (takes its data). */
static struct item *add_manifest_doc(struct exporter *x, const char *host,
				     const char *repo, struct reg_manifest *m,
				     struct walk *w, const char *what,
				     struct ferr *e)
{
	json_t *root = NULL, *layers, *l;
	struct item *it = NULL, *res = NULL;
	struct digest dg;
	uint64_t size;
	size_t i;

	root = json_loadb((const char *)m->data, m->len, 0, NULL);
	if (!root) {
		ferr_set(e, FERR_INPUT, 0, "%s does not parse", what);
		goto out;
	}
	it = exp_add_item(x, &m->digest, m->len, K_MANIFEST, host, repo, e);
	if (!it || walk_count(w, &m->digest, m->len, e) < 0)
		goto out;
	if (!it->data) {
		it->data = m->data;
		m->data = NULL;
		it->media_type = m->media_type && !strcmp(m->media_type,
							  MT_DOCKER_MANIFEST)
				     ? MT_DOCKER_MANIFEST
				     : MT_OCI_MANIFEST;
		if (exp_parse_desc(json_object_get(root, "config"), &it->cfg,
				   &size, NULL, what, e) < 0)
			goto out;
		layers = json_object_get(root, "layers");
		it->layers = calloc(json_array_size(layers) + 1,
				    sizeof(*it->layers));
		if (!it->layers) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		json_array_foreach(layers, i, l)
		{
			if (exp_parse_desc(l, &it->layers[i], &size, NULL, what,
					   e) < 0)
				goto out;
			it->nlayers++;
		}
	}
	/* (re)register the parts for this image's accounting */
	{
		struct item *c;
		const char *cmt = NULL;
		if (exp_parse_desc(json_object_get(root, "config"), &dg, &size,
				   &cmt, what, e) < 0)
			goto out;
		c = exp_add_item(x, &dg, size, K_CONFIG, host, repo, e);
		if (!c || walk_count(w, &dg, size, e) < 0)
			goto out;
		/* the reader will hold it to being JSON: check it here */
		if (cmt && strstr(cmt, "json"))
			c->json = true;
		layers = json_object_get(root, "layers");
		json_array_foreach(layers, i, l)
		{
			if (exp_parse_desc(l, &dg, &size, NULL, what, e) < 0 ||
			    !exp_add_item(x, &dg, size, K_LAYER, host, repo,
					  e) ||
			    walk_count(w, &dg, size, e) < 0)
				goto out;
		}
		it = exp_find_item(x, &m->digest);
	}
	res = it;
out:
	json_decref(root);
	return res;
}

/* A config the prefetch pass put in the cache (verified by digest and
 * size as it streamed, and counted in the progress then). */
static void adopt_config(struct exporter *x, struct item *cfg)
{
	const struct mdoc *doc = exp_store_get(x, &cfg->d);

	if (!doc || strcmp(doc->media_type, MDOC_CONFIG) != 0)
		return;
	cfg->state = S_DONE;
	cfg->cached = doc->cached;
	exp_blob_done_event(x, cfg);
}

/* Fetch the config of a single-platform image early, to learn its
 * platform. */
static int config_platform(struct exporter *x, struct reg_client *cl,
			   struct item *man, char **out, struct ferr *e)
{
	struct item *cfg = exp_find_item(x, &man->cfg);
	char *path = NULL;
	struct platform p;
	json_t *root = NULL;
	json_error_t jerr;
	int rc = -1;

	*out = NULL;
	if (!cfg)
		return ferr_set(e, FERR_INPUT, 0, "internal error: no config");
	if (cfg->size > FERRY_MAX_JSON)
		return ferr_set(e, FERR_VERIFY, 0,
				"config '%s' is larger than the %u-byte limit",
				cfg->d.str, FERRY_MAX_JSON);
	if (cfg->state != S_DONE)
		adopt_config(x, cfg);
	if (cfg->state != S_DONE) {
		if (exp_fetch_item(x, cl, cfg, e) < 0)
			return -1;
		cfg->state = S_DONE;
		exp_blob_done_event(x, cfg);
	}
	path = exp_asprintf("%s/%s", x->blobdir, digest_hex(&cfg->d));
	if (!path)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		ferr_set(e, FERR_INPUT, 0, "config '%s' is not a JSON object",
			 cfg->d.str);
		goto out;
	}
	exp_platform_of_json(root, &p);
	*out = exp_platform_str(&p);
	rc = *out ? 0 : ferr_set(e, FERR_IO, ENOMEM, "out of memory");
out:
	json_decref(root);
	free(path);
	return rc;
}

/* A child document must be what its descriptor says: size and media type. */
static int check_child(const struct digest *d, uint64_t size, const char *dmt,
		       size_t len, const char *mt, struct ferr *e)
{
	if (len != size)
		return ferr_set(e, FERR_VERIFY, 0,
				"manifest '%s' is %zu bytes but its descriptor "
				"says %llu",
				d->str, len, (unsigned long long)size);
	if (dmt && strcmp(dmt, mt) != 0)
		return ferr_set(e, FERR_VERIFY, 0,
				"manifest '%s' is a '%.100s' but its descriptor "
				"says '%.100s'",
				d->str, mt, dmt);
	return 0;
}

int exp_fetch_child(struct reg_client *cl, const char *repo,
		    const struct digest *d, uint64_t size, const char *dmt,
		    struct reg_manifest *m, struct ferr *e)
{
	if (size > FERRY_MAX_JSON)
		return ferr_set(
		    e, FERR_VERIFY, 0,
		    "manifest '%s' claims %llu bytes, more than the "
		    "%u-byte limit",
		    d->str, (unsigned long long)size, FERRY_MAX_JSON);
	if (reg_get_manifest(cl, repo, d->str, m, e) < 0)
		return -1;
	if (check_child(d, size, dmt, m->len, m->media_type, e) < 0) {
		reg_manifest_release(m);
		return -1;
	}
	return 0;
}

/* A copy of a prefetched document, in the shape the registry returns. */
static int copy_doc(const struct mdoc *doc, struct reg_manifest *m,
		    struct ferr *e)
{
	memset(m, 0, sizeof(*m));
	m->data = malloc(doc->len + 1);
	m->media_type = strdup(doc->media_type);
	if (!m->data || !m->media_type) {
		reg_manifest_release(m);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	memcpy(m->data, doc->data, doc->len);
	m->data[doc->len] = '\0';
	m->len = doc->len;
	m->digest = doc->d;
	return 0;
}

/* The child `d` as the prefetch pass fetched it (checked again against
 * this descriptor: another index may describe it differently), else from
 * the registry. */
static int fetch_child(struct exporter *x, struct reg_client *cl,
		       const char *repo, const struct digest *d, uint64_t size,
		       const char *dmt, struct reg_manifest *m, struct ferr *e)
{
	const struct mdoc *doc = exp_store_get(x, d);

	if (!doc || !strcmp(doc->media_type, MDOC_CONFIG))
		return exp_fetch_child(cl, repo, d, size, dmt, m, e);
	if (check_child(d, size, dmt, doc->len, doc->media_type, e) < 0)
		return -1;
	return copy_doc(doc, m, e);
}

/* The top manifest or index of image `im`: prefetched, else fetched. */
static int top_manifest(struct exporter *x, struct reg_client *cl,
			const struct ref *r, struct bundle_image *im,
			struct reg_manifest *m, const char *what,
			struct ferr *e)
{
	const struct ref_top *t = x->tops ? &x->tops[im - x->images] : NULL;
	const struct mdoc *doc = t && t->ok ? exp_store_get(x, &t->d) : NULL;

	if (t && t->failed) {
		*e = t->err;
		return -1;
	}
	if (doc)
		return copy_doc(doc, m, e);
	if (reg_get_manifest(cl, r->path, ref_object(r), m, e) < 0)
		return ferr_prefix(e, "%s", what);
	return 0;
}

/* Walk an index with every platform kept, byte-exact (recursive). */
static int walk_index_all(struct exporter *x, struct reg_client *cl,
			  const char *host, const char *repo,
			  struct reg_manifest *m, struct walk *w, int depth,
			  struct item **docker_pick, const char *what,
			  struct ferr *e)
{
	json_t *root = NULL, *mans, *d;
	struct item *it;
	size_t i;
	int rc = -1;

	if (depth > FERRY_MAX_INDEX_DEPTH)
		return ferr_set(e, FERR_INPUT, 0, "%s: indexes nested too deep",
				what);
	root = json_loadb((const char *)m->data, m->len, 0, NULL);
	if (!root)
		return ferr_set(e, FERR_INPUT, 0, "%s does not parse", what);
	it = add_index_doc(x, host, repo, m, e);
	if (!it || walk_count(w, &m->digest, m->len, e) < 0)
		goto out;
	mans = json_object_get(root, "manifests");
	if (json_array_size(mans) > FERRY_MAX_INDEX_ENTRIES) {
		ferr_set(e, FERR_INPUT, 0,
			 "%s: an index lists %zu manifests, more than the "
			 "limit of %u",
			 what, json_array_size(mans), FERRY_MAX_INDEX_ENTRIES);
		goto out;
	}
	json_array_foreach(mans, i, d)
	{
		struct reg_manifest child;
		struct digest dg;
		uint64_t size;
		const char *dmt;
		struct platform p;

		if (exp_parse_desc(d, &dg, &size, &dmt, what, e) < 0)
			goto out;
		if (walk_has(w, &dg))
			continue; /* listed again: fetched and walked once */
		if (fetch_child(x, cl, repo, &dg, size, dmt, &child, e) < 0)
			goto out;
		if (exp_is_index_type(child.media_type)) {
			rc = walk_index_all(x, cl, host, repo, &child, w,
					    depth + 1, docker_pick, what, e);
			reg_manifest_release(&child);
			if (rc < 0)
				goto out;
			rc = -1;
			continue;
		}
		struct item *mi = add_manifest_doc(x, host, repo, &child, w,
						   what, e);
		reg_manifest_release(&child);
		if (!mi)
			goto out;
		exp_platform_of_json(json_object_get(d, "platform"), &p);
		if (p.os[0] && strcmp(p.os, "unknown") != 0) {
			char *s = exp_platform_str(&p);
			int r = s ? walk_platform(w, s, e) : -1;
			free(s);
			if (r < 0)
				goto out;
			if (!*docker_pick || (!strcmp(p.os, "linux") &&
					      !strcmp(p.arch, "amd64") &&
					      !(*docker_pick)->platform))
				*docker_pick = mi;
			if (!strcmp(p.os, "linux") && !strcmp(p.arch, "amd64"))
				mi->platform = mi->platform
						   ? mi->platform
						   : strdup("linux/amd64");
		}
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* One image's resolution: where it comes from and what it has so far. */
struct res {
	struct exporter *x;
	struct reg_client *cl;
	const char *host, *repo;
	char what[600];
	struct bundle_image *im;
	struct walk w;
	struct item *pick; /* the manifest manifest.json describes */
};

static void set_top(struct bundle_image *im, const struct digest *d,
		    uint64_t size, const char *mt)
{
	im->digest = *d;
	im->doc_size = size;
	im->media_type = mt;
}

/* "a/b, c/d": the platforms an index lists, for an error message. */
static void platforms_of(json_t *mans, char *have, size_t cap)
{
	json_t *d;
	size_t i, len = 0;

	have[0] = '\0';
	json_array_foreach(mans, i, d)
	{
		struct platform p;
		char *s;

		exp_platform_of_json(json_object_get(d, "platform"), &p);
		if (!p.os[0] || !strcmp(p.os, "unknown"))
			continue;
		s = exp_platform_str(&p);
		if (s && len + strlen(s) + 3 < cap)
			len += (size_t)snprintf(have + len, cap - len, "%s%s",
						len ? ", " : "", s);
		free(s);
	}
}

/* The entry of `mans` for platform `want`, added to the image and to
 * `keep`.  *found tells whether the index has the platform at all. */
static int keep_platform(struct res *rs, json_t *mans, const char *want_s,
			 json_t *keep, struct item **one, bool *found,
			 struct ferr *e)
{
	struct platform want, p;
	struct reg_manifest child;
	struct digest dg;
	uint64_t size;
	const char *dmt;
	json_t *d = NULL;
	size_t i;
	char *s;

	*found = false;
	exp_platform_parse(want_s, &want);
	json_array_foreach(mans, i, d)
	{
		exp_platform_of_json(json_object_get(d, "platform"), &p);
		if (exp_platform_match(&want, &p))
			break;
	}
	if (i == json_array_size(mans))
		return 0;
	*found = true;
	if (exp_parse_desc(d, &dg, &size, &dmt, rs->what, e) < 0)
		return -1;
	if (exp_is_index_type(dmt))
		return ferr_set(e, FERR_INPUT, 0,
				"%s: nested index for platform '%s' is not "
				"supported with --platform",
				rs->what, want_s);
	if (fetch_child(rs->x, rs->cl, rs->repo, &dg, size, dmt, &child, e) < 0)
		return -1;
	*one = add_manifest_doc(rs->x, rs->host, rs->repo, &child, &rs->w,
				rs->what, e);
	reg_manifest_release(&child);
	if (!*one)
		return -1;
	s = exp_platform_str(&p);
	if (!s || walk_platform(&rs->w, s, e) < 0) {
		free(s);
		return s ? -1 : ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	free(s);
	if (!rs->pick)
		rs->pick = *one;
	json_array_append(keep, d);
	return 0;
}

/* Several platforms kept: an index of our own listing just those. */
static int filtered_index(struct res *rs, json_t *root, json_t *keep,
			  const struct reg_manifest *m, struct ferr *e)
{
	json_t *copy = json_deep_copy(root);
	struct item *ix;
	struct digest dg;
	char *s;

	json_object_set(copy, "manifests", keep);
	s = json_dumps(copy, JSON_COMPACT);
	json_decref(copy);
	if (!s)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (digest_of(s, strlen(s), &dg, e) < 0 ||
	    !(ix = exp_add_item(rs->x, &dg, strlen(s), K_INDEX, rs->host,
				rs->repo, e))) {
		free(s);
		return -1;
	}
	if (!ix->data) {
		ix->data = (unsigned char *)s;
		ix->media_type = m->media_type &&
					 !strcmp(m->media_type, MT_DOCKER_LIST)
				     ? MT_DOCKER_LIST
				     : MT_OCI_INDEX;
	} else {
		free(s);
	}
	set_top(rs->im, &dg, ix->size, ix->media_type);
	return walk_count(&rs->w, &dg, ix->size, e);
}

/* An index, --platform given: keep only the platforms asked for. */
static int resolve_filtered(struct res *rs, const struct reg_manifest *m,
			    struct ferr *e)
{
	const struct exp_opts *o = rs->x->o;
	json_t *root = json_loadb((const char *)m->data, m->len, 0, NULL);
	json_t *mans = json_object_get(root, "manifests"), *keep = json_array();
	struct item *one = NULL;
	char have[512];
	bool found;
	int rc = -1;

	for (size_t k = 0; k < o->nplatforms; k++) {
		if (keep_platform(rs, mans, o->platforms[k], keep, &one, &found,
				  e) < 0)
			goto out;
		if (!found) {
			platforms_of(mans, have, sizeof(have));
			ferr_set(e, FERR_INPUT, 0,
				 "%s has no platform '%s' (it has: %s)",
				 rs->what, o->platforms[k],
				 have[0] ? have : "none");
			goto out;
		}
	}
	if (json_array_size(keep) == 1)
		set_top(rs->im, &one->d, one->size, one->media_type);
	else if (filtered_index(rs, root, keep, m, e) < 0)
		goto out;
	rc = 0;
out:
	json_decref(keep);
	json_decref(root);
	return rc;
}

/* A single image manifest: its platform comes from its config. */
static int resolve_single(struct res *rs, struct reg_manifest *m,
			  struct ferr *e)
{
	const struct exp_opts *o = rs->x->o;
	struct item *mi = add_manifest_doc(rs->x, rs->host, rs->repo, m, &rs->w,
					   rs->what, e);
	struct platform p, want;
	char *plat = NULL;
	int rc = -1;

	if (!mi)
		return -1;
	set_top(rs->im, &mi->d, mi->size, mi->media_type);
	if (config_platform(rs->x, rs->cl, mi, &plat, e) < 0)
		return ferr_prefix(e, "%s", rs->what);
	exp_platform_parse(plat, &p);
	for (size_t k = 0; k < o->nplatforms; k++) {
		exp_platform_parse(o->platforms[k], &want);
		if (!exp_platform_match(&want, &p)) {
			ferr_set(e, FERR_INPUT, 0,
				 "%s has no platform '%s' (it has: %s)",
				 rs->what, o->platforms[k], plat);
			goto out;
		}
	}
	if (walk_platform(&rs->w, plat, e) < 0)
		goto out;
	rs->pick = mi;
	rc = 0;
out:
	free(plat);
	return rc;
}

/* manifest.json (docker load) describes one platform's manifest. */
static int record_docker(struct bundle_image *im, const struct item *pick,
			 struct ferr *e)
{
	im->has_docker = true;
	im->docker_config = pick->cfg;
	im->ndocker_layers = pick->nlayers;
	im->docker_layers = calloc(pick->nlayers + 1, sizeof(struct digest));
	if (!im->docker_layers)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	memcpy(im->docker_layers, pick->layers,
	       pick->nlayers * sizeof(struct digest));
	return 0;
}

/* Each config and layer still to fetch learns that image `img` needs it
 * (for the image's "done" event). */
static int record_needs(struct exporter *x, size_t img, const struct walk *w,
			struct ferr *e)
{
	for (size_t i = 0; i < w->nseen; i++) {
		struct item *it = exp_find_item(x, &w->seen[i]);
		size_t *n;

		if (!it || it->kind < K_CONFIG || it->state == S_DONE)
			continue;
		for (size_t k = 0; k < it->nimages && it->images; k++)
			if (it->images[k] == img)
				goto next;
		n = realloc(it->images, (it->nimages + 1) * sizeof(*n));
		if (!n)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		it->images = n;
		it->images[it->nimages++] = img;
	next:;
	}
	return 0;
}

int exp_add_attached(struct exporter *x, size_t img, const char *host,
		     const char *repo, struct reg_manifest *m, const char *what,
		     struct ferr *e)
{
	struct bundle_image none; /* attachments are not in the image's size */
	struct walk w;
	int rc = -1;

	memset(&none, 0, sizeof(none));
	memset(&w, 0, sizeof(w));
	w.im = &none;
	if (!exp_is_index_type(m->media_type)) {
		if (!add_manifest_doc(x, host, repo, m, &w, what, e))
			goto out;
	} else {
		if (!add_index_doc(x, host, repo, m, e))
			goto out;
	}
	rc = record_needs(x, img, &w, e);
out:
	free(w.seen);
	return rc;
}

int exp_resolve_one(struct exporter *x, const struct ref *r,
		    struct bundle_image *im, struct ferr *e)
{
	struct res rs = {
	    .x = x, .host = ref_api_host(r), .repo = r->path, .im = im};
	struct reg_manifest m;
	int rc = -1;

	memset(&m, 0, sizeof(m));
	rs.w.im = im;
	snprintf(rs.what, sizeof(rs.what), "image '%s'", im->ref);
	if (!(rs.cl = exp_client_for(x, &x->main_clients, rs.host, e)) ||
	    top_manifest(x, rs.cl, r, im, &m, rs.what, e) < 0)
		return -1;
	if (exp_is_index_type(m.media_type) && !x->o->nplatforms) {
		set_top(im, &m.digest, m.len,
			!strcmp(m.media_type, MT_DOCKER_LIST) ? MT_DOCKER_LIST
							      : MT_OCI_INDEX);
		rc = walk_index_all(x, rs.cl, rs.host, rs.repo, &m, &rs.w, 0,
				    &rs.pick, rs.what, e);
	} else if (exp_is_index_type(m.media_type)) {
		rc = resolve_filtered(&rs, &m, e);
	} else {
		rc = resolve_single(&rs, &m, e);
	}
	if (rc < 0 || (rs.pick && record_docker(im, rs.pick, e) < 0) ||
	    record_needs(x, (size_t)(im - x->images), &rs.w, e) < 0) {
		rc = -1;
		goto out;
	}
	im->platforms = rs.w.plats;
	im->nplatforms = rs.w.nplats;
	rs.w.plats = NULL;
	rs.w.nplats = 0;
out:
	for (size_t i = 0; i < rs.w.nplats; i++)
		free(rs.w.plats[i]);
	free(rs.w.plats);
	free(rs.w.seen);
	reg_manifest_release(&m);
	return rc;
}
