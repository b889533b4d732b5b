/* SHA256SUMS and its signature: base64 decoding and public key PEM parsing
 * (common/sig.c), signature checking, and the reader's strict SHA256SUMS
 * parser (reached through a bundle of the six fixed entries).
 *
 * Fields separated by FUZZ_SEP: the SHA256SUMS text, in which "@O", "@F",
 * "@I" and "@M" become the hex digests of the fixed oci-layout,
 * ferry.json, index.json and manifest.json; the base64 signature; a PEM
 * public key (empty or absent: the test key). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breader.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decoding what was encoded gives it back. */
static void base64_roundtrip(const unsigned char *sig, size_t n)
{
	char *enc = sig_base64_encode(sig, n);
	unsigned char *dec = NULL;
	size_t decn = 0;

	if (!enc ||
	    sig_base64_decode(enc, strlen(enc), &dec, &decn, NULL) < 0 ||
	    decn != n || memcmp(dec, sig, n) != 0)
		abort();
	free(enc);
	free(dec);
}

static void read_fixed(const char *sums, size_t sumsn,
		       const struct fuzz_field *sig, const struct sig_key *key)
{
	struct fuzz_tar t;
	struct bundle_header h;
	struct ferr e = {0};
	static const char *const names[4] = {BUNDLE_OCI_LAYOUT,
					     BUNDLE_FERRY_JSON,
					     BUNDLE_INDEX_JSON,
					     BUNDLE_MANIFEST_JSON};

	memset(&t, 0, sizeof(t));
	for (int i = 0; i < 4; i++)
		fuzz_tar_add(&t, names[i], fuzz_fixed_docs[i],
			     strlen(fuzz_fixed_docs[i]));
	fuzz_tar_add(&t, BUNDLE_SUMS, sums, sumsn);
	fuzz_tar_add(&t, BUNDLE_SUMS_SIG, sig->p, sig->n);
	fuzz_tar_end(&t);
	if (bundle_read(fuzz_memfile(t.p, t.n), key, NULL, NULL, &h, NULL,
			&e) == 0)
		abort();		/* this ferry.json can never pass */
	if (getenv("FERRY_FUZZ_DEBUG")) /* to check what a seed reaches */
		fprintf(stderr, "%s: %s\n", key ? "verify" : "inspect", e.msg);
	bundle_header_release(&h);
	fuzz_tar_release(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_field f[FUZZ_MAX_FIELDS];
	size_t nf = fuzz_split(data, size, f), sumsn;
	struct fuzz_field nosig = {NULL, 0};
	const struct fuzz_field *sigf = nf > 1 ? &f[1] : &nosig;
	unsigned char *sig = NULL;
	size_t sign = 0;
	struct sig_key k;
	const struct sig_key *key = fuzz_test_public();
	bool own_key = false;
	char *sums;
	struct ferr e = {0};

	if (sigf->n && sig_base64_decode((const char *)sigf->p, sigf->n, &sig,
					 &sign, &e) == 0)
		base64_roundtrip(sig, sign);
	if (nf > 2 && f[2].n) {
		own_key = sig_load_public_mem(&k, f[2].p, f[2].n, "key", &e) ==
			  0;
		key = own_key ? &k : NULL;
	}
	sums = fuzz_sums_expand(&f[0], &sumsn);
	if (key && sig)
		(void)sig_verify(key, sums, sumsn, sig, sign, &e);
	read_fixed(sums, sumsn, sigf, NULL);
	if (key)
		read_fixed(sums, sumsn, sigf, key);
	if (own_key)
		sig_key_release(&k);
	free(sums);
	free(sig);
	return 0;
}
