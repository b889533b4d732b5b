/* A minimal table-driven test harness: CHECK records a failure and goes on,
 * check_done() prints "N passed, N failed" and returns the exit status. */
#ifndef FERRY_CHECK_H
#define FERRY_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (cond) {                                                    \
			check_passed++;                                        \
		} else {                                                       \
			check_failed++;                                        \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, \
				__LINE__, #cond);                              \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
		}                                                              \
	} while (0)

#define CHECK_STR(got, want, ctx)                                              \
	CHECK(((got) == NULL && (want) == NULL) ||                             \
		  ((got) && (want) && strcmp((got), (want)) == 0),             \
	      "%s: got '%s', want '%s'", (ctx), (got) ? (got) : "(null)",      \
	      (want) ? (want) : "(null)")

static inline int check_done(void)
{
	printf("%d passed, %d failed\n", check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
