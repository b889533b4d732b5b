/* ferry cache: prune or clear the export cache (CACHE/blobs/sha256/<hex>,
 * CACHE/partial/<hex>).  Only files with those names are touched, and
 * only in a directory laid out as ferry's cache: a mistyped --cache must
 * never empty somebody's directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "exporter.h"

static const char usage_text[] =
    "usage: ferry cache prune [--older-than DAYS] [--cache DIR]\n"
    "       ferry cache clear [--cache DIR]\n"
    "\n"
    "Free the space of the export cache.  'prune' removes the blobs not\n"
    "used by an export for DAYS days (default 30) and the partial\n"
    "downloads not touched for as long; 'clear' removes every blob and\n"
    "partial download.  Both print what they freed.  Do not run them while\n"
    "an export uses the same cache.\n"
    "\n"
    "Options:\n"
    "      --older-than DAYS      prune what was last used DAYS or more\n"
    "                             days ago (0: everything not in use)\n"
    "      --cache DIR            the cache (default: $XDG_CACHE_HOME/ferry\n"
    "                             or ~/.cache/ferry)\n"
    "\n";

enum { OPT_OLDER_THAN = CLI_OPT_CMD, OPT_CACHE };

#define DEFAULT_PRUNE_DAYS 30
#define MAX_PRUNE_DAYS 36500

struct tally {
	uint64_t files, bytes;
};

struct sweep {
	time_t cutoff; /* remove files last used before this; 0: all */
	struct tally removed_blobs, removed_partial, kept;
	struct ferr e;
};

static bool hex64(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");

	return n == 64 && s[n] == '\0';
}

/* The last use of a cached file: an export reads a blob it reuses (atime,
 * kept to the day by relatime) and writes the ones it fetches (mtime). */
static time_t last_use(const struct stat *st)
{
	return st->st_atime > st->st_mtime ? st->st_atime : st->st_mtime;
}

/* Remove the regular files named <hex> in `sub` of the cache that the
 * sweep's cutoff selects. */
static int sweep_dir(int cache_fd, const char *cache, const char *sub,
		     struct sweep *sw, struct tally *removed)
{
	int fd = openat(cache_fd, sub,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent *de;
	DIR *d;

	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return ferr_errno(&sw->e, FERR_IO, errno, "cannot open '%s/%s'",
				  cache, sub);
	}
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return ferr_errno(&sw->e, FERR_IO, errno, "cannot read '%s/%s'",
				  cache, sub);
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (!hex64(de->d_name) ||
		    fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (sw->cutoff && last_use(&st) >= sw->cutoff) {
			sw->kept.files++;
			sw->kept.bytes += (uint64_t)st.st_size;
			continue;
		}
		if (unlinkat(fd, de->d_name, 0) < 0) {
			ferr_errno(&sw->e, FERR_IO, errno,
				   "cannot remove '%s/%s/%s'", cache, sub,
				   de->d_name);
			closedir(d);
			return -1;
		}
		removed->files++;
		removed->bytes += (uint64_t)st.st_size;
	}
	closedir(d);
	return 0;
}

