/* ferry export: the command layer over the export engine (exporter.c). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "buf.h"
#include "cli.h"
#include "commands.h"
#include "exporter.h"
#include "parts.h"
#include "ref.h"
#include "sig.h"

static const char usage_text[] =
    "usage: ferry export [REF...] [-f IMAGES_FILE] -o BUNDLE --key PRIVATE.pem\n"
    "                    [options]\n"
    "\n"
    "Pull images from registries into one signed bundle (OCI layout in a\n"
    "tar stream). Every manifest and blob is verified while it streams.\n"
    "\n"
    "Options:\n"
    "  -f, --images-file FILE  one reference per line; '#' comments\n"
    "  -o, --output BUNDLE     bundle to write (must not exist; '-': standard\n"
    "                          output)\n"
    "      --key FILE          private signing key (from 'ferry keygen')\n"
    "      --passphrase-file F passphrase of an encrypted key\n"
    "      --platform LIST     OS/ARCH[/VARIANT],... or 'all' (default)\n"
    "      --jobs N            parallel downloads (default 4)\n"
    "      --cache DIR         verified-blob cache (default\n"
    "                          $XDG_CACHE_HOME/ferry or ~/.cache/ferry)\n"
    "      --compress C        zstd (default), gzip or none\n"
    "      --report FILE.json  write a JSON report\n"
    "      --channel NAME      update channel (default 'default')\n"
    "      --sequence N        sequence number (default: creation time)\n"
    "      --base BUNDLE       write a delta: leave out every config and layer\n"
    "                          this earlier bundle (or BUNDLE.parts) carries\n"
    "                          or omits (repeatable)\n"
    "      --split-size SIZE   write parts BUNDLE.001, ... of SIZE bytes (K, M,\n"
    "                          G: powers of 1024) with a signed BUNDLE.parts\n"
    "      --referrers all|none  carry what is attached to the images\n"
    "                          (cosign signatures, attestations, SBOMs, OCI\n"
    "                          referrers; default all) or none of it\n"
    "      --verify-cosign-key PUB.pem  every image must carry a cosign\n"
    "                          signature this key verifies (repeatable: any\n"
    "                          of the keys); else exit 5 and no bundle\n"
    "\n";

enum {
	OPT_KEY = CLI_OPT_CMD,
	OPT_PASSFILE,
	OPT_PLATFORM,
	OPT_JOBS,
	OPT_CACHE,
	OPT_COMPRESS,
	OPT_REPORT,
	OPT_CHANNEL,
	OPT_SEQUENCE,
	OPT_BASE,
	OPT_SPLIT,
	OPT_REFERRERS,
	OPT_COSIGN_KEY,
};

static const struct option long_opts[] = {
    {"images-file", required_argument, NULL, 'f'},
    {"output", required_argument, NULL, 'o'},
    {"key", required_argument, NULL, OPT_KEY},
    {"passphrase-file", required_argument, NULL, OPT_PASSFILE},
    {"platform", required_argument, NULL, OPT_PLATFORM},
    {"jobs", required_argument, NULL, OPT_JOBS},
    {"cache", required_argument, NULL, OPT_CACHE},
    {"compress", required_argument, NULL, OPT_COMPRESS},
    {"report", required_argument, NULL, OPT_REPORT},
    {"channel", required_argument, NULL, OPT_CHANNEL},
    {"sequence", required_argument, NULL, OPT_SEQUENCE},
    {"base", required_argument, NULL, OPT_BASE},
    {"split-size", required_argument, NULL, OPT_SPLIT},
    {"referrers", required_argument, NULL, OPT_REFERRERS},
    {"verify-cosign-key", required_argument, NULL, OPT_COSIGN_KEY},
    CLI_COMMON_OPTIONS,
    {NULL, 0, NULL, 0},
};

struct refs {
	struct ref *v;
	size_t n;
};

static int add_ref(struct refs *r, const char *s, struct ferr *e)
{
	struct ref *n = realloc(r->v, (r->n + 1) * sizeof(*n));

	if (!n)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	r->v = n;
	if (ref_parse(&r->v[r->n], s, e) < 0)
		return -1;
	r->n++;
	return 0;
}

/* Read an images file; every bad line is reported (with its number)
 * before anything is downloaded.  Returns the number of bad lines, or -1
 * when the file cannot be read. */
