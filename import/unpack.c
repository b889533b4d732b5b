/* ferry unpack: verify a bundle with the operator's key and hand a loader
 * (ctr images import, docker load, podman load, skopeo) the plain tar in
 * the same pass.  The bytes are the decompressed bundle exactly as signed;
 * the bundle reader checks them while they pass (tar_data hook). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "breader.h"
#include "bounds.h"
#include "buf.h"
#include "bundle.h"
#include "cli.h"
#include "commands.h"
#include "sig.h"

static const char unpack_usage[] =
    "usage: ferry unpack BUNDLE --key PUBLIC.pem -o OUTPUT.tar\n"
    "       ferry unpack BUNDLE --key PUBLIC.pem -o - | LOADER\n"
    "\n"
    "Verify a bundle (.tar.zst, .tar.gz or .tar) exactly as 'ferry verify'\n"
    "does and write it as a plain tar, which ctr images import, docker\n"
    "load, podman load and skopeo read as it is. BUNDLE may be '-' for\n"
    "standard input.\n"
    "\n"
    "A file is written under a temporary name and renamed only once the\n"
    "whole bundle has verified; on any failure nothing is left behind.\n"
    "With '-o -' the tar is streamed to standard output: nothing is written\n"
    "before the signature has verified, the end of the tar is held back\n"
    "until everything has, and on a defect ferry exits non-zero and cuts\n"
    "the stream inside a tar block so the loader fails too (use\n"
    "'set -o pipefail').\n"
    "\n"
    "Options:\n"
    "      --key FILE     the trusted public key (never taken from the bundle)\n"
    "  -o, --output FILE  where to write the tar ('-': standard output)\n"
    "\n";

/* Streaming: everything before the signature has verified is held (the
 * header entries are capped by the reader, plus a little for its
 * read-ahead), and after that the last UNPACK_TAIL_HOLD bytes, so that
 * the tar's end-of-archive blocks leave only once the bundle is fully
 * verified. */
#define UNPACK_TAIL_HOLD (64u * 1024u)
#define UNPACK_MAX_HOLD                                                        \
	((size_t)BREADER_MAX_OCI_LAYOUT + 3u * (size_t)FERRY_MAX_JSON +        \
	 (size_t)BREADER_MAX_SUMS + (size_t)BREADER_MAX_SIG +                  \
	 4u * 1024u * 1024u)
/* tar's block size: a stream cut off the block boundary is always a
 * truncated archive to a loader. */
#define TAR_BLOCK 512u

enum { OPT_KEY = CLI_OPT_CMD };

static const struct option long_opts[] = {
    {"key", required_argument, NULL, OPT_KEY},
    {"output", required_argument, NULL, 'o'},
    CLI_COMMON_OPTIONS,
    {NULL, 0, NULL, 0},
};

struct unpack {
	int fd;
	const char *name; /* for messages */
	bool stream;
	bool verified; /* signature checked: held bytes may flow */
	struct buf hold;
	uint64_t written;
};

static int up_write(struct unpack *u, const void *p, size_t n, struct ferr *e)
{
	const unsigned char *c = p;

	while (n) {
		ssize_t w = write(u->fd, c, n);
		if (w < 0 && errno == EINTR && !cli_interrupted)
			continue;
		if (w < 0)
			return ferr_errno(e, FERR_IO, errno,
					  "cannot write '%s'", u->name);
		c += w;
		n -= (size_t)w;
		u->written += (uint64_t)w;
	}
	return 0;
}

/* Write all but the last `keep` held bytes. */
static int up_flush(struct unpack *u, size_t keep, struct ferr *e)
{
	size_t out;

	if (u->hold.len <= keep)
		return 0;
	out = u->hold.len - keep;
	if (up_write(u, u->hold.data, out, e) < 0)
		return -1;
	memmove(u->hold.data, u->hold.data + out, keep);
	u->hold.len = keep;
	return 0;
}

