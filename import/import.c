/* ferry import: the command layer over the import engine (importer.c). */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "importer.h"
#include "ref.h"
#include "sig.h"

static const char usage_text[] =
    "usage: ferry import BUNDLE --key PUBLIC.pem --to HOST[:PORT][/PREFIX]\n"
    "                    [options]\n"
    "\n"
    "Verify a bundle while streaming it into a registry. Blobs are uploaded\n"
    "as they are read and completed only once verified; manifests, then\n"
    "tags, are written only after the whole bundle checked out.\n"
    "\n"
    "Options:\n"
    "      --key FILE          the trusted public key\n"
    "      --to HOST[/PREFIX]  target registry and repository prefix\n"
    "      --jobs N            parallel uploads of large blobs (default 4);\n"
    "                          small blobs and manifests use twice as many\n"
    "      --dry-run           verify and show what would be pushed; write\n"
    "                          nothing\n"
    "      --report FILE.json  write a JSON report\n"
    "      --allow-rollback    accept a bundle older than one imported before\n"
    "      --keep-registry     keep the source registry as a path component\n"
    "      --state-dir DIR     rollback state (default $XDG_STATE_HOME/ferry\n"
    "                          or ~/.local/state/ferry)\n"
    "      --create-projects   Harbor: create missing projects (private\n"
    "                          unless --public) before pushing\n"
    "      --public            with --create-projects: public projects\n"
    "\n";

enum {
	OPT_KEY = CLI_OPT_CMD,
	OPT_TO,
	OPT_JOBS,
	OPT_DRY,
	OPT_REPORT,
	OPT_ROLLBACK,
	OPT_KEEPREG,
	OPT_STATEDIR,
	OPT_CREATE,
	OPT_PUBLIC,
};

static const struct option long_opts[] = {
    {"key", required_argument, NULL, OPT_KEY},
    {"to", required_argument, NULL, OPT_TO},
    {"jobs", required_argument, NULL, OPT_JOBS},
    {"dry-run", no_argument, NULL, OPT_DRY},
    {"report", required_argument, NULL, OPT_REPORT},
    {"allow-rollback", no_argument, NULL, OPT_ROLLBACK},
    {"keep-registry", no_argument, NULL, OPT_KEEPREG},
    {"state-dir", required_argument, NULL, OPT_STATEDIR},
    {"create-projects", no_argument, NULL, OPT_CREATE},
    {"public", no_argument, NULL, OPT_PUBLIC},
    CLI_COMMON_OPTIONS,
    {NULL, 0, NULL, 0},
};

struct ui {
	int mode;
	bool quiet;
	struct imp_progress *pr;
	struct cli_ticker tk;
	struct timespec t0;
};

static void draw(void *ctx, bool final)
{
	struct ui *u = ctx;
	struct timespec now;
	double t, rd = (double)atomic_load(&u->pr->bytes_read) / 1048576.0;
	double pu = (double)atomic_load(&u->pr->bytes_pushed) / 1048576.0;
	static const char *const phase[] = {"reading and pushing blobs",
					    "pushing manifests", "writing tags",
					    "done"};
	int ph = atomic_load(&u->pr->phase);

	clock_gettime(CLOCK_MONOTONIC, &now);
	t = (double)(now.tv_sec - u->t0.tv_sec) +
	    (double)(now.tv_nsec - u->t0.tv_nsec) / 1e9;
	fprintf(stderr,
		"\r\033[K%s: read %.1f MiB, pushed %.1f MiB (%.1f MiB/s); "
		"blobs %u pushed, %u there, %u mounted; manifests %u, tags %u",
		phase[ph >= 0 && ph < 4 ? ph : 0], rd, pu,
		t > 0.2 ? pu / t : 0.0, atomic_load(&u->pr->blobs_pushed),
		atomic_load(&u->pr->blobs_skipped),
		atomic_load(&u->pr->blobs_mounted),
		atomic_load(&u->pr->manifests_pushed),
		atomic_load(&u->pr->tags_pushed));
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
}