static int read_images_file(const char *path, struct refs *r, struct ferr *e)
{
	struct buf b;
	char chunk[65536];
	int fd, bad = 0;
	unsigned long lineno = 0;
	char *p, *end;

	buf_init(&b, FERRY_MAX_IMAGES_FILE);
	fd = !strcmp(path, "-") ? 0 : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ferr_errno(e, FERR_IO, errno, "cannot open '%s'", path);
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ferr_errno(e, FERR_IO, errno, "cannot read '%s'", path);
			goto fail;
		}
		if (n == 0)
			break;
		if (buf_append(&b, chunk, (size_t)n) < 0) {
			ferr_set(e, FERR_INPUT, 0,
				 "images file '%s' is larger than %u bytes",
				 path, FERRY_MAX_IMAGES_FILE);
			goto fail;
		}
	}
	if (fd)
		close(fd);
	fd = -1;
	if (buf_append(&b, "", 0) < 0)
		goto fail;
	for (p = (char *)b.data; p && *p; p = end) {
		char *hash, *s, *t;
		struct ferr le;

		end = strchr(p, '\n');
		if (end)
			*end++ = '\0';
		lineno++;
		hash = strchr(p, '#');
		if (hash)
			*hash = '\0';
		for (s = p; *s == ' ' || *s == '\t' || *s == '\r'; s++)
			;
		t = s + strlen(s);
		while (t > s &&
		       (t[-1] == ' ' || t[-1] == '\t' || t[-1] == '\r'))
			*--t = '\0';
		if (!*s)
			continue;
		ferr_clear(&le);
		if (add_ref(r, s, &le) < 0) {
			fprintf(stderr, "ferry: error: %s:%lu: ", path, lineno);
			cli_put_text(stderr, le.msg);
			fputc('\n', stderr);
			if (!bad)
				*e = le;
			bad++;
		}
	}
	buf_release(&b);
	if (bad)
		ferr_set(e, FERR_INPUT, 0,
			 "'%s' has %d invalid line%s; nothing was downloaded",
			 path, bad, bad == 1 ? "" : "s");
	return bad;
fail:
	if (fd > 0)
		close(fd);
	buf_release(&b);
	return -1;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static bool valid_channel(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 128)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

/* ---- progress ---- */

struct ui {
	enum progress_mode mode;
	int quiet;
	struct exp_progress pr;
	struct cli_ticker tk;
	struct timespec t0;
};

