/* Image reference parsing and normalisation, checked against Docker's
 * behaviour (distribution/reference ParseNormalizedNamed + TagNameOnly). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ref.h"

/* Building blocks for long inputs. */
#define S8 "abcdefgh"
#define S32 S8 S8 S8 S8
#define S128 S32 S32 S32 S32
#define P114 S32 S32 S32 S8 S8 "ab"	 /* 114 chars */
#define P237 S128 S32 S32 S32 S8 "abcde" /* 237 chars */
#define H16 "0123456789abcdef"
#define H64 H16 H16 H16 H16
#define SHA "sha256:" H64
#define HUB "registry-1.docker.io"

struct tcase {
	const char *in;
	int ok;
	/* When ok: */
	const char *domain, *path, *tag, *digest;
	const char *full; /* ref_string */
	const char *host; /* ref_api_host */
	/* When not ok: a word the message must contain. */
	const char *why;
};

#define OK(in, d, p, t, g, full, host)                                         \
	{                                                                      \
		in, 1, d, p, t, g, full, host, NULL                            \
	}
#define BAD(in, why)                                                           \
	{                                                                      \
		in, 0, NULL, NULL, NULL, NULL, NULL, NULL, why                 \
	}

static const struct tcase cases[] = {
    /* Docker Hub names and their normalisation. */
    OK("nginx", "docker.io", "library/nginx", "latest", NULL,
       "docker.io/library/nginx:latest", HUB),
    OK("nginx:1.25", "docker.io", "library/nginx", "1.25", NULL,
       "docker.io/library/nginx:1.25", HUB),
    OK("library/nginx", "docker.io", "library/nginx", "latest", NULL,
       "docker.io/library/nginx:latest", HUB),
    OK("docker.io/nginx", "docker.io", "library/nginx", "latest", NULL,
       "docker.io/library/nginx:latest", HUB),
    OK("index.docker.io/nginx", "docker.io", "library/nginx", "latest", NULL,
       "docker.io/library/nginx:latest", HUB),
    OK("index.docker.io/library/nginx:1.25", "docker.io", "library/nginx",
       "1.25", NULL, "docker.io/library/nginx:1.25", HUB),
    OK("docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest",
       NULL, "docker.io/library/nginx:latest", HUB),
    OK("goharbor/harbor-jobservice:v2.3.0", "docker.io",
       "goharbor/harbor-jobservice", "v2.3.0", NULL,
       "docker.io/goharbor/harbor-jobservice:v2.3.0", HUB),
    OK("docker.io/foo/bar", "docker.io", "foo/bar", "latest", NULL,
       "docker.io/foo/bar:latest", HUB),
    OK("a/b/c/d/e/f", "docker.io", "a/b/c/d/e/f", "latest", NULL,
       "docker.io/a/b/c/d/e/f:latest", HUB),
    OK("library", "docker.io", "library/library", "latest", NULL,
       "docker.io/library/library:latest", HUB),
    OK("0", "docker.io", "library/0", "latest", NULL,
       "docker.io/library/0:latest", HUB),
    OK("9/8:7", "docker.io", "9/8", "7", NULL, "docker.io/9/8:7", HUB),
    /* No '/' at all: always a Docker Hub name, even if it looks like a
	 * host; "localhost:5000" is the image "localhost" tagged "5000". */
    OK("localhost", "docker.io", "library/localhost", "latest", NULL,
       "docker.io/library/localhost:latest", HUB),
    OK("localhost:5000", "docker.io", "library/localhost", "5000", NULL,
       "docker.io/library/localhost:5000", HUB),
    OK("example.com:5000", "docker.io", "library/example.com", "5000", NULL,
       "docker.io/library/example.com:5000", HUB),
    OK("index.docker.io", "docker.io", "library/index.docker.io", "latest",
       NULL, "docker.io/library/index.docker.io:latest", HUB),
    /* A first component without '.', ':' or uppercase is not a domain. */
    OK("localhost_x/foo", "docker.io", "localhost_x/foo", "latest", NULL,
       "docker.io/localhost_x/foo:latest", HUB),
    OK("localhost-1/foo", "docker.io", "localhost-1/foo", "latest", NULL,
       "docker.io/localhost-1/foo:latest", HUB),

    /* Other registries. */
    OK("localhost/foo", "localhost", "foo", "latest", NULL,
       "localhost/foo:latest", "localhost"),
    OK("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", NULL,
       "localhost:5000/a/b:t", "localhost:5000"),
    OK("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", NULL,
       "127.0.0.1:5000/x:latest", "127.0.0.1:5000"),
    OK("127.0.0.1/x", "127.0.0.1", "x", "latest", NULL, "127.0.0.1/x:latest",
       "127.0.0.1"),
    OK("1.2.3.4:65535/a/b", "1.2.3.4:65535", "a/b", "latest", NULL,
       "1.2.3.4:65535/a/b:latest", "1.2.3.4:65535"),
    OK("[::1]:5000/x:y", "[::1]:5000", "x", "y", NULL, "[::1]:5000/x:y",
       "[::1]:5000"),
    OK("[::1]/x", "[::1]", "x", "latest", NULL, "[::1]/x:latest", "[::1]"),
    OK("[2001:DB8::1]:443/ns/img:1.0", "[2001:DB8::1]:443", "ns/img", "1.0",
       NULL, "[2001:DB8::1]:443/ns/img:1.0", "[2001:DB8::1]:443"),
    OK("registry.example.com/a/b/c/d:1", "registry.example.com", "a/b/c/d", "1",
       NULL, "registry.example.com/a/b/c/d:1", "registry.example.com"),
    OK("quay.io/prometheus/node-exporter:v1.7.0", "quay.io",
       "prometheus/node-exporter", "v1.7.0", NULL,
       "quay.io/prometheus/node-exporter:v1.7.0", "quay.io"),
    OK("a-b.example.com/x", "a-b.example.com", "x", "latest", NULL,
       "a-b.example.com/x:latest", "a-b.example.com"),
    OK("a--b.c/x", "a--b.c", "x", "latest", NULL, "a--b.c/x:latest", "a--b.c"),
    OK("myhost:5000/foo", "myhost:5000", "foo", "latest", NULL,
       "myhost:5000/foo:latest", "myhost:5000"),
    OK("localhost:0/x", "localhost:0", "x", "latest", NULL,
       "localhost:0/x:latest", "localhost:0"),
    OK("docker.io:443/nginx", "docker.io:443", "nginx", "latest", NULL,
       "docker.io:443/nginx:latest", "docker.io:443"),
    /* Uppercase makes the first component a domain (Docker's rule). */
    OK("Example.com/foo", "Example.com", "foo", "latest", NULL,
       "Example.com/foo:latest", "Example.com"),
    OK("Foo/bar", "Foo", "bar", "latest", NULL, "Foo/bar:latest", "Foo"),
    OK("DOCKER.IO/nginx", "DOCKER.IO", "nginx", "latest", NULL,
       "DOCKER.IO/nginx:latest", "DOCKER.IO"),

    /* Path component separators. */
    OK("a__b", "docker.io", "library/a__b", "latest", NULL,
       "docker.io/library/a__b:latest", HUB),
    OK("a_b", "docker.io", "library/a_b", "latest", NULL,
       "docker.io/library/a_b:latest", HUB),
    OK("a--b", "docker.io", "library/a--b", "latest", NULL,
       "docker.io/library/a--b:latest", HUB),
    OK("a---b", "docker.io", "library/a---b", "latest", NULL,
       "docker.io/library/a---b:latest", HUB),
    OK("a.b", "docker.io", "library/a.b", "latest", NULL,
       "docker.io/library/a.b:latest", HUB),
    OK("x1/a.b-c_d__e", "docker.io", "x1/a.b-c_d__e", "latest", NULL,
       "docker.io/x1/a.b-c_d__e:latest", HUB),

    /* Tags. */
    OK("nginx:Latest", "docker.io", "library/nginx", "Latest", NULL,
       "docker.io/library/nginx:Latest", HUB),
    OK("nginx:_x", "docker.io", "library/nginx", "_x", NULL,
       "docker.io/library/nginx:_x", HUB),
    OK("nginx:1.0-rc.1_X", "docker.io", "library/nginx", "1.0-rc.1_X", NULL,
       "docker.io/library/nginx:1.0-rc.1_X", HUB),
    OK("nginx:a..b--", "docker.io", "library/nginx", "a..b--", NULL,
       "docker.io/library/nginx:a..b--", HUB),
    OK("nginx:" S128, "docker.io", "library/nginx", S128, NULL,
       "docker.io/library/nginx:" S128, HUB),

    /* Digests, alone or with a tag. */
    OK("nginx@" SHA, "docker.io", "library/nginx", NULL, SHA,
       "docker.io/library/nginx@" SHA, HUB),
    OK("nginx:1.25@" SHA, "docker.io", "library/nginx", "1.25", SHA,
       "docker.io/library/nginx:1.25@" SHA, HUB),
    OK("ghcr.io/owner/repo@" SHA, "ghcr.io", "owner/repo", NULL, SHA,
       "ghcr.io/owner/repo@" SHA, "ghcr.io"),
    OK("localhost:5000/a:t@" SHA, "localhost:5000", "a", "t", SHA,
       "localhost:5000/a:t@" SHA, "localhost:5000"),

    /* Hex strings that are not a bare image ID are ordinary names. */
    OK(H64 ":v1", "docker.io", "library/" H64, "v1", NULL,
       "docker.io/library/" H64 ":v1", HUB),
    OK("example.com/" H64, "example.com", H64, "latest", NULL,
       "example.com/" H64 ":latest", "example.com"),
    OK(H16 H16 H16 "0123456789abcde", "docker.io",
       "library/" H16 H16 H16 "0123456789abcde", "latest", NULL,
       "docker.io/library/" H16 H16 H16 "0123456789abcde:latest", HUB),

    /* Name length: domain "/" path, after normalisation, at most 255. */
    OK("example.com/" S128 "/" P114, "example.com", S128 "/" P114, "latest",
       NULL, "example.com/" S128 "/" P114 ":latest", "example.com"),
    BAD("example.com/" S128 "/" P114 "c", "longer than 255"),
    OK(P237, "docker.io", "library/" P237, "latest", NULL,
       "docker.io/library/" P237 ":latest", HUB),
    BAD(P237 "f", "longer than 255"),

    /* Uppercase in the repository path. */
    BAD("Foo", "must be lowercase"),
    BAD("example.com/Foo", "must be lowercase"),
    BAD("docker.io/Foo", "must be lowercase"),
    BAD("nginX:tag", "must be lowercase"),
    BAD("localhost:5000/a/B", "must be lowercase"),
    BAD("foo/Bar@" SHA, "must be lowercase"),

    /* Empty, bare image ID, stray separators. */
    BAD("", "empty"),
    BAD(H64, "64-byte hexadecimal"),
    BAD("/foo", "empty path component"),
    BAD("foo/", "empty path component"),
    BAD("foo//bar", "empty path component"),
    BAD("example.com/", "missing"),
    BAD("localhost:5000/", "missing"),
    BAD("localhost/", "missing"),
    BAD("example.com//foo", "empty path component"),
    BAD(":tag", "missing"),
    BAD("@" SHA, "missing"),
    BAD("/", "empty path component"),
    BAD("nginx:", "tag is empty"),
    BAD("nginx@", "digest is empty"),
    BAD("nginx:tag@", "digest is empty"),
    BAD("nginx:@" SHA, "tag is empty"),
    BAD("a:b:c", "invalid tag 'b:c'"),
    BAD("nginx:1.25:2", "invalid tag"),
    BAD("a/b:c/d", "invalid tag"),
    BAD("nginx:a/b", "registry domain"),

    /* Spaces, control characters, non-ASCII. */
    BAD(" nginx", "control character"),
    BAD("nginx ", "control character"),
    BAD("ngi nx", "control character"),
    BAD("nginx\t", "control character"),
    BAD("nginx\nlatest", "control character"),
    BAD("nginx:la test", "control character"),
    BAD("\x1b[31mnginx", "control character"),
    BAD("nginx\x7f", "control character"),
    BAD("nginx:\xc3\xa9t\xc3\xa9", "non-ASCII"),

    /* Path components. */
    BAD("a___b", "invalid path component 'a___b'"),
    BAD("a..b", "invalid path component"),
    BAD("_a", "invalid path component"),
    BAD("a_", "invalid path component"),
    BAD("a-", "invalid path component"),
    BAD("a-b-", "invalid path component"),
    BAD("foo/a-b-/c", "invalid path component 'a-b-'"),
    BAD("-a", "invalid path component"),
    BAD(".a", "invalid path component"),
    BAD("a.-b", "invalid path component"),
    BAD("a_.b", "invalid path component"),
    BAD("a._b", "invalid path component"),
    BAD("foo/b+r", "invalid path component"),
    BAD("[::1]:5000", "invalid path component"),
    BAD("[abc]/foo", "invalid path component"),

    /* Tags. */
    BAD("nginx:" S128 "x", "longer than 128"),
    BAD("nginx:-x", "invalid tag"),
    BAD("nginx:.x", "invalid tag"),
    BAD("nginx:a+b", "invalid tag"),
    BAD("nginx:a@b", "digest"),

    /* Digests. */
    BAD("nginx@sha512:" H64 H64, "unsupported digest algorithm 'sha512'"),
    BAD("nginx@md5:" H16 H16, "unsupported digest algorithm"),
    BAD("nginx@SHA256:" H64, "unsupported digest algorithm"),
    BAD("nginx@sha256:" H16 H16 H16 "0123456789ABCDEF", "lowercase hex"),
    BAD("nginx@sha256:abc", "invalid digest"),
    BAD("nginx@sha256:" H64 "0", "invalid digest"),
    BAD("nginx@sha256:" H16 H16 H16 "0123456789abcdeg", "invalid digest"),
    BAD("nginx@sha256", "invalid digest"),
    BAD("nginx@sha256:", "invalid digest"),
    BAD("nginx@" H64, "invalid digest"),
    BAD("nginx@" SHA "@" SHA, "invalid digest"),
    BAD("nginx@" SHA ":x", "invalid digest"),

    /* Domains. */
    /* Docker reads these as a domain-less path; ferry refuses them. */
    BAD("a_b.com/foo", "registry domain 'a_b.com'"),
    BAD("a.b-c_d__e/f1", "registry domain"),
    BAD("-a.com/foo", "registry domain"),
    BAD("a-.com/foo", "registry domain"),
    BAD("a..com/foo", "registry domain"),
    BAD(".com/foo", "registry domain"),
    BAD("com./foo", "registry domain"),
    BAD("localhost:/foo", "registry domain"),
    BAD("localhost:50a0/foo", "registry domain"),
    BAD("example.com:5000:6000/foo", "registry domain"),
    BAD("[]:5000/foo", "registry domain"),
    BAD("[::1/foo", "registry domain"),
    BAD("[::g]/foo", "registry domain"),
    BAD("[::1]x/foo", "registry domain"),
    BAD("[fe80::1%eth0]:5000/x", "registry domain"),
    BAD("UPPER_case/foo", "registry domain"),
    BAD("ex ample.com/foo", "control character"),
};

