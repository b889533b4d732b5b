#include "reg.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "bounds.h"

#define DEFAULT_ATTEMPTS 5
#define DEFAULT_BACKOFF_MS 250
#define DEFAULT_BACKOFF_MAX_MS 8000
#define DEFAULT_CONNECT_TIMEOUT 15
#define MAX_TOKENS 64
/* Renew a token this long before the server says it expires. */
#define TOKEN_MARGIN_S 10

static const char ACCEPT_MANIFESTS[] = "Accept: " MT_OCI_INDEX
				       ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST
				       ", " MT_DOCKER_MANIFEST;

struct token {
	char *scope;
	char *value; /* "Bearer ..." header line, wiped on release */
	time_t expires;
};

struct reg_client {
	CURL *curl;
	char *host;   /* API host as given: "h" or "h:port" */
	char *scheme; /* "https" or "http" once pinged */
	bool pinged;
	bool insecure;
	const struct reg_opts *o;
	const struct auth_cred *cred;
	struct auth_challenge chal; /* last challenge seen from the registry */
	char *basic;		    /* Basic header line, once asked for */
	struct token tokens[MAX_TOKENS];
	size_t ntokens;
	unsigned rng;
	struct reg_stats stats;
	char upload_scope[700]; /* scope of the upload in progress */
};

/* What the caller wants done with one request. */
enum body_mode { BODY_DISCARD, BODY_BUFFER, BODY_BLOB };

struct req {
	const char *method; /* "GET" or "HEAD" */
	char *url;	    /* current URL (changes on redirects) */
	const char *what;   /* subject for messages: "manifest 'repo:tag'" */
	const char *scope;  /* token scope(s), space separated; NULL: none */
	const char *accept; /* full "Accept: ..." header line or NULL */
	bool registry_auth; /* attach registry credentials, answer 401s */
	const char *fixed_auth; /* "Authorization: ..." for token requests */
	unsigned stalls;	/* times it stalled (a stalled probe counts) */
	enum body_mode mode;
	/* request body (POST, PUT, PATCH) */
	const void *send;
	size_t send_len;
	const char *content_type; /* full "Content-Type: ..." line */
	unsigned attempts;	  /* 0: the client's default */
	/* streamed request body (PATCH of a whole blob) */
	size_t (*readfn)(char *, size_t, size_t, void *);
	void *readctx;
	uint64_t read_size;
	struct buf *body; /* BODY_BUFFER: capped by its max */
	/* BODY_BLOB */
	const struct reg_blob_req *blob;
	const struct reg_sink *sink;
	struct digest_ctx hash;
	uint64_t received;
};

/* State of one HTTP exchange. */
struct xfer {
	struct reg_client *c;
	struct req *rq;
	long status;
	bool body_started;
	bool to_caller; /* body goes to the caller (2xx) */
	char *content_type, *dcd, *location, *www_auth, *retry_after,
	    *content_range, *oci_subject, *link;
	uint64_t content_length;
	bool has_length;
	struct buf errbody;
	/* why a write callback stopped the transfer */
	int abort_cat;
	struct ferr abort_err;
	/* the stall window in progress (see on_progress) */
	bool win_started;
	struct timespec win_start;
	uint64_t win_bytes;
	bool stalled;
};

static void logf_(struct reg_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_(struct reg_client *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!c->o->log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->o->log(c->o->log_ctx, msg);
}

/* ---- host helpers ---- */

/* Split "scheme://host[:port]/..." into host[:port] (lowercased). */
static char *url_hostport(const char *url)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL, *out = NULL;

	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		goto out;
	curl_url_get(u, CURLUPART_PORT, &port, 0);
	{
		size_t n = strlen(host) + (port ? strlen(port) + 1 : 0) + 1;
		out = malloc(n);
		if (out)
			snprintf(out, n, "%s%s%s", host, port ? ":" : "",
				 port ? port : "");
		for (char *q = out; q && *q; q++)
			if (*q >= 'A' && *q <= 'Z')
				*q = (char)(*q - 'A' + 'a');
	}
out:
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return out;
}

static char *url_scheme(const char *url)
{
	CURLU *u = curl_url();
	char *s = NULL, *out = NULL;

	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &s, 0) == CURLUE_OK)
		out = strdup(s);
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

/* Host part of "host[:port]" (handles "[v6]:port"), into out. */
static void host_only(const char *hp, char *out, size_t n)
{
	size_t len;

	if (hp[0] == '[') {
		const char *end = strchr(hp, ']');
		len = end ? (size_t)(end - hp + 1) : strlen(hp);
	} else {
		len = strcspn(hp, ":");
	}
	if (len >= n)
		len = n - 1;
	memcpy(out, hp, len);
	out[len] = '\0';
}

bool reg_host_insecure(const struct reg_opts *o, const char *host)
{
	char h[256], eh[256];

	host_only(host, h, sizeof(h));
	for (size_t i = 0; i < o->n_insecure; i++) {
		const char *ent = o->insecure[i];

		if (strcasecmp(ent, host) == 0)
			return true;
		host_only(ent, eh, sizeof(eh));
		/* an entry without a port covers every port of that host */
		if (strcmp(eh, ent) == 0 && strcasecmp(eh, h) == 0)
			return true;
	}
	return false;
}