static double since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) +
	       (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* " 1.5 MiB/s ETA 2m05s": the rate in a unit that does not round it to
 * nothing, and a time left only when there is a rate to divide by and
 * something left to fetch. */
static void rate_eta(char *out, size_t n, double rate, unsigned long long left)
{
	int k = 0;
	long s;

	if (rate >= 1048576.0)
		k = snprintf(out, n, " %.1f MiB/s", rate / 1048576.0);
	else if (rate >= 1024.0)
		k = snprintf(out, n, " %.0f KiB/s", rate / 1024.0);
	else
		out[0] = '\0';
	if (k <= 0 || (size_t)k >= n || !left || rate < 1024.0)
		return;
	s = (long)((double)left / rate + 0.5);
	if (s >= 3600)
		snprintf(out + k, n - (size_t)k, " ETA %ldh%02ldm", s / 3600,
			 s / 60 % 60);
	else if (s >= 60)
		snprintf(out + k, n - (size_t)k, " ETA %ldm%02lds", s / 60,
			 s % 60);
	else
		snprintf(out + k, n - (size_t)k, " ETA %lds", s);
}

static void draw(void *ctx, bool final)
{
	struct ui *u = ctx;
	unsigned long long done = atomic_load(&u->pr.bytes_done);
	unsigned long long total = atomic_load(&u->pr.bytes_total);
	double t = since(&u->t0);
	double rate =
	    t > 0.2 ? (double)(done - atomic_load(&u->pr.bytes_cached)) / t : 0;
	int phase = atomic_load(&u->pr.phase);
	char bar[31];
	int pct = total ? (int)(done * 100 / total) : 0;

	if (phase == EXP_RESOLVING) {
		fprintf(stderr, "\r\033[Kresolving images %u/%u",
			atomic_load(&u->pr.images_resolved),
			atomic_load(&u->pr.images_total));
	} else {
		int fill = pct * 30 / 100;
		char speed[64];

		for (int i = 0; i < 30; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[30] = '\0';
		rate_eta(speed, sizeof(speed), rate,
			 total > done ? total - done : 0);
		fprintf(stderr,
			"\r\033[K[%s] %3d%% %.1f/%.1f MiB%s "
			"layers+configs %u/%u images %u/%u",
			bar, pct, (double)done / 1048576.0,
			(double)total / 1048576.0, speed,
			atomic_load(&u->pr.blobs_done),
			atomic_load(&u->pr.blobs_total),
			atomic_load(&u->pr.images_done),
			atomic_load(&u->pr.images_total));
	}
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
}

/* One line per config or layer.  Those fetched while images are still
 * being resolved come before the total is known: counted without it. */
static void plain_blob_line(struct ui *u, const struct exp_event *ev)
{
	unsigned total = atomic_load(&u->pr.blobs_total);

	fprintf(stderr, "%s %s %.1f MiB ", ev->cached ? "cached " : "fetched",
		ev->digest, (double)ev->size / 1048576.0);
	if (total >= ev->count)
		fprintf(stderr, "[%u/%u]\n", ev->count, total);
	else
		fprintf(stderr, "[%u]\n", ev->count);
}

static void on_event(void *ctx, const struct exp_event *ev)
{
	struct ui *u = ctx;

	if (ev->type == EXP_EV_FAILED) { /* always: it is an error */
		pthread_mutex_lock(&u->tk.mu);
		if (u->mode == PROGRESS_AUTO)
			fputs("\r\033[K", stderr);
		cli_error(ev->err);
		pthread_mutex_unlock(&u->tk.mu);
		return;
	}

	if (u->mode == PROGRESS_AUTO && ev->type == EXP_EV_IMAGE_DONE) {
		/* a finished image gets its own line above the bar */
		pthread_mutex_lock(&u->tk.mu);
		fprintf(stderr, "\r\033[Kdone %s (%.1f MiB)\n", ev->ref,
			(double)ev->size / 1048576.0);
		draw(u, false);
		pthread_mutex_unlock(&u->tk.mu);
	} else if (u->mode == PROGRESS_PLAIN) {
		if (ev->type == EXP_EV_RESOLVED)
			fprintf(stderr, "resolved %s %s (%.1f MiB)\n", ev->ref,
				ev->digest, (double)ev->size / 1048576.0);
		else if (ev->type == EXP_EV_IMAGE_DONE)
			fprintf(stderr, "done %s (%.1f MiB)\n", ev->ref,
				(double)ev->size / 1048576.0);
		else if (ev->type == EXP_EV_BLOB)
			plain_blob_line(u, ev);
	} else if (u->mode == PROGRESS_JSON) {
		json_t *o = json_object();
		char *s;
		if (ev->type == EXP_EV_IMAGE_DONE ||
		    ev->type == EXP_EV_RESOLVED) {
			json_object_set_new(o, "event",
					    json_string(
						ev->type == EXP_EV_IMAGE_DONE
						    ? "image"
						    : "resolved"));
			json_object_set_new(o, "reference",
					    json_string(ev->ref));
			json_object_set_new(o, "digest",
					    json_string(ev->digest));
			json_object_set_new(o, "bytes",
					    json_integer((json_int_t)ev->size));
		} else {
			json_object_set_new(o, "event", json_string("blob"));
			json_object_set_new(o, "digest",
					    json_string(ev->digest));
			json_object_set_new(o, "bytes",
					    json_integer((json_int_t)ev->size));
			json_object_set_new(o, "cached",
					    json_boolean(ev->cached));
			json_object_set_new(o, "bytesDone",
					    json_integer(
						(json_int_t)atomic_load(
						    &u->pr.bytes_done)));
			json_object_set_new(o, "bytesTotal",
					    json_integer(
						(json_int_t)atomic_load(
						    &u->pr.bytes_total)));
		}
		s = json_dumps(o, JSON_COMPACT);
		if (s)
			fprintf(stderr, "%s\n", s);
		free(s);
		json_decref(o);
	}
}

/* ---- report ---- */

static int write_report(const char *path, const char *bundle,
			const struct exp_result *r, enum arc_compress c,
			double secs, struct ferr *e)
{
	json_t *root = json_object(), *imgs = json_array(),
	       *tot = json_object();
	char when[32];
	int rc;

	bundle_time_format(r->meta.created, when);
	json_object_set_new(root, "bundle", json_string(bundle));
	json_object_set_new(root, "bundleId", json_string(r->meta.bundle_id));
	json_object_set_new(root, "created", json_string(when));
	json_object_set_new(root, "channel", json_string(r->meta.channel));
	json_object_set_new(root, "sequence",
			    json_integer((json_int_t)r->meta.sequence));
	json_object_set_new(root, "signingKeyId", json_string(r->meta.key_id));
	json_object_set_new(root, "compress",
			    json_string(arc_compress_name(c)));
	for (size_t i = 0; i < r->nimages; i++) {
		const struct bundle_image *im = &r->images[i];
		json_t *o = json_object(), *pl = json_array();
		json_object_set_new(o, "reference", json_string(im->ref));
		json_object_set_new(o, "digest", json_string(im->digest.str));
		json_object_set_new(o, "mediaType",
				    json_string(im->media_type));
		for (size_t k = 0; k < im->nplatforms; k++)
			json_array_append_new(pl,
					      json_string(im->platforms[k]));
		json_object_set_new(o, "platforms", pl);
		json_object_set_new(o, "bytes",
				    json_integer((json_int_t)im->total_size));
		json_object_set_new(o, "attached",
				    json_integer((json_int_t)im->nattached));
		if (im->cosign_key_id)
			json_object_set_new(o, "cosignKeyId",
					    json_string(im->cosign_key_id));
		json_array_append_new(imgs, o);
	}
	json_object_set_new(root, "images", imgs);
	json_object_set_new(tot, "images",
			    json_integer((json_int_t)r->nimages));
	json_object_set_new(tot, "blobs", json_integer((json_int_t)r->nblobs));
	json_object_set_new(tot, "blobBytes",
			    json_integer((json_int_t)r->blob_bytes));
	json_object_set_new(tot, "bytesFetched",
			    json_integer((json_int_t)r->bytes_fetched));
	json_object_set_new(tot, "bytesFromCache",
			    json_integer((json_int_t)r->bytes_cached));
	json_object_set_new(tot, "bundleBytes",
			    json_integer((json_int_t)r->bundle_bytes));
	json_object_set_new(root, "totals", tot);
	json_object_set_new(root, "durationSeconds", json_real(secs));
	rc = cli_write_json(path, root, e);
	json_decref(root);
	return rc;
}

/* Everything the command line says. */
struct export_args {
	struct cli_common com;
	const char *out, *keyfile, *passfile, *images_file, *report, *channel,
	    *cache, *platform_arg;
	uint64_t sequence, jobs, split;
	bool has_sequence;
	const char *bases[EXP_MAX_BASES];
	size_t nbases;
	enum arc_compress compress;
	bool no_referrers;
	const char *cosign_keys[EXP_MAX_COSIGN_KEYS];
	size_t ncosign_keys;
};

static int bad_opt(const char *what, const char *arg)
{
	cli_usage_error("export", "%s, not '%s'", what, arg);
	return -1;
}

/* One option of export's own; 0 taken, 1 help shown, -1 usage error. */
static int export_opt(struct export_args *a, int c, const char *arg,
		      char **argv)
{
	switch (c) {
	case 'h':
		fputs(usage_text, stdout);
		fputs(cli_common_help, stdout);
		return 1;
	case 'f':
		a->images_file = arg;
		return 0;
	case 'o':
		a->out = arg;
		return 0;
	case OPT_KEY:
		a->keyfile = arg;
		return 0;
	case OPT_PASSFILE:
		a->passfile = arg;
		return 0;
	case OPT_PLATFORM:
		a->platform_arg = arg;
		return 0;
	case OPT_JOBS:
		if (parse_u64(arg, &a->jobs) < 0 || a->jobs < 1 || a->jobs > 64)
			return bad_opt("--jobs takes a number from 1 to "
				       "64",
				       arg);
		return 0;
	case OPT_CACHE:
		a->cache = arg;
		return 0;
	case OPT_COMPRESS:
		if (arc_compress_parse(arg, &a->compress) < 0)
			return bad_opt("--compress takes zstd, gzip or "
				       "none",
				       arg);
		return 0;
	case OPT_REPORT:
		a->report = arg;
		return 0;
	case OPT_CHANNEL:
		if (!valid_channel(arg))
			return bad_opt("--channel takes 1 to 128 of "
				       "[A-Za-z0-9._-]",
				       arg);
		a->channel = arg;
		return 0;
	case OPT_SEQUENCE:
		if (parse_u64(arg, &a->sequence) < 0 ||
		    a->sequence > (1ull << 53))
			return bad_opt("--sequence takes a non-negative "
				       "integer",
				       arg);
		a->has_sequence = true;
		return 0;
	case OPT_BASE:
		if (a->nbases == EXP_MAX_BASES)
			return bad_opt(
			    "--base may be given at most " EXP_MAX_BASES_STR
			    " times",
			    arg);
		a->bases[a->nbases++] = arg;
		return 0;
	case OPT_SPLIT:
		if (parts_size_parse(arg, &a->split) < 0 ||
		    a->split < PARTS_MIN_SIZE)
			return bad_opt("--split-size takes a size of at least "
				       "4096 bytes (K, M, G: powers of 1024)",
				       arg);
		return 0;
	case OPT_REFERRERS:
		if (strcmp(arg, "all") && strcmp(arg, "none"))
			return bad_opt("--referrers takes all or none", arg);
		a->no_referrers = !strcmp(arg, "none");
		return 0;
	case OPT_COSIGN_KEY:
		if (a->ncosign_keys == EXP_MAX_COSIGN_KEYS)
			return bad_opt("--verify-cosign-key may be given at "
				       "most " EXP_MAX_COSIGN_KEYS_STR " times",
				       arg);
		a->cosign_keys[a->ncosign_keys++] = arg;
		return 0;
	default:
		if (optopt && optopt < 256)
			cli_usage_error("export",
					"unknown or incomplete option '-%c'",
					optopt);
		else
			cli_usage_error("export",
					"unknown or incomplete option '%s'",
					argv[optind - 1]);
		return -1;
	}
}

/* 0 to go on, 1 when done (help, version), -1 on a usage error. */
static int export_parse(struct export_args *a, int argc, char **argv)
{
	int c;

	memset(a, 0, sizeof(*a));
	a->channel = "default";
	a->platform_arg = "all";
	a->jobs = 4;
	a->compress = ARC_ZSTD;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:o:" CLI_COMMON_SHORT, long_opts,
				NULL)) != -1) {
		int r = cli_common_opt(&a->com, c, optarg, "export");
		if (r == 2)
			return 1;
		if (r < 0)
			return -1;
		if (r == 0 && (r = export_opt(a, c, optarg, argv)) != 0)
			return r;
	}
	if (!a->out || !a->keyfile) {
		cli_usage_error("export", "%s is required",
				!a->out ? "-o BUNDLE" : "--key PRIVATE.pem");
		return -1;
	}
	if (optind == argc && !a->images_file) {
		cli_usage_error("export",
				"no images: give references or -f FILE");
		return -1;
	}
	/* the bundle must carry the signatures for 'verify --cosign-key' */
	if (a->no_referrers && a->ncosign_keys) {
		cli_usage_error("export", "--verify-cosign-key needs the "
					  "signatures: not with --referrers "
					  "none");
		return -1;
	}
	return 0;
}