/* What the message must start with: the input's first 200 bytes, each byte
 * that is not printable ASCII shown as '?', and "..." when cut. */
static void expected_head(char *dst, size_t dstsz, const char *in)
{
	size_t n = strlen(in), i, o;

	o = (size_t)snprintf(dst, dstsz, "invalid reference '");
	for (i = 0; i < n && i < 200 && o + 5 < dstsz; i++) {
		unsigned char c = (unsigned char)in[i];

		dst[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (n > 200) {
		memcpy(dst + o, "...'", 4);
		o += 4;
	} else {
		dst[o++] = '\'';
	}
	dst[o] = '\0';
}

static int all_null(const struct ref *r)
{
	return !r->domain && !r->path && !r->tag && !r->digest;
}

static void run_ok(const struct tcase *c)
{
	struct ref r = {0}, again = {0};
	struct ferr e;
	char *full, *name;
	char want_name[512];
	const char *want = want_name;
	int rc;

	ferr_clear(&e);
	rc = ref_parse(&r, c->in, &e);
	CHECK(rc == 0, "'%s': want success, got %d: %s", c->in, rc, e.msg);
	if (rc != 0)
		return;
	CHECK_STR(r.domain, c->domain, c->in);
	CHECK_STR(r.path, c->path, c->in);
	CHECK_STR(r.tag, c->tag, c->in);
	CHECK_STR(r.digest, c->digest, c->in);

	full = ref_string(&r);
	CHECK_STR(full, c->full, c->in);
	snprintf(want_name, sizeof(want_name), "%s/%s", c->domain, c->path);
	name = ref_name(&r);
	CHECK_STR(name, want, c->in);
	CHECK(name && strlen(name) <= REF_MAX_NAME, "'%s': name too long",
	      c->in);
	CHECK_STR(ref_api_host(&r), c->host, c->in);
	CHECK_STR(ref_object(&r), c->digest ? c->digest : c->tag, c->in);

	/* The normalised form is a fixed point. */
	if (full) {
		char *full2;

		rc = ref_parse(&again, full, &e);
		CHECK(rc == 0, "'%s': reparse failed: %s", full, e.msg);
		full2 = ref_string(&again);
		CHECK_STR(full2, full, c->in);
		free(full2);
	}
	ref_release(&again);
	free(full);
	free(name);
	ref_release(&r);
	CHECK(all_null(&r), "'%s': ref_release left pointers", c->in);
	ref_release(&r);
}

static void run_bad(const struct tcase *c)
{
	struct ref r;
	struct ferr e;
	char head[512];
	int rc;

	/* Junk in the struct must not survive a failed parse. */
	memset(&r, 0xa5, sizeof(r));
	ferr_clear(&e);
	rc = ref_parse(&r, c->in, &e);
	CHECK(rc == -1, "'%s': want failure, got %d", c->in, rc);
	CHECK(all_null(&r), "'%s': struct not left empty", c->in);
	CHECK(e.cat == FERR_INPUT, "'%s': category %d", c->in, (int)e.cat);
	CHECK(e.msg[0] != '\0', "'%s': empty message", c->in);
	expected_head(head, sizeof(head), c->in);
	CHECK(strncmp(e.msg, head, strlen(head)) == 0,
	      "'%s': message '%s' does not start with '%s'", c->in, e.msg,
	      head);
	CHECK(strstr(e.msg, c->why) != NULL, "'%s': message '%s' lacks '%s'",
	      c->in, e.msg, c->why);
	CHECK(strchr(e.msg, '\n') == NULL && strchr(e.msg, '\x1b') == NULL,
	      "'%s': control character in message", c->in);
	if (rc == 0)
		ref_release(&r);

	/* Without an error struct it still fails cleanly. */
	rc = ref_parse(&r, c->in, NULL);
	CHECK(rc == -1 && all_null(&r), "'%s': failure without ferr", c->in);
}

static void misc(void)
{
	struct ref r = {0};
	struct ferr e;
	char *s;

	/* Release is safe on NULL, on a zeroed struct, and twice. */
	ref_release(NULL);
	ref_release(&r);
	CHECK(all_null(&r), "zeroed struct after release");

	/* Accessors on an empty struct. */
	CHECK(ref_string(&r) == NULL, "ref_string of empty ref");
	CHECK(ref_name(&r) == NULL, "ref_name of empty ref");
	CHECK(ref_api_host(&r) == NULL, "ref_api_host of empty ref");
	CHECK(ref_object(&r) == NULL, "ref_object of empty ref");
	CHECK(ref_api_host(NULL) == NULL, "ref_api_host(NULL)");
	CHECK(ref_object(NULL) == NULL, "ref_object(NULL)");
	CHECK(ref_string(NULL) == NULL, "ref_string(NULL)");

	/* NULL input. */
	ferr_clear(&e);
	CHECK(ref_parse(&r, NULL, &e) == -1 && e.cat == FERR_INPUT &&
		  all_null(&r),
	      "NULL input: %s", e.msg);

	/* Success without an error struct; a struct can be reused. */
	CHECK(ref_parse(&r, "nginx", NULL) == 0, "nginx without ferr");
	ref_release(&r);
	CHECK(ref_parse(&r, "busybox:1", NULL) == 0, "reuse after release");
	s = ref_string(&r);
	CHECK_STR(s, "docker.io/library/busybox:1", "reuse");
	free(s);
	ref_release(&r);
	ref_release(&r);
	CHECK(all_null(&r), "double release");

	/* Digest wins in ref_object when both are present. */
	CHECK(ref_parse(&r, "nginx:1@" SHA, NULL) == 0, "tag and digest");
	CHECK_STR(ref_object(&r), SHA, "ref_object prefers digest");
	ref_release(&r);

	/* A very long hostile input is quoted only in part. */
	{
		static char big[8192];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		big[100] = 'A';
		ferr_clear(&e);
		CHECK(ref_parse(&r, big, &e) == -1, "big input accepted");
		CHECK(strlen(e.msg) < 400, "big input quoted whole: %zu",
		      strlen(e.msg));
	}
}

int main(void)
{
	size_t n = sizeof(cases) / sizeof(cases[0]);

	for (size_t i = 0; i < n; i++) {
		if (cases[i].ok)
			run_ok(&cases[i]);
		else
			run_bad(&cases[i]);
	}
	misc();
	printf("%zu table cases\n", n);
	return check_done();
}
