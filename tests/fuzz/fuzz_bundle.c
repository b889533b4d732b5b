/* The bundle reader (import/breader.c), the gate of the disconnected side.
 *
 * The first byte picks the mode:
 *   0  raw bundle bytes (tar, tar+gzip or tar+zstd), read with the test key
 *   1  the same, inspect mode (no key: header entries only)
 *   2  a structured image, built into a bundle signed with the test key,
 *      so that the reader gets past the signature and the checksums to the
 *      documents and blobs; the second byte picks the compression, then
 *      fields separated by FUZZ_SEP: reference, manifest media type (empty:
 *      OCI), manifest template (empty: a generated one; see fuzz_util.h),
 *      config, layers...
 *   3  the same, inspect mode
 *   4  documents: the second byte picks the compression, then fields
 *      separated by FUZZ_SEP: ferry.json, index.json, manifest.json,
 *      oci-layout (empty: the standard one), then up to 8 blobs.  In every
 *      field "@0".."@7" become blob N's digest and "#0".."#7" its size
 *      (a blob may name only later blobs); in ferry.json "@K" becomes the
 *      test key's id and "@B" the bundle id computed from the result.
 *      SHA256SUMS and its signature are made here, so the reader's checks
 *      of ferry.json, index.json and the blobs are all reached.
 *   5  the same, inspect mode
 * The consumer checks the reader's contract: blob_begin, blob_data,
 * blob_end in order, and blob_end only for content that hashes to the
 * blob's digest; a verified bundle handed out every listed blob once; in
 * mode 4 a compressed bundle gets the same verdict as the plain tar. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breader.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct consumer {
	bool in_blob;
	struct digest_ctx c;
	uint64_t got;
	uint64_t ended; /* blob_end calls */
};

static int on_header(void *ctx, const struct bundle_header *h, struct ferr *e)
{
	(void)ctx;
	(void)e;
	if (!h->verified)
		abort();
	return 0;
}

static int on_begin(void *ctx, const struct bundle_blob *b, struct ferr *e)
{
	struct consumer *k = ctx;

	(void)b;
	if (k->in_blob)
		abort();
	k->in_blob = true;
	k->got = 0;
	return digest_ctx_init(&k->c, e);
}

static int on_data(void *ctx, const void *p, size_t n, struct ferr *e)
{
	struct consumer *k = ctx;

	(void)e;
	if (!k->in_blob)
		abort();
	digest_ctx_update(&k->c, p, n);
	k->got += n;
	return 0;
}

static int on_end(void *ctx, const struct bundle_blob *b, struct ferr *e)
{
	struct consumer *k = ctx;
	struct digest d;

	(void)e;
	if (!k->in_blob)
		abort();
	digest_ctx_final(&k->c, &d);
	digest_ctx_release(&k->c);
	k->in_blob = false;
	k->ended++;
	if (!digest_equal(&d, &b->digest) || k->got != b->size) {
		fprintf(stderr, "blob_end for '%s' after other content\n",
			b->path);
		abort();
	}
	return 0;
}

static void on_abort(void *ctx)
{
	struct consumer *k = ctx;

	if (!k->in_blob)
		abort();
	digest_ctx_release(&k->c);
	k->in_blob = false;
}

static const struct bundle_ops ops = {on_header, on_begin, on_data,
				      on_end,	 on_abort, NULL};

/* Read p[0..n); returns bundle_read's result, its message in e. */
static int read_bundle(const void *p, size_t n, bool verify, struct ferr *out)
{
	struct consumer k;
	struct bundle_header h;
	struct bundle_stats st;
	struct ferr e = {0};
	int rc;

	memset(&k, 0, sizeof(k));
	rc = bundle_read(fuzz_memfile(p, n), verify ? fuzz_test_public() : NULL,
			 &ops, &k, &h, &st, &e);
	if (getenv("FERRY_FUZZ_DEBUG")) /* to check what a seed reaches */
		fprintf(stderr, "%s: %s\n", verify ? "verify" : "inspect",
			rc < 0 ? e.msg : "ok");
	if (k.in_blob || (rc < 0 && !e.msg[0]))
		abort(); /* a blob left open, or a failure without a reason */
	/* a verified bundle had every blob SHA256SUMS lists, each handed out
	 * once */
	if (rc == 0 && verify &&
	    (st.blobs != h.nblobs || k.ended != h.nblobs || !h.verified))
		abort();
	bundle_header_release(&h);
	if (out)
		*out = e;
	return rc;
}

