/* Named caps for every size read from outside (network, bundle, files).
 * Nothing is ever allocated from a size the input claims; readers grow a
 * buffer up to one of these limits and fail past it. */
#ifndef FERRY_BOUNDS_H
#define FERRY_BOUNDS_H

#define FERRY_MIB (1024u * 1024u)

/* Any JSON document: manifest, index, config, index.json, ferry.json. */
#define FERRY_MAX_JSON (4u * FERRY_MIB)
/* Body of a registry error answer, kept only to quote its message. */
#define FERRY_MAX_ERROR_BODY (1u * FERRY_MIB)
/* Body of a token server answer. */
#define FERRY_MAX_TOKEN_BODY (1u * FERRY_MIB)
/* A Docker config.json credentials file. */
#define FERRY_MAX_AUTHFILE (4u * FERRY_MIB)
/* What a Docker credential helper may print for one `get`, and how long
 * it may take (seconds) before it is killed: a helper that hangs (a
 * keychain prompt nobody answers) must not hold a command forever. */
#define FERRY_MAX_CREDHELPER_OUTPUT (64u * 1024u)
#define FERRY_CREDHELPER_TIMEOUT_S 30
/* An images file given with -f. */
#define FERRY_MAX_IMAGES_FILE (16u * FERRY_MIB)
/* One HTTP header line we keep (Location, WWW-Authenticate, ...). */
#define FERRY_MAX_HEADER (16u * 1024u)
/* Largest blob size a descriptor may declare (1 TiB). */
#define FERRY_MAX_BLOB_SIZE (1ull << 40)
/* Redirects followed for one request. */
#define FERRY_MAX_REDIRECTS 5
/* Indexes nested in indexes below an image's top one. */
#define FERRY_MAX_INDEX_DEPTH 4
/* Entries of one index (real ones list a few dozen platforms). */
#define FERRY_MAX_INDEX_ENTRIES 1000
/* Distinct manifests and indexes one image may bring (each fetched once). */
#define FERRY_MAX_IMAGE_MANIFESTS 4096
/* Nesting depth accepted in any JSON document. */
#define FERRY_MAX_JSON_DEPTH 32
/* A Retry-After longer than this is clamped (seconds). */
#define FERRY_MAX_RETRY_AFTER 60
/* A transfer that moves fewer than FERRY_STALL_RATE bytes a second on
 * average over a window of FERRY_STALL_SECONDS has stalled: a server
 * trickling a few bytes a second would otherwise hold it forever. */
#define FERRY_STALL_RATE 1024
#define FERRY_STALL_SECONDS 30
/* Times one request may stall before it is given up (retries included), so
 * that a trickling registry costs a command about two minutes at most. */
#define FERRY_STALL_ATTEMPTS 3

/* Supply-chain metadata (SPEC §6).  A cosign simple-signing payload is a
 * few hundred bytes: anything larger is not a signature we check. */
#define FERRY_MAX_COSIGN_PAYLOAD (64u * 1024u)
/* Layers of a cosign tag's manifest that import merges (signatures or
 * attestations of one image, the site's and upstream's). */
#define FERRY_MAX_SIG_LAYERS 1000u
/* Attachments of attachments followed below an image's manifests (a
 * signature on an SBOM is depth 2). */
#define FERRY_MAX_ATTACH_DEPTH 4
/* Attachments one image may bring, all depths together. */
#define FERRY_MAX_ATTACHED 1000
/* Tags read from one repository's tag list (to learn which attachment
 * tags exist without asking for each), and pages of it. */
#define FERRY_MAX_TAGS 100000
#define FERRY_MAX_TAG_PAGES 100
/* Pages of one referrers answer followed. */
#define FERRY_MAX_REFERRER_PAGES 16

#endif
