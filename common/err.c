#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void ferr_clear(struct ferr *e)
{
	if (!e)
		return;
	e->cat = FERR_OK;
	e->code = 0;
	e->msg[0] = '\0';
}

static void vset(struct ferr *e, enum ferr_cat cat, int code, const char *fmt,
		 va_list ap) __attribute__((format(printf, 4, 0)));
static void vset(struct ferr *e, enum ferr_cat cat, int code, const char *fmt,
		 va_list ap)
{
	e->cat = cat;
	e->code = code;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
}

int ferr_set(struct ferr *e, enum ferr_cat cat, int code, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return -1;
	va_start(ap, fmt);
	vset(e, cat, code, fmt, ap);
	va_end(ap);
	return -1;
}

int ferr_errno(struct ferr *e, enum ferr_cat cat, int code, const char *fmt,
	       ...)
{
	va_list ap;
	size_t n;

	if (!e)
		return -1;
	va_start(ap, fmt);
	vset(e, cat, code, fmt, ap);
	va_end(ap);
	n = strlen(e->msg);
	if (n < sizeof(e->msg))
		snprintf(e->msg + n, sizeof(e->msg) - n, ": %s",
			 strerror(code));
	return -1;
}

int ferr_prefix(struct ferr *e, const char *fmt, ...)
{
	char head[FERR_MSG_MAX];
	char old[FERR_MSG_MAX];
	va_list ap;

	if (!e)
		return -1;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof(old));
	{
		/* head + ": " + old, cut to fit */
		size_t hn = strnlen(head, sizeof(head));
		size_t on = strnlen(old, sizeof(old));
		size_t room = sizeof(e->msg) - 1, k = 0;

		memcpy(e->msg, head, hn < room ? hn : room);
		k = hn < room ? hn : room;
		if (k + 2 <= room) {
			memcpy(e->msg + k, ": ", 2);
			k += 2;
		}
		if (on > room - k)
			on = room - k;
		memcpy(e->msg + k, old, on);
		e->msg[k + on] = '\0';
	}
	return -1;
}

int ferr_exit_code(enum ferr_cat cat)
{
	switch (cat) {
	case FERR_OK:
		return FERRY_EXIT_OK;
	case FERR_USAGE:
		return FERRY_EXIT_USAGE;
	case FERR_NETWORK:
		return FERRY_EXIT_NETWORK;
	case FERR_AUTH:
		return FERRY_EXIT_AUTH;
	case FERR_VERIFY:
		return FERRY_EXIT_VERIFY;
	case FERR_BUNDLE:
		return FERRY_EXIT_BUNDLE;
	case FERR_IO:
		return FERRY_EXIT_IO;
	case FERR_INTERRUPT:
		return FERRY_EXIT_INTERRUPT;
	case FERR_INPUT:
		break;
	}
	return FERRY_EXIT_FAILURE;
}

const char *ferr_cat_name(enum ferr_cat cat)
{
	switch (cat) {
	case FERR_OK:
		return "ok";
	case FERR_INPUT:
		return "input";
	case FERR_USAGE:
		return "usage";
	case FERR_NETWORK:
		return "network";
	case FERR_AUTH:
		return "auth";
	case FERR_VERIFY:
		return "verify";
	case FERR_BUNDLE:
		return "bundle";
	case FERR_IO:
		return "io";
	case FERR_INTERRUPT:
		return "interrupt";
	}
	return "unknown";
}