/* Open the cache, refusing what is not laid out as ferry's cache. */
static int open_cache(const char *dir, struct ferr *e)
{
	struct stat st;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return ferr_errno(e, FERR_IO, errno, "cannot open cache '%s'",
				  dir);
	/* each component a real directory: a link could lead elsewhere */
	if (fstatat(fd, "blobs", &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISDIR(st.st_mode) ||
	    fstatat(fd, "blobs/sha256", &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISDIR(st.st_mode)) {
		close(fd);
		return ferr_set(e, FERR_INPUT, 0,
				"'%s' is not a ferry cache (no 'blobs/sha256' "
				"directory); nothing was removed",
				dir);
	}
	return fd;
}

static void print_tally(const char *what, const struct tally *t)
{
	printf("%llu %s%s (%.1f MiB)", (unsigned long long)t->files, what,
	       t->files == 1 ? "" : "s", (double)t->bytes / 1048576.0);
}

static void print_result(const char *verb, const char *dir,
			 const struct sweep *sw)
{
	printf("%s '", verb);
	cli_put_text(stdout, dir);
	printf("': removed ");
	print_tally("blob", &sw->removed_blobs);
	printf(" and ");
	print_tally("partial download", &sw->removed_partial);
	printf(", freed %.1f MiB",
	       (double)(sw->removed_blobs.bytes + sw->removed_partial.bytes) /
		   1048576.0);
	if (sw->cutoff) {
		printf("; kept ");
		print_tally("file", &sw->kept);
	}
	putchar('\n');
}

static int parse_days(const char *s, long *days)
{
	char *end;

	errno = 0;
	*days = strtol(s, &end, 10);
	if (end != s && *end == 'd')
		end++;
	return errno || end == s || *end || *s == '-' || *s == '+' ||
		       *days < 0 || *days > MAX_PRUNE_DAYS
		   ? -1
		   : 0;
}

/* Options after the action; returns 1 for --help, -1 on a usage error. */
static int cache_parse(int argc, char **argv, struct cli_common *com,
		       const char **cache, long *days, bool prune)
{
	static const struct option opts[] = {
	    {"older-than", required_argument, NULL, OPT_OLDER_THAN},
	    {"cache", required_argument, NULL, OPT_CACHE},
	    CLI_COMMON_OPTIONS,
	    {0},
	};
	int opt, r;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":" CLI_COMMON_SHORT, opts,
				  NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage_text, stdout);
			fputs(cli_common_help, stdout);
			return 1;
		}
		if (opt == OPT_CACHE) {
			*cache = optarg;
		} else if (opt == OPT_OLDER_THAN) {
			if (!prune || parse_days(optarg, days) < 0) {
				cli_usage_error("cache",
						prune ? "--older-than takes a "
							"number of days, not "
							"'%s'"
						      : "--older-than is for "
							"'prune', not 'clear' "
							"('%s')",
						optarg);
				return -1;
			}
		} else if ((r = cli_common_opt(com, opt, optarg, "cache")) !=
			   1) {
			if (r == 0)
				cli_usage_error("cache",
						"unknown or incomplete option "
						"'%s'",
						argv[optind - 1]);
			return r == 2 ? 1 : -1;
		}
	}
	if (optind < argc) {
		cli_usage_error("cache", "unexpected argument '%s'",
				argv[optind]);
		return -1;
	}
	return 0;
}

int cmd_cache(int argc, char **argv)
{
	struct cli_common com;
	const char *cache = NULL, *action = argc > 1 ? argv[1] : "";
	char *default_cache = NULL;
	struct sweep sw;
	long days = DEFAULT_PRUNE_DAYS;
	bool prune = !strcmp(action, "prune");
	int fd = -1, r, rc = FERRY_EXIT_USAGE;

	memset(&com, 0, sizeof(com));
	memset(&sw, 0, sizeof(sw));
	ferr_clear(&sw.e);
	if (!strcmp(action, "-h") || !strcmp(action, "--help")) {
		fputs(usage_text, stdout);
		fputs(cli_common_help, stdout);
		return FERRY_EXIT_OK;
	}
	if (!prune && strcmp(action, "clear") != 0) {
		cli_usage_error("cache", "say 'prune' or 'clear'%s%s%s",
				*action ? ", not '" : "", action,
				*action ? "'" : "");
		return FERRY_EXIT_USAGE;
	}
	if ((r = cache_parse(argc - 1, argv + 1, &com, &cache, &days, prune)))
		return r > 0 ? FERRY_EXIT_OK : FERRY_EXIT_USAGE;
	if (!cache && !(cache = default_cache = exp_default_cache_dir())) {
		ferr_set(
		    &sw.e, FERR_IO, 0,
		    "no cache directory: HOME is not set; give --cache DIR");
		goto fail;
	}
	if ((fd = open_cache(cache, &sw.e)) < 0)
		goto fail;
	/* days 0: everything, what was used a moment ago too */
	sw.cutoff = prune && days > 0 ? time(NULL) - (time_t)days * 86400 : 0;
	if (sweep_dir(fd, cache, "partial", &sw, &sw.removed_partial) < 0 ||
	    sweep_dir(fd, cache, "blobs/sha256", &sw, &sw.removed_blobs) < 0)
		goto fail;
	if (!com.quiet)
		print_result(prune ? "pruned" : "cleared", cache, &sw);
	rc = FERRY_EXIT_OK;
	goto out;
fail:
	cli_error(&sw.e);
	rc = ferr_exit_code(sw.e.cat);
out:
	if (fd >= 0)
		close(fd);
	free(default_cache);
	cli_common_release(&com);
	return rc;
}
