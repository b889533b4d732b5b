/* Streaming bundle reader: the gate of the disconnected side.
 *
 * Reads a bundle (.tar, .tar.zst or .tar.gz, detected from content) from a
 * file or standard input in one pass, never extracting it, with memory
 * bounded whatever its size.  It checks everything SPEC section 4 asks:
 * the entry order; the signature over SHA256SUMS with the operator's key
 * before any blob is handed out; every entry's hash against SHA256SUMS;
 * every blob's content against its name and its size against every
 * descriptor; names, types, duplicates, JSON size and shape, media types,
 * references; zstd window size; truncation.
 *
 * The consumer (verify, import) sees a blob through blob_begin/blob_data
 * and may act on it only once blob_end says its content matched; on any
 * failure blob_abort is called for a blob in progress.
 */
#ifndef FERRY_BREADER_H
#define FERRY_BREADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bundle.h"
#include "digest.h"
#include "err.h"
#include "sig.h"

/* Largest zstd window accepted (8 MiB): bounds decompression memory. */
#define BREADER_ZSTD_WINDOW_LOG_MAX 23
/* Caps on the fixed entries. */
#define BREADER_MAX_OCI_LAYOUT 4096u
#define BREADER_MAX_SUMS (16u * 1024u * 1024u)
#define BREADER_MAX_SIG 16384u
/* An attachment's artifactType in ferry.json. */
#define BREADER_MAX_ARTIFACT_TYPE 255u
/* Base bundles one delta may name. */
#define BREADER_MAX_BASES 64u

enum bkind { BK_INDEX = 0, BK_MANIFEST = 1, BK_CONFIG = 2, BK_LAYER = 3 };

struct bundle_blob {
	const char *path;
	struct digest digest;
	uint64_t size;
	enum bkind kind;
	const char *media_type; /* from the descriptor that named it */
	/* index, manifest, config: the whole document, in blob_end */
	const unsigned char *doc;
	size_t doc_len;
};

/* What the signed header says; valid from the header callback on. */
struct bundle_header {
	char bundle_id[65];
	char created[32];
	char *channel;
	uint64_t sequence;
	char key_id[72];
	struct bundle_image *images; /* ref, digest, media type, platforms,
					size, attached */
	size_t nimages;
	size_t nentries; /* entries SHA256SUMS lists, blobs included */
	size_t nblobs;
	const char *compression; /* "zstd", "gzip", "none" */
	bool verified;		 /* signature checked (false in inspect mode) */
	/* a delta: the base bundle ids it needs, and what it leaves out */
	char **bases;
	size_t nbases;
	struct digest *omitted;
	size_t nomitted;
	/* every blob SHA256SUMS lists (filled by bundle_read_head only) */
	struct digest *listed;
	size_t nlisted;
	/* read from split volumes: how many */
	size_t nparts;
};

struct bundle_ops {
	int (*header)(void *ctx, const struct bundle_header *h, struct ferr *e);
	int (*blob_begin)(void *ctx, const struct bundle_blob *b,
			  struct ferr *e);
	int (*blob_data)(void *ctx, const void *p, size_t n, struct ferr *e);
	int (*blob_end)(void *ctx, const struct bundle_blob *b, struct ferr *e);
	void (*blob_abort)(void *ctx);
	/* Optional: every decompressed tar byte, in order, as it is read and
	 * BEFORE it is checked (trust none of it until bundle_read returns
	 * 0).  Lets unpack hand a loader the plain tar in the same pass. */
	int (*tar_data)(void *ctx, const void *p, size_t n, struct ferr *e);
};

struct bundle_stats {
	uint64_t entries;
	uint64_t blobs;
	uint64_t blob_bytes;
	uint64_t tar_bytes; /* uncompressed entry bytes read */
};

/* Read and check `path` ("-": standard input; "X.parts" or "X.001" with
 * X.parts beside it: split volumes, their signed list checked first with
 * `key` and each part's hash as it is read).  `key` NULL means inspect
 * mode: only the header entries are read and nothing is verified.  `hdr`
 * is filled once the header has been read (release it with
 * bundle_header_release even on failure). */
int bundle_read(const char *path, const struct sig_key *key,
		const struct bundle_ops *ops, void *ctx,
		struct bundle_header *hdr, struct bundle_stats *st,
		struct ferr *e);
void bundle_header_release(struct bundle_header *h);

/* Read only the leading entries (through SHA256SUMS.sig) and what they
 * say, with the signature checked against `key`: cheap whatever the
 * bundle's size.  Fills hdr->listed. */
int bundle_read_head(const char *path, const struct sig_key *key,
		     struct bundle_header *hdr, struct ferr *e);

#endif