/* Mode 2 and 3: build the bundle from the fields, then read it. */
static void structured(const uint8_t *data, size_t size, bool verify)
{
	struct fuzz_field f[FUZZ_MAX_FIELDS];
	struct fuzz_image im;
	struct fuzz_tar t;
	size_t nf;
	char *ref, *mt = NULL, *man = NULL;

	if (size < 1)
		return;
	nf = fuzz_split(data + 1, size - 1, f);
	memset(&im, 0, sizeof(im));
	ref = fuzz_strdup(&f[0]);
	im.ref = *ref ? ref : "docker.io/library/fuzz:latest";
	if (nf > 1 && f[1].n)
		im.manifest_type = mt = fuzz_strdup(&f[1]);
	if (nf > 2 && f[2].n)
		im.manifest = man = fuzz_strdup(&f[2]);
	if (nf > 3)
		im.config = f[3];
	for (size_t i = 4; i < nf && im.nlayers < 8; i++)
		im.layers[im.nlayers++] = f[i];
	if (fuzz_bundle_build(&t, &im, 1795960800, "default", 1795960800) ==
	    0) {
		fuzz_tar_compress(&t, data[0] % 3);
		read_bundle(t.p, t.n, verify, NULL);
	}
	fuzz_tar_release(&t);
	free(ref);
	free(mt);
	free(man);
}

/* ---- mode 4 and 5 ---- */

#define MAX_BLOBS 8

struct blobs {
	unsigned char *p[MAX_BLOBS];
	size_t n[MAX_BLOBS];
	struct digest d[MAX_BLOBS];
	size_t count;
};

/* f with the tokens replaced; "@B" by bid when given.  malloc'd. */
static unsigned char *subst(const struct fuzz_field *f, const struct blobs *b,
			    size_t from, const char *bid, size_t *outn)
{
	unsigned char *o = malloc(f->n * 40 + 1);
	size_t k = 0;

	if (!o)
		abort();
	for (size_t i = 0; i < f->n; i++) {
		char c = i + 1 < f->n ? (char)f->p[i + 1] : 0;
		size_t j = (size_t)(c - '0');
		const char *rep = NULL;
		char num[24];

		if (f->p[i] == '@' && c >= '0' && c <= '7' && j >= from &&
		    j < b->count)
			rep = b->d[j].str;
		else if (f->p[i] == '#' && c >= '0' && c <= '7' && j >= from &&
			 j < b->count)
			rep = (snprintf(num, sizeof(num), "%zu", b->n[j]), num);
		else if (f->p[i] == '@' && c == 'K')
			rep = fuzz_test_private()->key_id;
		else if (f->p[i] == '@' && c == 'B' && bid)
			rep = bid;
		if (!rep) {
			o[k++] = f->p[i];
			continue;
		}
		memcpy(o + k, rep, strlen(rep));
		k += strlen(rep);
		i++;
	}
	o[k] = '\0';
	*outn = k;
	return o;
}

/* The bundle id for this ferry.json (with "@B" still in it), as the reader
 * computes it; a dummy when ferry.json lacks what it needs. */
