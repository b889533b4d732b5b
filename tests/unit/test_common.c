/* Unit tests: errors, bounded buffer, digests, credentials, challenges,
 * manifest classification. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "buf.h"
#include "check.h"
#include "digest.h"
#include "err.h"
#include "reg.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_digest(void)
{
	static const struct {
		const char *in;
		int ok;
	} cases[] = {
	    {"sha256:" HEX64, 1},
	    {"sha256:" HEX64 "0", 0},
	    {"sha256:" HEX64 "\n", 0},
	    {"sha256:0123456789abcdef", 0},
	    {"sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789a"
	     "bcdef",
	     0},
	    {"sha512:" HEX64 HEX64, 0},
	    {"SHA256:" HEX64, 0},
	    {"md5:" HEX64, 0},
	    {"sha256:" HEX64 "/../x", 0},
	    {"sha256:", 0},
	    {"", 0},
	    {HEX64, 0},
	    {"sha256:g123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
	     "cdef",
	     0},
	    {"sha256: 123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
	     "cdef",
	     0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct digest d;
		struct ferr e;
		ferr_clear(&e);
		int rc = digest_parse(&d, cases[i].in, &e);
		CHECK((rc == 0) == cases[i].ok, "digest case %zu '%s'", i,
		      cases[i].in);
		if (!cases[i].ok)
			CHECK(e.cat == FERR_INPUT &&
				  strstr(e.msg, "invalid digest"),
			      "message for case %zu: %s", i, e.msg);
	}
	/* known answers, one-shot and streamed in odd pieces */
	{
		struct digest d;
		struct digest_ctx c;
		const char *abc = "abc";
		digest_of("", 0, &d, NULL);
		CHECK_STR(
		    d.str,
		    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934"
		    "ca495991b7852b855",
		    "sha256 of empty");
		digest_ctx_init(&c, NULL);
		for (int i = 0; i < 3; i++)
			digest_ctx_update(&c, abc + i, 1);
		digest_ctx_final(&c, &d);
		CHECK_STR(
		    d.str,
		    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9"
		    "cb410ff61f20015ad",
		    "sha256 of abc");
		digest_ctx_restart(&c);
		digest_ctx_update(&c, "abc", 3);
		digest_ctx_final(&c, &d);
		CHECK(strstr(d.str, "ba7816bf") != NULL, "restart works");
		digest_ctx_release(&c);
		digest_ctx_release(NULL);
	}
}

static void test_buf(void)
{
	struct buf b;
	buf_init(&b, 10);
	CHECK(buf_append(&b, "12345", 5) == 0, "append within max");
	CHECK(buf_append(&b, "12345", 5) == 0, "append up to max");
	errno = 0;
	CHECK(buf_append(&b, "1", 1) == -1 && errno == E2BIG, "over max");
	CHECK(b.len == 10 && !memcmp(b.data, "1234512345", 10) &&
		  b.data[10] == '\0',
	      "content kept, NUL-terminated");
	CHECK(buf_append(&b, "x", (size_t)-1) == -1, "huge size refused");
	buf_release(&b);
	buf_release(&b); /* twice is safe */
	buf_release(NULL);
}

static void test_err(void)
{
	struct ferr e;
	char big[3000];

	ferr_clear(&e);
	CHECK(ferr_set(&e, FERR_IO, 2, "cannot open '%s'", "x.tar") == -1,
	      "returns -1");
	ferr_prefix(&e, "export");
	CHECK_STR(e.msg, "export: cannot open 'x.tar'", "prefix");
	CHECK(e.cat == FERR_IO && e.code == 2, "prefix keeps cat and code");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ferr_set(&e, FERR_INPUT, 0, "%s", big);
	ferr_prefix(&e, "%s", big);
	CHECK(strlen(e.msg) == FERR_MSG_MAX - 1, "long messages are cut");
	ferr_errno(&e, FERR_IO, ENOENT, "cannot open '%s'", "y");
	CHECK(strstr(e.msg, "No such file") != NULL, "strerror appended: %s",
	      e.msg);
	CHECK(ferr_set(NULL, FERR_IO, 0, "x") == -1, "NULL error is fine");
	static const struct {
		enum ferr_cat c;
		int code;
	} codes[] = {{FERR_OK, 0},	{FERR_INPUT, 1}, {FERR_USAGE, 2},
		     {FERR_NETWORK, 3}, {FERR_AUTH, 4},	 {FERR_VERIFY, 5},
		     {FERR_BUNDLE, 6},	{FERR_IO, 7},	 {FERR_INTERRUPT, 130}};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		CHECK(ferr_exit_code(codes[i].c) == codes[i].code,
		      "exit code of %s", ferr_cat_name(codes[i].c));
}

