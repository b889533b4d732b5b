#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <zlib.h>
#include <zstd.h>

#include "bounds.h"
#include "cli.h"

atomic_int cli_interrupted;

const char cli_common_help[] =
    "Common options:\n"
    "  -h, --help                 show this help\n"
    "      --version              print the version\n"
    "  -q, --quiet                print only errors\n"
    "  -v, --verbose              print more (retries, redirects)\n"
    "      --progress MODE        auto, plain, json or none\n"
    "      --ca-file FILE         also trust the CA certificates in FILE\n"
    "      --insecure-registry H  allow plain HTTP or unverified TLS for\n"
    "                             host H or H:PORT (repeatable)\n"
    "      --authfile FILE        Docker config.json with credentials\n"
    "                             (default: $REGISTRY_AUTH_FILE,\n"
    "                             $DOCKER_CONFIG/config.json,\n"
    "                             ~/.docker/config.json)\n";

int cli_common_opt(struct cli_common *c, int opt, const char *arg,
		   const char *cmd)
{
	switch (opt) {
	case 'q':
		c->quiet = 1;
		return 1;
	case 'v':
		c->verbose++;
		return 1;
	case CLI_OPT_VERSION:
		cli_print_version();
		return 2;
	case CLI_OPT_CA_FILE:
		c->ca_file = arg;
		return 1;
	case CLI_OPT_AUTHFILE:
		c->authfile = arg;
		return 1;
	case CLI_OPT_INSECURE: {
		const char **n;
		if (!*arg || strpbrk(arg, "/@ ")) {
			cli_usage_error(cmd,
					"--insecure-registry takes HOST or "
					"HOST:PORT, not '%s'",
					arg);
			return -1;
		}
		n = realloc(c->insecure, (c->n_insecure + 1) * sizeof(*n));
		if (!n) {
			fprintf(stderr, "ferry: error: out of memory\n");
			return -1;
		}
		c->insecure = n;
		c->insecure[c->n_insecure++] = arg;
		return 1;
	}
	case CLI_OPT_PROGRESS:
		if (!strcmp(arg, "auto"))
			c->progress = PROGRESS_AUTO;
		else if (!strcmp(arg, "plain"))
			c->progress = PROGRESS_PLAIN;
		else if (!strcmp(arg, "json"))
			c->progress = PROGRESS_JSON;
		else if (!strcmp(arg, "none"))
			c->progress = PROGRESS_NONE;
		else {
			cli_usage_error(cmd,
					"--progress takes auto, plain, json or "
					"none, not '%s'",
					arg);
			return -1;
		}
		return 1;
	}
	return 0;
}

void cli_common_release(struct cli_common *c)
{
	free(c->insecure);
	c->insecure = NULL;
	c->n_insecure = 0;
}

/* Length of the well-formed UTF-8 sequence at p, its code point in *cp;
 * 0 when p does not start one (stray, overlong, surrogate, cut short). */
static size_t utf8_seq(const unsigned char *p, uint32_t *cp)
{
	uint32_t v, min;
	size_t n;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2, v = p[0] & 0x1fu, min = 0x80;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3, v = p[0] & 0x0fu, min = 0x800;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4, v = p[0] & 0x07u, min = 0x10000;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
		v = (v << 6) | (p[i] & 0x3fu);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/* Characters a terminal acts on, or that reorder what is shown. */
static bool unsafe_char(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) ||
	       (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029;
}

/* The next piece of s as shown: into out, its length in *len.  Returns how
 * many bytes of s it stands for. */
static size_t escape_next(const char *s, char out[16], size_t *len)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp = 0;
	size_t n = utf8_seq(p, &cp);
	int w;

	if (n && !unsafe_char(cp)) {
		memcpy(out, s, n);
		*len = n;
		return n;
	}
	if (n && (cp == '\n' || cp == '\r' || cp == '\t'))
		w = snprintf(out, 16, "\\%c",
			     cp == '\n'	  ? 'n'
			     : cp == '\r' ? 'r'
					  : 't');
	else if (n && cp >= 0x80)
		w = snprintf(out, 16, "\\u%04x", (unsigned)cp);
	else
		w = snprintf(out, 16, "\\x%02x", (unsigned)p[0]);
	*len = (size_t)w;
	return n ? n : 1;
}

void cli_put_text(FILE *f, const char *s)
{
	char piece[16];
	size_t len;

	while (s && *s) {
		s += escape_next(s, piece, &len);
		fwrite(piece, 1, len, f);
	}
}