static void on_event(void *ctx, const struct imp_event *ev)
{
	struct ui *u = ctx;
	const char *kind = ev->type == IMP_EV_BLOB	 ? "blob"
			   : ev->type == IMP_EV_MANIFEST ? "manifest"
							 : "tag";

	if (u->quiet || u->mode == PROGRESS_NONE || u->mode == PROGRESS_AUTO)
		return; /* on a terminal the ticker shows the counters */
	if (u->mode == PROGRESS_JSON) {
		json_t *o = json_pack("{sssssssssI}", "event", kind, "action",
				      ev->action, "repository", ev->repo,
				      "object", ev->what, "bytes",
				      (json_int_t)ev->size);
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (s)
			fprintf(stderr, "%s\n", s);
		free(s);
		json_decref(o);
		return;
	}
	if (ev->type == IMP_EV_BLOB)
		fprintf(stderr, "%-11s %s %s@%.19s (%.1f MiB)\n", ev->action,
			kind, ev->repo, ev->what, (double)ev->size / 1048576.0);
	else
		fprintf(stderr, "%-11s %s %s%s%s\n", ev->action, kind, ev->repo,
			strchr(ev->what, ':') ? "@" : ":", ev->what);
}

static int write_report(const char *path, const char *bundle, const char *to,
			const struct imp_result *r, bool dry, double secs,
			struct ferr *e)
{
	json_t *root = json_object(), *imgs = json_array();
	int rc;

	json_object_set_new(root, "bundle", json_string(bundle));
	json_object_set_new(root, "to", json_string(to));
	json_object_set_new(root, "dryRun", json_boolean(dry));
	json_object_set_new(root, "bundleId", json_string(r->hdr.bundle_id));
	json_object_set_new(root, "channel",
			    json_string(r->hdr.channel ? r->hdr.channel : ""));
	json_object_set_new(root, "sequence",
			    json_integer((json_int_t)r->hdr.sequence));
	json_object_set_new(root, "alreadyImported",
			    json_boolean(r->already_imported));
	json_object_set_new(root, "importedAgain",
			    json_boolean(r->stale != NULL));
	for (size_t i = 0; i < r->nimages; i++) {
		const struct imp_image *im = &r->images[i];
		json_array_append_new(
		    imgs, json_pack("{ssssss}", "source", im->source, "target",
				    im->target, "digest", im->digest.str));
	}
	json_object_set_new(root, "images", imgs);
	json_object_set_new(
	    root, "blobs",
	    json_pack("{sIsIsIsIsIsI}", "total", (json_int_t)r->blobs, "pushed",
		      (json_int_t)r->pushed, "skipped", (json_int_t)r->skipped,
		      "mounted", (json_int_t)r->mounted, "bytesPushed",
		      (json_int_t)r->bytes_pushed, "bytesToPush",
		      (json_int_t)r->bytes_to_push));
	json_object_set_new(root, "manifestsPushed",
			    json_integer(r->manifests_pushed));
	json_object_set_new(root, "manifestsSkipped",
			    json_integer(r->manifests_skipped));
	json_object_set_new(root, "tagsPushed", json_integer(r->tags));
	json_object_set_new(root, "attachmentTagsPushed",
			    json_integer(r->attach_tags));
	json_object_set_new(root, "referrersIndexesPushed",
			    json_integer(r->referrers_indexes));
	json_object_set_new(root, "projectsCreated",
			    json_integer(r->projects_created));
	json_object_set_new(root, "durationSeconds", json_real(secs));
	rc = cli_write_json(path, root, e);
	json_decref(root);
	return rc;
}

