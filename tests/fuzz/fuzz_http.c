/* Registry answers' headers: WWW-Authenticate challenges (auth.c) and
 * Content-Range (reg.c), plus the credentials file parser (auth.c).  The
 * first byte picks which; for Content-Range the next 16 bytes are the
 * start and total asked for (little-endian), the rest the header value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "reg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void challenge(const char *s)
{
	struct auth_challenge c;
	struct ferr e = {0};

	if (auth_challenge_parse(&c, s, &e) == 0) {
		if (c.scheme == AUTH_BEARER && (!c.realm || !*c.realm))
			abort(); /* a bearer challenge needs a realm */
		auth_challenge_release(&c);
	} else if (c.realm || c.service || c.scope || !e.msg[0]) {
		abort();
	}
}

static void content_range(const uint8_t *data, size_t size)
{
	uint64_t start, total;
	char *s;

	if (size < 16)
		return;
	start = le64(data);
	total = le64(data + 8);
	s = malloc(size - 16 + 1);
	if (!s)
		return;
	memcpy(s, data + 16, size - 16);
	s[size - 16] = '\0';
	(void)reg_content_range_ok(s, start, total);
	free(s);
}

static void authfile(const char *s, size_t n)
{
	struct auth_store st;
	struct ferr e = {0};

	memset(&st, 0, sizeof(st));
	if (auth_store_parse(&st, s, n, "config.json", &e) == 0)
		for (size_t i = 0; i < st.n; i++)
			if (auth_store_find(&st, st.v[i].host) == NULL)
				abort(); /* every stored host is found */
	auth_store_release(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1)
		return 0;
	if (data[0] % 3 == 1) {
		content_range(data + 1, size - 1);
		return 0;
	}
	s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	if (data[0] % 3 == 0)
		challenge(s);
	else
		authfile(s, size - 1);
	free(s);
	return 0;
}