static bool same_hostport(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

/* May credentials for registry `reg` go to a token realm on `realm`?  Only
 * the same host name (any port: Harbor-style realms live beside the
 * registry), or Docker Hub's own token service. */
static bool realm_may_get_creds(const char *reg, const char *realm)
{
	char a[256], b[256];

	host_only(reg, a, sizeof(a));
	host_only(realm, b, sizeof(b));
	if (strcasecmp(a, b) == 0)
		return true;
	return strcasecmp(a, "registry-1.docker.io") == 0 &&
	       strcasecmp(b, "auth.docker.io") == 0;
}

/* ---- client ---- */

int reg_client_init(struct reg_client **out, const char *host,
		    const struct reg_opts *o, struct ferr *e)
{
	struct reg_client *c;

	*out = NULL;
	if (!host || !*host || strlen(host) > 255 || strpbrk(host, "/@ \t\r\n"))
		return ferr_set(e, FERR_INPUT, 0,
				"invalid registry host '%.200s'",
				host ? host : "");
	c = calloc(1, sizeof(*c));
	if (!c)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	c->o = o;
	c->host = strdup(host);
	c->curl = curl_easy_init();
	if (!c->host || !c->curl) {
		reg_client_release(c);
		return ferr_set(e, FERR_IO, ENOMEM,
				"cannot create an HTTP client");
	}
	c->insecure = reg_host_insecure(o, host);
	if (auth_store_lookup(o->creds, host, &c->cred, e) < 0) {
		reg_client_release(c);
		return -1;
	}
	c->rng = (unsigned)time(NULL) ^ (unsigned)getpid() ^
		 (unsigned)(uintptr_t)c;
	*out = c;
	return 0;
}

void reg_client_release(struct reg_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	for (size_t i = 0; i < c->ntokens; i++) {
		free(c->tokens[i].scope);
		auth_wipe_free(c->tokens[i].value);
	}
	auth_wipe_free(c->basic);
	auth_challenge_release(&c->chal);
	free(c->host);
	free(c->scheme);
	free(c);
}

const char *reg_client_host(const struct reg_client *c)
{
	return c->host;
}

void reg_client_stats(const struct reg_client *c, struct reg_stats *out)
{
	*out = c->stats;
}

/* ---- one HTTP exchange ---- */

static char *dup_trim(const char *p, size_t n)
{
	while (n && (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' ' ||
		     p[n - 1] == '\t'))
		n--;
	while (n && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

static void xfer_reset_headers(struct xfer *x)
{
	free(x->content_type);
	free(x->dcd);
	free(x->location);
	free(x->www_auth);
	free(x->retry_after);
	free(x->content_range);
	free(x->oci_subject);
	free(x->link);
	x->content_type = x->dcd = x->location = x->www_auth = NULL;
	x->retry_after = x->content_range = x->oci_subject = x->link = NULL;
	x->has_length = false;
	x->content_length = 0;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;
	const char *colon;
	size_t kn;
	char **slot = NULL;

	if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		xfer_reset_headers(x); /* a new response (e.g. after 100) */
		return n;
	}
	if (n > FERRY_MAX_HEADER)
		return n; /* too long to be anything we use: ignore */
	colon = memchr(p, ':', n);
	if (!colon)
		return n;
	kn = (size_t)(colon - p);
#define IS(name) (kn == sizeof(name) - 1 && strncasecmp(p, name, kn) == 0)
	if (IS("content-type"))
		slot = &x->content_type;
	else if (IS("docker-content-digest"))
		slot = &x->dcd;
	else if (IS("location"))
		slot = &x->location;
	else if (IS("www-authenticate"))
		slot = &x->www_auth;
	else if (IS("retry-after"))
		slot = &x->retry_after;
	else if (IS("content-range"))
		slot = &x->content_range;
	else if (IS("oci-subject"))
		slot = &x->oci_subject;
	else if (IS("link"))
		slot = &x->link;
	else if (IS("content-length")) {
		char tmp[32];
		size_t vn = n - kn - 1;
		char *end;

		if (vn < sizeof(tmp)) {
			memcpy(tmp, colon + 1, vn);
			tmp[vn] = '\0';
			errno = 0;
			unsigned long long v = strtoull(tmp, &end, 10);
			if (!errno && end != tmp) {
				x->content_length = v;
				x->has_length = true;
			}
		}
	}
#undef IS
	if (slot && !*slot)
		*slot = dup_trim(colon + 1, n - kn - 1);
	return n;
}

/* Check "bytes START-END/TOTAL" against what we asked for. */
bool reg_content_range_ok(const char *cr, uint64_t start, uint64_t total)
{
	unsigned long long a, b, t;
	char tail;

	if (!cr || sscanf(cr, "bytes %llu-%llu/%llu%c", &a, &b, &t, &tail) != 3)
		return false;
	return a == start && t == total && b + 1 == total;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	struct req *rq = x->rq;
	size_t n = size * nmemb;

	if (!x->body_started) {
		x->body_started = true;
		curl_easy_getinfo(x->c->curl, CURLINFO_RESPONSE_CODE,
				  &x->status);
		x->to_caller = x->status >= 200 && x->status < 300;
		if (x->to_caller && rq->mode == BODY_BLOB) {
			const struct reg_blob_req *b = rq->blob;
			if (x->status == 206) {
				if (!reg_content_range_ok(x->content_range,
							  rq->received,
							  b->size)) {
					x->abort_cat = FERR_NETWORK;
					ferr_set(&x->abort_err, FERR_NETWORK,
						 206,
						 "registry '%s' answered a "
						 "range request for '%s' with "
						 "'Content-Range: %.100s'",
						 x->c->host, b->digest.str,
						 x->content_range
						     ? x->content_range
						     : "");
					return 0;
				}
			} else if (rq->received > 0) {
				/* Server ignored Range: start over. */
				if (!rq->sink->restart ||
				    rq->sink->restart(rq->sink->ctx,
						      &x->abort_err) < 0) {
					if (!rq->sink->restart)
						ferr_set(&x->abort_err,
							 FERR_NETWORK, 0,
							 "registry '%s' cannot "
							 "resume '%s'",
							 x->c->host,
							 b->digest.str);
					x->abort_cat = x->abort_err.cat;
					return 0;
				}
				rq->received = 0;
				digest_ctx_restart(&rq->hash);
			}
		}
	}
	if (!x->to_caller) {
		/* Error bodies are kept only to quote them; a huge one is cut. */
		size_t room = x->errbody.max - x->errbody.len;
		buf_append(&x->errbody, p, n < room ? n : room);
		if (n > room) {
			x->abort_cat = -1; /* stop reading, not an error */
			return 0;
		}
		return n;
	}
	x->c->stats.bytes_in += n;
	switch (rq->mode) {
	case BODY_DISCARD:
		return n;
	case BODY_BUFFER:
		if (buf_append(rq->body, p, n) < 0) {
			x->abort_cat = FERR_VERIFY;
			ferr_set(&x->abort_err, FERR_VERIFY, 0,
				 "%s from '%s' is larger than the %zu-byte "
				 "limit",
				 rq->what, x->c->host, rq->body->max);
			return 0;
		}
		return n;
	case BODY_BLOB: {
		const struct reg_blob_req *b = rq->blob;
		if (n > b->size || rq->received > b->size - n) {
			x->abort_cat = FERR_VERIFY;
			ferr_set(&x->abort_err, FERR_VERIFY, 0,
				 "blob '%s' from '%s' is larger than its "
				 "descriptor's %llu bytes",
				 b->digest.str, x->c->host,
				 (unsigned long long)b->size);
			return 0;
		}
		digest_ctx_update(&rq->hash, p, n);
		if (rq->sink->write(rq->sink->ctx, p, n, &x->abort_err) < 0) {
			x->abort_cat = x->abort_err.cat;
			return 0;
		}
		rq->received += n;
		return n;
	}
	}
	return n;
}

static long stall_window_s(const struct reg_client *c)
{
	return c->o->stall_timeout_s > 0 ? c->o->stall_timeout_s
					 : FERRY_STALL_SECONDS;
}

/* The stall rule, counted in consecutive windows from the start of the
 * exchange: a window that moves (either way) less than FERRY_STALL_RATE
 * bytes a second on average ends it.  An average, not curl's low-speed
 * check, so that a server sending short bursts cannot slip through it. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = ud;
	long window = stall_window_s(x->c);
	uint64_t moved = (uint64_t)dlnow + (uint64_t)ulnow;
	struct timespec now;
	long long ms;

	(void)dltotal;
	(void)ultotal;
	if (x->c->o->cancel && *x->c->o->cancel)
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!x->win_started) {
		x->win_started = true;
		x->win_start = now;
		x->win_bytes = moved;
		return 0;
	}
	ms = (long long)(now.tv_sec - x->win_start.tv_sec) * 1000 +
	     (now.tv_nsec - x->win_start.tv_nsec) / 1000000;
	if (ms < (long long)window * 1000)
		return 0;
	if (moved - x->win_bytes <
	    (uint64_t)FERRY_STALL_RATE * (uint64_t)window) {
		x->stalled = true;
		return 1;
	}
	x->win_start = now;
	x->win_bytes = moved;
	return 0;
}

static const char *token_for(struct reg_client *c, const char *scope)
{
	time_t now = time(NULL);

	for (size_t i = 0; i < c->ntokens; i++)
		if (strcmp(c->tokens[i].scope, scope ? scope : "") == 0 &&
		    c->tokens[i].expires > now)
			return c->tokens[i].value;
	return NULL;
}

/* Perform one exchange on rq->url.  Returns the curl code. */
static CURLcode perform(struct reg_client *c, struct req *rq, struct xfer *x)
{
	struct curl_slist *h = NULL;
	char *target = url_hostport(rq->url);
	char *scheme = url_scheme(rq->url);
	bool to_registry = target && same_hostport(target, c->host) &&
			   (!c->scheme ||
			    (scheme && !strcmp(scheme, c->scheme)));
	bool insecure_target = target && reg_host_insecure(c->o, target);
	char range[48];
	CURLcode cc;

	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, rq->url);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "ferry/" FERRY_VERSION);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT,
			 c->o->connect_timeout_s ? c->o->connect_timeout_s
						 : DEFAULT_CONNECT_TIMEOUT);
	curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, x);
	if (c->o->ca_file) {
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->o->ca_file);
		/* keep the system store too: --ca-file adds, it does not
		 * replace */
		curl_easy_setopt(c->curl, CURLOPT_CAPATH, "/etc/ssl/certs");
	}
	if (insecure_target) {
		curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (!strcmp(rq->method, "HEAD")) {
		curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
	} else if (strcmp(rq->method, "GET") != 0) {
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, rq->method);
		if (rq->readfn) {
			curl_easy_setopt(c->curl, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(c->curl, CURLOPT_READFUNCTION,
					 rq->readfn);
			curl_easy_setopt(c->curl, CURLOPT_READDATA,
					 rq->readctx);
			curl_easy_setopt(c->curl, CURLOPT_INFILESIZE_LARGE,
					 (curl_off_t)rq->read_size);
			curl_easy_setopt(c->curl, CURLOPT_UPLOAD_BUFFERSIZE,
					 512L * 1024L);
		} else if (strcmp(rq->method, "DELETE") != 0) {
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS,
					 rq->send ? rq->send : "");
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)rq->send_len);
		}
		h = curl_slist_append(h, "Expect:");
		if (rq->content_type)
			h = curl_slist_append(h, rq->content_type);
	}
	if (rq->mode == BODY_BLOB && rq->received > 0) {
		snprintf(range, sizeof(range), "%llu-",
			 (unsigned long long)rq->received);
		curl_easy_setopt(c->curl, CURLOPT_RANGE, range);
	}
	if (rq->accept)
		h = curl_slist_append(h, rq->accept);
	if (rq->fixed_auth)
		h = curl_slist_append(h, rq->fixed_auth);
	else if (rq->registry_auth && to_registry) {
		const char *tok = token_for(c, rq->scope);
		if (c->chal.scheme == AUTH_BEARER && tok)
			h = curl_slist_append(h, tok);
		else if (c->chal.scheme == AUTH_BASIC && c->basic)
			h = curl_slist_append(h, c->basic);
	}
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
	c->stats.requests++;
	cc = curl_easy_perform(c->curl);
	if (!x->body_started)
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &x->status);
	{
		long nc = 0;
		curl_easy_getinfo(c->curl, CURLINFO_NUM_CONNECTS, &nc);
		c->stats.connections += (unsigned long)nc;
	}
	/* The header list may hold credentials: wipe before freeing. */
	for (struct curl_slist *s = h; s; s = s->next)
		OPENSSL_cleanse(s->data, strlen(s->data));
	curl_slist_free_all(h);
	free(target);
	free(scheme);
	return cc;
}

/* Registry error bodies: {"errors":[{"code":..,"message":..}]}. */
static void describe_body(const struct buf *b, char *out, size_t n)
{
	json_t *root = NULL, *errs;
	size_t k = 0;

	out[0] = '\0';
	if (!b->len)
		return;
	root = json_loadb((const char *)b->data, b->len, 0, NULL);
	errs = root ? json_object_get(root, "errors") : NULL;
	if (json_is_array(errs) && json_array_size(errs) > 0) {
		json_t *e0 = json_array_get(errs, 0);
		const char *code =
		    json_string_value(json_object_get(e0, "code"));
		const char *msg =
		    json_string_value(json_object_get(e0, "message"));
		snprintf(out, n, "%s%s%s", code ? code : "",
			 code && msg ? ": " : "", msg ? msg : "");
	} else {
		/* first line, printable characters only */
		for (size_t i = 0; i < b->len && k + 1 < n && k < 200; i++) {
			unsigned char ch = b->data[i];
			if (ch == '\n' || ch == '\r')
				break;
			out[k++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
		}
		out[k] = '\0';
	}
	/* Control characters are left for the command layer to escape where
	 * it prints (it shows them as \x1b rather than losing them). */
	json_decref(root);
}

static unsigned rand_below(struct reg_client *c, unsigned n)
{
	c->rng = c->rng * 1103515245u + 12345u;
	return n ? (c->rng >> 8) % n : 0;
}

/* Delay before retry number `attempt` (1-based), honouring Retry-After. */
static unsigned retry_delay_ms(struct reg_client *c, unsigned attempt,
			       const char *retry_after)
{
	unsigned base = c->o->backoff_ms ? c->o->backoff_ms
					 : DEFAULT_BACKOFF_MS;
	unsigned cap = c->o->backoff_max_ms ? c->o->backoff_max_ms
					    : DEFAULT_BACKOFF_MAX_MS;
	unsigned long long d = base;

	for (unsigned i = 1; i < attempt && d < cap; i++)
		d *= 2;
	if (d > cap)
		d = cap;
	/* jitter: 50%..100% of the computed delay */
	d = d / 2 + rand_below(c, (unsigned)(d / 2 + 1));
	if (retry_after && *retry_after) {
		char *end;
		long long s;
		errno = 0;
		s = strtoll(retry_after, &end, 10);
		if (errno || *end != '\0') {
			time_t t = curl_getdate(retry_after, NULL);
			s = t > 0 ? (long long)(t - time(NULL)) : -1;
		}
		if (s >= 0) {
			if (s > FERRY_MAX_RETRY_AFTER)
				s = FERRY_MAX_RETRY_AFTER;
			if ((unsigned long long)s * 1000 > d)
				d = (unsigned long long)s * 1000;
		}
	}
	return (unsigned)d;
}

static int sleep_ms(struct reg_client *c, unsigned ms)
{
	struct timespec ts;

	/* sleep in slices so that Ctrl-C is seen quickly */
	while (ms > 0) {
		unsigned slice = ms > 100 ? 100 : ms;
		if (c->o->cancel && *c->o->cancel)
			return -1;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)slice * 1000000L;
		nanosleep(&ts, NULL);
		ms -= slice;
	}
	return c->o->cancel && *c->o->cancel ? -1 : 0;
}

