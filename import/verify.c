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
#include "sig.h"

static const char verify_usage[] =
    "usage: ferry verify BUNDLE --key PUBLIC.pem [--json]\n"
    "\n"
    "Audit a bundle offline: the signature over SHA256SUMS with the trusted\n"
    "public key, every entry against SHA256SUMS, every blob against its\n"
    "digest and size, and the bundle's structure. BUNDLE may be '-' for\n"
    "standard input. Exit 0 only when everything holds.\n"
    "\n"
    "Options:\n"
    "      --key FILE   the trusted public key (never taken from the bundle)\n"
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

enum { OPT_KEY = CLI_OPT_CMD, OPT_JSON };

static const struct option long_opts[] = {
    {"key", required_argument, NULL, OPT_KEY},
    {"json", no_argument, NULL, OPT_JSON},
    CLI_COMMON_OPTIONS,
    {NULL, 0, NULL, 0},
};

static double mib(uint64_t n)
{
	return (double)n / 1048576.0;
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

/* "LABEL TEXT TAIL": what the bundle says (TEXT) is escaped for the
 * terminal, the rest is ours. */
static void put_line(const char *label, const char *text, const char *tail)
{
	fputs(label, stdout);
	cli_put_text(stdout, text);
	fputs(tail, stdout);
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
static int parse_args(int argc, char **argv, const char *cmd, const char *usage,
		      bool want_key, struct cli_common *com,
		      const char **bundle, const char **keyfile, bool *json,
		      int *rc)
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
	if (want_key && !*keyfile) {
		cli_usage_error(cmd,
				"--key PUBLIC.pem is required: the trusted "
				"key never comes from the bundle");
		*rc = FERRY_EXIT_USAGE;
		return -1;
	}
	return 0;
}

int cmd_verify(int argc, char **argv)
{
	struct cli_common com;
	const char *bundle = NULL, *keyfile = NULL;
	bool json = false;
	struct sig_key key;
	struct bundle_header h;
	struct bundle_stats st;
	struct ferr e;
	int rc = FERRY_EXIT_USAGE, r;
	struct timespec t0, t1;

	memset(&com, 0, sizeof(com));
	memset(&key, 0, sizeof(key));
	memset(&h, 0, sizeof(h));
	memset(&st, 0, sizeof(st));
	ferr_clear(&e);
	if (parse_args(argc, argv, "verify", verify_usage, true, &com, &bundle,
		       &keyfile, &json, &rc) < 0)
		goto out;
	if (sig_load_public(&key, keyfile, &e) < 0) {
		cli_error(&e);
		rc = ferr_exit_code(e.cat);
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = bundle_read(bundle, &key, NULL, NULL, &h, &st, &e);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rc = r == 0 ? FERRY_EXIT_OK : ferr_exit_code(e.cat);
	if (json) {
		json_t *o = h.bundle_id[0] ? header_json(&h) : json_object();
		/* on a bad signature: the key the bundle claims (unverified) */
		if (!h.bundle_id[0] && h.key_id[0])
			json_object_set_new(o, "signingKeyId",
					    cli_json_text(h.key_id));
		json_object_set_new(o, "bundle", cli_json_text(bundle));
		json_object_set_new(o, "trustedKeyId", json_string(key.key_id));
		json_object_set_new(o, "keyType",
				    json_string(sig_type_name(key.type)));
		json_object_set_new(o, "entries",
				    json_integer((json_int_t)st.entries));
		json_object_set_new(o, "blobs",
				    json_integer((json_int_t)st.blobs));
		json_object_set_new(o, "blobBytes",
				    json_integer((json_int_t)st.blob_bytes));
		json_object_set_new(o, "verdict",
				    json_string(r == 0 ? "ok" : "failed"));
		if (r < 0) {
			json_t *err = json_object();
			json_object_set_new(err, "category",
					    json_string(ferr_cat_name(e.cat)));
			json_object_set_new(err, "exitCode", json_integer(rc));
			json_object_set_new(err, "message",
					    cli_json_text(e.msg));
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
				"JSON documents capped, one manifest type each, media types agree"));
		}
		json_object_set_new(
		    o, "seconds",
		    json_real((double)(t1.tv_sec - t0.tv_sec) +
			      (double)(t1.tv_nsec - t0.tv_nsec) / 1e9));
		print_json(o);
		json_decref(o);
	} else if (!com.quiet) {
		put_line("bundle      ", bundle, " (");
		put_line("", h.compression ? h.compression : "?", ")\n");
		if (r == 0) {
			print_header(&h);
			printf("signed by   %s (%s), the key given with --key\n",
			       key.key_id, sig_type_name(key.type));
			printf("entries     %llu (%llu blobs, %.1f MiB)\n",
			       (unsigned long long)st.entries,
			       (unsigned long long)st.blobs,
			       mib(st.blob_bytes));
			printf(
			    "verdict: OK: signature valid, every entry matches "
			    "SHA256SUMS, every blob matches its digest and "
			    "size\n");
		} else {
			put_line("verdict: FAILED: ", e.msg, "\n");
		}
	}
	if (r < 0)
		cli_error(&e);
out:
	bundle_header_release(&h);
	sig_key_release(&key);
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
	int rc = FERRY_EXIT_USAGE;

	memset(&com, 0, sizeof(com));
	memset(&h, 0, sizeof(h));
	ferr_clear(&e);
	if (parse_args(argc, argv, "inspect", inspect_usage, false, &com,
		       &bundle, &keyfile, &json, &rc) < 0)
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
