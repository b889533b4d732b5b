/* The import engine's pure parts: the rollback record's target key. */
#include <stddef.h>
#include <stdlib.h>

#include "check.h"
#include "importer.h"

struct kcase {
	const char *host, *prefix, *scheme, *want;
};

/* every spelling of one target gives one key */
static const struct kcase keys[] = {
    {"localhost:5000", NULL, "http", "localhost:5000"},
    {"LOCALHOST:5000", NULL, "http", "localhost:5000"},
    {"LocalHost:5000", "lib", "http", "localhost:5000/lib"},
    {"localhost:5000", "lib/", "http", "localhost:5000/lib"},
    {"localhost:5000", "lib//", "http", "localhost:5000/lib"},
    {"localhost:5000", "/lib", "http", "localhost:5000/lib"},
    {"localhost:5000", "/", "http", "localhost:5000"},
    {"localhost:5000", "", "http", "localhost:5000"},
    {"localhost:5000", "a/b", "http", "localhost:5000/a/b"},
    {"reg.example:443", NULL, "https", "reg.example"},
    {"REG.example:443", "p", "https", "reg.example/p"},
    {"reg.example", "p", "https", "reg.example/p"},
    {"reg.example:80", NULL, "http", "reg.example"},
    /* a port that is not the scheme's default stays */
    {"reg.example:80", NULL, "https", "reg.example:80"},
    {"reg.example:443", NULL, "http", "reg.example:443"},
    {"reg.example:8443", NULL, "https", "reg.example:8443"},
    {"reg.example:4430", NULL, "https", "reg.example:4430"},
    {"[::1]:443", NULL, "https", "[::1]"},
    {"[::1]:5000", NULL, "https", "[::1]:5000"},
    /* not pinged yet: https, as a registry is by default */
    {"reg.example:443", NULL, NULL, "reg.example"},
};

/* --keep-registry: where an image lands */
struct rcase {
	const char *ref, *prefix, *want;
};
static const struct rcase repos[] = {
    {"reg.io/lib/app:1", NULL, "reg.io/lib/app"},
    {"Reg.IO:5000/lib/app:1", "mirror", "mirror/reg.io-5000/lib/app"},
    {"[::1]:5000/app:1", "mirror", "mirror/1-5000/app"},
    {"[fe80::1]/app:1", NULL, "fe80--1/app"},
    {"[2001:db8::2]:443/a/b:1", NULL, "2001-db8--2-443/a/b"},
    {"nginx", NULL, "docker.io/library/nginx"},
};

int main(void)
{
	char out[600], small[8];

	for (size_t i = 0; i < sizeof(repos) / sizeof(repos[0]); i++) {
		char *repo = NULL, *tag = NULL;
		struct ferr e;
		CHECK(imp_target_repo(repos[i].ref, repos[i].prefix, true,
				      &repo, &tag, &e) == 0,
		      "'%s'", repos[i].ref);
		CHECK_STR(repo, repos[i].want, repos[i].ref);
		free(repo);
		free(tag);
	}

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const struct kcase *k = &keys[i];
		char ctx[200];
		snprintf(ctx, sizeof(ctx), "'%s' '%s' %s", k->host,
			 k->prefix ? k->prefix : "(none)",
			 k->scheme ? k->scheme : "(none)");
		CHECK(imp_target_key(k->host, k->prefix, k->scheme, out,
				     sizeof(out)) == 0,
		      "%s", ctx);
		const char *got = out;
		CHECK_STR(got, k->want, ctx);
	}
	CHECK(imp_target_key("reg.example", "p", "https", small,
			     sizeof(small)) < 0,
	      "a key that does not fit is refused");
	return check_done();
}