static bool curl_retryable(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* What the user can do about a transport failure that retrying will not
 * fix; "" when there is nothing to add. */
static const char *transport_hint(const struct reg_client *c, CURLcode cc)
{
	switch (cc) {
	case CURLE_PEER_FAILED_VERIFICATION:
		return c->insecure
			   ? ""
			   : "; if the registry's certificate comes from "
			     "an internal CA, pass --ca-file CA.pem "
			     "(or --insecure-registry HOST to skip "
			     "verification)";
	case CURLE_SSL_CACERT_BADFILE:
		return "; check the file given with --ca-file (PEM "
		       "certificates)";
	case CURLE_SSL_CONNECT_ERROR:
		return c->insecure ? ""
				   : "; if the registry speaks plain HTTP, "
				     "pass --insecure-registry HOST";
	default:
		return "";
	}
}

static int fetch_token(struct reg_client *c, const char *scope, struct ferr *e);

/* Resolve a Location header against the current URL. */
static char *resolve_location(const char *base, const char *loc)
{
	CURLU *u = curl_url();
	char *s = NULL, *out = NULL;

	if (!u)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, loc, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
		out = strdup(s);
	curl_free(s);
	curl_url_cleanup(u);
	return out;
}

static void xfer_release(struct xfer *x)
{
	xfer_reset_headers(x);
	buf_release(&x->errbody);
}

/* What to do after one exchange of a request. */
enum step {
	STEP_DONE,  /* a 2xx answer: the request succeeded */
	STEP_FAIL,  /* e is filled */
	STEP_RETRY, /* a transient failure: back off, then try again */
	STEP_AGAIN  /* a redirect or an authentication round: go on at once */
};

/* Where one request stands across its exchanges. */
struct attempts {
	unsigned n, max; /* exchanges counted as attempts, and their cap */
	unsigned redirects;
	bool authed;	 /* the one authentication round is spent */
	const char *why; /* what the next retry is for (logged, last error) */
	char detail[300];
};

static void xfer_begin(struct xfer *x, struct reg_client *c, struct req *rq)
{
	xfer_release(x);
	memset(x, 0, sizeof(*x));
	x->c = c;
	x->rq = rq;
	buf_init(&x->errbody, FERRY_MAX_ERROR_BODY);
}

/* The transfer stopped on the stall rule: retried until the request has
 * stalled FERRY_STALL_ATTEMPTS times, so a trickling registry costs a
 * bounded time. */
static enum step judge_stall(struct reg_client *c, struct req *rq,
			     struct attempts *a, struct ferr *e)
{
	long window = stall_window_s(c);

	rq->stalls++;
	if (rq->stalls >= FERRY_STALL_ATTEMPTS || a->n >= a->max) {
		ferr_set(e, FERR_NETWORK, 0,
			 "registry '%s' stalled: less than %u bytes in %ld s "
			 "(%s, stalled %u time%s in %u attempt%s)",
			 c->host, (unsigned)(FERRY_STALL_RATE * window), window,
			 rq->what, rq->stalls, rq->stalls == 1 ? "" : "s", a->n,
			 a->n == 1 ? "" : "s");
		return STEP_FAIL;
	}
	snprintf(a->detail, sizeof(a->detail),
		 "stalled (less than %u bytes in %ld s)",
		 (unsigned)(FERRY_STALL_RATE * window), window);
	a->why = a->detail;
	return STEP_RETRY;
}

/* The exchange ended without an answer to judge: interrupted, stopped by
 * a callback, stalled or a transport error.  Returns -1 when it did end
 * with an answer (the status decides). */
static int judge_transport(struct reg_client *c, struct req *rq, struct xfer *x,
			   CURLcode cc, struct attempts *a, struct ferr *e)
{
	if (c->o->cancel && *c->o->cancel) {
		ferr_set(e, FERR_INTERRUPT, 0, "interrupted");
		return STEP_FAIL;
	}
	if (cc == CURLE_WRITE_ERROR && x->abort_cat > 0) {
		*e = x->abort_err;
		/* a bad Content-Range may be a proxy's fault: retry */
		if (x->abort_cat != FERR_NETWORK)
			return STEP_FAIL;
		a->why = e->msg;
		return STEP_RETRY;
	}
	if (cc == CURLE_ABORTED_BY_CALLBACK && x->stalled)
		return (int)judge_stall(c, rq, a, e);
	if (cc == CURLE_OK || (cc == CURLE_WRITE_ERROR && x->abort_cat < 0))
		return -1;
	if (!curl_retryable(cc) || a->n >= a->max) {
		ferr_set(e, FERR_NETWORK, 0,
			 "cannot reach registry '%s': %s (%s, after %u "
			 "attempt%s)%s",
			 c->host, curl_easy_strerror(cc), rq->what, a->n,
			 a->n == 1 ? "" : "s", transport_hint(c, cc));
		return STEP_FAIL;
	}
	a->why = curl_easy_strerror(cc);
	return STEP_RETRY;
}

/* A 401 with a challenge, the first time: take the scheme it asks for and
 * get what it needs (Basic header line, or a token), then ask again. */
static enum step answer_challenge(struct reg_client *c, struct req *rq,
				  struct xfer *x, struct ferr *e)
{
	struct auth_challenge ch;

	if (auth_challenge_parse(&ch, x->www_auth, e) < 0)
		return STEP_FAIL;
	if (ch.scheme == AUTH_NONE) {
		auth_challenge_release(&ch);
		ferr_set(e, FERR_AUTH, 401,
			 "registry '%s' asks for an unsupported authentication "
			 "scheme: '%.100s'",
			 c->host, x->www_auth);
		return STEP_FAIL;
	}
	auth_challenge_release(&c->chal);
	c->chal = ch;
	if (ch.scheme != AUTH_BASIC)
		return fetch_token(c, rq->scope ? rq->scope : ch.scope, e) < 0
			   ? STEP_FAIL
			   : STEP_AGAIN;
	if (!c->cred) {
		ferr_set(e, FERR_AUTH, 401,
			 "registry '%s' requires authentication and no "
			 "credentials for it were found",
			 c->host);
		return STEP_FAIL;
	}
	if (!c->cred->pass) {
		ferr_set(e, FERR_AUTH, 401,
			 "registry '%s' asks for Basic authentication, but its "
			 "credential helper gave an identity token, which only "
			 "a token service takes",
			 c->host);
		return STEP_FAIL;
	}
	if (!c->basic && !(c->basic = auth_basic_header(c->cred))) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		return STEP_FAIL;
	}
	return STEP_AGAIN;
}

/* 401 after authenticating, or 403: refused, quoting the registry. */
static enum step fail_denied(struct reg_client *c, struct req *rq,
			     struct xfer *x, struct ferr *e)
{
	char body[256];

	describe_body(&x->errbody, body, sizeof(body));
	if (x->status == 401 && c->chal.scheme == AUTH_BASIC)
		ferr_set(e, FERR_AUTH, 401,
			 "authentication to registry '%s' failed for user "
			 "'%s'%s%s",
			 c->host, c->cred ? c->cred->user : "",
			 body[0] ? ": " : "", body);
	else
		ferr_set(e, FERR_AUTH, (int)x->status,
			 "registry '%s' denied access to %s (%ld%s%s)", c->host,
			 rq->what, x->status, body[0] ? " " : "", body);
	return STEP_FAIL;
}

/* Follow a redirect ourselves: https only (or an --insecure-registry
 * host), a bounded number of times, and credentials given for this request
 * stay with its host. */
static enum step follow_redirect(struct reg_client *c, struct req *rq,
				 struct xfer *x, struct attempts *a,
				 struct ferr *e)
{
	char *next = NULL, *ns = NULL, *nh = NULL, *oh = NULL;
	enum step st = STEP_FAIL;

	if (++a->redirects > FERRY_MAX_REDIRECTS) {
		ferr_set(e, FERR_NETWORK, (int)x->status,
			 "too many redirects from registry '%s' for %s",
			 c->host, rq->what);
		goto out;
	}
	next = resolve_location(rq->url, x->location);
	ns = next ? url_scheme(next) : NULL;
	nh = next ? url_hostport(next) : NULL;
	if (!next || !ns || !nh ||
	    (strcmp(ns, "https") != 0 &&
	     !(strcmp(ns, "http") == 0 && reg_host_insecure(c->o, nh)))) {
		ferr_set(e, FERR_NETWORK, (int)x->status,
			 "registry '%s' redirected %s to '%.200s', which is not "
			 "an https URL (plain http is allowed only for "
			 "--insecure-registry hosts)",
			 c->host, rq->what, x->location);
		goto out;
	}
	logf_(c, "redirect %s -> %s", rq->what, nh);
	oh = url_hostport(rq->url);
	if (!oh || !same_hostport(oh, nh))
		rq->fixed_auth = NULL;
	free(rq->url);
	rq->url = next;
	next = NULL;
	st = STEP_AGAIN;
out:
	free(next);
	free(ns);
	free(nh);
	free(oh);
	return st;
}

/* 429 or 5xx: retried, until the attempts are spent. */
static enum step server_busy(struct reg_client *c, struct req *rq,
			     struct xfer *x, struct attempts *a, struct ferr *e)
{
	char body[256];

	snprintf(a->detail, sizeof(a->detail), "HTTP %ld", x->status);
	a->why = a->detail;
	if (a->n < a->max)
		return STEP_RETRY;
	describe_body(&x->errbody, body, sizeof(body));
	ferr_set(e, FERR_NETWORK, (int)x->status,
		 "registry '%s' answered %ld for %s after %u attempts%s%s",
		 c->host, x->status, rq->what, a->n, body[0] ? ": " : "", body);
	return STEP_FAIL;
}