/* --platform OS/ARCH[/VARIANT],... into a list (pointing into *buf). */
static int parse_platforms(const char *arg, char **buf, const char ***list,
			   size_t *n)
{
	char *p, *save = NULL;

	if (!strcmp(arg, "all"))
		return 0;
	if (!(*buf = strdup(arg)))
		return -ENOMEM;
	for (p = *buf; p; p = save) {
		const char **np;
		size_t sl;

		save = strchr(p, ',');
		if (save)
			*save++ = '\0';
		sl = strcspn(p, "/");
		if (!*p || !p[sl] || sl == 0 || !p[sl + 1] || strchr(p, ' ')) {
			cli_usage_error("export",
					"--platform takes OS/ARCH[/VARIANT],"
					"... or 'all', not '%s'",
					arg);
			return -1;
		}
		np = realloc(*list, (*n + 1) * sizeof(*np));
		if (!np)
			return -ENOMEM;
		*list = np;
		(*list)[(*n)++] = p;
	}
	return 0;
}

/* The creation time: SOURCE_DATE_EPOCH when set (reproducible builds). */
static int creation_time(time_t *created, struct ferr *e)
{
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	uint64_t v;

	if (!sde || !*sde) {
		*created = time(NULL);
		return 0;
	}
	if (parse_u64(sde, &v) < 0 || v > (1ull << 40))
		return ferr_set(e, FERR_INPUT, 0,
				"SOURCE_DATE_EPOCH is not a number of "
				"seconds: '%.40s'",
				sde);
	*created = (time_t)v;
	return 0;
}