static void test_challenge(void)
{
	static const struct {
		const char *in;
		enum auth_scheme scheme;
		const char *realm, *service, *scope;
		int ok;
	} cases[] = {
	    {"Bearer realm=\"https://auth.docker.io/token\",service=\"registry."
	     "docker.io\",scope=\"repository:library/nginx:pull\"",
	     AUTH_BEARER, "https://auth.docker.io/token", "registry.docker.io",
	     "repository:library/nginx:pull", 1},
	    {"Basic realm=\"basic-realm\"", AUTH_BASIC, "basic-realm", NULL,
	     NULL, 1},
	    {"basic realm=x", AUTH_BASIC, "x", NULL, NULL, 1},
	    {"Bearer realm=\"https://h/service/token\", service=\"harbor-"
	     "registry\"",
	     AUTH_BEARER, "https://h/service/token", "harbor-registry", NULL,
	     1},
	    {"Bearer realm=\"a\\\"b\",service=\"s,t\"", AUTH_BEARER, "a\"b",
	     "s,t", NULL, 1},
	    {"Bearer service=\"x\"", AUTH_NONE, NULL, NULL, NULL, 0},
	    {"Bearer realm=\"unterminated", AUTH_NONE, NULL, NULL, NULL, 0},
	    {"Negotiate abc", AUTH_NONE, NULL, NULL, NULL, 1},
	    {"", AUTH_NONE, NULL, NULL, NULL, 1},
	    {"Bearer realm=\"r\",scope=\"a b\"", AUTH_BEARER, "r", NULL, "a b",
	     1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct auth_challenge c;
		struct ferr e;
		char ctx[64];
		ferr_clear(&e);
		int rc = auth_challenge_parse(&c, cases[i].in, &e);
		snprintf(ctx, sizeof(ctx), "challenge %zu", i);
		CHECK((rc == 0) == cases[i].ok, "%s rc", ctx);
		if (rc == 0) {
			CHECK(c.scheme == cases[i].scheme, "%s scheme", ctx);
			CHECK_STR(c.realm, cases[i].realm, ctx);
			CHECK_STR(c.service, cases[i].service, ctx);
			CHECK_STR(c.scope, cases[i].scope, ctx);
		} else {
			CHECK(e.msg[0] != '\0', "%s message", ctx);
		}
		auth_challenge_release(&c);
	}
}

static void test_authfile(void)
{
	/* dXNlcjpwYXNz = user:pass, aHViOnNlY3JldDpjb2xvbg== = hub:secret:colon */
	const char *json =
	    "{\"auths\":{"
	    "\"https://index.docker.io/v1/\":{\"auth\":"
	    "\"aHViOnNlY3JldDpjb2xvbg==\"},"
	    "\"registry.example.com:5000\":{\"auth\":\"dXNlcjpwYXNz\"},"
	    "\"https://harbor.example.com/v2/\":{\"username\":\"u2\","
	    "\"password\":\"p2\"},"
	    "\"ghcr.io\":{\"identitytoken\":\"x\"}"
	    "},\"credsStore\":\"desktop\"}";
	static const struct {
		const char *host;
		const char *user, *pass;
	} cases[] = {
	    {"registry-1.docker.io", "hub", "secret:colon"},
	    {"docker.io", "hub", "secret:colon"},
	    {"index.docker.io", "hub", "secret:colon"},
	    {"registry.example.com:5000", "user", "pass"},
	    {"REGISTRY.example.com:5000", "user", "pass"},
	    {"registry.example.com", NULL, NULL},
	    {"registry.example.com:5001", NULL, NULL},
	    {"harbor.example.com", "u2", "p2"},
	    {"ghcr.io", "", NULL}, /* an identity token only */
	    {"evil.example.com", NULL, NULL},
	};
	struct auth_store s = {0};
	struct ferr e;

	CHECK(auth_store_parse(&s, json, strlen(json), "t", &e) == 0,
	      "parse authfile: %s", e.msg);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct auth_cred *c = auth_store_find(&s, cases[i].host);
		CHECK(!!c == !!cases[i].user, "find '%s'", cases[i].host);
		if (c && cases[i].user) {
			CHECK_STR(c->user, cases[i].user, cases[i].host);
			CHECK_STR(c->pass, cases[i].pass, cases[i].host);
			CHECK(strcmp(cases[i].host, "ghcr.io")
				  ? c->identity_token == NULL
				  : c->identity_token &&
					!strcmp(c->identity_token, "x"),
			      "identity token of '%s'", cases[i].host);
		}
	}
	auth_store_release(&s);
	auth_store_release(&s);

	static const char *bad[] = {
	    "[1]",
	    "{\"auths\":[]}",
	    "{\"auths\":{\"h\":{\"auth\":\"bm9jb2xvbg==\"}}}",
	    "{\"auths\":{\"h\":{\"auth\":\"!!!\"}}}",
	    "{",
	    "{\"a\":1,\"a\":2}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct auth_store t = {0};
		ferr_clear(&e);
		CHECK(auth_store_parse(&t, bad[i], strlen(bad[i]), "cfg.json",
				       &e) == -1,
		      "bad authfile %zu accepted", i);
		CHECK(strstr(e.msg, "'cfg.json'") != NULL, "names the file: %s",
		      e.msg);
		auth_store_release(&t);
	}
	/* an explicit --authfile that does not exist is an error */
	ferr_clear(&e);
	CHECK(auth_store_load(&s, "/nonexistent/ferry/config.json", &e) == -1 &&
		  e.cat == FERR_IO,
	      "missing --authfile");
	{
		struct auth_cred c = {NULL, "user", "pass", NULL};
		char *h = auth_basic_header(&c);
		CHECK_STR(h, "Authorization: Basic dXNlcjpwYXNz",
			  "basic header");
		auth_wipe_free(h);
	}
}

