/* Drives the registry client against a live registry for the integration
 * tests.
 *
 *   regcheck [opts] HOST fetch-all IMAGES.tsv
 *       resolve every tag, walk indexes, fetch and verify every manifest
 *       and blob; check digests against the fixture's own list.
 *   regcheck [opts] HOST manifest REPO OBJECT
 *   regcheck [opts] HOST blob REPO DIGEST SIZE
 *
 * --expect CAT makes the run succeed only if the operation fails with that
 * error category (network, auth, verify, input, ok).  Prints the error
 * message, and the client's statistics as "stat NAME VALUE" lines.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "digest.h"
#include "err.h"
#include "reg.h"

static struct reg_client *cl;
static int failures;
static unsigned long blobs_fetched, manifests_fetched;

static int null_write(void *ctx, const void *p, size_t n, struct ferr *e)
{
	(void)ctx;
	(void)p;
	(void)n;
	(void)e;
	return 0;
}

static int fetch_blob(const char *repo, const char *dg, unsigned long long size,
		      struct ferr *e)
{
	struct reg_sink sink = {null_write, NULL, NULL};
	struct reg_blob_req rq;

	memset(&rq, 0, sizeof(rq));
	rq.repo = repo;
	if (digest_parse(&rq.digest, dg, e) < 0)
		return -1;
	rq.size = size;
	blobs_fetched++;
	return reg_get_blob(cl, &rq, &sink, e);
}

/* Fetch a manifest and everything below it; append digests to `seen`. */
static int walk(const char *repo, const char *object, json_t *seen,
		struct ferr *e, struct reg_manifest *top)
{
	struct reg_manifest m;
	json_t *root = NULL, *arr;
	size_t i;
	json_t *d;
	int rc = -1;