/* Every reference, from the command line and the images file, checked
 * before any download. */
static int collect_refs(const struct export_args *a, int argc, char **argv,
			struct refs *refs, struct ferr *e)
{
	for (int i = optind; i < argc; i++)
		if (add_ref(refs, argv[i], e) < 0)
			return -1;
	if (!a->images_file)
		return 0;
	if (read_images_file(a->images_file, refs, e) != 0)
		return -1;
	if (refs->n == 0)
		return ferr_set(e, FERR_INPUT, 0, "'%s' lists no images",
				a->images_file);
	return 0;
}

static int load_key(const struct export_args *a, struct sig_key *key,
		    struct ferr *e)
{
	char *pass = NULL;
	size_t passlen = 0;
	int rc;

	if (a->passfile &&
	    sig_read_passphrase_file(a->passfile, &pass, &passlen, e) < 0)
		return -1;
	rc = sig_load_private(key, a->keyfile, pass, passlen, e);
	if (pass)
		sig_wipe_free(pass, passlen);
	return rc;
}

/* The --verify-cosign-key public keys. */
static int load_cosign_keys(const struct export_args *a, struct sig_key *keys,
			    struct ferr *e)
{
	for (size_t i = 0; i < a->ncosign_keys; i++)
		if (sig_load_public(&keys[i], a->cosign_keys[i], e) < 0)
			return ferr_prefix(e, "--verify-cosign-key");
	return 0;
}