static void test_manifest_kind(void)
{
	static const struct {
		const char *body;
		const char *ct;
		const char *want; /* NULL: refused */
		const char *why;  /* substring of the message */
	} cases[] = {
	    {"{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST
	     "\",\"config\":{},\"layers\":[]}",
	     MT_OCI_MANIFEST, MT_OCI_MANIFEST, NULL},
	    {"{\"schemaVersion\":2,\"config\":{},\"layers\":[]}",
	     "application/json", MT_OCI_MANIFEST, NULL},
	    {"{\"schemaVersion\":2,\"manifests\":[]}", MT_OCI_INDEX,
	     MT_OCI_INDEX, NULL},
	    {"{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_LIST
	     "\",\"manifests\":[]}",
	     MT_DOCKER_LIST "; charset=utf-8", MT_DOCKER_LIST, NULL},
	    {"{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_MANIFEST
	     "\",\"config\":{},\"layers\":[]}",
	     NULL, MT_DOCKER_MANIFEST, NULL},
	    {"{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}",
	     MT_DOCKER_SCHEMA1_SIGNED, NULL, "schema 1"},
	    {"{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}",
	     "application/json", NULL, "schema 1"},
	    {"{\"schemaVersion\":2,\"manifests\":[],\"layers\":[],\"config\":"
	     "{}}",
	     NULL, NULL, "ambiguous"},
	    {"{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST
	     "\",\"config\":{},\"layers\":[]}",
	     MT_OCI_INDEX, NULL, "served as"},
	    {"{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX
	     "\",\"config\":{},\"layers\":[]}",
	     NULL, NULL, "without"},
	    {"{\"schemaVersion\":2,\"mediaType\":\"text/html\"}", NULL, NULL,
	     "unsupported media type"},
	    {"{\"schemaVersion\":2,\"mediaType\":7}", NULL, NULL,
	     "not a string"},
	    {"[]", NULL, NULL, "not a JSON object"},
	    {"{\"schemaVersion\":2}", NULL, NULL, "neither"},
	    {"{\"schemaVersion\":2,\"config\":{},\"layers\":[],\"config\":{}}",
	     NULL, NULL, "not a JSON object"},
	    {"{\"schemaVersion\":3,\"manifests\":[]}", NULL, NULL,
	     "schemaVersion"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ferr e;
		ferr_clear(&e);
		const char *k =
		    reg_manifest_kind((const unsigned char *)cases[i].body,
				      strlen(cases[i].body), cases[i].ct, &e);
		CHECK_STR(k, cases[i].want, cases[i].body);
		if (cases[i].why)
			CHECK(strstr(e.msg, cases[i].why) != NULL,
			      "case %zu message '%s' lacks '%s'", i, e.msg,
			      cases[i].why);
	}
}

static void test_insecure(void)
{
	const char *list[] = {"127.0.0.1:5000", "reg.local"};
	struct reg_opts o;
	static const struct {
		const char *host;
		bool want;
	} cases[] = {
	    {"127.0.0.1:5000", true},  {"127.0.0.1:5001", false},
	    {"127.0.0.1", false},      {"reg.local", true},
	    {"reg.local:443", true},   {"REG.LOCAL:8443", true},
	    {"reg.local.evil", false}, {"other", false},
	};
	memset(&o, 0, sizeof(o));
	o.insecure = list;
	o.n_insecure = 2;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(reg_host_insecure(&o, cases[i].host) == cases[i].want,
		      "insecure '%s'", cases[i].host);
}

static void test_credhelpers(void)
{
	static const struct {
		const char *name;
		bool ok;
	} names[] = {
	    {"pass", true},	  {"ecr-login", true}, {"osxkeychain", true},
	    {"gcloud_1.2", true}, {"", false},	       {".hidden", false},
	    {"../bin/sh", false}, {"a/b", false},      {"a b", false},
	    {"x;rm", false},	  {"$(id)", false},
	};
	static const char json[] =
	    "{\"credHelpers\":{\"Reg.Example.com:5000\":\"nope-ferry-test\","
	    "\"https://index.docker.io/v1/\":\"hub\"},"
	    "\"auths\":{\"other.example.com\":{\"auth\":\"dXNlcjpwYXNz\"}}}";
	static const char *bad[] = {"{\"credsStore\":\"../../bin/sh\"}",
				    "{\"credsStore\":1}",
				    "{\"credHelpers\":[]}",
				    "{\"credHelpers\":{\"h\":\"a/b\"}}",
				    "{\"credHelpers\":{\"h\":2}}"};
	struct auth_store s = {0};
	const struct auth_cred *c = NULL;
	struct ferr e;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		CHECK(auth_helper_name_ok(names[i].name) == names[i].ok,
		      "helper name '%s'", names[i].name);
	ferr_clear(&e);
	CHECK(auth_store_parse(&s, json, strlen(json), "t", &e) == 0,
	      "parse credHelpers: %s", e.msg);
	CHECK(s.n_helpers == 2, "two helpers, got %zu", s.n_helpers);
	for (size_t i = 0; i < s.n_helpers; i++)
		if (!strcmp(s.helpers[i].name, "hub"))
			CHECK_STR(s.helpers[i].host, "docker.io", "hub key");
		else
			CHECK_STR(s.helpers[i].host, "reg.example.com:5000",
				  "helper key normalised");
	/* a host without a helper: the auths entry */
	CHECK(auth_store_lookup(&s, "other.example.com", &c, &e) == 0 && c &&
		  !strcmp(c->user, "user"),
	      "auths entry without a helper");
	/* a helper that is not on PATH: an authentication error, each time */
	for (int k = 0; k < 2; k++) {
		ferr_clear(&e);
		CHECK(auth_store_lookup(&s, "reg.example.com:5000", &c, &e) ==
			      -1 &&
			  e.cat == FERR_AUTH &&
			  strstr(e.msg, "'docker-credential-nope-ferry-test' "
					"is not on PATH"),
		      "missing helper (%d): %s", k, e.msg);
	}
	auth_store_release(&s);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct auth_store t = {0};
		ferr_clear(&e);
		CHECK(auth_store_parse(&t, bad[i], strlen(bad[i]), "cfg.json",
				       &e) == -1 &&
			  e.cat == FERR_INPUT && strstr(e.msg, "'cfg.json'"),
		      "bad helper config %zu accepted: %s", i, e.msg);
		auth_store_release(&t);
	}
}

int main(void)
{
	test_err();
	test_buf();
	test_digest();
	test_challenge();
	test_authfile();
	test_manifest_kind();
	test_insecure();
	test_credhelpers();
	return check_done();
}