/* Any other answer fails at once with the registry's own message. */
static enum step fail_status(struct reg_client *c, struct req *rq,
			     struct xfer *x, struct ferr *e)
{
	char body[256];

	describe_body(&x->errbody, body, sizeof(body));
	ferr_set(e, FERR_NETWORK, (int)x->status,
		 "registry '%s' answered %ld for %s%s%s", c->host, x->status,
		 rq->what, body[0] ? ": " : "", body);
	return STEP_FAIL;
}

/* Decide what one exchange means for the request. */
static enum step judge(struct reg_client *c, struct req *rq, struct xfer *x,
		       CURLcode cc, struct attempts *a, struct ferr *e)
{
	int t = judge_transport(c, rq, x, cc, a, e);

	if (t >= 0)
		return (enum step)t;
	if (x->status == 401 && rq->registry_auth && !a->authed &&
	    x->www_auth) {
		a->authed = true;
		return answer_challenge(c, rq, x, e);
	}
	if (x->status == 401 || x->status == 403)
		return fail_denied(c, rq, x, e);
	if (x->status >= 300 && x->status < 400 && x->location)
		return follow_redirect(c, rq, x, a, e);
	if (x->status == 429 || x->status >= 500)
		return server_busy(c, rq, x, a, e);
	if (x->status >= 200 && x->status < 300)
		return STEP_DONE;
	return fail_status(c, rq, x, e);
}

/* Back off before the next attempt (e still holds the last error). */
static int wait_to_retry(struct reg_client *c, struct req *rq, struct xfer *x,
			 struct attempts *a, struct ferr *e)
{
	unsigned d;

	if (a->n >= a->max) {
		if (e->cat == FERR_OK)
			ferr_set(e, FERR_NETWORK, 0, "registry '%s': %s (%s)",
				 c->host, a->why ? a->why : "failed", rq->what);
		return -1;
	}
	d = retry_delay_ms(c, a->n, x->retry_after);
	c->stats.retries++;
	logf_(c, "retrying %s on '%s' in %u ms after: %s", rq->what, c->host, d,
	      a->why ? a->why : "error");
	if (sleep_ms(c, d) < 0)
		return ferr_set(e, FERR_INTERRUPT, 0, "interrupted");
	ferr_clear(e);
	return 0;
}

/* Run a request to completion: retries with backoff, manual redirects,
 * one authentication round.  On success *out_x holds the final exchange
 * (caller releases it). */
static int request(struct reg_client *c, struct req *rq, struct xfer *out_x,
		   struct ferr *e)
{
	struct attempts a;
	struct xfer x;
	int rc = -1;

	memset(&a, 0, sizeof(a));
	memset(&x, 0, sizeof(x));
	a.max = rq->attempts ? rq->attempts
			     : (c->o->max_attempts ? c->o->max_attempts
						   : DEFAULT_ATTEMPTS);
	for (;;) {
		enum step st;

		xfer_begin(&x, c, rq);
		a.n++;
		st = judge(c, rq, &x, perform(c, rq, &x), &a, e);
		if (st == STEP_DONE) {
			*out_x = x;
			memset(&x, 0, sizeof(x));
			rc = 0;
			break;
		}
		if (st == STEP_FAIL)
			break;
		if (st == STEP_AGAIN) {
			a.n--; /* not a failure */
			continue;
		}
		if (wait_to_retry(c, rq, &x, &a, e) < 0)
			break;
	}
	xfer_release(&x);
	return rc;
}