static void ui_start(struct ui *u, const struct cli_common *com)
{
	u->mode = com->quiet ? PROGRESS_NONE : com->progress;
	if (u->mode == PROGRESS_AUTO)
		u->mode = isatty(2) ? PROGRESS_AUTO : PROGRESS_PLAIN;
	clock_gettime(CLOCK_MONOTONIC, &u->t0);
	if (u->mode == PROGRESS_AUTO)
		cli_ticker_start(&u->tk);
}

/* What travels with the images (SPEC §6), and what the gate checked. */
static void print_attached(FILE *f, const struct exp_result *res)
{
	size_t n[BA_REFERRERS + 1] = {0}, signed_n = 0;

	for (size_t i = 0; i < res->nimages; i++) {
		for (size_t k = 0; k < res->images[i].nattached; k++)
			n[res->images[i].attached[k].kind]++;
		signed_n += res->images[i].cosign_key_id != NULL;
	}
	if (n[BA_SIGNATURE] + n[BA_ATTESTATION] + n[BA_SBOM] + n[BA_REFERRER])
		fprintf(f,
			"attached: %zu signatures, %zu attestations, %zu "
			"SBOMs, %zu OCI referrers\n",
			n[BA_SIGNATURE], n[BA_ATTESTATION], n[BA_SBOM],
			n[BA_REFERRER]);
	if (signed_n)
		fprintf(f,
			"cosign: %zu of %zu images carry a signature a "
			"--verify-cosign-key key verified\n",
			signed_n, res->nimages);
}