static int parse_to(const char *to, char **host, char **prefix)
{
	const char *slash = strchr(to, '/');
	size_t hn = slash ? (size_t)(slash - to) : strlen(to);
	struct ref r;
	struct ferr e;
	char probe[600];

	*host = *prefix = NULL;
	if (!hn || hn > 255)
		return -1;
	*host = strndup(to, hn);
	if (!*host)
		return -1;
	/* host names are case-insensitive: one spelling for the registry */
	for (char *p = *host; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (slash && slash[1]) {
		*prefix = strdup(slash + 1);
		size_t pl = strlen(*prefix);
		while (pl && (*prefix)[pl - 1] == '/')
			(*prefix)[--pl] = '\0';
	}
	/* the prefix must make valid repository names */
	snprintf(probe, sizeof(probe), "%s/%s%sx:t", *host,
		 *prefix ? *prefix : "", *prefix ? "/" : "");
	if (ref_parse(&r, probe, &e) < 0 || strcmp(r.domain, *host) != 0) {
		ref_release(&r);
		return -1;
	}
	ref_release(&r);
	return 0;
}

struct import_args {
	struct cli_common com;
	const char *bundle, *keyfile, *to, *report, *state_dir;
	char *host, *prefix;
	bool dry, rollback, keepreg, create, public_;
	unsigned long jobs;
};

static void args_release(struct import_args *a)
{
	free(a->host);
	free(a->prefix);
	cli_common_release(&a->com);
}

/* One option of this command: 0 taken, 1 done (help), -1 usage error. */
static int parse_opt(struct import_args *a, int c, char **argv)
{
	char *end;

	switch (c) {
	case 'h':
		fputs(usage_text, stdout);
		fputs(cli_common_help, stdout);
		return 1;
	case OPT_KEY:
		a->keyfile = optarg;
		return 0;
	case OPT_TO:
		a->to = optarg;
		return 0;
	case OPT_JOBS:
		errno = 0;
		a->jobs = strtoul(optarg, &end, 10);
		if (errno || *end || a->jobs < 1 || a->jobs > 16) {
			cli_usage_error(
			    "import",
			    "--jobs takes a number from 1 to 16, not '%s'",
			    optarg);
			return -1;
		}
		return 0;
	case OPT_DRY:
		a->dry = true;
		return 0;
	case OPT_REPORT:
		a->report = optarg;
		return 0;
	case OPT_ROLLBACK:
		a->rollback = true;
		return 0;
	case OPT_KEEPREG:
		a->keepreg = true;
		return 0;
	case OPT_STATEDIR:
		a->state_dir = optarg;
		return 0;
	case OPT_CREATE:
		a->create = true;
		return 0;
	case OPT_PUBLIC:
		a->public_ = true;
		return 0;
	default:
		cli_usage_error("import", "unknown or incomplete option '%s'",
				argv[optind - 1]);
		return -1;
	}
}

/* The command line: 0 go on, 1 done (help, version), -1 usage error. */
static int parse_args(int argc, char **argv, struct import_args *a)
{
	int c;

	a->jobs = 4;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, long_opts,
				NULL)) != -1) {
		int r = cli_common_opt(&a->com, c, optarg, "import");
		if (r == 2)
			return 1;
		if (r < 0)
			return -1;
		if (r == 1)
			continue;
		if ((r = parse_opt(a, c, argv)) != 0)
			return r;
	}
	if (optind != argc - 1) {
		cli_usage_error("import", optind == argc
					      ? "no BUNDLE given"
					      : "give exactly one BUNDLE");
		return -1;
	}
	a->bundle = argv[optind];
	if (!a->keyfile || !a->to) {
		cli_usage_error("import", "%s is required",
				!a->keyfile ? "--key PUBLIC.pem"
					    : "--to HOST[/PREFIX]");
		return -1;
	}
	if (parse_to(a->to, &a->host, &a->prefix) < 0) {
		cli_usage_error(
		    "import",
		    "--to takes HOST[:PORT][/PREFIX] with a lowercase "
		    "repository prefix, not '%s'",
		    a->to);
		return -1;
	}
	return 0;
}

/* Verify and push with progress shown as asked; *secs: how long it took. */
static int run_import(const struct import_args *a, const struct sig_key *key,
		      const struct reg_opts *ropts, struct imp_result *res,
		      double *secs, struct ferr *e)
{
	struct imp_opts io;
	struct imp_progress pr;
	struct ui u;
	struct timespec t1;
	int rc;

	memset(&pr, 0, sizeof(pr));
	memset(&io, 0, sizeof(io));
	io.reg = ropts;
	io.host = a->host;
	io.prefix = a->prefix;
	io.keep_registry = a->keepreg;
	io.jobs = (int)a->jobs;
	io.dry_run = a->dry;
	io.allow_rollback = a->rollback;
	io.state_dir = a->state_dir;
	io.create_projects = a->create;
	io.public_projects = a->public_;
	io.key = key;
	io.progress = &pr;
	memset(&u, 0, sizeof(u));
	u.mode = a->com.quiet ? PROGRESS_NONE : a->com.progress;
	u.quiet = a->com.quiet;
	u.pr = &pr;
	if (u.mode == PROGRESS_AUTO && !isatty(2))
		u.mode = PROGRESS_PLAIN;
	io.event = on_event;
	io.event_ctx = &u;
	clock_gettime(CLOCK_MONOTONIC, &u.t0);
	cli_ticker_init(&u.tk, draw, &u);
	if (u.mode == PROGRESS_AUTO)
		cli_ticker_start(&u.tk);
	rc = imp_run(&io, a->bundle, res, e);
	cli_ticker_stop(&u.tk, true);
	cli_ticker_release(&u.tk);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*secs = (double)(t1.tv_sec - u.t0.tv_sec) +
		(double)(t1.tv_nsec - u.t0.tv_nsec) / 1e9;
	return rc;
}