char *cli_text(char *out, size_t n, const char *s)
{
	char piece[16];
	size_t k = 0, len;

	if (n == 0)
		return out;
	while (s && *s) {
		s += escape_next(s, piece, &len);
		if (k + len + 1 > n || (*s && k + len + 4 > n)) {
			/* no room for this piece and the mark after it */
			snprintf(out + k, n - k, "%s", n - k > 3 ? "..." : "");
			return out;
		}
		memcpy(out + k, piece, len);
		k += len;
	}
	out[k] = '\0';
	return out;
}

json_t *cli_json_text(const char *s)
{
	char shown[4 * FERR_MSG_MAX];
	json_t *j = json_string(s ? s : "");

	return j ? j : json_string(cli_text(shown, sizeof(shown), s));
}

void cli_error(const struct ferr *e)
{
	fputs("ferry: error: ", stderr);
	cli_put_text(stderr, e->msg[0] ? e->msg : "failed");
	fputc('\n', stderr);
}

void cli_print_version(void)
{
	const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);

	printf("ferry %s\n", FERRY_VERSION);
	printf("libcurl %s (%s)\n", cv->version,
	       cv->ssl_version ? cv->ssl_version : "no TLS");
	printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("%s\n", archive_version_string());
	printf("zstd %s\n", ZSTD_versionString());
	printf("jansson %s\n", jansson_version_str());
	printf("zlib %s\n", zlibVersion());
}

void cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	/* one prefix for every error, as docs/exit-codes.md says */
	fputs("ferry: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'ferry %s%s--help'.\n", cmd ? cmd : "",
		cmd ? " " : "");
}

static void on_signal(int sig)
{
	(void)sig;
	cli_interrupted = 1;
}

void cli_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void log_stderr(void *ctx, const char *msg)
{
	(void)ctx;
	fputs("ferry: ", stderr);
	cli_put_text(stderr, msg);
	fputc('\n', stderr);
}

/* FERRY_TEST_STALL_SECONDS shortens the stall window so that the tests of
 * the stall rule take seconds, not minutes; 0 (the default) when unset. */
static long test_stall_seconds(void)
{
	const char *v = getenv("FERRY_TEST_STALL_SECONDS");
	char *end;
	long n;

	if (!v || !*v)
		return 0;
	errno = 0;
	n = strtol(v, &end, 10);
	return errno || *end || n < 1 || n > FERRY_STALL_SECONDS ? 0 : n;
}

void cli_reg_opts(const struct cli_common *c, const struct auth_store *creds,
		  struct reg_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->ca_file = c->ca_file;
	o->insecure = c->insecure;
	o->n_insecure = c->n_insecure;
	o->creds = creds;
	o->cancel = &cli_interrupted;
	if (c->verbose)
		o->log = log_stderr;
	o->stall_timeout_s = test_stall_seconds();
}

int cli_write_json(const char *path, json_t *root, struct ferr *e)
{
	size_t n = strlen(path) + 32;
	char *tmp = malloc(n);
	int fd = -1, rc = -1;

	if (!tmp)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	snprintf(tmp, n, "%s.tmp-XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		ferr_errno(e, FERR_IO, errno,
			   "cannot create a file next to '%s'", path);
		free(tmp);
		return -1;
	}
	{
		mode_t um = umask(0);
		umask(um);
		fchmod(fd, 0644 & ~um);
	}
	errno = 0;
	if (json_dumpfd(root, fd, JSON_INDENT(2)) < 0 ||
	    write(fd, "\n", 1) != 1 || fsync(fd) < 0 || rename(tmp, path) < 0) {
		ferr_errno(e, FERR_IO, errno ? errno : EIO, "cannot write '%s'",
			   path);
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	close(fd);
	free(tmp);
	return rc;
}

static void *ticker_main(void *arg)
{
	struct cli_ticker *t = arg;

	pthread_mutex_lock(&t->mu);
	while (!t->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&t->cv, &t->mu, &ts);
		if (!t->stop)
			t->draw(t->ctx, false);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

void cli_ticker_init(struct cli_ticker *t, void (*draw)(void *, bool),
		     void *ctx)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	t->draw = draw;
	t->ctx = ctx;
}

int cli_ticker_start(struct cli_ticker *t)
{
	if (pthread_create(&t->th, NULL, ticker_main, t) != 0)
		return -1;
	t->running = true;
	return 0;
}

void cli_ticker_stop(struct cli_ticker *t, bool final)
{
	if (!t->running)
		return;
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->th, NULL);
	t->running = false;
	if (final)
		t->draw(t->ctx, true);
	else
		fputc('\n', stderr);
}

void cli_ticker_release(struct cli_ticker *t)
{
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
}
