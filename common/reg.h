/* Registry client (OCI distribution API over libcurl).
 *
 * One client talks to one registry host and keeps its connection(s) open
 * across requests.  A client is used by one thread at a time; parallel
 * transfers use one client each.
 *
 * Nothing a registry says is trusted: manifests are hashed locally and
 * checked against the digest asked for (the Docker-Content-Digest header is
 * only compared, never believed), their size is capped, blobs are hashed and
 * counted while they stream.  Credentials go only to the registry host they
 * are for: redirects and token realms on other hosts get none.
 */
#ifndef FERRY_REG_H
#define FERRY_REG_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "auth.h"
#include "digest.h"
#include "err.h"

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST                                                         \
	"application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST                                                     \
	"application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define MT_DOCKER_SCHEMA1_SIGNED                                               \
	"application/vnd.docker.distribution.manifest.v1+prettyjws"

struct reg_opts {
	const char *ca_file;	     /* extra trusted CAs (PEM) or NULL */
	const char *const *insecure; /* "HOST" or "HOST:PORT" entries */
	size_t n_insecure;
	const struct auth_store *creds; /* may be NULL: anonymous */
	unsigned max_attempts;		/* per request; 0: default (5) */
	unsigned backoff_ms;		/* first retry delay; 0: default */
	unsigned backoff_max_ms;	/* cap on one delay; 0: default */
	long connect_timeout_s;		/* 0: default (15) */
	/* Stall window: a transfer moving less than FERRY_STALL_RATE bytes a
	 * second over this many seconds has stalled; 0: FERRY_STALL_SECONDS.
	 * Only tests set it (to keep them short). */
	long stall_timeout_s;
	/* Set asynchronously (SIGINT): transfers stop with FERR_INTERRUPT. */
	atomic_int *cancel; /* set (by a signal handler too): stop soon */
	/* Diagnostics (retries, redirects) for -v; never sees credentials. */
	void (*log)(void *ctx, const char *msg);
	void *log_ctx;
};

struct reg_client;

/* `host` is the API host ("registry-1.docker.io", "127.0.0.1:5000").  No
 * network traffic happens here. `o` must outlive the client. */
int reg_client_init(struct reg_client **out, const char *host,
		    const struct reg_opts *o, struct ferr *e);
void reg_client_release(struct reg_client *c);
const char *reg_client_host(const struct reg_client *c);

/* GET /v2/: reachable, and which scheme (for --insecure-registry hosts).
 * Called implicitly before the first request. */
int reg_ping(struct reg_client *c, struct ferr *e);

/* Is `host` ("h" or "h:port") covered by the --insecure-registry list? */
bool reg_host_insecure(const struct reg_opts *o, const char *host);

struct reg_manifest {
	unsigned char *data; /* exact bytes as served */
	size_t len;
	char *media_type;
	struct digest digest; /* computed locally */
};
void reg_manifest_release(struct reg_manifest *m);

/* Fetch a manifest or index by tag or digest.  The Accept list covers OCI
 * index/manifest and Docker v2 manifest/list; schema1 is refused.  When
 * `object` is a digest the content must hash to it (FERR_VERIFY). */
int reg_get_manifest(struct reg_client *c, const char *repo, const char *object,
		     struct reg_manifest *out, struct ferr *e);

/* HEAD a manifest: what the registry claims (digest from its header, which
 * must be verified by a later GET), size and media type.  *found is false
 * on 404. */
struct reg_head {
	bool found;
	bool has_digest;
	struct digest digest;
	uint64_t size;
	char media_type[256];
};
int reg_head_manifest(struct reg_client *c, const char *repo,
		      const char *object, struct reg_head *out, struct ferr *e);
int reg_head_blob(struct reg_client *c, const char *repo,
		  const struct digest *d, struct reg_head *out, struct ferr *e);

/* Where blob bytes go.  `restart`, when set, discards what was written so
 * far (the server ignored a Range request); without it such a download
 * fails instead. */
struct reg_sink {
	int (*write)(void *ctx, const void *p, size_t n, struct ferr *e);
	int (*restart)(void *ctx, struct ferr *e);
	void *ctx;
};

struct reg_blob_req {
	const char *repo;
	struct digest digest;
	uint64_t size; /* from the descriptor; more or fewer bytes fail */
	/* Resume: the caller already holds the first `offset` bytes and
	 * passes the hash state over them (copied, not consumed). */
	uint64_t offset;
	const struct digest_ctx *prefix;
};

/* Stream a blob into `sink`, hashing and counting as it goes; a connection
 * lost midway continues with a Range request.  Returns FERR_VERIFY when the
 * content does not match the digest or the size; the sink has then seen
 * bad bytes and the caller must discard them. */
int reg_get_blob(struct reg_client *c, const struct reg_blob_req *rq,
		 const struct reg_sink *sink, struct ferr *e);

/* A small blob (a config, a signature payload) of `size` bytes into
 * *out (malloc'd, NUL-terminated), checked like reg_get_blob.  A size
 * over `max` fails with FERR_INPUT before anything is fetched. */