static char *mkurl(struct reg_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *mkurl(struct reg_client *c, const char *fmt, ...)
{
	char path[1024];
	va_list ap;
	size_t n;
	char *u;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	n = strlen(c->scheme) + 3 + strlen(c->host) + strlen(path) + 1;
	u = malloc(n);
	if (u)
		snprintf(u, n, "%s://%s%s", c->scheme, c->host, path);
	return u;
}

/* ---- tokens ---- */

static int store_token(struct reg_client *c, const char *scope, const char *tok,
		       long long expires_in, struct ferr *e)
{
	struct token *t = NULL;
	size_t n = strlen(tok) + sizeof("Authorization: Bearer ");

	for (size_t i = 0; i < c->ntokens; i++)
		if (!strcmp(c->tokens[i].scope, scope))
			t = &c->tokens[i];
	if (!t) {
		if (c->ntokens == MAX_TOKENS) {
			/* drop the oldest */
			free(c->tokens[0].scope);
			auth_wipe_free(c->tokens[0].value);
			memmove(&c->tokens[0], &c->tokens[1],
				(MAX_TOKENS - 1) * sizeof(c->tokens[0]));
			c->ntokens--;
		}
		t = &c->tokens[c->ntokens];
		memset(t, 0, sizeof(*t));
		t->scope = strdup(scope);
		if (!t->scope)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		c->ntokens++;
	}
	auth_wipe_free(t->value);
	t->value = malloc(n);
	if (!t->value)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	snprintf(t->value, n, "Authorization: Bearer %s", tok);
	if (expires_in <= 0)
		expires_in = 60; /* the token spec's default */
	if (expires_in > 24 * 3600)
		expires_in = 24 * 3600;
	t->expires = time(NULL) + (time_t)expires_in -
		     (expires_in > 2 * TOKEN_MARGIN_S ? TOKEN_MARGIN_S : 0);
	return 0;
}

static int append_param(struct buf *u, const char *k, const char *v)
{
	char *esc = curl_easy_escape(NULL, v, 0);
	int rc;

	if (!esc)
		return -1;
	rc = (buf_append_str(u, strchr((char *)u->data, '?') ? "&" : "?") ||
	      buf_append_str(u, k) || buf_append_str(u, "=") ||
	      buf_append_str(u, esc))
		 ? -1
		 : 0;
	curl_free(esc);
	return rc;
}

/* The token realm must be https (or an --insecure-registry host).  Returns
 * its host[:port], or NULL with e filled. */
static char *token_realm_host(struct reg_client *c, struct ferr *e)
{
	const char *realm = c->chal.realm;
	char *host = url_hostport(realm);
	char *scheme = url_scheme(realm);

	if (!host || !scheme ||
	    (strcmp(scheme, "https") != 0 &&
	     !(strcmp(scheme, "http") == 0 && reg_host_insecure(c->o, host)))) {
		ferr_set(e, FERR_AUTH, 401,
			 "registry '%s' sent token realm '%.200s', which is "
			 "not an https URL (plain http is allowed only for "
			 "--insecure-registry hosts)",
			 c->host, realm);
		free(host);
		host = NULL;
	}
	free(scheme);
	return host;
}

/* One "scope" parameter per space-separated scope asked for. */
static int append_scopes(struct buf *b, const char *scope)
{
	for (const char *p = scope ? scope : ""; *p;) {
		size_t n = strcspn(p, " ");
		char one[512];

		if (n && n < sizeof(one)) {
			memcpy(one, p, n);
			one[n] = '\0';
			if (append_param(b, "scope", one) < 0)
				return -1;
		}
		p += n;
		while (*p == ' ')
			p++;
	}
	return 0;
}

/* realm?service=S&scope=A&scope=B: one parameter per scope asked for. */
static char *token_url(const struct auth_challenge *ch, const char *scope)
{
	struct buf url;
	char *out = NULL;

	buf_init(&url, 8192);
	if (buf_append_str(&url, ch->realm) < 0 ||
	    (ch->service && append_param(&url, "service", ch->service) < 0))
		goto out;
	if (append_scopes(&url, scope) < 0)
		goto out;
	out = strdup((char *)url.data);
out:
	buf_release(&url);
	return out;
}

/* service=S&scope=A&scope=B&grant_type=refresh_token&refresh_token=T
 * &client_id=ferry: the OAuth2 form of the distribution token spec. */
static char *refresh_form(const struct auth_challenge *ch, const char *scope,
			  const char *token)
{
	struct buf f;
	char *out = NULL;

	buf_init(&f, 8192);
	/* append_param starts with '?' on an empty buffer: a dummy origin */
	if (buf_append_str(&f, "?") < 0 ||
	    append_param(&f, "grant_type", "refresh_token") < 0 ||
	    append_param(&f, "client_id", "ferry") < 0 ||
	    append_param(&f, "refresh_token", token) < 0 ||
	    (ch->service && append_param(&f, "service", ch->service) < 0))
		goto out;
	if (append_scopes(&f, scope) < 0)
		goto out;
	out = strdup((char *)f.data + 2); /* past "?&" */
out:
	if (f.data)
		OPENSSL_cleanse(f.data, f.len);
	buf_release(&f);
	return out;
}

/* An identity token (from a credential helper) goes to the token service
 * as a refresh_token grant in a POST body: never in a URL, never as
 * Basic credentials. */
static int token_request_refresh(struct reg_client *c, const char *scope,
				 const char *realm_host, struct buf *body,
				 struct ferr *e)
{
	char *form = refresh_form(&c->chal, scope, c->cred->identity_token);
	struct req rq;
	struct xfer x;
	int rc = -1;

	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	rq.url = strdup(c->chal.realm);
	if (!form || !rq.url) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	rq.method = "POST";
	rq.what = "a token";
	rq.send = form;
	rq.send_len = strlen(form);
	rq.content_type = "Content-Type: application/x-www-form-urlencoded";
	rq.mode = BODY_BUFFER;
	rq.body = body;
	c->stats.token_fetches++;
	if (request(c, &rq, &x, e) == 0)
		rc = 0;
	else if (e->cat == FERR_AUTH || e->code == 401 || e->code == 403)
		ferr_set(e, FERR_AUTH, e->code,
			 "authentication to registry '%s' failed: token service "
			 "'%s' refused the identity token from the credential "
			 "helper (log in again to renew it)",
			 c->host, realm_host);
out:
	xfer_release(&x);
	free(rq.url);
	auth_wipe_free(form);
	return rc;
}

/* Ask the token service, with the registry's credentials only if the realm
 * may have them.  A refusal is told as what it means to the user: wrong
 * credentials, or none found. */
static int token_request(struct reg_client *c, const char *scope,
			 const char *realm_host, struct buf *body,
			 struct ferr *e)
{
	bool send_creds = c->cred && realm_may_get_creds(c->host, realm_host);
	char *authline = NULL;
	struct req rq;
	struct xfer x;
	int rc = -1;

	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	if (c->cred && !send_creds)
		logf_(c,
		      "not sending credentials for '%s' to token realm "
		      "host '%s'",
		      c->host, realm_host);
	if (send_creds && c->cred->identity_token) {
		rc = token_request_refresh(c, scope, realm_host, body, e);
		goto out;
	}
	rq.url = token_url(&c->chal, scope);
	if (!rq.url ||
	    (send_creds && !(authline = auth_basic_header(c->cred)))) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	rq.method = "GET";
	rq.what = "a token";
	rq.fixed_auth = authline;
	rq.mode = BODY_BUFFER;
	rq.body = body;
	c->stats.token_fetches++;
	if (request(c, &rq, &x, e) == 0) {
		rc = 0;
	} else if (e->cat == FERR_AUTH || e->code == 401 || e->code == 403) {
		if (send_creds)
			ferr_set(e, FERR_AUTH, e->code,
				 "authentication to registry '%s' failed for "
				 "user '%s' (token service '%s' refused the "
				 "credentials)",
				 c->host, c->cred->user, realm_host);
		else
			ferr_set(e, FERR_AUTH, e->code,
				 "registry '%s' requires authentication for "
				 "'%s' and no credentials for it were found",
				 c->host, scope ? scope : "");
	}
out:
	xfer_release(&x);
	free(rq.url);
	auth_wipe_free(authline);
	return rc;
}

/* Take the token ("token", else "access_token") out of the service's
 * answer and keep it for `scope` until shortly before it expires. */
static int token_keep(struct reg_client *c, const char *scope,
		      const struct buf *body, const char *realm_host,
		      struct ferr *e)
{
	json_t *root = json_loadb((const char *)body->data, body->len, 0, NULL);
	const char *tok;
	json_t *ei;
	int rc = -1;

	tok = root ? json_string_value(json_object_get(root, "token")) : NULL;
	if (!tok || !*tok)
		tok = root ? json_string_value(
				 json_object_get(root, "access_token"))
			   : NULL;
	if (!tok || !*tok || strpbrk(tok, "\r\n")) {
		ferr_set(e, FERR_AUTH, 0,
			 "token service '%s' for registry '%s' answered "
			 "without a usable token",
			 realm_host, c->host);
		goto out;
	}
	ei = json_object_get(root, "expires_in");
	if (store_token(c, scope ? scope : "", tok,
			json_is_integer(ei) ? json_integer_value(ei) : 0,
			e) < 0)
		goto out;
	rc = 0;
out:
	json_decref(
	    root); /* jansson does not wipe; the token was short-lived */
	return rc;
}

/* Get a Bearer token for `scope` from the realm of the last challenge. */
static int fetch_token(struct reg_client *c, const char *scope, struct ferr *e)
{
	char *realm_host = token_realm_host(c, e);
	struct buf body;
	int rc = -1;

	buf_init(&body, FERRY_MAX_TOKEN_BODY);
	if (realm_host && token_request(c, scope, realm_host, &body, e) == 0 &&
	    token_keep(c, scope, &body, realm_host, e) == 0)
		rc = 0;
	if (body.data)
		OPENSSL_cleanse(body.data, body.len);
	buf_release(&body);
	free(realm_host);
	return rc;
}

/* ---- API ---- */

/* Probe GET /v2/ once over `scheme`, without retries.  Returns 0 when the
 * registry answered as one should (2xx, or 401 with how to authenticate),
 * 1 otherwise (the caller retries or falls back); counts a stalled probe
 * in *stalls. */
static int ping_with(struct reg_client *c, const char *scheme, unsigned *stalls,
		     CURLcode *ccp, struct ferr *e)
{
	struct req rq;
	struct xfer x;
	CURLcode cc;
	int rc;

	free(c->scheme);
	c->scheme = strdup(scheme);
	if (!c->scheme)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	memset(&rq, 0, sizeof(rq));
	rq.method = "GET";
	rq.url = mkurl(c, "/v2/");
	rq.what = "'/v2/'";
	rq.mode = BODY_DISCARD;
	if (!rq.url)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	memset(&x, 0, sizeof(x));
	xfer_begin(&x, c, &rq);
	cc = perform(c, &rq, &x);
	if (ccp)
		*ccp = cc;
	rc = 0;
	if (cc == CURLE_OK &&
	    (x.status == 401 || (x.status >= 200 && x.status < 300))) {
		if (x.status == 401 && x.www_auth) {
			struct auth_challenge ch;
			if (auth_challenge_parse(&ch, x.www_auth, e) == 0) {
				auth_challenge_release(&c->chal);
				c->chal = ch;
			}
		}
	} else {
		rc = 1;
		if (x.stalled)
			(*stalls)++;
	}
	xfer_release(&x);
	free(rq.url);
	return rc;
}

/* The TLS handshake failed: does the host answer plain HTTP instead?  A
 * registry on the wrong scheme is a setting to change, not a transient
 * failure worth five retries.  The probe sends no credentials. */
static bool speaks_plain_http(struct reg_client *c, struct ferr *e)
{
	unsigned stalls = 0;
	bool yes = ping_with(c, "http", &stalls, NULL, e) == 0;

	free(c->scheme);
	c->scheme = strdup("https");
	ferr_clear(e);
	return yes;
}

int reg_ping(struct reg_client *c, struct ferr *e)
{
	const char *fallback = "https";
	unsigned stalls = 0;
	struct req rq;
	struct xfer x;
	int rc = -1;

	if (c->pinged)
		return 0;
	if (c->insecure) {
		unsigned http_stalls = 0;

		/* unverified TLS first, plain HTTP if TLS is not spoken */
		if (ping_with(c, "https", &stalls, NULL, e) == 0) {
			c->pinged = true;
			return 0;
		}
		if (ping_with(c, "http", &http_stalls, NULL, e) == 0) {
			c->pinged = true;
			return 0;
		}
		/* plain HTTP that answers too slowly is still plain HTTP */
		if (http_stalls)
			fallback = "http";
		stalls += http_stalls;
	} else {
		CURLcode cc = CURLE_OK;

		if (ping_with(c, "https", &stalls, &cc, e) == 0) {
			c->pinged = true;
			return 0;
		}
		if (cc == CURLE_SSL_CONNECT_ERROR && speaks_plain_http(c, e))
			return ferr_set(e, FERR_NETWORK, 0,
					"registry '%s' speaks plain HTTP, not "
					"HTTPS; pass --insecure-registry %s "
					"to allow plain HTTP for it",
					c->host, c->host);
	}
	free(c->scheme);
	c->scheme = strdup(fallback);
	if (!c->scheme)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	/* Not answering as expected: go through the retrying path for a
	 * proper error (or success after a transient failure). */
	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	rq.method = "GET";
	rq.url = mkurl(c, "/v2/");
	rq.what = "'/v2/'";
	rq.mode = BODY_DISCARD;
	rq.registry_auth = true;
	rq.stalls = stalls; /* a probe that stalled was the first try */
	if (!rq.url)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (request(c, &rq, &x, e) == 0) {
		c->pinged = true;
		rc = 0;
	}
	xfer_release(&x);
	free(rq.url);
	return rc;
}

static bool safe_path_part(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		      ch == '-' || ch == '/' || ch == ':'))
			return false;
	}
	return strstr(s, "..") == NULL || strchr(s, '/') == NULL;
}

static int check_names(struct reg_client *c, const char *repo,
		       const char *object, struct ferr *e)
{
	if (!safe_path_part(repo, 255) || strchr(repo, ':'))
		return ferr_set(e, FERR_INPUT, 0,
				"invalid repository name '%.200s' for registry "
				"'%s'",
				repo ? repo : "", c->host);
	if (object && (!safe_path_part(object, 200) || strchr(object, '/')))
		return ferr_set(e, FERR_INPUT, 0,
				"invalid tag or digest '%.200s'", object);
	if (object && strchr(object, ':') && !digest_valid(object))
		return digest_parse(NULL, object, e);
	return 0;
}

void reg_manifest_release(struct reg_manifest *m)
{
	if (!m)
		return;
	free(m->data);
	free(m->media_type);
	m->data = NULL;
	m->media_type = NULL;
	m->len = 0;
}

static const char *known_type(const char *t)
{
	static const char *const types[] = {MT_OCI_INDEX, MT_OCI_MANIFEST,
					    MT_DOCKER_LIST, MT_DOCKER_MANIFEST};
	if (!t)
		return NULL;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcmp(t, types[i]))
			return types[i];
	return NULL;
}

static bool is_schema1(const char *t)
{
	return t && (!strcmp(t, MT_DOCKER_SCHEMA1) ||
		     !strcmp(t, MT_DOCKER_SCHEMA1_SIGNED));
}

