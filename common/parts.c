#include "parts.h"

/* A part's base name: the bundle's base name and ".NNN". */
#define PATH_MAX_PART 512

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int parts_size_parse(const char *s, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;

	if (!*p)
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (p == s)
		return -1;
	if (*p == 'K' || *p == 'k')
		mul = 1024;
	else if (*p == 'M' || *p == 'm')
		mul = 1024 * 1024;
	else if (*p == 'G' || *p == 'g')
		mul = 1024 * 1024 * 1024;
	else if (*p)
		return -1;
	if (*p && p[1])
		return -1;
	if (v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

char *parts_name(const char *bundle, unsigned i)
{
	size_t n = strlen(bundle) + 8;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "%s.%03u", bundle, i);
	return s;
}

void parts_list_release(struct parts_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	free(l->sums);
	memset(l, 0, sizeof(*l));
}

static int list_add(struct parts_list *l, const char *name, size_t namelen,
		    const struct digest *d)
{
	char **nn = realloc(l->names, (l->n + 1) * sizeof(*nn));
	struct digest *ns;

	if (!nn)
		return -1;
	l->names = nn;
	ns = realloc(l->sums, (l->n + 1) * sizeof(*ns));
	if (!ns)
		return -1;
	l->sums = ns;
	if (!(l->names[l->n] = strndup(name, namelen)))
		return -1;
	l->sums[l->n++] = *d;
	return 0;
}

/* One line: 64 lowercase hex, two spaces, base.NNN. */
static int parse_line(const char *line, size_t len, const char *base,
		      unsigned want, struct digest *d, struct ferr *e)
{
	char hex[72], expect[PATH_MAX_PART];
	size_t bl = strlen(base);

	snprintf(hex, sizeof(hex), "sha256:%.*s", len >= 64 ? 64 : (int)len,
		 line);
	if (len < 67 || line[64] != ' ' || line[65] != ' ' ||
	    digest_parse(d, hex, NULL) < 0)
		return ferr_set(e, FERR_BUNDLE, 0,
				"parts list line %u is not '<sha256>  <part>'",
				want);
	snprintf(expect, sizeof(expect), "%s.%03u", base, want);
	if (len - 66 != bl + 4 || memcmp(line + 66, expect, len - 66) != 0)
		return ferr_set(e, FERR_BUNDLE, 0,
				"parts list line %u names '%.*s', not '%s'",
				want, (int)(len - 66 > 200 ? 200 : len - 66),
				line + 66, expect);
	return 0;
}

int parts_list_parse(const char *text, size_t len, const char *base,
		     struct parts_list *out, struct ferr *e)
{
	size_t pos = 0;

	memset(out, 0, sizeof(*out));
	if (len > PARTS_MAX_LIST)
		return ferr_set(e, FERR_BUNDLE, 0,
				"parts list is larger than %u bytes",
				PARTS_MAX_LIST);
	if (strlen(base) + 8 > PATH_MAX_PART)
		return ferr_set(e, FERR_INPUT, ENAMETOOLONG,
				"bundle name '%s' is too long", base);
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
		struct digest d;

		if (!nl)
			goto bad;
		if (out->n == PARTS_MAX) {
			ferr_set(e, FERR_BUNDLE, 0,
				 "parts list names more than %u parts",
				 PARTS_MAX);
			goto fail;
		}
		if (parse_line(text + pos, ll, base, (unsigned)out->n + 1, &d,
			       e) < 0)
			goto fail;
		if (list_add(out, text + pos + 66, ll - 66, &d) < 0) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto fail;
		}
		pos += ll + 1;
	}
	if (out->n)
		return 0;
bad:
	ferr_set(e, FERR_BUNDLE, 0,
		 "parts list is empty or does not end with a newline");
fail:
	parts_list_release(out);
	return -1;
}

char *parts_list_text(const struct parts_list *l)
{
	size_t cap = 1, off = 0;
	char *s;

	for (size_t i = 0; i < l->n; i++)
		cap += 64 + 2 + strlen(l->names[i]) + 1;
	if (!(s = malloc(cap)))
		return NULL;
	for (size_t i = 0; i < l->n; i++)
		off += (size_t)snprintf(s + off, cap - off, "%s  %s\n",
					digest_hex(&l->sums[i]), l->names[i]);
	s[off] = '\0';
	return s;
}

char *parts_bundle_of(const char *path)
{
	size_t n = strlen(path);
	char *b, *list;
	bool ok;

	if (n > 6 && !strcmp(path + n - 6, ".parts"))
		return strndup(path, n - 6);
	if (n <= 4 || strcmp(path + n - 4, ".001") != 0)
		return NULL;
	if (!(b = strndup(path, n - 4)))
		return NULL;
	list = malloc(n + 3);
	if (!list) {
		free(b);
		return NULL;
	}
	snprintf(list, n + 3, "%s.parts", b);
	ok = access(list, F_OK) == 0;
	free(list);
	if (!ok) {
		free(b);
		return NULL;
	}
	return b;
}