	if (reg_get_manifest(cl, repo, object, &m, e) < 0)
		return -1;
	manifests_fetched++;
	if (top) {
		top->digest = m.digest;
		top->media_type = strdup(m.media_type);
	}
	root = json_loadb((const char *)m.data, m.len, 0, NULL);
	if (!root) {
		ferr_set(e, FERR_INPUT, 0, "manifest does not parse");
		goto out;
	}
	if ((arr = json_object_get(root, "manifests"))) {
		json_array_foreach(arr, i, d)
		{
			const char *dg =
			    json_string_value(json_object_get(d, "digest"));
			json_array_append_new(seen, json_string(dg));
			if (walk(repo, dg, seen, e, NULL) < 0)
				goto out;
		}
	} else {
		json_t *cfg = json_object_get(root, "config");
		json_array_append_new(seen,
				      json_string(json_string_value(
					  json_object_get(cfg, "digest"))));
		if (fetch_blob(
			repo, json_string_value(json_object_get(cfg, "digest")),
			(unsigned long long)json_integer_value(
			    json_object_get(cfg, "size")),
			e) < 0)
			goto out;
		arr = json_object_get(root, "layers");
		json_array_foreach(arr, i, d)
		{
			const char *dg =
			    json_string_value(json_object_get(d, "digest"));
			json_array_append_new(seen, json_string(dg));
			if (fetch_blob(repo, dg,
				       (unsigned long long)json_integer_value(
					   json_object_get(d, "size")),
				       e) < 0)
				goto out;
		}
	}
	rc = 0;
out:
	json_decref(root);
	reg_manifest_release(&m);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_line(char *line, struct ferr *e)
{
	char *f[4] = {NULL, NULL, NULL, NULL};
	char *p = line, *colon, *ref;
	int nf = 0;
	struct reg_manifest top;
	struct reg_head h;
	json_t *seen = json_array();
	size_t n;

	while (nf < 4) {
		f[nf++] = p;
		p = strchr(p, '\t');
		if (!p)
			break;
		*p++ = '\0';
	}
	if (nf < 4) {
		fprintf(stderr, "bad images line\n");
		failures++;
		goto out;
	}
	ref = f[0];
	colon = strrchr(ref, ':');
	*colon = '\0';
	memset(&top, 0, sizeof(top));
	if (walk(ref, colon + 1, seen, e, &top) < 0) {
		fprintf(stderr, "FAIL %s:%s: %s\n", ref, colon + 1, e->msg);
		failures++;
		goto out;
	}
	if (strcmp(top.digest.str, f[1]) || strcmp(top.media_type, f[2])) {
		fprintf(stderr, "FAIL %s: got %s %s want %s %s\n", ref,
			top.digest.str, top.media_type, f[1], f[2]);
		failures++;
	}
	/* by digest, and HEAD agree */
	if (reg_head_manifest(cl, ref, colon + 1, &h, e) < 0 || !h.found ||
	    !h.has_digest || strcmp(h.digest.str, f[1])) {
		fprintf(stderr, "FAIL HEAD %s: %s\n", ref, e->msg);
		failures++;
	}
	/* the set of reached digests equals the fixture's list */
	{
		char **want = NULL, **got = NULL;
		size_t nw = 0, ng = json_array_size(seen);
		char *q = f[3], *tok;
		q[strcspn(q, "\n")] = '\0';
		while ((tok = strsep(&q, " ")))
			if (*tok) {
				char **grown =
				    realloc(want, (nw + 1) * sizeof(*want));
				if (!grown)
					abort();
				want = grown;
				want[nw++] = tok;
			}
		got = calloc(ng + 1, sizeof(*got));
		for (n = 0; n < ng; n++)
			got[n] =
			    (char *)json_string_value(json_array_get(seen, n));
		qsort(want, nw, sizeof(*want), cmp_str);
		qsort(got, ng, sizeof(*got), cmp_str);
		/* dedupe got (shared layers within one image) */
		size_t k = 0;
		for (n = 0; n < ng; n++)
			if (!k || strcmp(got[k - 1], got[n]))
				got[k++] = got[n];
		if (k != nw) {
			fprintf(stderr,
				"FAIL %s: %zu blobs reached, %zu "
				"expected\n",
				ref, k, nw);
			failures++;
		} else {
			for (n = 0; n < nw; n++)
				if (strcmp(want[n], got[n])) {
					fprintf(stderr, "FAIL %s: %s vs %s\n",
						ref, want[n], got[n]);
					failures++;
					break;
				}
		}
		free(want);
		free(got);
	}
	printf("ok %s:%s %s\n", ref, colon + 1, top.digest.str);
	reg_manifest_release(&top);
out:
	json_decref(seen);
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: regcheck [--ca-file F] [--insecure H] [--authfile F] "
	    "[--expect CAT] [--attempts N] [--stall-seconds N] HOST fetch-all IMAGES.tsv | "
	    "manifest REPO OBJECT | blob REPO DIGEST SIZE\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct reg_opts o;
	struct auth_store creds = {0};
	const char *insecure[8];
	const char *authfile = NULL, *expect = NULL;
	struct ferr e;
	struct reg_stats st;
	int i = 1, rc = -1;

	memset(&o, 0, sizeof(o));
	ferr_clear(&e);
	o.insecure = insecure;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (i + 1 >= argc)
			usage();
		if (!strcmp(argv[i], "--ca-file"))
			o.ca_file = argv[++i];
		else if (!strcmp(argv[i], "--insecure") && o.n_insecure < 8)
			insecure[o.n_insecure++] = argv[++i];
		else if (!strcmp(argv[i], "--authfile"))
			authfile = argv[++i];
		else if (!strcmp(argv[i], "--expect"))
			expect = argv[++i];
		else if (!strcmp(argv[i], "--attempts"))
			o.max_attempts = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--stall-seconds"))
			o.stall_timeout_s = strtol(argv[++i], NULL, 10);
		else
			usage();
	}
	if (argc - i < 2)
		usage();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (auth_store_load(&creds, authfile, &e) < 0) {
		fprintf(stderr, "regcheck: %s\n", e.msg);
		return 1;
	}
	o.creds = &creds;
	if (reg_client_init(&cl, argv[i], &o, &e) < 0) {
		fprintf(stderr, "regcheck: %s\n", e.msg);
		return 1;
	}
	if (!strcmp(argv[i + 1], "fetch-all") && argc - i == 3) {
		FILE *f = fopen(argv[i + 2], "r");
		char line[8192];
		if (!f) {
			perror(argv[i + 2]);
			return 1;
		}
		while (fgets(line, sizeof(line), f))
			if (line[0] != '\n') {
				check_line(line, &e);
				if (failures && expect)
					break;
			}
		fclose(f);
		rc = failures ? -1 : 0;
	} else if (!strcmp(argv[i + 1], "manifest") && argc - i == 4) {
		struct reg_manifest m;
		rc = reg_get_manifest(cl, argv[i + 2], argv[i + 3], &m, &e);
		if (rc == 0) {
			printf("manifest %s %s %zu\n", m.digest.str,
			       m.media_type, m.len);
			reg_manifest_release(&m);
		}
	} else if (!strcmp(argv[i + 1], "blob") && argc - i == 5) {
		rc = fetch_blob(argv[i + 2], argv[i + 3],
				strtoull(argv[i + 4], NULL, 10), &e);
	} else {
		usage();
	}
	reg_client_stats(cl, &st);
	printf("stat requests %lu\nstat retries %lu\nstat token_fetches %lu\n"
	       "stat connections %lu\nstat bytes_in %llu\nstat manifests %lu\n"
	       "stat blobs %lu\n",
	       st.requests, st.retries, st.token_fetches, st.connections,
	       (unsigned long long)st.bytes_in, manifests_fetched,
	       blobs_fetched);
	if (rc < 0 && e.msg[0])
		printf("error %s %s\n", ferr_cat_name(e.cat), e.msg);
	reg_client_release(cl);
	auth_store_release(&creds);
	curl_global_cleanup();
	if (expect) {
		const char *got = rc < 0 ? ferr_cat_name(e.cat) : "ok";
		if (strcmp(got, expect) != 0) {
			fprintf(stderr, "regcheck: expected '%s', got '%s'\n",
				expect, got);
			return 1;
		}
		return 0;
	}
	return rc < 0 ? 1 : 0;
}