const char *reg_manifest_kind(const unsigned char *data, size_t len,
			      const char *content_type, struct ferr *e)
{
	json_error_t jerr;
	json_t *root = NULL, *sv, *mt, *mans, *layers, *config;
	const char *field = NULL, *ct = NULL, *out = NULL;
	char ctbuf[256];

	if (content_type) {
		/* drop parameters such as "; charset=utf-8" */
		size_t n = strcspn(content_type, "; \t");
		if (n >= sizeof(ctbuf))
			n = sizeof(ctbuf) - 1;
		memcpy(ctbuf, content_type, n);
		ctbuf[n] = '\0';
		ct = ctbuf;
	}
	if (is_schema1(ct))
		goto schema1;
	root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES,
			  &jerr);
	if (!root || !json_is_object(root)) {
		ferr_set(e, FERR_INPUT, 0, "not a JSON object: %s",
			 root ? "wrong type" : jerr.text);
		goto out;
	}
	sv = json_object_get(root, "schemaVersion");
	if (json_is_integer(sv) && json_integer_value(sv) == 1)
		goto schema1;
	if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
		ferr_set(e, FERR_INPUT, 0, "unsupported schemaVersion");
		goto out;
	}
	mt = json_object_get(root, "mediaType");
	if (mt && !json_is_string(mt)) {
		ferr_set(e, FERR_INPUT, 0, "'mediaType' is not a string");
		goto out;
	}
	field = json_string_value(mt);
	mans = json_object_get(root, "manifests");
	layers = json_object_get(root, "layers");
	config = json_object_get(root, "config");
	if (mans && (layers || config)) {
		ferr_set(e, FERR_INPUT, 0,
			 "ambiguous document: both 'manifests' and "
			 "'layers'/'config'");
		goto out;
	}
	if (field) {
		out = known_type(field);
		if (!out) {
			ferr_set(e, FERR_INPUT, 0,
				 "unsupported media type '%.100s'", field);
			goto out;
		}
	} else if (ct && known_type(ct)) {
		out = known_type(ct);
	} else if (mans) {
		out = MT_OCI_INDEX;
	} else if (layers && config) {
		out = MT_OCI_MANIFEST;
	} else {
		ferr_set(e, FERR_INPUT, 0,
			 "neither an image manifest nor an "
			 "index");
		goto out;
	}
	if (ct && known_type(ct) && strcmp(ct, out) != 0) {
		ferr_set(e, FERR_INPUT, 0, "served as '%s' but declares '%s'",
			 ct, out);
		out = NULL;
		goto out;
	}
	{
		bool is_index = !strcmp(out, MT_OCI_INDEX) ||
				!strcmp(out, MT_DOCKER_LIST);
		if (is_index
			? !json_is_array(mans)
			: (!json_is_array(layers) || !json_is_object(config))) {
			ferr_set(e, FERR_INPUT, 0,
				 "'%s' document without its %s", out,
				 is_index ? "'manifests' array"
					  : "'config' and 'layers'");
			out = NULL;
		}
	}
	goto out;
schema1:
	ferr_set(e, FERR_INPUT, 0,
		 "uses the Docker schema 1 manifest format, which ferry does "
		 "not support (re-push the image with a current client)");
out:
	json_decref(root);
	return out;
}

static int ensure_ping(struct reg_client *c, struct ferr *e)
{
	return c->pinged ? 0 : reg_ping(c, e);
}

int reg_get_manifest(struct reg_client *c, const char *repo, const char *object,
		     struct reg_manifest *out, struct ferr *e)
{
	char what[600], scope[300];
	struct buf body;
	struct req rq;
	struct xfer x;
	const char *kind;
	bool by_digest;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	buf_init(&body, FERRY_MAX_JSON);
	if (check_names(c, repo, object, e) < 0 || ensure_ping(c, e) < 0)
		return -1;
	by_digest = strchr(object, ':') != NULL;
	snprintf(what, sizeof(what), "manifest '%s%s%s'", repo,
		 by_digest ? "@" : ":", object);
	snprintf(scope, sizeof(scope), "repository:%s:pull", repo);
	rq.method = "GET";
	rq.url = mkurl(c, "/v2/%s/manifests/%s", repo, object);
	rq.what = what;
	rq.scope = scope;
	rq.accept = ACCEPT_MANIFESTS;
	rq.registry_auth = true;
	rq.mode = BODY_BUFFER;
	rq.body = &body;
	if (!rq.url) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	if (request(c, &rq, &x, e) < 0) {
		if (e->code == 404)
			ferr_prefix(e, "image not found");
		goto out;
	}
	if (digest_of(body.data, body.len, &out->digest, e) < 0)
		goto out;
	if (by_digest && strcmp(out->digest.str, object) != 0) {
		ferr_set(e, FERR_VERIFY, 0,
			 "%s from registry '%s' does not match its digest "
			 "(content hashes to '%s')",
			 what, c->host, out->digest.str);
		goto out;
	}
	if (!by_digest && x.dcd && strcmp(x.dcd, out->digest.str) != 0) {
		ferr_set(e, FERR_VERIFY, 0,
			 "%s from registry '%s': the registry says its digest "
			 "is '%.80s' but the content hashes to '%s'",
			 what, c->host, x.dcd, out->digest.str);
		goto out;
	}
	kind = reg_manifest_kind(body.data, body.len, x.content_type, e);
	if (!kind) {
		ferr_prefix(e, "%s from registry '%s'", what, c->host);
		goto out;
	}
	out->media_type = strdup(kind);
	out->data = buf_detach(&body, &out->len);
	if (!out->media_type || !out->data) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		reg_manifest_release(out);
	xfer_release(&x);
	free(rq.url);
	buf_release(&body);
	return rc;
}

static int head(struct reg_client *c, const char *kind, const char *repo,
		const char *object, struct reg_head *out, struct ferr *e)
{
	char what[600], scope[300];
	struct req rq;
	struct xfer x;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	if (check_names(c, repo, object, e) < 0 || ensure_ping(c, e) < 0)
		return -1;
	snprintf(what, sizeof(what), "%s '%s%s%s'", kind, repo,
		 strchr(object, ':') ? "@" : ":", object);
	snprintf(scope, sizeof(scope), "repository:%s:pull", repo);
	rq.method = "HEAD";
	rq.url = mkurl(c, "/v2/%s/%ss/%s", repo, kind, object);
	rq.what = what;
	rq.scope = scope;
	rq.accept = strcmp(kind, "manifest") == 0 ? ACCEPT_MANIFESTS : NULL;
	rq.registry_auth = true;
	rq.mode = BODY_DISCARD;
	if (!rq.url)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (request(c, &rq, &x, e) < 0) {
		if (e->code == 404) {
			ferr_clear(e);
			rc = 0;
		}
		goto out;
	}
	out->found = true;
	if (x.dcd && digest_valid(x.dcd)) {
		digest_parse(&out->digest, x.dcd, NULL);
		out->has_digest = true;
	}
	out->size = x.has_length ? x.content_length : 0;
	if (x.content_type) {
		size_t n = strcspn(x.content_type, "; \t");
		if (n >= sizeof(out->media_type))
			n = sizeof(out->media_type) - 1;
		memcpy(out->media_type, x.content_type, n);
		out->media_type[n] = '\0';
	}
	rc = 0;
out:
	xfer_release(&x);
	free(rq.url);
	return rc;
}

int reg_head_manifest(struct reg_client *c, const char *repo,
		      const char *object, struct reg_head *out, struct ferr *e)
{
	return head(c, "manifest", repo, object, out, e);
}

int reg_head_blob(struct reg_client *c, const char *repo,
		  const struct digest *d, struct reg_head *out, struct ferr *e)
{
	return head(c, "blob", repo, d->str, out, e);
}

static int mem_sink_write(void *ctx, const void *p, size_t n, struct ferr *e)
{
	if (buf_append(ctx, p, n) == 0)
		return 0;
	if (errno == E2BIG) /* reg_get_blob stops at the size: not expected */
		return ferr_set(e, FERR_VERIFY, 0, "a blob over its size");
	return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
}

int reg_get_blob_mem(struct reg_client *c, const char *repo,
		     const struct digest *d, uint64_t size, size_t max,
		     unsigned char **out, struct ferr *e)
{
	struct reg_blob_req rq;
	struct reg_sink sink;
	struct buf b;
	size_t n;

	*out = NULL;
	if (size > max)
		return ferr_set(e, FERR_INPUT, 0,
				"blob '%s' of '%s' is %llu bytes, over the "
				"limit of %zu",
				d->str, repo, (unsigned long long)size, max);
	buf_init(&b, (size_t)size);
	memset(&rq, 0, sizeof(rq));
	memset(&sink, 0, sizeof(sink));
	rq.repo = repo;
	rq.digest = *d;
	rq.size = size;
	sink.write = mem_sink_write;
	sink.ctx = &b;
	if (reg_get_blob(c, &rq, &sink, e) < 0) {
		buf_release(&b);
		return -1;
	}
	if (!b.data && buf_append(&b, "", 0) < 0) {
		buf_release(&b);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	*out = buf_detach(&b, &n);
	return 0;
}

int reg_get_blob(struct reg_client *c, const struct reg_blob_req *b,
		 const struct reg_sink *sink, struct ferr *e)
{
	char what[600], scope[300];
	struct digest got;
	struct req rq;
	struct xfer x;
	int rc = -1;

	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	if (check_names(c, b->repo, b->digest.str, e) < 0 ||
	    ensure_ping(c, e) < 0)
		return -1;
	if (b->size > FERRY_MAX_BLOB_SIZE)
		return ferr_set(e, FERR_INPUT, 0,
				"blob '%s' claims %llu bytes, more than the "
				"%llu-byte limit",
				b->digest.str, (unsigned long long)b->size,
				(unsigned long long)FERRY_MAX_BLOB_SIZE);
	if (b->offset > b->size)
		return ferr_set(e, FERR_INPUT, 0,
				"resume offset beyond the end of blob '%s'",
				b->digest.str);
	if (digest_ctx_init(&rq.hash, e) < 0)
		return -1;
	if (b->offset > 0 && b->prefix) {
		if (EVP_MD_CTX_copy_ex(rq.hash.md, b->prefix->md) != 1) {
			ferr_set(e, FERR_IO, 0, "cannot copy hash state");
			goto out;
		}
		rq.received = b->offset;
	}
	snprintf(what, sizeof(what), "blob '%s@%s'", b->repo, b->digest.str);
	snprintf(scope, sizeof(scope), "repository:%s:pull", b->repo);
	rq.method = "GET";
	rq.url = mkurl(c, "/v2/%s/blobs/%s", b->repo, b->digest.str);
	rq.what = what;
	rq.scope = scope;
	rq.registry_auth = true;
	rq.mode = BODY_BLOB;
	rq.blob = b;
	rq.sink = sink;
	if (!rq.url) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	for (unsigned resumes = 0;; resumes++) {
		uint64_t before = rq.received;

		xfer_release(&x);
		memset(&x, 0, sizeof(x));
		if (rq.received == b->size && b->size > 0)
			break; /* nothing left to ask for */
		if (request(c, &rq, &x, e) < 0)
			goto out;
		if (rq.received == b->size)
			break;
		/* The body ended early without a transport error: ask for
		 * the rest, as long as we are making progress. */
		if (rq.received <= before || resumes >= 8) {
			ferr_set(e, FERR_VERIFY, 0,
				 "blob '%s' from registry '%s' is shorter than "
				 "its descriptor's %llu bytes (got %llu)",
				 b->digest.str, c->host,
				 (unsigned long long)b->size,
				 (unsigned long long)rq.received);
			goto out;
		}
	}
	digest_ctx_final(&rq.hash, &got);
	if (!digest_equal(&got, &b->digest)) {
		ferr_set(e, FERR_VERIFY, 0,
			 "blob '%s' from registry '%s' does not match its "
			 "digest (content hashes to '%s')",
			 b->digest.str, c->host, got.str);
		goto out;
	}
	rc = 0;
out:
	xfer_release(&x);
	free(rq.url);
	digest_ctx_release(&rq.hash);
	return rc;
}

/* ---- pushing ---- */

/* Resolve an upload Location and check where it points: https (or an
 * --insecure-registry host).  Credentials follow only to the registry's
 * own host (perform() decides per request). */
static char *upload_url(struct reg_client *c, const char *base, const char *loc,
			struct ferr *e)
{
	char *u = resolve_location(base, loc);
	char *sch = u ? url_scheme(u) : NULL;
	char *hp = u ? url_hostport(u) : NULL;

	if (!u || !sch || !hp ||
	    (strcmp(sch, "https") != 0 &&
	     !(strcmp(sch, "http") == 0 && reg_host_insecure(c->o, hp)))) {
		ferr_set(e, FERR_NETWORK, 0,
			 "registry '%s' gave upload location '%.200s', which is "
			 "not an https URL (plain http is allowed only for "
			 "--insecure-registry hosts)",
			 c->host, loc);
		free(u);
		u = NULL;
	}
	free(sch);
	free(hp);
	return u;
}

static char *add_query(const char *url, const char *k, const char *v)
{
	size_t n = strlen(url) + strlen(k) + strlen(v) + 4;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "%s%s%s=%s", url, strchr(url, '?') ? "&" : "?",
			 k, v);
	return s;
}