static void print_summary(const struct export_args *a, const struct ui *u,
			  const struct exp_result *res,
			  const struct sig_key *key, double secs)
{
	/* with -o -, standard output is the bundle */
	FILE *f = strcmp(a->out, "-") ? stdout : stderr;
	unsigned data = atomic_load(&u->pr.blobs_total);
	size_t docs = res->nblobs >= data ? res->nblobs - data : 0;

	if (u->mode == PROGRESS_JSON)
		fprintf(
		    stderr,
		    "{\"event\":\"done\",\"bundle\":\"%s\",\"bundleId\":\"%s\"}\n",
		    a->out, res->meta.bundle_id);
	if (a->com.quiet)
		return;
	if (res->nparts)
		fprintf(f,
			"wrote '%s.001' to '%s.%03zu' and '%s.parts': ", a->out,
			a->out, res->nparts, a->out);
	else
		fprintf(f, "wrote '%s': ", a->out);
	fprintf(f,
		"%zu image%s, %zu blobs (%u configs and layers, %zu %s), %.1f "
		"MiB (fetched %.1f MiB, from cache %.1f MiB) in %.1f s\n",
		res->nimages, res->nimages == 1 ? "" : "s", res->nblobs, data,
		docs, docs == 1 ? "manifest or index" : "manifests and indexes",
		(double)res->bundle_bytes / 1048576.0,
		(double)res->bytes_fetched / 1048576.0,
		(double)res->bytes_cached / 1048576.0, secs);
	print_attached(f, res);
	if (res->meta.nbases)
		fprintf(f, "delta over %zu base bundle%s: %zu blobs left out\n",
			res->meta.nbases, res->meta.nbases == 1 ? "" : "s",
			res->meta.nomitted);
	fprintf(f, "bundle id %s, signed by key %s\n", res->meta.bundle_id,
		key->key_id);
}

