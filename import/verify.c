/* ferry verify and ferry inspect: the command layer over the bundle reader (breader.c). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "breader.h"
#include "cli.h"
#include "commands.h"
#include "cosigncheck.h"
#include "sig.h"

static const char verify_usage[] =
    "usage: ferry verify BUNDLE --key PUBLIC.pem [--cosign-key PUB.pem]...\n"
    "                    [--base OLD_BUNDLE]... [--json]\n"
    "\n"
    "Audit a bundle offline: the signature over SHA256SUMS with the trusted\n"
    "public key, every entry against SHA256SUMS, every blob against its\n"
    "digest and size, and the bundle's structure. BUNDLE may be '-' for\n"
    "standard input. Exit 0 only when everything holds.\n"
    "\n"
    "Options:\n"
    "      --key FILE   the trusted public key (never taken from the bundle)\n"
    "      --cosign-key PUB.pem  also check that each image carries a cosign\n"
    "                   signature one of these keys verifies (repeatable)\n"
    "      --base OLD_BUNDLE  with --cosign-key, for a delta: read the\n"
    "                   signature payloads it leaves out from this base,\n"
    "                   verified with --key as well (repeatable)\n"
    "      --json       print the audit record as JSON\n"
    "\n";

static const char inspect_usage[] =
    "usage: ferry inspect BUNDLE [--json]\n"
    "\n"
    "List what a bundle says it holds (images, platforms, sizes, metadata)\n"
    "WITHOUT checking that it is genuine: use 'ferry verify' for that.\n"
    "\n"
    "Options:\n"
    "      --json       print JSON\n"
    "\n";

enum { OPT_KEY = CLI_OPT_CMD, OPT_JSON, OPT_COSIGN, OPT_BASE };

/* --cosign-key keys, and --base bundles, one verify may name. */
#define VERIFY_MAX_COSIGN_KEYS 16
#define VERIFY_MAX_BASES 16

static const struct option long_opts[] = {
    {"key", required_argument, NULL, OPT_KEY},
    {"json", no_argument, NULL, OPT_JSON},
    {"cosign-key", required_argument, NULL, OPT_COSIGN},
    {"base", required_argument, NULL, OPT_BASE},
    CLI_COMMON_OPTIONS,
    {NULL, 0, NULL, 0},
};

static double mib(uint64_t n)
{
	return (double)n / 1048576.0;
}

/* "LABEL TEXT TAIL": what the bundle says (TEXT) is escaped for the
 * terminal, the rest is ours. */
static void put_line(const char *label, const char *text, const char *tail)
{
	fputs(label, stdout);
	cli_put_text(stdout, text);
	fputs(tail, stdout);
}

/* "3 signatures, 1 sbom, ..." */
static void print_attached(const struct bundle_image *im)
{
	size_t n[BA_REFERRERS + 1] = {0};
	bool first = true;

	for (size_t k = 0; k < im->nattached; k++)
		n[im->attached[k].kind]++;
	printf("      attached:");
	for (int k = 0; k <= BA_REFERRERS; k++) {
		if (!n[k] || k == BA_REFERRERS)
			continue;
		printf("%s %zu %s%s", first ? "" : ",", n[k],
		       bundle_attach_kind_name((enum bundle_attach_kind)k),
		       n[k] == 1 ? "" : "s");
		first = false;
	}
	if (im->cosign_key_id)
		printf("; export checked its cosign signature with key %s",
		       im->cosign_key_id);
	printf("\n");
	for (size_t k = 0; k < im->nattached; k++) {
		const struct bundle_attach *a = &im->attached[k];
		if (a->kind == BA_REFERRERS)
			continue;
		printf("        %-11s %s", bundle_attach_kind_name(a->kind),
		       a->digest.str);
		put_line(a->artifact_type ? " " : "",
			 a->artifact_type ? a->artifact_type : "", "");
		printf(" -> %.19s\n", a->subject.str);
	}
}