int reg_get_blob_mem(struct reg_client *c, const char *repo,
		     const struct digest *d, uint64_t size, size_t max,
		     unsigned char **out, struct ferr *e);

/* Pushing.  A blob upload: reg_upload_start (or a cross-repository mount
 * when `mount` and `from_repo` are given: *mounted says whether it took),
 * then the data (reg_upload_stream, or with reg_upload_finish for a small
 * blob), then reg_upload_finish with the digest -- which the caller
 * calls only once it has checked the content itself -- or
 * reg_upload_cancel.  The upload URL is the registry's Location (it may
 * change after every chunk); credentials never follow it to another
 * host. */
int reg_upload_start(struct reg_client *c, const char *repo,
		     const struct digest *mount, const char *from_repo,
		     bool *mounted, char **upload_url, struct ferr *e);
int reg_upload_finish(struct reg_client *c, char **upload_url,
		      const struct digest *d, const void *p, size_t n,
		      struct ferr *e);
void reg_upload_cancel(struct reg_client *c, const char *upload_url);
/* Send `size` bytes pulled from `readfn` (curl's read-callback contract;
 * CURL_READFUNC_ABORT stops the upload) in one streamed PATCH. */
int reg_upload_stream(struct reg_client *c, char **upload_url, uint64_t size,
		      size_t (*readfn)(char *, size_t, size_t, void *),
		      void *ctx, struct ferr *e);
/* PUT a manifest or index under a tag or its digest; when `want` is given
 * the registry must report that digest. */
int reg_put_manifest(struct reg_client *c, const char *repo, const char *ref,
		     const char *media_type, const void *p, size_t n,
		     const struct digest *want, struct ferr *e);

/* The same; *oci_subject (when not NULL) says whether the answer carried
 * an OCI-Subject header: a registry that indexes referrers itself (OCI
 * 1.1) sends one for a manifest with a "subject". */
int reg_put_manifest_subject(struct reg_client *c, const char *repo,
			     const char *ref, const char *media_type,
			     const void *p, size_t n, const struct digest *want,
			     bool *oci_subject, struct ferr *e);

/* Every tag of `repo` (following the registry's pages on its own host,
 * at most FERRY_MAX_TAGS); *tags is malloc'd, each tag too. */
int reg_list_tags(struct reg_client *c, const char *repo, char ***tags,
		  size_t *n, struct ferr *e);

/* GET /v2/<repo>/referrers/<d> (OCI 1.1): the descriptors it lists (a
 * jansson array, new reference) and *supported = true; a registry without
 * the API (404, or 400/405 from one that does not know the path) gives 0
 * with *supported = false and *manifests NULL.  The
 * descriptors are the registry's word only: each is fetched by digest. */
int reg_get_referrers(struct reg_client *c, const char *repo,
		      const struct digest *d, json_t **manifests,
		      bool *supported, struct ferr *e);

/* A call to the registry host's own REST API (Harbor's /api/v2.0/...),
 * with the host's credentials as Basic auth when it has any.  0 on 2xx;
 * otherwise -1 with *status (and e->code) the HTTP status, 0 when there
 * was no answer. */
int reg_api(struct reg_client *c, const char *method, const char *path,
	    const char *json_body, long *status, struct ferr *e);

/* Statistics, for tests and reports. */
struct reg_stats {
	unsigned long requests;
	unsigned long retries;
	unsigned long token_fetches;
	unsigned long connections; /* new connections opened */
	uint64_t bytes_in;
};
void reg_client_stats(const struct reg_client *c, struct reg_stats *out);

/* Classify a manifest body: returns the media type it declares or implies
 * (mediaType field, else by shape), or NULL if it is not a supported
 * manifest.  Sets e with the reason on NULL. */
const char *reg_manifest_kind(const unsigned char *data, size_t len,
			      const char *content_type, struct ferr *e);

/* "https" or "http" once the client has pinged the registry, else NULL. */
const char *reg_client_scheme(const struct reg_client *c);

/* Upload a blob the caller has checked, in one request where the registry
 * takes it (POST with the digest and the data: *one_request), else in the
 * upload session it opens instead (PUT to its Location).  A registry that
 * opens a session once always will: use reg_upload_start and
 * reg_upload_finish then, not to send the data twice. */
int reg_upload_blob(struct reg_client *c, const char *repo,
		    const struct digest *d, const void *p, size_t n,
		    bool *one_request, struct ferr *e);

/* Does `repo` have any tag?  *has is false only when the registry says the
 * repository is unknown (404) or lists no tags; anything else it says
 * counts as yes. */
int reg_repo_has_tags(struct reg_client *c, const char *repo, bool *has,
		      struct ferr *e);

/* Does a 206 answer's Content-Range value `cr` ("bytes START-END/TOTAL")
 * cover exactly [start, total) of a blob of `total` bytes?  Used by
 * reg_get_blob; declared here only so that tests/fuzz can reach it. */
bool reg_content_range_ok(const char *cr, uint64_t start, uint64_t total);

#endif
