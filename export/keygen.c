/* ferry keygen: create the key pair that signs bundles (SPEC §2). */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "sig.h"

static const char usage_text[] =
    "usage: ferry keygen -o PREFIX [--type TYPE] [--passphrase-file FILE]\n"
    "\n"
    "Create a key pair to sign bundles with: PREFIX.key (private, PKCS#8\n"
    "PEM, mode 0600) and PREFIX.pub (public, PEM).  Existing files are\n"
    "never overwritten.\n"
    "\n"
    "Options:\n"
    "  -o, --output PREFIX        write PREFIX.key and PREFIX.pub\n"
    "      --type TYPE            ecdsa-p256 (default), ed25519 or rsa-3072\n"
    "      --passphrase-file FILE encrypt the private key (AES-256-CBC)\n"
    "                             with the first line of FILE\n"
    "\n";

enum { OPT_TYPE = CLI_OPT_CMD, OPT_PASSPHRASE_FILE };

/* Name the option getopt_long stopped at: "--long" or "-c". */
static void bad_option(char **argv, bool missing)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	char shortopt[3] = {'-', (char)optopt, '\0'};
	const char *name = shortopt;
	int len = 2;

	if (!strncmp(arg, "--", 2)) {
		const char *eq = strchr(arg, '=');

		name = arg;
		len = eq ? (int)(eq - arg) : (int)strlen(arg);
	} else if (optopt <= 0 || optopt > 127) {
		name = arg;
		len = (int)strlen(arg);
	}
	if (missing)
		cli_usage_error("keygen", "option '%.*s' needs a value", len,
				name);
	else
		cli_usage_error("keygen", "unknown option '%.*s'", len, name);
}

/* 0 to go on, 1 when done (help, version), -1 on a usage error. */
static int keygen_parse(int argc, char **argv, struct cli_common *common,
			const char **prefix, const char **passfile,
			enum sig_type *type)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"type", required_argument, NULL, OPT_TYPE},
	    {"passphrase-file", required_argument, NULL, OPT_PASSPHRASE_FILE},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	int opt, r;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":o:" CLI_COMMON_SHORT, opts,
				  NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(usage_text, stdout);
			fputs(cli_common_help, stdout);
			return 1;
		case 'o':
			*prefix = optarg;
			continue;
		case OPT_TYPE:
			if (sig_type_parse(optarg, type)) {
				cli_usage_error(
				    "keygen",
				    "--type takes ecdsa-p256, ed25519 "
				    "or rsa-3072, not '%s'",
				    optarg);
				return -1;
			}
			continue;
		case OPT_PASSPHRASE_FILE:
			*passfile = optarg;
			continue;
		case ':':
			bad_option(argv, true);
			return -1;
		case '?':
			bad_option(argv, false);
			return -1;
		}
		r = cli_common_opt(common, opt, optarg, "keygen");
		if (r == 2)
			return 1;
		if (r != 1) {
			if (r == 0)
				bad_option(argv, false);
			return -1;
		}
	}
	return 0;
}

static int check_prefix(int argc, char **argv, const char *prefix)
{
	size_t plen = prefix ? strlen(prefix) : 0;

	if (optind < argc) {
		cli_usage_error("keygen", "unexpected argument '%s'",
				argv[optind]);
		return -1;
	}
	if (!prefix) {
		cli_usage_error("keygen", "missing -o PREFIX (the key files "
					  "are PREFIX.key and PREFIX.pub)");
		return -1;
	}
	if (!plen || prefix[plen - 1] == '/') {
		cli_usage_error("keygen",
				"-o takes a file name prefix such as "
				"'keys/ferry', not '%s'",
				prefix);
		return -1;
	}
	return 0;
}

static int read_passphrase(const char *passfile, char **pass, size_t *passlen,
			   struct ferr *e)
{
	if (!passfile)
		return 0;
	if (sig_read_passphrase_file(passfile, pass, passlen, e))
		return -1;
	if (*passlen > SIG_MAX_PASSPHRASE)
		return ferr_set(e, FERR_INPUT, 0,
				"the passphrase in '%s' is too long (%zu "
				"bytes): openssl reads at most %u",
				passfile, *passlen, SIG_MAX_PASSPHRASE);
	return 0;
}

int cmd_keygen(int argc, char **argv)
{
	struct cli_common common = {0};
	const char *prefix = NULL, *passfile = NULL;
	enum sig_type type = SIG_ECDSA_P256;
	struct sig_key key = {0};
	struct ferr e;
	char *pass = NULL;
	size_t passlen = 0;
	int r, rc = FERRY_EXIT_USAGE;

	ferr_clear(&e);
	r = keygen_parse(argc, argv, &common, &prefix, &passfile, &type);
	if (r != 0 || check_prefix(argc, argv, prefix) < 0) {
		rc = r > 0 ? FERRY_EXIT_OK : FERRY_EXIT_USAGE;
		goto out;
	}
	if (read_passphrase(passfile, &pass, &passlen, &e) < 0 ||
	    sig_keygen(&key, type, &e))
		goto fail;
	if (cli_interrupted) {
		/* nothing written yet */
		ferr_set(&e, FERR_INTERRUPT, 0, "interrupted");
		goto fail;
	}
	if (sig_key_write(&key, prefix, pass, passlen, &e))
		goto fail;
	if (!common.quiet) {
		printf("key id:      %s\n", key.key_id);
		printf("type:        %s\n", sig_type_name(key.type));
		printf("private key: %s.key (%s)\n", prefix,
		       pass ? "encrypted with the passphrase"
			    : "not encrypted");
		printf("public key:  %s.pub\n", prefix);
	}
	rc = FERRY_EXIT_OK;
	goto out;
fail:
	cli_error(&e);
	rc = ferr_exit_code(e.cat);
out:
	sig_key_release(&key);
	sig_wipe_free(pass, passlen);
	cli_common_release(&common);
	return rc;
}