/* The engine's options from the command line's. */
static void fill_opts(const struct export_args *a, struct exp_opts *eo,
		      struct ui *u)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	eo->cache_dir = a->cache;
	eo->jobs = (int)a->jobs;
	eo->compress = a->compress;
	eo->threads = ncpu > 0 ? (int)ncpu : 1;
	eo->channel = a->channel;
	eo->sequence = a->has_sequence ? a->sequence : (uint64_t)eo->created;
	eo->split_size = a->split;
	eo->bases = a->bases;
	eo->nbases = a->nbases;
	eo->no_referrers = a->no_referrers;
	eo->ncosign_keys = a->ncosign_keys;
	eo->progress = &u->pr;
	eo->event = on_event;
	eo->event_ctx = u;
}

int cmd_export(int argc, char **argv)
{
	struct export_args a;
	struct refs refs = {NULL, 0};
	char *default_cache = NULL, *platbuf = NULL;
	const char **platforms = NULL;
	struct auth_store creds = {0};
	struct sig_key key, cosign[EXP_MAX_COSIGN_KEYS];
	struct reg_opts ropts;
	struct exp_opts eo;
	struct exp_result res;
	struct ferr e;
	struct ui u;
	int r, rc = FERRY_EXIT_USAGE;

	memset(&key, 0, sizeof(key));
	memset(cosign, 0, sizeof(cosign));
	memset(&res, 0, sizeof(res));
	memset(&u, 0, sizeof(u));
	memset(&eo, 0, sizeof(eo));
	cli_ticker_init(&u.tk, draw, &u);
	ferr_clear(&e);
	if ((r = export_parse(&a, argc, argv)) != 0) {
		rc = r > 0 ? FERRY_EXIT_OK : FERRY_EXIT_USAGE;
		goto out;
	}
	if ((r = parse_platforms(a.platform_arg, &platbuf, &platforms,
				 &eo.nplatforms)) < 0) {
		if (r == -ENOMEM)
			goto oom;
		goto out;
	}
	if (creation_time(&eo.created, &e) < 0 ||
	    collect_refs(&a, argc, argv, &refs, &e) < 0 ||
	    load_key(&a, &key, &e) < 0 ||
	    load_cosign_keys(&a, cosign, &e) < 0 ||
	    auth_store_load(&creds, a.com.authfile, &e) < 0)
		goto fail;
	if (!a.cache) {
		default_cache = exp_default_cache_dir();
		if (!default_cache) {
			ferr_set(&e, FERR_IO, 0,
				 "no cache directory: HOME is not set and the "
				 "account has no home; give --cache DIR");
			goto fail;
		}
		a.cache = default_cache;
	}
	cli_reg_opts(&a.com, &creds, &ropts);
	eo.reg = &ropts;
	eo.platforms = platforms;
	eo.key = &key;
	eo.cosign_keys = cosign;
	fill_opts(&a, &eo, &u);
	ui_start(&u, &a.com);
	r = exp_run(&eo, refs.v, refs.n, a.out, &res, &e);
	cli_ticker_stop(&u.tk, r == 0);
	if (r < 0 ||
	    (a.report && write_report(a.report, a.out, &res, a.compress,
				      since(&u.t0), &e) < 0))
		goto fail;
	print_summary(&a, &u, &res, &key, since(&u.t0));
	rc = FERRY_EXIT_OK;
	goto out;
oom:
	ferr_set(&e, FERR_IO, ENOMEM, "out of memory");
fail:
	cli_error(&e);
	if (e.cat == FERR_INTERRUPT && a.cache)
		fprintf(stderr,
			"ferry: run the same command again to resume: what was "
			"downloaded is kept in the cache '%s'\n",
			a.cache);
	rc = ferr_exit_code(e.cat);
out:
	cli_ticker_release(&u.tk);
	exp_result_release(&res);
	for (size_t i = 0; i < refs.n; i++)
		ref_release(&refs.v[i]);
	free(refs.v);
	free(platforms);
	free(platbuf);
	free(default_cache);
	sig_key_release(&key);
	for (size_t i = 0; i < EXP_MAX_COSIGN_KEYS; i++)
		sig_key_release(&cosign[i]);
	auth_store_release(&creds);
	cli_common_release(&a.com);
	return rc;
}