static int up_tar(void *ctx, const void *p, size_t n, struct ferr *e)
{
	struct unpack *u = ctx;

	if (cli_interrupted)
		return ferr_set(e, FERR_INTERRUPT, EINTR, "interrupted");
	if (!u->stream)
		return up_write(u, p, n, e);
	if (buf_append(&u->hold, p, n) < 0)
		return ferr_set(e, FERR_BUNDLE, 0,
				"'%s': more than %zu MiB before the signature",
				u->name, UNPACK_MAX_HOLD >> 20);
	return u->verified ? up_flush(u, UNPACK_TAIL_HOLD, e) : 0;
}

static int up_header(void *ctx, const struct bundle_header *h, struct ferr *e)
{
	struct unpack *u = ctx;

	/* a loader gets every blob from the tar: a delta lacks some */
	if (h->nbases)
		return ferr_set(
		    e, FERR_INPUT, 0,
		    "the bundle is a delta (it leaves out %zu blobs "
		    "its bases carry): no loader can load it alone; "
		    "import it into a registry, or unpack a full "
		    "bundle",
		    h->nomitted);
	u->verified = true;
	return 0;
}

/* A failed stream: leave the loader a tar that ends inside a block, which
 * every tar reader reports as truncated, rather than one that happens to
 * end on an entry boundary and could pass for complete. */
static void up_cut(struct unpack *u)
{
	struct ferr ignored;

	if (!u->written || u->written % TAR_BLOCK || !u->hold.len)
		return;
	ferr_clear(&ignored);
	up_write(u, u->hold.data, 1, &ignored);
}

static int parse_args(int argc, char **argv, struct cli_common *com,
		      const char **bundle, const char **keyfile,
		      const char **output, int *rc)
{
	int c;

	optind = 1;
	opterr = 0;
	*rc = FERRY_EXIT_USAGE;
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "o:", long_opts,
				NULL)) != -1) {
		int r = cli_common_opt(com, c, optarg, "unpack");
		if (r == 2)
			*rc = FERRY_EXIT_OK;
		if (r == 2 || r < 0)
			return -1;
		if (r == 1)
			continue;
		if (c == 'h') {
			fputs(unpack_usage, stdout);
			fputs(cli_common_help, stdout);
			*rc = FERRY_EXIT_OK;
			return -1;
		} else if (c == OPT_KEY) {
			*keyfile = optarg;
		} else if (c == 'o') {
			*output = optarg;
		} else {
			cli_usage_error("unpack",
					"unknown or incomplete option '%s'",
					argv[optind - 1]);
			return -1;
		}
	}
	if (optind != argc - 1) {
		cli_usage_error("unpack", optind == argc
					      ? "no BUNDLE given"
					      : "give exactly one BUNDLE");
		return -1;
	}
	*bundle = argv[optind];
	if (!*keyfile) {
		cli_usage_error("unpack",
				"--key PUBLIC.pem is required: the "
				"trusted key never comes from the bundle");
		return -1;
	}
	if (!*output || !**output) {
		cli_usage_error("unpack", "-o OUTPUT.tar is required ('-' for "
					  "standard output)");
		return -1;
	}
	if (!strcmp(*output, "-") && isatty(1)) {
		cli_usage_error("unpack", "standard output is a terminal: pipe "
					  "it into a loader or give -o FILE");
		return -1;
	}
	return 0;
}

/* The output must not be the bundle itself: renaming over it would
 * replace the bundle with its own tar. */
