/* Errors: one struct carried through every library call.
 *
 * A library function that can fail takes a `struct ferr *` as its last
 * argument and returns 0 on success or -1 on failure, having filled the
 * struct.  The message is complete enough to show to the user as is:
 * lowercase, naming its subject in quotes.  Only the command layer prints it
 * and turns the category into an exit code (docs/exit-codes.md).
 */
#ifndef FERRY_ERR_H
#define FERRY_ERR_H

#include <stddef.h>

enum ferr_cat {
	FERR_OK = 0,
	FERR_INPUT,   /* bad input data or unsupported content (exit 1) */
	FERR_USAGE,   /* bad command line (exit 2) */
	FERR_NETWORK, /* network or registry failure (exit 3) */
	FERR_AUTH,    /* authentication or authorisation failure (exit 4) */
	FERR_VERIFY, /* signature, checksum, digest or size mismatch (exit 5) */
	FERR_BUNDLE, /* malformed bundle (exit 6) */
	FERR_IO,     /* local I/O failure (exit 7) */
	FERR_INTERRUPT /* interrupted by a signal (exit 130) */
};

#define FERR_MSG_MAX 1024

struct ferr {
	enum ferr_cat cat;
	int code; /* errno or HTTP status that caused it; 0 when none */
	char msg[FERR_MSG_MAX];
};

void ferr_clear(struct ferr *e);

/* Fill `e` (when not NULL) and return -1, so callers can write
 * `return ferr_set(e, FERR_IO, errno, "cannot open '%s'", path);`. */
int ferr_set(struct ferr *e, enum ferr_cat cat, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Like ferr_set, appending ": <strerror(code)>". */
int ferr_errno(struct ferr *e, enum ferr_cat cat, int code, const char *fmt,
	       ...) __attribute__((format(printf, 4, 5)));

/* Put "<context>: " in front of the existing message; keeps cat and code. */
int ferr_prefix(struct ferr *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

int ferr_exit_code(enum ferr_cat cat);
const char *ferr_cat_name(enum ferr_cat cat);

/* Exit codes (see docs/exit-codes.md). */
#define FERRY_EXIT_OK 0
#define FERRY_EXIT_FAILURE 1
#define FERRY_EXIT_USAGE 2
#define FERRY_EXIT_NETWORK 3
#define FERRY_EXIT_AUTH 4
#define FERRY_EXIT_VERIFY 5
#define FERRY_EXIT_BUNDLE 6
#define FERRY_EXIT_IO 7
#define FERRY_EXIT_INTERRUPT 130

#endif
