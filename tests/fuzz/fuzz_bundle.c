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
 * The consumer checks the reader's contract: blob_begin, blob_data,
 * blob_end in order, and blob_end only for content that hashes to the
 * blob's digest. */
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

static const struct bundle_ops ops = {on_header, on_begin, on_data, on_end,
				      on_abort};

static void read_bundle(const void *p, size_t n, bool verify)
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
	bundle_header_release(&h);
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
	if (fuzz_bundle_build(&t, &im, 1795960800, "default", 1795960800) == 0) {
		fuzz_tar_compress(&t, data[0] % 3);
		read_bundle(t.p, t.n, verify);
	}
	fuzz_tar_release(&t);
	free(ref);
	free(mt);
	free(man);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 4) {
	case 0:
	case 1:
		read_bundle(data + 1, size - 1, data[0] % 4 == 0);
		break;
	default:
		structured(data + 1, size - 1, data[0] % 4 == 2);
	}
	return 0;
}
