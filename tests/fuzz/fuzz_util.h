/* Shared by the fuzz targets and the seed generator: input splitting, a
 * memory file for readers that take a path, the fixed test key, and a
 * small bundle writer (ustar, optionally gzip or zstd) that signs with it.
 *
 * The test key is public on purpose: it exists so that fuzzed and seed
 * bundles carry signatures that verify.  It signs nothing else. */
#ifndef FERRY_FUZZ_UTIL_H
#define FERRY_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sig.h"

/* Structured inputs are fields separated by this line. */
#define FUZZ_SEP "\n--\n"
#define FUZZ_MAX_FIELDS 16

struct fuzz_field {
	const unsigned char *p;
	size_t n;
};

/* Split p[0..n) at FUZZ_SEP into at most FUZZ_MAX_FIELDS fields (the last
 * one takes the rest); returns the count (at least 1). */
size_t fuzz_split(const unsigned char *p, size_t n, struct fuzz_field *f);
/* malloc'd NUL-terminated copy of a field. */
char *fuzz_strdup(const struct fuzz_field *f);

/* A path ("/proc/self/fd/N") to a memory file now holding p[0..n); the
 * same file is rewritten by the next call. */
const char *fuzz_memfile(const void *p, size_t n);

extern const char fuzz_test_pub_pem[];
/* The test key pair, loaded once; aborts if it cannot be. */
const struct sig_key *fuzz_test_private(void);
const struct sig_key *fuzz_test_public(void);

/* A minimal ustar writer into a growing memory buffer. */
struct fuzz_tar {
	unsigned char *p;
	size_t n, cap;
};
void fuzz_tar_add(struct fuzz_tar *t, const char *name, const void *data,
		  size_t n);
/* Two zero blocks: the end-of-archive marker. */
void fuzz_tar_end(struct fuzz_tar *t);
void fuzz_tar_release(struct fuzz_tar *t);
/* Compress t in place: 0 none, 1 gzip, 2 zstd. */
void fuzz_tar_compress(struct fuzz_tar *t, int how);

/* One image's parts; documents get their digests filled in. */
struct fuzz_image {
	const char *ref; /* full normalised reference */
	/* manifest text: NULL for the default OCI manifest, else a template
	 * where "@C" becomes the config digest, "@S" its size, "@0".."@7"
	 * the layers' digests and "#0".."#7" their sizes */
	const char *manifest;
	const char *manifest_type; /* descriptor media type; NULL: OCI */
	struct fuzz_field config;
	struct fuzz_field layers[8];
	size_t nlayers;
};

/* A signed bundle of these documents (oci-layout, ferry.json, index.json,
 * manifest.json) and blobs, in this order, named by their digests, with
 * SHA256SUMS and its signature made here; uncompressed. */
void fuzz_docs_bundle(struct fuzz_tar *t, const void *const doc[4],
		      const size_t docn[4], const void *const *blob,
		      const size_t *blobn, size_t nblobs);

/* A whole signed bundle for one image (uncompressed; see
 * fuzz_tar_compress).  Returns 0, or -1 when the library refused a part
 * (an invalid reference, say), with t left empty. */
int fuzz_bundle_build(struct fuzz_tar *t, const struct fuzz_image *im,
		      time_t created, const char *channel, uint64_t sequence);

/* Fixed oci-layout, ferry.json, index.json and manifest.json for bundles
 * that exercise SHA256SUMS (the ferry.json never passes). */
extern const char *const fuzz_fixed_docs[4];
/* A SHA256SUMS template with "@O", "@F", "@I", "@M" replaced by the hex
 * digests of those documents; malloc'd, *outn its length. */
char *fuzz_sums_expand(const struct fuzz_field *f, size_t *outn);

#endif