static json_t *header_json(const struct bundle_header *h)
{
	json_t *o = json_object(), *imgs = json_array();

	json_object_set_new(o, "bundleId", cli_json_text(h->bundle_id));
	json_object_set_new(o, "created", cli_json_text(h->created));
	json_object_set_new(o, "channel", cli_json_text(h->channel));
	json_object_set_new(o, "sequence",
			    json_integer((json_int_t)h->sequence));
	json_object_set_new(o, "signingKeyId", cli_json_text(h->key_id));
	json_object_set_new(o, "compression", cli_json_text(h->compression));
	for (size_t i = 0; i < h->nimages; i++) {
		const struct bundle_image *im = &h->images[i];
		json_t *d = json_object(), *pl = json_array();
		json_object_set_new(d, "reference", cli_json_text(im->ref));
		json_object_set_new(d, "digest", json_string(im->digest.str));
		json_object_set_new(d, "mediaType",
				    cli_json_text(im->media_type));
		for (size_t k = 0; k < im->nplatforms; k++)
			json_array_append_new(pl,
					      cli_json_text(im->platforms[k]));
		json_object_set_new(d, "platforms", pl);
		json_object_set_new(d, "size",
				    json_integer((json_int_t)im->total_size));
		if (im->nattached)
			json_object_set_new(d, "attached",
					    bundle_attached_json(im));
		if (im->cosign_key_id)
			json_object_set_new(d, "cosignKeyId",
					    json_string(im->cosign_key_id));
		json_array_append_new(imgs, d);
	}
	json_object_set_new(o, "images", imgs);
	if (h->nparts)
		json_object_set_new(o, "parts",
				    json_integer((json_int_t)h->nparts));
	if (h->nbases) {
		json_t *b = json_array(), *om = json_array(),
		       *d = json_object();
		for (size_t i = 0; i < h->nbases; i++)
			json_array_append_new(b, json_string(h->bases[i]));
		for (size_t i = 0; i < h->nomitted; i++)
			json_array_append_new(om,
					      json_string(h->omitted[i].str));
		json_object_set_new(d, "bases", b);
		json_object_set_new(d, "omitted", om);
		json_object_set_new(o, "delta", d);
	}
	return o;
}

static void print_header(const struct bundle_header *h)
{
	put_line("bundle id   ", h->bundle_id, "\n");
	put_line("created     ", h->created, "\n");
	put_line("channel     ", h->channel, ", sequence ");
	printf("%llu\n", (unsigned long long)h->sequence);
	printf("images      %zu\n", h->nimages);
	for (size_t i = 0; i < h->nimages; i++) {
		const struct bundle_image *im = &h->images[i];
		put_line("  ", im->ref, "\n");
		printf("      %s  ", im->digest.str);
		for (size_t k = 0; k < im->nplatforms; k++)
			put_line(k ? "," : "", im->platforms[k], "");
		printf("%s%.1f MiB\n", im->nplatforms ? "  " : "",
		       mib(im->total_size));
		if (im->nattached || im->cosign_key_id)
			print_attached(im);
	}
	if (h->nparts)
		printf("parts       %zu, each checked against the signed parts "
		       "list\n",
		       h->nparts);
	if (h->nbases) {
		printf("delta       leaves out %zu blobs; needs these bundles "
		       "imported first:\n",
		       h->nomitted);
		for (size_t i = 0; i < h->nbases; i++)
			printf("  %s\n", h->bases[i]); /* checked: hex only */
	}
}

/* JSON escapes C0 controls itself; ASCII only, so that C1 controls and
 * bidirectional overrides are escaped too, and DEL (which JSON allows raw,
 * and only inside a string) as well. */
static void print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_INDENT(2) | JSON_ENSURE_ASCII);

	for (const char *p = s; p && *p; p++) {
		if (*p == 0x7f)
			fputs("\\u007f", stdout);
		else
			putchar(*p);
	}
	if (s)
		putchar('\n');
	free(s);
}

/* Shared parsing for verify and inspect. */
struct vargs {
	const char *cosign[VERIFY_MAX_COSIGN_KEYS];
	size_t ncosign;
	const char *bases[VERIFY_MAX_BASES];
	size_t nbases;
};

/* A repeatable option, at most `max` times. */
static int add_repeated(const char *cmd, const char *opt, const char **list,
			size_t *n, size_t max, const char *arg)
{
	if (*n == max) {
		cli_usage_error(cmd, "%s may be given at most %zu times", opt,
				max);
		return -1;
	}
	list[(*n)++] = arg;
	return 0;
}

