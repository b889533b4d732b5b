#include "cosigncheck.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "buf.h"
#include "cosign.h"

/* A simple-signing layer some image's signature manifest names. */
struct payload {
	struct digest d;
	unsigned char *data; /* once read and verified */
	size_t len;
	bool oversize;
};

/* One image's signature manifests (by digest), then their layers. */
struct csig {
	struct digest man;
	struct cosign_layer *layers;
	size_t nlayers;
	bool seen;
};

struct cimg {
	struct digest signed_d; /* what the signatures must name */
	/* a --platform subset: the source's top, which the signatures export
	 * checked name (ferry.json's word: never enough to pass) */
	bool subset;
	struct digest source_d;
	struct csig *sigs;
	size_t nsigs;
};

struct ccheck {
	const struct sig_key *keys;
	size_t nkeys;
	struct cimg *img;
	size_t nimg;
	struct payload *p;
	size_t np, capp;
	struct payload *cur; /* the payload being read */
	struct buf b;
	bool base;	   /* reading a base: payloads only */
	size_t from_bases; /* payloads a base supplied */
};

int ccheck_init(struct ccheck **out, const struct sig_key *keys, size_t nkeys,
		struct ferr *e)
{
	struct ccheck *c = calloc(1, sizeof(*c));

	*out = c;
	if (!c)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	c->keys = keys;
	c->nkeys = nkeys;
	buf_init(&c->b, FERRY_MAX_COSIGN_PAYLOAD);
	return 0;
}

void ccheck_release(struct ccheck *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nimg; i++) {
		for (size_t k = 0; k < c->img[i].nsigs; k++)
			cosign_layers_release(c->img[i].sigs[k].layers,
					      c->img[i].sigs[k].nlayers);
		free(c->img[i].sigs);
	}
	free(c->img);
	for (size_t i = 0; i < c->np; i++)
		free(c->p[i].data);
	free(c->p);
	buf_release(&c->b);
	free(c);
}

static int on_header(void *ctx, const struct bundle_header *h, struct ferr *e)
{
	struct ccheck *c = ctx;

	c->img = calloc(h->nimages + 1, sizeof(*c->img));
	if (!c->img)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	c->nimg = h->nimages;
	for (size_t i = 0; i < h->nimages; i++) {
		const struct bundle_image *im = &h->images[i];
		struct cimg *ci = &c->img[i];

		/* only a signature of what the bundle carries covers it */
		ci->signed_d = im->digest;
		ci->subset = im->has_signed &&
			     !digest_equal(&im->signed_digest, &im->digest);
		ci->source_d = im->signed_digest;
		ci->sigs = calloc(im->nattached + 1, sizeof(*ci->sigs));
		if (!ci->sigs)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		for (size_t k = 0; k < im->nattached; k++)
			if (im->attached[k].kind == BA_SIGNATURE &&
			    digest_equal(&im->attached[k].subject,
					 &ci->signed_d))
				ci->sigs[ci->nsigs++].man =
				    im->attached[k].digest;
	}
	return 0;
}

static struct payload *find_payload(struct ccheck *c, const struct digest *d)
{
	for (size_t i = 0; i < c->np; i++)
		if (digest_equal(&c->p[i].d, d))
			return &c->p[i];
	return NULL;
}

static int want_payload(struct ccheck *c, const struct cosign_layer *l,
			struct ferr *e)
{
	struct payload *np;

	if (find_payload(c, &l->digest))
		return 0;
	if (c->np == c->capp) {
		size_t nc = c->capp ? c->capp * 2 : 16;
		if (!(np = realloc(c->p, nc * sizeof(*np))))
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		c->p = np;
		c->capp = nc;
	}
	memset(&c->p[c->np], 0, sizeof(c->p[c->np]));
	c->p[c->np].d = l->digest;
	c->p[c->np++].oversize = l->size > FERRY_MAX_COSIGN_PAYLOAD;
	return 0;
}

/* A signature manifest: learn its payload layers. */
static int take_sig(struct ccheck *c, const struct bundle_blob *b,
		    struct ferr *e)
{
	for (size_t i = 0; i < c->nimg; i++)
		for (size_t k = 0; k < c->img[i].nsigs; k++) {
			struct csig *s = &c->img[i].sigs[k];
			if (s->seen || !digest_equal(&s->man, &b->digest))
				continue;
			s->seen = true;
			if (cosign_sig_layers(b->doc, b->doc_len, &s->layers,
					      &s->nlayers, e) < 0) {
				if (e->cat != FERR_INPUT)
					return -1;
				ferr_clear(e); /* not a signature: no layers */
				continue;
			}
			for (size_t l = 0; l < s->nlayers; l++)
				if (want_payload(c, &s->layers[l], e) < 0)
					return -1;
		}
	return 0;
}