static void print_summary(const struct import_args *a,
			  const struct imp_result *res, double secs)
{
	if (res->already_imported) {
		char ch[400]; /* from the bundle: escaped */
		printf("already imported: bundle %s (channel '%s', sequence "
		       "%llu) was imported into '%s' before; nothing to do\n",
		       res->hdr.bundle_id,
		       cli_text(ch, sizeof(ch), res->hdr.channel),
		       (unsigned long long)res->hdr.sequence, a->to);
		return;
	}
	printf("%s '%s' into '%s': bundle %s verified\n",
	       a->dry ? "dry run of" : "imported", a->bundle, a->to,
	       res->hdr.bundle_id);
	for (size_t i = 0; i < res->nimages; i++)
		printf("  %s\n    <- %s %s\n", res->images[i].target,
		       res->images[i].source, res->images[i].digest.str);
	if (a->dry)
		printf("would send %.1f MiB; blobs already there: %u; Harbor "
		       "projects to create: %u\n",
		       (double)res->bytes_to_push / 1048576.0, res->skipped,
		       res->projects_to_create);
	else if (res->projects_created)
		printf("created %u Harbor project%s\n", res->projects_created,
		       res->projects_created == 1 ? "" : "s");
	else
		printf("blobs: %u pushed (%.1f MiB), %u already there, %u "
		       "mounted; manifests: %u pushed, %u already there; tags: "
		       "%u written; %.1f s\n",
		       res->pushed, (double)res->bytes_pushed / 1048576.0,
		       res->skipped, res->mounted, res->manifests_pushed,
		       res->manifests_skipped, res->tags, secs);
	if (!a->dry && (res->attach_tags || res->referrers_indexes))
		printf("attached: %u signature, attestation and SBOM tag%s "
		       "written; %u referrers index%s written%s\n",
		       res->attach_tags, res->attach_tags == 1 ? "" : "s",
		       res->referrers_indexes,
		       res->referrers_indexes == 1 ? "" : "es",
		       res->target_indexes_referrers > 0
			   ? " (the registry indexes referrers itself)"
			   : "");
}

int cmd_import(int argc, char **argv)
{
	struct import_args a;
	struct auth_store creds = {0};
	struct sig_key key;
	struct reg_opts ropts;
	struct imp_result res;
	struct ferr e;
	double secs = 0;
	int rc = FERRY_EXIT_USAGE, pr;

	memset(&a, 0, sizeof(a));
	memset(&key, 0, sizeof(key));
	memset(&res, 0, sizeof(res));
	ferr_clear(&e);
	pr = parse_args(argc, argv, &a);
	if (pr != 0) {
		rc = pr > 0 ? FERRY_EXIT_OK : FERRY_EXIT_USAGE;
		goto out;
	}
	if (sig_load_public(&key, a.keyfile, &e) < 0 ||
	    auth_store_load(&creds, a.com.authfile, &e) < 0)
		goto fail;
	cli_reg_opts(&a.com, &creds, &ropts);
	if (run_import(&a, &key, &ropts, &res, &secs, &e) < 0)
		goto fail;
	if (res.stale && !a.com.quiet)
		fprintf(stderr,
			"note: bundle %s was imported into '%s' before, but "
			"'%s' is missing there or points elsewhere: importing "
			"it again\n",
			res.hdr.bundle_id, a.to, res.stale);
	if (a.report &&
	    write_report(a.report, a.bundle, a.to, &res, a.dry, secs, &e) < 0)
		goto fail;
	if (!a.com.quiet)
		print_summary(&a, &res, secs);
	rc = FERRY_EXIT_OK;
	goto out;
fail:
	cli_error(&e);
	if (e.cat == FERR_INTERRUPT)
		fprintf(stderr, "ferry: run the same command again to resume: "
				"blobs already pushed are skipped\n");
	rc = ferr_exit_code(e.cat);
out:
	imp_result_release(&res);
	sig_key_release(&key);
	auth_store_release(&creds);
	args_release(&a);
	return rc;
}