static int parse_args(int argc, char **argv, const char *cmd, const char *usage,
		      bool want_key, struct cli_common *com,
		      const char **bundle, const char **keyfile, bool *json,
		      struct vargs *va, int *rc)
{
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, long_opts,
				NULL)) != -1) {
		int r = cli_common_opt(com, c, optarg, cmd);
		if (r == 2) {
			*rc = FERRY_EXIT_OK;
			return -1;
		}
		if (r < 0) {
			*rc = FERRY_EXIT_USAGE;
			return -1;
		}
		if (r == 1)
			continue;
		switch (c) {
		case 'h':
			fputs(usage, stdout);
			fputs(cli_common_help, stdout);
			*rc = FERRY_EXIT_OK;
			return -1;
		case OPT_KEY:
			if (!want_key)
				goto bad;
			*keyfile = optarg;
			break;
		case OPT_JSON:
			*json = true;
			break;
		case OPT_COSIGN:
		case OPT_BASE:
			if (!want_key)
				goto bad;
			if (c == OPT_COSIGN
				? add_repeated(cmd, "--cosign-key", va->cosign,
					       &va->ncosign,
					       VERIFY_MAX_COSIGN_KEYS, optarg)
				: add_repeated(cmd, "--base", va->bases,
					       &va->nbases, VERIFY_MAX_BASES,
					       optarg)) {
				*rc = FERRY_EXIT_USAGE;
				return -1;
			}
			break;
		default:
		bad:
			cli_usage_error(cmd,
					"unknown or incomplete option '%s'",
					argv[optind - 1]);
			*rc = FERRY_EXIT_USAGE;
			return -1;
		}
	}
	if (optind != argc - 1) {
		cli_usage_error(cmd, optind == argc
					 ? "no BUNDLE given"
					 : "give exactly one BUNDLE");
		*rc = FERRY_EXIT_USAGE;
		return -1;
	}
	*bundle = argv[optind];
	if (va->nbases && !va->ncosign) {
		cli_usage_error(cmd, "--base goes with --cosign-key: it "
				     "supplies the signature payloads a delta "
				     "leaves out");
		*rc = FERRY_EXIT_USAGE;
		return -1;
	}
	if (want_key && !*keyfile) {
		cli_usage_error(cmd,
				"--key PUBLIC.pem is required: the trusted "
				"key never comes from the bundle");
		*rc = FERRY_EXIT_USAGE;
		return -1;
	}
	return 0;
}

/* One verify run: what it read and found. */
struct vrun {
	const char *bundle;
	struct sig_key key;
	struct sig_key cosign[VERIFY_MAX_COSIGN_KEYS];
	size_t ncosign;
	struct ccheck *cc;
	struct bundle_header h;
	struct bundle_stats st;
	struct ferr e;
	int r, rc;
	double secs;
	/* --base: each one's bundle id once read, and the payloads it gave */
	const char *const *bases;
	size_t nbases;
	char base_id[VERIFY_MAX_BASES][65];
	size_t base_payloads[VERIFY_MAX_BASES];
};

/* verify --base: the signature payloads a delta left out, from its
 * bases, each read and verified whole with the same key (a base that
 * fails fails the verify).  A base is read only while payloads are
 * missing. */
static void read_bases(struct vrun *v)
{
	for (size_t i = 0; i < v->nbases && ccheck_missing(v->cc); i++) {
		struct bundle_header bh;
		size_t before = ccheck_from_bases(v->cc);

		memset(&bh, 0, sizeof(bh));
		if (bundle_read(v->bases[i], &v->key, &ccheck_base_ops, v->cc,
				&bh, NULL, &v->e) < 0) {
			ferr_prefix(&v->e, "base '%s'", v->bases[i]);
			v->r = -1;
			v->rc = ferr_exit_code(v->e.cat);
		} else {
			snprintf(v->base_id[i], sizeof(v->base_id[i]), "%s",
				 bh.bundle_id);
			v->base_payloads[i] = ccheck_from_bases(v->cc) - before;
		}
		bundle_header_release(&bh);
		if (v->r != 0)
			return;
	}
}

/* Image i's cosign verdict as JSON. */
static json_t *cosign_json(const struct vrun *v, size_t i)
{
	const struct sig_key *k = NULL;
	char why[FERR_MSG_MAX];
	json_t *o = json_object();
	bool ok = ccheck_image(v->cc, i, &k, why, sizeof(why));

	json_object_set_new(o, "signed", json_boolean(ok));
	if (ok)
		json_object_set_new(o, "keyId", json_string(k->key_id));
	else
		json_object_set_new(o, "reason", cli_json_text(why));
	return o;
}

/* --base: what each base gave (bundleId null: not read). */
static json_t *bases_json(const struct vrun *v)
{
	json_t *a = json_array();

	for (size_t i = 0; i < v->nbases; i++)
		json_array_append_new(
		    a, json_pack("{s:o,s:o,s:I}", "bundle",
				 cli_json_text(v->bases[i]), "bundleId",
				 v->base_id[i][0] ? json_string(v->base_id[i])
						  : json_null(),
				 "payloads", (json_int_t)v->base_payloads[i]));
	return a;
}