static void bundle_id(const struct fuzz_field *fj, const struct blobs *b,
		      const unsigned char *ix, size_t ixn, char out[65])
{
	static const char zeros[] =
	    "0000000000000000000000000000000000000000000000000000000000000000";
	unsigned char *t;
	size_t tn;
	json_t *root;
	const char *cr, *ch;
	struct bundle_meta m;
	struct tm tm;
	char z = 0;

	memcpy(out, zeros, 65);
	t = subst(fj, b, 0, zeros, &tn);
	root = json_loadb((const char *)t, tn, 0, NULL);
	free(t);
	cr = json_string_value(json_object_get(root, "created"));
	ch = json_string_value(json_object_get(root, "channel"));
	memset(&tm, 0, sizeof(tm));
	memset(&m, 0, sizeof(m));
	if (cr && ch &&
	    sscanf(cr, "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon,
		   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z) == 7) {
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		m.created = timegm(&tm);
		m.channel = ch;
		m.sequence = (uint64_t)json_integer_value(
		    json_object_get(root, "sequence"));
		if (bundle_compute_id(&m, (const char *)ix, ixn, b->d, b->count,
				      NULL) == 0)
			memcpy(out, m.bundle_id, 65);
	}
	json_decref(root);
}

static void documents(const uint8_t *data, size_t size, bool verify)
{
	struct fuzz_field f[FUZZ_MAX_FIELDS];
	struct blobs b;
	unsigned char *doc[4] = {NULL, NULL, NULL, NULL};
	size_t docn[4], nf;
	char bid[65];
	struct fuzz_tar t;

	if (size < 1)
		return;
	nf = fuzz_split(data + 1, size - 1, f);
	if (nf < 4)
		return;
	memset(&b, 0, sizeof(b));
	b.count = nf - 4 < MAX_BLOBS ? nf - 4 : MAX_BLOBS;
	for (size_t i = b.count; i-- > 0;) { /* later blobs first */
		b.p[i] = subst(&f[4 + i], &b, i + 1, NULL, &b.n[i]);
		digest_of(b.p[i], b.n[i], &b.d[i], NULL);
	}
	for (int i = 1; i < 4; i++)
		doc[i] = subst(&f[i], &b, 0, NULL, &docn[i]);
	if (!f[3].n) {
		free(doc[3]);
		doc[3] = (unsigned char *)strdup(BUNDLE_OCI_LAYOUT_CONTENT);
		docn[3] = strlen(BUNDLE_OCI_LAYOUT_CONTENT);
	}
	bundle_id(&f[0], &b, doc[1], docn[1], bid);
	doc[0] = subst(&f[0], &b, 0, bid, &docn[0]);
	{
		const void *dp[4] = {doc[3], doc[0], doc[1], doc[2]};
		size_t dn[4] = {docn[3], docn[0], docn[1], docn[2]};

		fuzz_docs_bundle(&t, dp, dn, (const void *const *)b.p, b.n,
				 b.count);
	}
	if (data[0] % 3) {
		/* compression changes nothing but the container: the same
		 * verdict, for the same reason, as the plain tar */
		struct ferr plain, packed;
		int rp = read_bundle(t.p, t.n, verify, &plain);
		int rz;

		fuzz_tar_compress(&t, data[0] % 3);
		rz = read_bundle(t.p, t.n, verify, &packed);
		if (rp != rz || strcmp(plain.msg, packed.msg) != 0) {
			fprintf(stderr, "tar: %s\ncompressed: %s\n",
				rp < 0 ? plain.msg : "ok",
				rz < 0 ? packed.msg : "ok");
			abort();
		}
	} else {
		read_bundle(t.p, t.n, verify, NULL);
	}
	fuzz_tar_release(&t);
	for (int i = 0; i < 4; i++)
		free(doc[i]);
	for (size_t i = 0; i < b.count; i++)
		free(b.p[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 6) {
	case 0:
	case 1:
		read_bundle(data + 1, size - 1, data[0] % 6 == 0, NULL);
		break;
	case 2:
	case 3:
		structured(data + 1, size - 1, data[0] % 6 == 2);
		break;
	default:
		documents(data + 1, size - 1, data[0] % 6 == 4);
	}
	return 0;
}