int reg_upload_start(struct reg_client *c, const char *repo,
		     const struct digest *mount, const char *from_repo,
		     bool *mounted, char **url_out, struct ferr *e)
{
	char what[600], scope[700];
	struct req rq;
	struct xfer x;
	int rc = -1;

	*mounted = false;
	*url_out = NULL;
	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	if (check_names(c, repo, NULL, e) < 0 ||
	    (from_repo && check_names(c, from_repo, NULL, e) < 0) ||
	    ensure_ping(c, e) < 0)
		return -1;
	if (mount && from_repo) {
		snprintf(what, sizeof(what), "mount of '%s' into '%s'",
			 mount->str, repo);
		snprintf(scope, sizeof(scope),
			 "repository:%s:pull,push repository:%s:pull", repo,
			 from_repo);
		rq.url = mkurl(c, "/v2/%s/blobs/uploads/?mount=%s&from=%s",
			       repo, mount->str, from_repo);
	} else {
		snprintf(what, sizeof(what), "upload to '%s'", repo);
		snprintf(scope, sizeof(scope), "repository:%s:pull,push", repo);
		rq.url = mkurl(c, "/v2/%s/blobs/uploads/", repo);
	}
	snprintf(c->upload_scope, sizeof(c->upload_scope), "%s", scope);
	rq.method = "POST";
	rq.what = what;
	rq.scope = scope;
	rq.registry_auth = true;
	rq.mode = BODY_DISCARD;
	if (!rq.url)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (request(c, &rq, &x, e) < 0)
		goto out;
	if (x.status == 201 && mount) {
		*mounted = true;
		rc = 0;
		goto out;
	}
	if (x.status != 202 || !x.location) {
		ferr_set(e, FERR_NETWORK, (int)x.status,
			 "registry '%s' answered %ld without an upload location "
			 "for %s",
			 c->host, x.status, what);
		goto out;
	}
	*url_out = upload_url(c, rq.url, x.location, e);
	rc = *url_out ? 0 : -1;
out:
	xfer_release(&x);
	free(rq.url);
	return rc;
}

int reg_upload_finish(struct reg_client *c, char **url, const struct digest *d,
		      const void *p, size_t n, struct ferr *e)
{
	struct req rq;
	struct xfer x;
	int rc = -1;

	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	rq.method = "PUT";
	rq.url = add_query(*url, "digest", d->str);
	rq.what = "the end of a blob upload";
	rq.scope = c->upload_scope;
	rq.registry_auth = true;
	rq.mode = BODY_DISCARD;
	rq.send = p;
	rq.send_len = n;
	rq.content_type = "Content-Type: application/octet-stream";
	rq.attempts = 1;
	if (!rq.url)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (request(c, &rq, &x, e) < 0)
		goto out;
	if (x.dcd && strcmp(x.dcd, d->str) != 0) {
		ferr_set(e, FERR_VERIFY, 0,
			 "registry '%s' stored blob '%s' as '%.80s'", c->host,
			 d->str, x.dcd);
		goto out;
	}
	rc = 0;
out:
	xfer_release(&x);
	free(rq.url);
	return rc;
}

void reg_upload_cancel(struct reg_client *c, const char *url)
{
	struct req rq;
	struct xfer x;
	struct ferr e;

	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	rq.method = "DELETE";
	rq.url = strdup(url);
	rq.what = "cancelling an upload";
	rq.scope = c->upload_scope;
	rq.registry_auth = true;
	rq.mode = BODY_DISCARD;
	rq.attempts = 1;
	if (rq.url && request(c, &rq, &x, &e) == 0)
		xfer_release(&x);
	free(rq.url);
}

int reg_put_manifest(struct reg_client *c, const char *repo, const char *ref,
		     const char *media_type, const void *p, size_t n,
		     const struct digest *want, struct ferr *e)
{
	return reg_put_manifest_subject(c, repo, ref, media_type, p, n, want,
					NULL, e);
}

int reg_put_manifest_subject(struct reg_client *c, const char *repo,
			     const char *ref, const char *media_type,
			     const void *p, size_t n, const struct digest *want,
			     bool *oci_subject, struct ferr *e)
{
	char what[600], scope[300], ct[300];
	struct req rq;
	struct xfer x;
	int rc = -1;

	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	if (check_names(c, repo, ref, e) < 0 || ensure_ping(c, e) < 0)
		return -1;
	snprintf(what, sizeof(what), "manifest '%s%s%s'", repo,
		 strchr(ref, ':') ? "@" : ":", ref);
	snprintf(scope, sizeof(scope), "repository:%s:pull,push", repo);
	snprintf(ct, sizeof(ct), "Content-Type: %s", media_type);
	rq.method = "PUT";
	rq.url = mkurl(c, "/v2/%s/manifests/%s", repo, ref);
	rq.what = what;
	rq.scope = scope;
	rq.registry_auth = true;
	rq.mode = BODY_DISCARD;
	rq.send = p;
	rq.send_len = n;
	rq.content_type = ct;
	if (!rq.url)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (request(c, &rq, &x, e) < 0)
		goto out;
	if (want && x.dcd && strcmp(x.dcd, want->str) != 0) {
		ferr_set(e, FERR_VERIFY, 0,
			 "registry '%s' stored %s as '%.80s' instead of '%s'",
			 c->host, what, x.dcd, want->str);
		goto out;
	}
	if (oci_subject)
		*oci_subject = x.oci_subject != NULL;
	rc = 0;
out:
	xfer_release(&x);
	free(rq.url);
	return rc;
}

int reg_upload_stream(struct reg_client *c, char **url, uint64_t size,
		      size_t (*readfn)(char *, size_t, size_t, void *),
		      void *ctx, struct ferr *e)
{
	struct req rq;
	struct xfer x;
	int rc = -1;

	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	rq.method = "PATCH";
	rq.url = strdup(*url);
	rq.what = "a blob upload";
	rq.scope = c->upload_scope;
	rq.registry_auth = true;
	rq.mode = BODY_DISCARD;
	rq.content_type = "Content-Type: application/octet-stream";
	rq.readfn = readfn;
	rq.readctx = ctx;
	rq.read_size = size;
	rq.attempts = 1;
	if (!rq.url)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (request(c, &rq, &x, e) < 0)
		goto out;
	if (x.location) {
		char *nu = upload_url(c, rq.url, x.location, e);
		if (!nu)
			goto out;
		free(*url);
		*url = nu;
	}
	rc = 0;
out:
	xfer_release(&x);
	free(rq.url);
	return rc;
}

int reg_api(struct reg_client *c, const char *method, const char *path,
	    const char *json_body, long *status, struct ferr *e)
{
	char *line = NULL;
	struct req rq;
	struct xfer x;
	int rc = -1;

	*status = 0;
	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	if (ensure_ping(c, e) < 0)
		return -1;
	/* Basic, to this host only: request() drops it on a redirect that
	 * leaves the host */
	if (c->cred && c->cred->pass && !(line = auth_basic_header(c->cred)))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	rq.method = method;
	rq.url = mkurl(c, "%s", path);
	rq.what = path;
	rq.fixed_auth = line;
	rq.mode = BODY_DISCARD;
	rq.send = json_body;
	rq.send_len = json_body ? strlen(json_body) : 0;
	rq.content_type = json_body ? "Content-Type: application/json" : NULL;
	if (!rq.url) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	if (request(c, &rq, &x, e) < 0) {
		*status = e->code;
		goto out;
	}
	*status = x.status;
	rc = 0;
out:
	xfer_release(&x);
	free(rq.url);
	auth_wipe_free(line);
	return rc;
}

const char *reg_client_scheme(const struct reg_client *c)
{
	return c->scheme;
}