static void verify_json(const struct vrun *v)
{
	json_t *o = v->h.bundle_id[0] ? header_json(&v->h) : json_object();

	/* on a bad signature: the key the bundle claims (unverified) */
	if (!v->h.bundle_id[0] && v->h.key_id[0])
		json_object_set_new(o, "signingKeyId",
				    cli_json_text(v->h.key_id));
	json_object_set_new(o, "bundle", cli_json_text(v->bundle));
	json_object_set_new(o, "trustedKeyId", json_string(v->key.key_id));
	json_object_set_new(o, "keyType",
			    json_string(sig_type_name(v->key.type)));
	json_object_set_new(o, "entries",
			    json_integer((json_int_t)v->st.entries));
	json_object_set_new(o, "blobs", json_integer((json_int_t)v->st.blobs));
	json_object_set_new(o, "blobBytes",
			    json_integer((json_int_t)v->st.blob_bytes));
	json_object_set_new(o, "verdict",
			    json_string(v->rc == 0 ? "ok" : "failed"));
	if (v->r == 0 && v->ncosign)
		for (size_t i = 0; i < v->h.nimages; i++)
			json_object_set_new(
			    json_array_get(json_object_get(o, "images"), i),
			    "cosign", cosign_json(v, i));
	if (v->nbases)
		json_object_set_new(o, "bases", bases_json(v));
	if (v->rc != 0) {
		json_t *err = json_object();
		json_object_set_new(err, "category",
				    json_string(ferr_cat_name(v->e.cat)));
		json_object_set_new(err, "exitCode", json_integer(v->rc));
		json_object_set_new(err, "message", cli_json_text(v->e.msg));
		json_object_set_new(o, "error", err);
	} else {
		json_object_set_new(
		    o, "checks",
		    json_pack(
			"[sssss]",
			"signature over SHA256SUMS with the trusted key",
			"every entry matches SHA256SUMS",
			"every blob matches its digest and descriptor size",
			"entry names, types, order, no duplicates or extras",
			"JSON documents capped, one manifest type each, "
			"media types agree"));
	}
	json_object_set_new(o, "seconds", json_real(v->secs));
	print_json(o);
	json_decref(o);
}

static void verify_text(const struct vrun *v)
{
	put_line("bundle      ", v->bundle, " (");
	put_line("", v->h.compression ? v->h.compression : "?", ")\n");
	if (v->r != 0) {
		put_line("verdict: FAILED: ", v->e.msg, "\n");
		return;
	}
	print_header(&v->h);
	printf("signed by   %s (%s), the key given with --key\n", v->key.key_id,
	       sig_type_name(v->key.type));
	printf("entries     %llu (%llu blobs, %.1f MiB)\n",
	       (unsigned long long)v->st.entries,
	       (unsigned long long)v->st.blobs, mib(v->st.blob_bytes));
	for (size_t i = 0; i < v->nbases; i++) {
		put_line("base        ", v->bases[i], "");
		if (v->base_id[i][0])
			printf(" (bundle id %s, signed by the same key): %zu "
			       "signature payloads\n",
			       v->base_id[i], v->base_payloads[i]);
		else
			printf(": not read (no payload was missing)\n");
	}
	for (size_t i = 0; i < v->h.nimages && v->ncosign; i++) {
		const struct sig_key *k = NULL;
		char why[FERR_MSG_MAX];
		bool ok = ccheck_image(v->cc, i, &k, why, sizeof(why));
		put_line("cosign      ", v->h.images[i].ref,
			 ok ? " signed by " : " not signed: ");
		if (ok)
			printf("%s\n", k->key_id);
		else
			put_line("", why, "\n");
	}
	if (v->rc == 0)
		printf("verdict: OK: signature valid, every entry matches "
		       "SHA256SUMS, every blob matches its digest and size%s\n",
		       v->ncosign ? ", every image signed by a cosign key given"
				  : "");
	else
		put_line("verdict: FAILED: ", v->e.msg, "\n");
}

/* After a good read: every image must be signed by a --cosign-key. */
static void cosign_verdict(struct vrun *v)
{
	size_t bad = 0, first = 0;
	char why[FERR_MSG_MAX];
	const struct sig_key *k;

	for (size_t i = 0; i < v->h.nimages; i++)
		if (!ccheck_image(v->cc, i, &k, why, sizeof(why)) && !bad++)
			first = i;
	if (!bad)
		return;
	ccheck_image(v->cc, first, &k, why, sizeof(why));
	ferr_set(&v->e, FERR_VERIFY, 0,
		 "image '%s' is not signed by a cosign "
		 "key given: %s%s",
		 v->h.images[first].ref, why,
		 bad > 1 ? " (and more images)" : "");
	v->rc = ferr_exit_code(FERR_VERIFY);
}