static int on_begin(void *ctx, const struct bundle_blob *b, struct ferr *e)
{
	struct ccheck *c = ctx;
	struct payload *p;

	(void)e;
	c->cur = NULL;
	if (b->kind != BK_LAYER || !(p = find_payload(c, &b->digest)) ||
	    p->data || p->oversize || b->size > FERRY_MAX_COSIGN_PAYLOAD)
		return 0;
	c->cur = p;
	buf_reset(&c->b);
	return 0;
}

static int on_data(void *ctx, const void *p, size_t n, struct ferr *e)
{
	struct ccheck *c = ctx;

	if (c->cur && buf_append(&c->b, p, n) < 0)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	return 0;
}

static int on_end(void *ctx, const struct bundle_blob *b, struct ferr *e)
{
	struct ccheck *c = ctx;

	if (b->kind == BK_MANIFEST)
		return c->base ? 0 : take_sig(c, b, e);
	if (c->cur) { /* its content matched its digest */
		struct payload *p = c->cur;
		c->cur = NULL;
		c->from_bases += c->base;
		p->data = buf_detach(&c->b, &p->len);
		if (!p->data && !(p->data = calloc(1, 1)))
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		buf_init(&c->b, FERRY_MAX_COSIGN_PAYLOAD);
	}
	return 0;
}

static void on_abort(void *ctx)
{
	((struct ccheck *)ctx)->cur = NULL;
}

const struct bundle_ops ccheck_ops = {on_header, on_begin, on_data,
				      on_end,	 on_abort, NULL};

/* A base's images are not the ones checked: its header only switches
 * the checker to taking payloads. */
static int on_base_header(void *ctx, const struct bundle_header *h,
			  struct ferr *e)
{
	(void)h;
	(void)e;
	((struct ccheck *)ctx)->base = true;
	return 0;
}

const struct bundle_ops ccheck_base_ops = {on_base_header, on_begin, on_data,
					   on_end,	   on_abort, NULL};

size_t ccheck_missing(const struct ccheck *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->np; i++)
		n += !c->p[i].data && !c->p[i].oversize;
	return n;
}

size_t ccheck_from_bases(const struct ccheck *c)
{
	return c->from_bases;
}

bool ccheck_image(const struct ccheck *c, size_t i, const struct sig_key **key,
		  char *why, size_t n)
{
	const struct cimg *ci = &c->img[i];
	struct ferr e;
	size_t tried = 0;

	ferr_clear(&e);
	for (size_t k = 0; k < ci->nsigs; k++)
		for (size_t l = 0; l < ci->sigs[k].nlayers; l++) {
			const struct cosign_layer *cl = &ci->sigs[k].layers[l];
			struct payload *p = find_payload((struct ccheck *)c,
							 &cl->digest);
			size_t which;

			tried++;
			if (!p || p->oversize || !p->data) {
				if (p && p->oversize)
					ferr_set(&e, FERR_VERIFY, 0,
						 "a signature payload over %u "
						 "bytes",
						 FERRY_MAX_COSIGN_PAYLOAD);
				else
					ferr_set(&e, FERR_VERIFY, 0,
						 "its payload '%s' is not in "
						 "this bundle (a delta's base "
						 "carries it: --base)",
						 cl->digest.str);
				continue;
			}
			if (cosign_verify(c->keys, c->nkeys, p->data, p->len,
					  cl->sig_b64, &ci->signed_d, &which,
					  &e) == 0) {
				*key = &c->keys[which];
				return true;
			}
		}
	if (!tried && ci->subset)
		snprintf(why, n,
			 "no cosign signature names '%s', a --platform subset "
			 "of '%s': a signature of that index, which this "
			 "bundle does not hold, does not cover the subset",
			 ci->signed_d.str, ci->source_d.str);
	else if (!tried)
		snprintf(why, n,
			 "the bundle carries no cosign signature of "
			 "'%s'",
			 ci->signed_d.str);
	else if (tried == 1)
		snprintf(why, n, "its cosign signature: %s", e.msg);
	else
		snprintf(why, n,
			 "none of its %zu cosign signatures verifies "
			 "(last: %s)",
			 tried, e.msg);
	return false;
}