int reg_upload_blob(struct reg_client *c, const char *repo,
		    const struct digest *d, const void *p, size_t n,
		    bool *one_request, struct ferr *e)
{
	char what[600], scope[300];
	struct req rq;
	struct xfer x;
	char *url = NULL;
	int rc = -1;

	*one_request = false;
	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	if (check_names(c, repo, d->str, e) < 0 || ensure_ping(c, e) < 0)
		return -1;
	snprintf(what, sizeof(what), "upload of '%s' to '%s'", d->str, repo);
	snprintf(scope, sizeof(scope), "repository:%s:pull,push", repo);
	snprintf(c->upload_scope, sizeof(c->upload_scope), "%s", scope);
	rq.method = "POST";
	rq.url = mkurl(c, "/v2/%s/blobs/uploads/?digest=%s", repo, d->str);
	rq.what = what;
	rq.scope = scope;
	rq.registry_auth = true;
	rq.mode = BODY_DISCARD;
	rq.send = p;
	rq.send_len = n;
	rq.content_type = "Content-Type: application/octet-stream";
	if (!rq.url)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (request(c, &rq, &x, e) < 0)
		goto out;
	if (x.status == 201) {
		if (x.dcd && strcmp(x.dcd, d->str) != 0) {
			ferr_set(e, FERR_VERIFY, 0,
				 "registry '%s' stored blob '%s' as '%.80s'",
				 c->host, d->str, x.dcd);
			goto out;
		}
		*one_request = true;
		rc = 0;
		goto out;
	}
	/* 202: the registry opened an upload session instead (monolithic
	 * uploads are optional): finish it with the data */
	if (x.status != 202 || !x.location) {
		ferr_set(e, FERR_NETWORK, (int)x.status,
			 "registry '%s' answered %ld without an upload location "
			 "for %s",
			 c->host, x.status, what);
		goto out;
	}
	url = upload_url(c, rq.url, x.location, e);
	if (!url)
		goto out;
	rc = reg_upload_finish(c, &url, d, p, n, e);
	if (rc < 0)
		reg_upload_cancel(c, url);
out:
	free(url);
	xfer_release(&x);
	free(rq.url);
	return rc;
}

int reg_repo_has_tags(struct reg_client *c, const char *repo, bool *has,
		      struct ferr *e)
{
	char what[400], scope[300];
	struct req rq;
	struct xfer x;
	struct buf body;
	json_t *root = NULL, *tags;
	int rc = -1;

	*has = true;
	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	buf_init(&body, FERRY_MAX_JSON);
	if (check_names(c, repo, NULL, e) < 0 || ensure_ping(c, e) < 0)
		return -1;
	snprintf(what, sizeof(what), "the tags of '%s'", repo);
	snprintf(scope, sizeof(scope), "repository:%s:pull", repo);
	rq.method = "GET";
	rq.url = mkurl(c, "/v2/%s/tags/list?n=1", repo);
	rq.what = what;
	rq.scope = scope;
	rq.registry_auth = true;
	rq.mode = BODY_BUFFER;
	rq.body = &body;
	if (!rq.url)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (request(c, &rq, &x, e) < 0) {
		if (e->code == 404) {
			ferr_clear(e);
			*has = false;
			rc = 0;
		}
		goto out;
	}
	root = json_loadb((const char *)body.data, body.len, 0, NULL);
	tags = json_object_get(root, "tags");
	/* an answer we cannot read proves nothing: only an empty or null
	 * list counts as no tags */
	*has = !root || (json_is_array(tags) ? json_array_size(tags) > 0
					     : !json_is_null(tags));
	rc = 0;
out:
	json_decref(root);
	buf_release(&body);
	xfer_release(&x);
	free(rq.url);
	return rc;
}

/* ---- tag lists and referrers (supply-chain metadata, SPEC §6) ---- */

/* The next page a Link header names on this host, or NULL. */
/* The next page a Link header names: 0 with *next NULL when there is
 * none; -1 when it is on another host or scheme (credentials go to this
 * registry only, and a list cut short there would be taken for whole). */
static int next_page(struct reg_client *c, const char *url, const char *link,
		     char **next, const char *what, struct ferr *e)
{
	const char *lt, *gt;
	char *rel, *abs, *hp = NULL, *sa = NULL, *sb = NULL;
	bool ok;

	*next = NULL;
	if (!link || !(lt = strchr(link, '<')) || !(gt = strchr(lt, '>')) ||
	    !strstr(gt, "rel=\"next\""))
		return 0;
	rel = strndup(lt + 1, (size_t)(gt - lt - 1));
	abs = rel ? resolve_location(url, rel) : NULL;
	free(rel);
	if (abs) {
		hp = url_hostport(abs);
		sa = url_scheme(abs);
		sb = url_scheme(url);
	}
	ok = hp && sa && sb && same_hostport(hp, c->host) && !strcmp(sa, sb);
	free(hp);
	free(sa);
	free(sb);
	if (!ok) {
		free(abs);
		return ferr_set(e, FERR_INPUT, 0,
				"%s: the next page is on another host or "
				"scheme",
				what);
	}
	*next = abs;
	return 0;
}

/* GET a JSON document of the registry API, and where its next page is. */
static int get_page(struct reg_client *c, struct req *rq, struct buf *body,
		    char **next, long *status, struct ferr *e)
{
	struct xfer x;
	int rc;

	memset(&x, 0, sizeof(x));
	*next = NULL;
	buf_reset(body);
	rq->mode = BODY_BUFFER;
	rq->body = body;
	rq->registry_auth = true;
	rq->method = "GET";
	rc = request(c, rq, &x, e);
	*status = rc < 0 ? e->code : x.status;
	if (rc == 0)
		rc = next_page(c, rq->url, x.link, next, rq->what, e);
	xfer_release(&x);
	return rc;
}

static int add_tags(json_t *root, char ***tags, size_t *n, size_t *cap,
		    const char *what, struct ferr *e)
{
	json_t *arr = json_object_get(root, "tags"), *t;
	size_t i;

	json_array_foreach(arr, i, t)
	{
		const char *s = json_string_value(t);
		if (!s)
			continue;
		if (*n >= FERRY_MAX_TAGS)
			return ferr_set(e, FERR_INPUT, 0,
					"%s: more than %u tags", what,
					FERRY_MAX_TAGS);
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 256;
			char **nt = realloc(*tags, nc * sizeof(*nt));
			if (!nt)
				return ferr_set(e, FERR_IO, ENOMEM,
						"out of memory");
			*tags = nt;
			*cap = nc;
		}
		if (!((*tags)[*n] = strdup(s)))
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		(*n)++;
	}
	return 0;
}

int reg_list_tags(struct reg_client *c, const char *repo, char ***tags,
		  size_t *n, struct ferr *e)
{
	char what[400], scope[300];
	struct req rq;
	struct buf body;
	size_t cap = 0;
	char *next = NULL;
	int rc = -1;

	*tags = NULL;
	*n = 0;
	memset(&rq, 0, sizeof(rq));
	buf_init(&body, FERRY_MAX_JSON);
	if (check_names(c, repo, NULL, e) < 0 || ensure_ping(c, e) < 0)
		return -1;
	snprintf(what, sizeof(what), "the tags of '%s'", repo);
	snprintf(scope, sizeof(scope), "repository:%s:pull", repo);
	rq.what = what;
	rq.scope = scope;
	rq.url = mkurl(c, "/v2/%s/tags/list?n=1000", repo);
	for (unsigned page = 0; rq.url; page++) {
		json_t *root;
		long status;

		if (page == FERRY_MAX_TAG_PAGES) {
			ferr_set(e, FERR_INPUT, 0, "%s: more than %u pages",
				 what, FERRY_MAX_TAG_PAGES);
			goto out;
		}
		if (get_page(c, &rq, &body, &next, &status, e) < 0)
			goto out;
		root = json_loadb((const char *)body.data, body.len, 0, NULL);
		if (!json_is_object(root)) {
			json_decref(root);
			ferr_set(e, FERR_INPUT, 0, "%s: not a tag list", what);
			goto out;
		}
		rc = add_tags(root, tags, n, &cap, what, e);
		json_decref(root);
		if (rc < 0)
			goto out;
		rc = -1;
		free(rq.url);
		rq.url = next;
		next = NULL;
	}
	rc = 0;
out:
	free(rq.url);
	free(next);
	buf_release(&body);
	if (rc < 0) {
		for (size_t i = 0; i < *n; i++)
			free((*tags)[i]);
		free(*tags);
		*tags = NULL;
		*n = 0;
	}
	return rc;
}

int reg_get_referrers(struct reg_client *c, const char *repo,
		      const struct digest *d, json_t **manifests,
		      bool *supported, struct ferr *e)
{
	char what[400], scope[300];
	struct req rq;
	struct buf body;
	char *next = NULL;
	json_t *all = json_array();
	int rc = -1;

	*manifests = NULL;
	*supported = false;
	memset(&rq, 0, sizeof(rq));
	buf_init(&body, FERRY_MAX_JSON);
	if (!all)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (check_names(c, repo, d->str, e) < 0 || ensure_ping(c, e) < 0)
		goto out;
	snprintf(what, sizeof(what), "the referrers of '%s@%s'", repo, d->str);
	snprintf(scope, sizeof(scope), "repository:%s:pull", repo);
	rq.what = what;
	rq.scope = scope;
	rq.accept = "Accept: " MT_OCI_INDEX;
	rq.url = mkurl(c, "/v2/%s/referrers/%s", repo, d->str);
	for (unsigned page = 0; rq.url; page++) {
		json_t *root, *mans;
		long status;

		if (page == FERRY_MAX_REFERRER_PAGES) {
			ferr_set(e, FERR_INPUT, 0, "%s: more than %u pages",
				 what, FERRY_MAX_REFERRER_PAGES);
			goto out;
		}
		if (get_page(c, &rq, &body, &next, &status, e) < 0) {
			/* a registry without the API says 404 (the spec
			 * forbids it to one that has it); some that do not
			 * know the path at all say 400 or 405 */
			if ((status == 404 || status == 400 || status == 405) &&
			    page == 0) {
				ferr_clear(e);
				rc = 0;
			}
			goto out;
		}
		root = json_loadb((const char *)body.data, body.len, 0, NULL);
		mans = json_object_get(root, "manifests");
		if (!json_is_array(mans) ||
		    json_array_size(all) + json_array_size(mans) >
			FERRY_MAX_INDEX_ENTRIES) {
			/* mans belongs to root: say which before freeing it */
			ferr_set(e, FERR_INPUT, 0,
				 json_is_array(mans)
				     ? "%s: more than the limit of entries"
				     : "%s: not an index",
				 what);
			json_decref(root);
			goto out;
		}
		json_array_extend(all, mans);
		json_decref(root);
		free(rq.url);
		rq.url = next;
		next = NULL;
	}
	*supported = true;
	*manifests = all;
	all = NULL;
	rc = 0;
out:
	json_decref(all);
	free(rq.url);
	free(next);
	buf_release(&body);
	return rc;
}