static int verify_keys(struct vrun *v, const char *keyfile,
		       const struct vargs *va)
{
	if (sig_load_public(&v->key, keyfile, &v->e) < 0)
		return -1;
	for (size_t i = 0; i < va->ncosign; i++, v->ncosign++)
		if (sig_load_public(&v->cosign[i], va->cosign[i], &v->e) < 0)
			return ferr_prefix(&v->e, "--cosign-key");
	return v->ncosign ? ccheck_init(&v->cc, v->cosign, v->ncosign, &v->e)
			  : 0;
}

int cmd_verify(int argc, char **argv)
{
	struct cli_common com;
	const char *keyfile = NULL;
	bool json = false;
	struct vargs va;
	struct vrun *v = calloc(1, sizeof(*v));
	struct timespec t0, t1;
	int rc = FERRY_EXIT_USAGE;

	memset(&com, 0, sizeof(com));
	memset(&va, 0, sizeof(va));
	if (!v) {
		fputs("ferry: error: out of memory\n", stderr);
		return FERRY_EXIT_IO;
	}
	ferr_clear(&v->e);
	if (parse_args(argc, argv, "verify", verify_usage, true, &com,
		       &v->bundle, &keyfile, &json, &va, &rc) < 0)
		goto out;
	if (verify_keys(v, keyfile, &va) < 0) {
		cli_error(&v->e);
		rc = ferr_exit_code(v->e.cat);
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	v->r = bundle_read(v->bundle, &v->key, v->cc ? &ccheck_ops : NULL,
			   v->cc, &v->h, &v->st, &v->e);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	v->secs = (double)(t1.tv_sec - t0.tv_sec) +
		  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	v->rc = v->r == 0 ? FERRY_EXIT_OK : ferr_exit_code(v->e.cat);
	v->bases = va.bases;
	v->nbases = va.nbases;
	if (v->r == 0 && v->cc)
		read_bases(v);
	if (v->r == 0 && v->cc)
		cosign_verdict(v);
	if (json)
		verify_json(v);
	else if (!com.quiet)
		verify_text(v);
	if (v->rc != 0)
		cli_error(&v->e);
	rc = v->rc;
out:
	bundle_header_release(&v->h);
	sig_key_release(&v->key);
	for (size_t i = 0; i < VERIFY_MAX_COSIGN_KEYS; i++)
		sig_key_release(&v->cosign[i]);
	ccheck_release(v->cc);
	free(v);
	cli_common_release(&com);
	return rc;
}

int cmd_inspect(int argc, char **argv)
{
	struct cli_common com;
	const char *bundle = NULL, *keyfile = NULL;
	bool json = false;
	struct bundle_header h;
	struct ferr e;
	struct vargs va;
	int rc = FERRY_EXIT_USAGE;

	memset(&va, 0, sizeof(va));
	memset(&com, 0, sizeof(com));
	memset(&h, 0, sizeof(h));
	ferr_clear(&e);
	if (parse_args(argc, argv, "inspect", inspect_usage, false, &com,
		       &bundle, &keyfile, &json, &va, &rc) < 0)
		goto out;
	if (bundle_read(bundle, NULL, NULL, NULL, &h, NULL, &e) < 0) {
		cli_error(&e);
		rc = ferr_exit_code(e.cat);
		goto out;
	}
	if (json) {
		json_t *o = header_json(&h);
		json_object_set_new(o, "bundle", cli_json_text(bundle));
		json_object_set_new(o, "verified", json_false());
		json_object_set_new(o, "entries",
				    json_integer((json_int_t)h.nentries + 2));
		json_object_set_new(o, "blobs",
				    json_integer((json_int_t)h.nblobs));
		print_json(o);
		json_decref(o);
	} else {
		printf(
		    "NOT VERIFIED: this lists what the bundle says it holds; "
		    "it does not check\nthe signature or any checksum. Use "
		    "'ferry verify BUNDLE --key PUB'.\n\n");
		put_line("bundle      ", bundle, " (");
		put_line("", h.compression, ")\n");
		print_header(&h);
		put_line("signed by   ", h.key_id, " (claimed, not checked)\n");
		printf("entries     %zu (%zu blobs)\n", h.nentries + 2,
		       h.nblobs);
	}
	rc = FERRY_EXIT_OK;
out:
	bundle_header_release(&h);
	cli_common_release(&com);
	return rc;
}
