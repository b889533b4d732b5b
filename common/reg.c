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
#define DEFAULT_STALL_TIMEOUT 60
#define MAX_TOKENS 64
/* Renew a token this long before the server says it expires. */
#define TOKEN_MARGIN_S 10

static const char ACCEPT_MANIFESTS[] =
    "Accept: " MT_OCI_INDEX ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST
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
	char *basic;                /* Basic header line, once asked for */
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
	char *url;          /* current URL (changes on redirects) */
	const char *what;   /* subject for messages: "manifest 'repo:tag'" */
	const char *scope;  /* token scope(s), space separated; NULL: none */
	const char *accept; /* full "Accept: ..." header line or NULL */
	bool registry_auth; /* attach registry credentials, answer 401s */
	const char *fixed_auth; /* "Authorization: ..." for token requests */
	enum body_mode mode;
	/* request body (POST, PUT, PATCH) */
	const void *send;
	size_t send_len;
	const char *content_type; /* full "Content-Type: ..." line */
	unsigned attempts; /* 0: the client's default */
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
	    *content_range;
	uint64_t content_length;
	bool has_length;
	struct buf errbody;
	/* why a write callback stopped the transfer */
	int abort_cat;
	struct ferr abort_err;
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
		return ferr_set(e, FERR_INPUT, 0, "invalid registry host '%.200s'",
				host ? host : "");
	c = calloc(1, sizeof(*c));
	if (!c)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	c->o = o;
	c->host = strdup(host);
	c->curl = curl_easy_init();
	if (!c->host || !c->curl) {
		reg_client_release(c);
		return ferr_set(e, FERR_IO, ENOMEM, "cannot create an HTTP client");
	}
	c->insecure = reg_host_insecure(o, host);
	c->cred = auth_store_find(o->creds, host);
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
	x->content_type = x->dcd = x->location = x->www_auth = NULL;
	x->retry_after = x->content_range = NULL;
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
		curl_easy_getinfo(x->c->curl, CURLINFO_RESPONSE_CODE, &x->status);
		x->to_caller = x->status >= 200 && x->status < 300;
		if (x->to_caller && rq->mode == BODY_BLOB) {
			const struct reg_blob_req *b = rq->blob;
			if (x->status == 206) {
				if (!reg_content_range_ok(x->content_range,
							  rq->received, b->size)) {
					x->abort_cat = FERR_NETWORK;
					ferr_set(&x->abort_err, FERR_NETWORK, 206,
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

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c_,
		       curl_off_t d)
{
	struct xfer *x = ud;

	(void)a;
	(void)b;
	(void)c_;
	(void)d;
	return x->c->o->cancel && *x->c->o->cancel ? 1 : 0;
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
			   (!c->scheme || (scheme && !strcmp(scheme, c->scheme)));
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
	curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME,
			 c->o->stall_timeout_s ? c->o->stall_timeout_s
					       : DEFAULT_STALL_TIMEOUT);
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
			curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, rq->readfn);
			curl_easy_setopt(c->curl, CURLOPT_READDATA, rq->readctx);
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
		const char *code = json_string_value(json_object_get(e0, "code"));
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
	/* quoted messages must not carry control characters */
	for (char *q = out; *q; q++)
		if ((unsigned char)*q < 0x20 || *q == 0x7f)
			*q = '?';
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
	unsigned base = c->o->backoff_ms ? c->o->backoff_ms : DEFAULT_BACKOFF_MS;
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

static int fetch_token(struct reg_client *c, const char *scope,
		       struct ferr *e);

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

/* Run a request to completion: retries with backoff, manual redirects,
 * one authentication round.  On success *out_x holds the final exchange
 * (caller releases it). */
static int request(struct reg_client *c, struct req *rq, struct xfer *out_x,
		   struct ferr *e)
{
	unsigned max_attempts =
	    rq->attempts ? rq->attempts
			 : (c->o->max_attempts ? c->o->max_attempts
					       : DEFAULT_ATTEMPTS);
	unsigned attempt = 0, redirects = 0;
	bool authed = false;
	struct xfer x;
	int rc = -1;

	memset(&x, 0, sizeof(x));
	for (;;) {
		CURLcode cc;
		char detail[300];
		const char *why = NULL;

		xfer_release(&x);
		memset(&x, 0, sizeof(x));
		x.c = c;
		x.rq = rq;
		buf_init(&x.errbody, FERRY_MAX_ERROR_BODY);
		attempt++;
		cc = perform(c, rq, &x);
		if (c->o->cancel && *c->o->cancel) {
			ferr_set(e, FERR_INTERRUPT, 0, "interrupted");
			goto out;
		}
		if (cc == CURLE_WRITE_ERROR && x.abort_cat > 0) {
			*e = x.abort_err;
			/* a bad Content-Range may be a proxy's fault: retry */
			if (x.abort_cat != FERR_NETWORK)
				goto out;
			why = e->msg;
		} else if (cc != CURLE_OK &&
			   !(cc == CURLE_WRITE_ERROR && x.abort_cat < 0)) {
			if (!curl_retryable(cc) || attempt >= max_attempts) {
				ferr_set(e, FERR_NETWORK, 0,
					 "cannot reach registry '%s': %s "
					 "(%s, after %u attempt%s)",
					 c->host, curl_easy_strerror(cc),
					 rq->what, attempt,
					 attempt == 1 ? "" : "s");
				goto out;
			}
			why = curl_easy_strerror(cc);
		} else if (x.status == 401 && rq->registry_auth && !authed &&
			   x.www_auth) {
			struct auth_challenge ch;
			if (auth_challenge_parse(&ch, x.www_auth, e) < 0)
				goto out;
			if (ch.scheme == AUTH_NONE) {
				auth_challenge_release(&ch);
				ferr_set(e, FERR_AUTH, 401,
					 "registry '%s' asks for an "
					 "unsupported authentication "
					 "scheme: '%.100s'",
					 c->host, x.www_auth);
				goto out;
			}
			auth_challenge_release(&c->chal);
			c->chal = ch;
			authed = true;
			if (ch.scheme == AUTH_BASIC) {
				if (!c->cred) {
					ferr_set(e, FERR_AUTH, 401,
						 "registry '%s' requires "
						 "authentication and no "
						 "credentials for it were found",
						 c->host);
					goto out;
				}
				if (!c->basic) {
					c->basic = auth_basic_header(c->cred);
					if (!c->basic) {
						ferr_set(e, FERR_IO, ENOMEM,
							 "out of memory");
						goto out;
					}
				}
			} else if (fetch_token(c, rq->scope ? rq->scope
							    : ch.scope,
					       e) < 0) {
				goto out;
			}
			attempt--; /* not a failure */
			continue;
		} else if (x.status == 401 || x.status == 403) {
			char body[256];
			describe_body(&x.errbody, body, sizeof(body));
			if (x.status == 401 && c->chal.scheme == AUTH_BASIC)
				ferr_set(e, FERR_AUTH, 401,
					 "authentication to registry '%s' "
					 "failed for user '%s'%s%s",
					 c->host, c->cred ? c->cred->user : "",
					 body[0] ? ": " : "", body);
			else
				ferr_set(e, FERR_AUTH, (int)x.status,
					 "registry '%s' denied access to %s "
					 "(%ld%s%s)",
					 c->host, rq->what, x.status,
					 body[0] ? " " : "", body);
			goto out;
		} else if (x.status >= 300 && x.status < 400 && x.location) {
			char *next, *ns, *nh;
			if (++redirects > FERRY_MAX_REDIRECTS) {
				ferr_set(e, FERR_NETWORK, (int)x.status,
					 "too many redirects from registry "
					 "'%s' for %s",
					 c->host, rq->what);
				goto out;
			}
			next = resolve_location(rq->url, x.location);
			ns = next ? url_scheme(next) : NULL;
			nh = next ? url_hostport(next) : NULL;
			if (!next || !ns || !nh ||
			    (strcmp(ns, "https") != 0 &&
			     !(strcmp(ns, "http") == 0 &&
			       reg_host_insecure(c->o, nh)))) {
				ferr_set(e, FERR_NETWORK, (int)x.status,
					 "registry '%s' redirected %s to "
					 "'%.200s', which is not an https URL "
					 "(plain http is allowed only for "
					 "--insecure-registry hosts)",
					 c->host, rq->what, x.location);
				free(next);
				free(ns);
				free(nh);
				goto out;
			}
			logf_(c, "redirect %s -> %s", rq->what, nh);
			{
				/* credentials given for this request (token
				 * service, Harbor API) stay with its host */
				char *oh = url_hostport(rq->url);
				if (!oh || !same_hostport(oh, nh))
					rq->fixed_auth = NULL;
				free(oh);
			}
			free(ns);
			free(nh);
			free(rq->url);
			rq->url = next;
			attempt--;
			continue;
		} else if (x.status == 429 || x.status >= 500) {
			snprintf(detail, sizeof(detail), "HTTP %ld", x.status);
			if (attempt >= max_attempts) {
				char body[256];
				describe_body(&x.errbody, body, sizeof(body));
				ferr_set(e, FERR_NETWORK, (int)x.status,
					 "registry '%s' answered %ld for %s "
					 "after %u attempts%s%s",
					 c->host, x.status, rq->what, attempt,
					 body[0] ? ": " : "", body);
				goto out;
			}
			why = detail;
		} else if (x.status >= 200 && x.status < 300) {
			rc = 0;
			*out_x = x;
			memset(&x, 0, sizeof(x));
			goto out;
		} else {
			char body[256];
			describe_body(&x.errbody, body, sizeof(body));
			ferr_set(e, FERR_NETWORK, (int)x.status,
				 "registry '%s' answered %ld for %s%s%s",
				 c->host, x.status, rq->what,
				 body[0] ? ": " : "", body);
			goto out;
		}
		/* retry */
		if (attempt >= max_attempts) {
			if (e->cat == FERR_OK)
				ferr_set(e, FERR_NETWORK, 0,
					 "registry '%s': %s (%s)", c->host,
					 why ? why : "failed", rq->what);
			goto out;
		}
		{
			unsigned d = retry_delay_ms(c, attempt, x.retry_after);
			c->stats.retries++;
			logf_(c, "retrying %s on '%s' in %u ms after: %s",
			      rq->what, c->host, d, why ? why : "error");
			if (sleep_ms(c, d) < 0) {
				ferr_set(e, FERR_INTERRUPT, 0, "interrupted");
				goto out;
			}
		}
		ferr_clear(e);
	}
out:
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

static int store_token(struct reg_client *c, const char *scope,
		       const char *tok, long long expires_in, struct ferr *e)
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

static int fetch_token(struct reg_client *c, const char *scope,
		       struct ferr *e)
{
	const struct auth_challenge *ch = &c->chal;
	char *realm_host = url_hostport(ch->realm);
	char *realm_scheme = url_scheme(ch->realm);
	char *authline = NULL;
	struct buf url, body;
	struct req rq;
	struct xfer x;
	json_t *root = NULL;
	const char *tok;
	bool send_creds;
	int rc = -1;

	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	buf_init(&url, 8192);
	buf_init(&body, FERRY_MAX_TOKEN_BODY);
	if (!realm_host || !realm_scheme ||
	    (strcmp(realm_scheme, "https") != 0 &&
	     !(strcmp(realm_scheme, "http") == 0 &&
	       reg_host_insecure(c->o, realm_host)))) {
		ferr_set(e, FERR_AUTH, 401,
			 "registry '%s' sent token realm '%.200s', which is "
			 "not an https URL (plain http is allowed only for "
			 "--insecure-registry hosts)",
			 c->host, ch->realm);
		goto out;
	}
	send_creds = c->cred && realm_may_get_creds(c->host, realm_host);
	if (c->cred && !send_creds)
		logf_(c,
		      "not sending credentials for '%s' to token realm "
		      "host '%s'",
		      c->host, realm_host);
	if (buf_append_str(&url, ch->realm) < 0 ||
	    (ch->service && append_param(&url, "service", ch->service) < 0))
		goto oom;
	if (scope) {
		const char *p = scope;
		while (*p) {
			size_t n = strcspn(p, " ");
			char one[512];
			if (n && n < sizeof(one)) {
				memcpy(one, p, n);
				one[n] = '\0';
				if (append_param(&url, "scope", one) < 0)
					goto oom;
			}
			p += n;
			while (*p == ' ')
				p++;
		}
	}
	if (send_creds && !(authline = auth_basic_header(c->cred)))
		goto oom;
	rq.method = "GET";
	rq.url = strdup((char *)url.data);
	if (!rq.url)
		goto oom;
	rq.what = "a token";
	rq.fixed_auth = authline;
	rq.mode = BODY_BUFFER;
	rq.body = &body;
	c->stats.token_fetches++;
	if (request(c, &rq, &x, e) < 0) {
		if (e->cat == FERR_AUTH || e->code == 401 || e->code == 403) {
			if (send_creds)
				ferr_set(e, FERR_AUTH, e->code,
					 "authentication to registry '%s' "
					 "failed for user '%s' (token service "
					 "'%s' refused the credentials)",
					 c->host, c->cred->user, realm_host);
			else
				ferr_set(e, FERR_AUTH, e->code,
					 "registry '%s' requires "
					 "authentication for '%s' and no "
					 "credentials for it were found",
					 c->host, scope ? scope : "");
		}
		goto out;
	}
	root = json_loadb((const char *)body.data, body.len, 0, NULL);
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
	{
		json_t *ei = json_object_get(root, "expires_in");
		long long exp = json_is_integer(ei) ? json_integer_value(ei) : 0;
		if (store_token(c, scope ? scope : "", tok, exp, e) < 0)
			goto out;
	}
	rc = 0;
	goto out;
oom:
	ferr_set(e, FERR_IO, ENOMEM, "out of memory");
out:
	if (body.data)
		OPENSSL_cleanse(body.data, body.len);
	json_decref(root); /* jansson does not wipe; the token was short-lived */
	xfer_release(&x);
	free(rq.url);
	auth_wipe_free(authline);
	buf_release(&url);
	buf_release(&body);
	free(realm_host);
	free(realm_scheme);
	return rc;
}

/* ---- API ---- */

static int ping_with(struct reg_client *c, const char *scheme, struct ferr *e)
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
	/* A 401 is an answer: the registry is there and tells us how to
	 * authenticate.  Probe once without retries to pick the scheme. */
	memset(&x, 0, sizeof(x));
	x.c = c;
	x.rq = &rq;
	buf_init(&x.errbody, FERRY_MAX_ERROR_BODY);
	cc = perform(c, &rq, &x);
	rc = 0;
	if (cc == CURLE_OK && (x.status == 401 || (x.status >= 200 && x.status < 300))) {
		if (x.status == 401 && x.www_auth) {
			struct auth_challenge ch;
			if (auth_challenge_parse(&ch, x.www_auth, e) == 0) {
				auth_challenge_release(&c->chal);
				c->chal = ch;
			}
		}
	} else {
		rc = 1; /* let the caller decide: retry or fall back */
	}
	xfer_release(&x);
	free(rq.url);
	return rc;
}

int reg_ping(struct reg_client *c, struct ferr *e)
{
	struct req rq;
	struct xfer x;
	int rc = -1;

	if (c->pinged)
		return 0;
	if (c->insecure) {
		/* unverified TLS first, plain HTTP if TLS is not spoken */
		if (ping_with(c, "https", e) == 0 ||
		    ping_with(c, "http", e) == 0) {
			c->pinged = true;
			return 0;
		}
		free(c->scheme);
		c->scheme = strdup("https");
	} else if (ping_with(c, "https", e) == 0) {
		c->pinged = true;
		return 0;
	}
	/* Not answering as expected: go through the retrying path for a
	 * proper error (or success after a transient failure). */
	memset(&rq, 0, sizeof(rq));
	memset(&x, 0, sizeof(x));
	rq.method = "GET";
	rq.url = mkurl(c, "/v2/");
	rq.what = "'/v2/'";
	rq.mode = BODY_DISCARD;
	rq.registry_auth = true;
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
	root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
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
		ferr_set(e, FERR_INPUT, 0, "neither an image manifest nor an "
					   "index");
		goto out;
	}
	if (ct && known_type(ct) && strcmp(ct, out) != 0) {
		ferr_set(e, FERR_INPUT, 0,
			 "served as '%s' but declares '%s'", ct, out);
		out = NULL;
		goto out;
	}
	{
		bool is_index = !strcmp(out, MT_OCI_INDEX) ||
				!strcmp(out, MT_DOCKER_LIST);
		if (is_index ? !json_is_array(mans)
			     : (!json_is_array(layers) ||
				!json_is_object(config))) {
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

int reg_get_manifest(struct reg_client *c, const char *repo,
		     const char *object, struct reg_manifest *out,
		     struct ferr *e)
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
static char *upload_url(struct reg_client *c, const char *base,
			const char *loc, struct ferr *e)
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
		snprintf(s, n, "%s%s%s=%s", url, strchr(url, '?') ? "&" : "?", k,
			 v);
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
		rq.url = mkurl(c, "/v2/%s/blobs/uploads/?mount=%s&from=%s", repo,
			       mount->str, from_repo);
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
	if (c->cred && !(line = auth_basic_header(c->cred)))
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
