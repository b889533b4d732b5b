/* Command layer: the only code that prints or exits. */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <getopt.h>
#include <stdatomic.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "auth.h"
#include "err.h"
#include "reg.h"

enum progress_mode {
	PROGRESS_AUTO,
	PROGRESS_PLAIN,
	PROGRESS_JSON,
	PROGRESS_NONE
};

/* Options every command takes. */
struct cli_common {
	int quiet;
	int verbose;
	enum progress_mode progress;
	const char *ca_file;
	const char **insecure;
	size_t n_insecure;
	const char *authfile;
};

extern atomic_int cli_interrupted; /* lock-free: set by the signal handler */

/* getopt_long values for the common options start here; commands use
 * their own values below 256 or from CLI_OPT_CMD up. */
enum {
	CLI_OPT_CA_FILE = 1000,
	CLI_OPT_INSECURE,
	CLI_OPT_AUTHFILE,
	CLI_OPT_PROGRESS,
	CLI_OPT_VERSION,
	CLI_OPT_CMD = 2000
};

/* The long options shared by every command; a command's table ends with
 * CLI_COMMON_OPTIONS followed by {0}. */
#define CLI_COMMON_OPTIONS                                                     \
	{"help", no_argument, NULL, 'h'},                                      \
	    {"version", no_argument, NULL, CLI_OPT_VERSION},                   \
	    {"quiet", no_argument, NULL, 'q'},                                 \
	    {"verbose", no_argument, NULL, 'v'},                               \
	    {"progress", required_argument, NULL, CLI_OPT_PROGRESS},           \
	    {"ca-file", required_argument, NULL, CLI_OPT_CA_FILE},             \
	    {"insecure-registry", required_argument, NULL, CLI_OPT_INSECURE},  \
	{                                                                      \
		"authfile", required_argument, NULL, CLI_OPT_AUTHFILE          \
	}

#define CLI_COMMON_SHORT "hqv"

/* Handle one common option.  Returns 1 if consumed, 0 if not a common
 * option, -1 on a bad value (message printed), 2 when the command must
 * exit 0 at once (--version). */
int cli_common_opt(struct cli_common *c, int opt, const char *arg,
		   const char *cmd);
void cli_common_release(struct cli_common *c);

/* Text printed under every command's usage. */
extern const char cli_common_help[];

/* Text that comes from a registry or a bundle (names, platforms, header
 * values, annotations, error messages quoting them) reaches the terminal
 * only through these.  Control characters (C0, DEL, C1), bidirectional
 * overrides and bytes that are not UTF-8 are shown as escapes: \n, \r,
 * \t, \xNN (a byte), \uNNNN (a code point); everything else as is. */
void cli_put_text(FILE *f, const char *s);
/* The same into out (n bytes), cut with "..." when it does not fit. */
char *cli_text(char *out, size_t n, const char *s);
/* A JSON string for `s`: as is when it is UTF-8 (JSON escapes control
 * characters itself), else escaped as above. */
json_t *cli_json_text(const char *s);

/* "ferry VERSION" and the versions of the libraries it runs with (for
 * support requests), on stdout. */
void cli_print_version(void);

/* "ferry: error: MESSAGE" on stderr, the message escaped. */
void cli_error(const struct ferr *e);
void cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cli_install_signals(void);

/* Write `root` as indented JSON to `path`: a temporary file next to it,
 * fsync, rename (a report is replaced as a whole or not at all). */
int cli_write_json(const char *path, json_t *root, struct ferr *e);

/* A progress line redrawn every 250 ms on a terminal by its own thread.
 * `draw` runs with `mu` held; callers take `mu` to print other lines. */
struct cli_ticker {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool running, stop;
	void (*draw)(void *ctx, bool final);
	void *ctx;
};
void cli_ticker_init(struct cli_ticker *t, void (*draw)(void *, bool),
		     void *ctx);
int cli_ticker_start(struct cli_ticker *t);
/* Stop the thread; draw a last time (ending the line) if `final`. */
void cli_ticker_stop(struct cli_ticker *t, bool final);
void cli_ticker_release(struct cli_ticker *t);

/* Fill registry options from the common ones. */
void cli_reg_opts(const struct cli_common *c, const struct auth_store *creds,
		  struct reg_opts *o);

#endif