static int same_file(const char *bundle, const char *output, struct ferr *e)
{
	struct stat a, b;

	if (!strcmp(bundle, "-") || stat(bundle, &a) < 0 ||
	    stat(output, &b) < 0)
		return 0;
	if (a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		return ferr_set(e, FERR_USAGE, 0,
				"'%s' is the bundle itself: write the tar "
				"elsewhere",
				output);
	return 0;
}

/* Temporary file next to the output, so the rename is atomic. */
static int open_temp(const char *output, char **tmp, struct ferr *e)
{
	size_t n = strlen(output) + 32;
	int fd;

	*tmp = malloc(n);
	if (!*tmp)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	snprintf(*tmp, n, "%s.tmp-XXXXXX", output);
	fd = mkstemp(*tmp);
	if (fd < 0) {
		ferr_errno(e, FERR_IO, errno,
			   "cannot create a file next to '%s'", output);
		free(*tmp);
		*tmp = NULL;
		return -1;
	}
	{
		mode_t um = umask(0);
		umask(um);
		fchmod(fd, 0644 & ~um);
	}
	return fd;
}

static int finish_file(struct unpack *u, const char *tmp, const char *output,
		       struct ferr *e)
{
	if (fsync(u->fd) < 0 || close(u->fd) < 0) {
		u->fd = -1;
		return ferr_errno(e, FERR_IO, errno, "cannot write '%s'",
				  output);
	}
	u->fd = -1;
	if (rename(tmp, output) < 0)
		return ferr_errno(e, FERR_IO, errno,
				  "cannot rename '%s' to '%s'", tmp, output);
	return 0;
}

static void summary(const struct bundle_header *h, const struct sig_key *key,
		    const char *output, uint64_t bytes)
{
	fprintf(stderr, "verified with key %s: %zu image%s, %.1f MiB of tar ",
		key->key_id, h->nimages, h->nimages == 1 ? "" : "s",
		(double)bytes / 1048576.0);
	if (!strcmp(output, "-"))
		fputs("streamed to standard output\n", stderr);
	else {
		fputs("in '", stderr);
		cli_put_text(stderr, output);
		fputs("'\n", stderr);
	}
}

int cmd_unpack(int argc, char **argv)
{
	struct cli_common com;
	const char *bundle = NULL, *keyfile = NULL, *output = NULL;
	char *tmp = NULL;
	struct sig_key key;
	struct bundle_header h;
	struct unpack u;
	struct bundle_ops ops;
	struct ferr e;
	int rc;

	memset(&com, 0, sizeof(com));
	memset(&key, 0, sizeof(key));
	memset(&h, 0, sizeof(h));
	memset(&u, 0, sizeof(u));
	memset(&ops, 0, sizeof(ops));
	u.fd = -1;
	buf_init(&u.hold, UNPACK_MAX_HOLD);
	ferr_clear(&e);
	if (parse_args(argc, argv, &com, &bundle, &keyfile, &output, &rc) < 0)
		goto out;
	cli_install_signals();
	u.stream = !strcmp(output, "-");
	u.name = u.stream ? "(standard output)" : output;
	if (sig_load_public(&key, keyfile, &e) < 0 ||
	    (!u.stream && same_file(bundle, output, &e) < 0))
		goto fail;
	u.fd = u.stream ? 1 : open_temp(output, &tmp, &e);
	if (u.fd < 0)
		goto fail;
	ops.header = up_header;
	ops.tar_data = up_tar;
	if (bundle_read(bundle, &key, &ops, &u, &h, NULL, &e) < 0)
		goto fail;
	if (u.stream ? up_flush(&u, 0, &e) < 0
		     : finish_file(&u, tmp, output, &e) < 0)
		goto fail;
	if (!com.quiet)
		summary(&h, &key, output, u.written);
	rc = FERRY_EXIT_OK;
	goto out;
fail:
	if (u.stream && u.fd >= 0)
		up_cut(&u);
	cli_error(&e);
	rc = ferr_exit_code(e.cat);
out:
	if (!u.stream && u.fd >= 0)
		close(u.fd);
	if (tmp && rc != FERRY_EXIT_OK)
		unlink(tmp);
	free(tmp);
	buf_release(&u.hold);
	bundle_header_release(&h);
	sig_key_release(&key);
	cli_common_release(&com);
	return rc;
}
