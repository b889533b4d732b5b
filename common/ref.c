/* Image references: Docker's grammar (distribution/reference) and its
 * normalisation (ParseNormalizedNamed followed by TagNameOnly).
 *
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [ domain "/" ] component ( "/" component )*
 *   domain    := host [ ":" port ]
 *   host      := dcomp ( "." dcomp )* | "[" [a-fA-F0-9:]+ "]"
 *   dcomp     := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
 *   port      := [0-9]+
 *   component := [a-z0-9]+ ( separator [a-z0-9]+ )*
 *   separator := "." | "_" | "__" | "-"+
 *   tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest    := "sha256:" [a-f0-9]{64}        (ferry accepts no other)
 *
 * The text before the first '/' is a domain only when it contains '.' or
 * ':', is "localhost", or has an uppercase letter; otherwise the name lives
 * on docker.io.  "index.docker.io" is spelled "docker.io", and a docker.io
 * name of a single component gets "library/" in front of it.  The whole
 * normalised name (domain "/" path) is at most REF_MAX_NAME characters.
 *
 * One deliberate difference from Docker: when the text chosen as the domain
 * does not match the domain grammar but happens to be a valid path component
 * (only possible with an underscore, as in "a_b.com/x"), Docker quietly
 * parses the whole name as a path with no domain at all.  Such a reference
 * names no registry ferry could contact, so it is refused here.
 */
#include "ref.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "digest.h"

#define DEFAULT_DOMAIN "docker.io"
#define LEGACY_DOMAIN "index.docker.io"
#define DEFAULT_API_HOST "registry-1.docker.io"
#define OFFICIAL_PREFIX "library/"
#define DEFAULT_TAG "latest"
#define LOCALHOST "localhost"

/* At most this much of the input is quoted in an error message. */
#define QUOTE_MAX 200
/* Longest string ref_string can produce from a parsed reference. */
#define REF_MAX_STRING (REF_MAX_NAME + 1 + REF_MAX_TAG + 1 + DIGEST_STR_LEN)

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_lower(char c)
{
	return c >= 'a' && c <= 'z';
}

static bool is_upper(char c)
{
	return c >= 'A' && c <= 'Z';
}

static bool is_alnum(char c)
{
	return is_digit(c) || is_lower(c) || is_upper(c);
}

static bool is_lower_alnum(char c)
{
	return is_digit(c) || is_lower(c);
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Go's \w: [A-Za-z0-9_]. */
static bool is_word(char c)
{
	return is_alnum(c) || c == '_';
}

static bool mem_is(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(p, lit, n) == 0;
}

static bool has_upper(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (is_upper(p[i]))
			return true;
	return false;
}

/* Copy a bounded prefix of s into dst for quoting, with every byte that is
 * not printable ASCII shown as '?' so that no input can put control
 * sequences on the user's terminal; "..." marks a cut. */
static void quote_input(char *dst, size_t dstsz, const char *s)
{
	size_t i;

	for (i = 0; i < QUOTE_MAX && i + 4 < dstsz && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (s[i] && i + 3 < dstsz) {
		memcpy(dst + i, "...", 3);
		i += 3;
	}
	dst[i] = '\0';
}

/* ferr_set(e, FERR_INPUT, 0, "invalid reference '<s>': <detail>"). */
static int bad(struct ferr *e, const char *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct ferr *e, const char *s, const char *fmt, ...)
{
	char q[QUOTE_MAX + 4];
	char detail[FERR_MSG_MAX];
	va_list ap;

	if (!e)
		return -1;
	quote_input(q, sizeof(q), s);
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return ferr_set(e, FERR_INPUT, 0, "invalid reference '%s': %s", q,
			detail);
}

/* Would Docker take the text before the first '/' as a domain? */
static bool looks_like_domain(const char *p, size_t n)
{
	return memchr(p, '.', n) || memchr(p, ':', n) ||
	       mem_is(p, n, LOCALHOST) || has_upper(p, n);
}

static bool valid_domain(const char *p, size_t n)
{
	size_t i;

	if (n && p[0] == '[') {
		i = 1;
		while (i < n && (is_hex(p[i]) || p[i] == ':'))
			i++;
		if (i == 1 || i >= n || p[i] != ']')
			return false;
		i++;
	} else {
		size_t start = 0;

		for (;;) {
			i = start;
			while (i < n && (is_alnum(p[i]) || p[i] == '-'))
				i++;
			if (i == start || p[start] == '-' || p[i - 1] == '-')
				return false;
			if (i < n && p[i] == '.') {
				start = i + 1;
				continue;
			}
			break;
		}
	}
	if (i == n)
		return true;
	if (p[i] != ':' || i + 1 == n)
		return false;
	for (i++; i < n; i++)
		if (!is_digit(p[i]))
			return false;
	return true;
}

/* "." | "_" | "__" | "-"+ */
static bool valid_separator(const char *p, size_t n)
{
	if (n == 1 && (p[0] == '.' || p[0] == '_'))
		return true;
	if (n == 2 && p[0] == '_' && p[1] == '_')
		return true;
	for (size_t i = 0; i < n; i++)
		if (p[i] != '-')
			return false;
	return n > 0;
}

/* [a-z0-9]+ ( separator [a-z0-9]+ )* */
static bool valid_component(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;

		while (j < n && is_lower_alnum(p[j]))
			j++;
		if (j == i)
			return false;
		if (j == n)
			return true;
		i = j;
		while (j < n && !is_lower_alnum(p[j]))
			j++;
		if (j == n || !valid_separator(p + i, j - i))
			return false;
		i = j;
	}
	return false;
}

static bool valid_tag(const char *p, size_t n)
{
	if (n == 0 || n > REF_MAX_TAG || !is_word(p[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!is_word(p[i]) && p[i] != '.' && p[i] != '-')
			return false;
	return true;
}

/* The algorithm part of Docker's digest pattern:
 * [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )* */
static bool valid_algorithm(const char *p, size_t n)
{
	bool want_letter = true;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (want_letter) {
			if (!is_lower(c) && !is_upper(c))
				return false;
			want_letter = false;
		} else if (c == '-' || c == '_' || c == '+' || c == '.') {
			want_letter = true;
		} else if (!is_alnum(c)) {
			return false;
		}
	}
	return !want_letter;
}

/* malloc'd a[0..an) followed by b[0..bn); NULL when out of memory. */
static char *concat(const char *a, size_t an, const char *b, size_t bn)
{
	char *s = malloc(an + bn + 1);

	if (!s)
		return NULL;
	if (an)
		memcpy(s, a, an);
	if (bn)
		memcpy(s + an, b, bn);
	s[an + bn] = '\0';
	return s;
}

/* What ref_parse finds in the text, pointing into it; nothing is copied
 * until every check has passed. */
struct ref_parts {
	const char *dom;
	size_t domn;
	const char *path; /* what follows the domain: path, tag, digest */
	size_t pathn;
	bool official; /* a docker.io name of one component: "library/" */
	const char *tag;
	size_t tagn;
	const char *dig; /* after '@', or NULL */
	struct digest dg;
};

/* Refuse what can never be a reference: empty text, spaces, control or
 * non-ASCII characters, and a bare image ID. */
static int check_text(const char *s, struct ferr *e)
{
	if (!s || !*s)
		return bad(e, "", "reference is empty");
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c == 0x7f)
			return bad(e, s,
				   "contains a space or control character");
		if (c >= 0x80)
			return bad(e, s, "contains a non-ASCII character");
	}
	if (digest_hex_valid(s, strlen(s)))
		return bad(
		    e, s,
		    "cannot specify 64-byte hexadecimal strings (an image "
		    "ID is not a reference)");
	return 0;
}

/* The registry domain, when the text before the first '/' is one;
 * otherwise docker.io.  pt->path is set to what follows it. */
static int split_domain(const char *s, struct ref_parts *pt, struct ferr *e)
{
	const char *slash = strchr(s, '/');

	pt->dom = DEFAULT_DOMAIN;
	pt->domn = strlen(DEFAULT_DOMAIN);
	pt->path = s;
	if (slash && looks_like_domain(s, (size_t)(slash - s))) {
		size_t n = (size_t)(slash - s);

		if (!valid_domain(s, n))
			return bad(e, s, "invalid registry domain '%.*s'",
				   (int)(n < 100 ? n : 100), s);
		if (!mem_is(s, n, LEGACY_DOMAIN)) {
			pt->dom = s;
			pt->domn = n;
		}
		pt->path = slash + 1;
	}
	return 0;
}

/* The path, up to the tag or digest: lowercase components between
 * single slashes. */
static int check_path(const char *s, struct ref_parts *pt, struct ferr *e)
{
	const char *rest = pt->path, *p, *end;

	pt->pathn = strcspn(rest, ":@");
	if (pt->pathn == 0)
		return bad(e, s, "repository name is missing");
	if (has_upper(rest, pt->pathn))
		return bad(e, s, "repository name must be lowercase");
	for (p = rest; p <= rest + pt->pathn;) {
		const char *q = memchr(p, '/', (size_t)(rest + pt->pathn - p));
		size_t n;

		end = q ? q : rest + pt->pathn;
		n = (size_t)(end - p);
		if (n == 0)
			return bad(e, s,
				   "empty path component (leading, trailing or "
				   "double '/')");
		if (!valid_component(p, n))
			return bad(e, s,
				   "invalid path component '%.*s': expected "
				   "lowercase letters and digits separated by "
				   "'.', '_', '__' or '-'",
				   (int)(n < 100 ? n : 100), p);
		p = end + 1;
	}
	pt->official = mem_is(pt->dom, pt->domn, DEFAULT_DOMAIN) &&
		       !memchr(rest, '/', pt->pathn);
	return 0;
}

/* ":" tag and "@" digest after the path, each optional. */
static int parse_tag_digest(const char *s, struct ref_parts *pt, struct ferr *e)
{
	const char *p = pt->path + pt->pathn;

	if (*p == ':') {
		pt->tag = p + 1;
		pt->tagn = strcspn(pt->tag, "@");
		if (pt->tagn == 0)
			return bad(e, s, "tag is empty after ':'");
		if (pt->tagn > REF_MAX_TAG)
			return bad(e, s, "tag is longer than %d characters",
				   REF_MAX_TAG);
		if (!valid_tag(pt->tag, pt->tagn))
			return bad(e, s,
				   "invalid tag '%.*s': expected letters, "
				   "digits, '_', '.' and '-', not starting "
				   "with '.' or '-'",
				   (int)pt->tagn, pt->tag);
		p = pt->tag + pt->tagn;
	}
	if (*p == '@') {
		const char *colon;
		size_t algn;

		pt->dig = p + 1;
		if (!*pt->dig)
			return bad(e, s, "digest is empty after '@'");
		colon = strchr(pt->dig, ':');
		algn = colon ? (size_t)(colon - pt->dig) : 0;
		if (colon && valid_algorithm(pt->dig, algn) &&
		    !mem_is(pt->dig, algn, "sha256"))
			return bad(e, s,
				   "unsupported digest algorithm '%.*s': ferry "
				   "only accepts sha256",
				   (int)(algn < 40 ? algn : 40), pt->dig);
		if (digest_parse(&pt->dg, pt->dig, e) < 0) {
			char q[QUOTE_MAX + 4];

			quote_input(q, sizeof(q), s);
			return ferr_prefix(e, "invalid reference '%s'", q);
		}
	}
	return 0;
}

/* Copy the checked parts into r, normalised: "library/" for official
 * images, "latest" when neither tag nor digest was given. */
static int build_ref(struct ref *r, const struct ref_parts *pt, struct ferr *e)
{
	char *domain, *path, *tagcopy = NULL, *digcopy = NULL;

	domain = concat(pt->dom, pt->domn, "", 0);
	path = pt->official ? concat(OFFICIAL_PREFIX, strlen(OFFICIAL_PREFIX),
				     pt->path, pt->pathn)
			    : concat(pt->path, pt->pathn, "", 0);
	if (pt->tag)
		tagcopy = concat(pt->tag, pt->tagn, "", 0);
	else if (!pt->dig)
		tagcopy = concat(DEFAULT_TAG, strlen(DEFAULT_TAG), "", 0);
	if (pt->dig)
		digcopy = concat(pt->dg.str, strlen(pt->dg.str), "", 0);
	if (!domain || !path || (!tagcopy && (pt->tag || !pt->dig)) ||
	    (!digcopy && pt->dig)) {
		free(domain);
		free(path);
		free(tagcopy);
		free(digcopy);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	r->domain = domain;
	r->path = path;
	r->tag = tagcopy;
	r->digest = digcopy;
	return 0;
}

int ref_parse(struct ref *r, const char *s, struct ferr *e)
{
	struct ref_parts pt;
	size_t namen;

	memset(r, 0, sizeof(*r));
	memset(&pt, 0, sizeof(pt));
	if (check_text(s, e) < 0 || split_domain(s, &pt, e) < 0 ||
	    check_path(s, &pt, e) < 0 || parse_tag_digest(s, &pt, e) < 0)
		return -1;
	namen = pt.domn + 1 + (pt.official ? strlen(OFFICIAL_PREFIX) : 0) +
		pt.pathn;
	if (namen > REF_MAX_NAME)
		return bad(e, s,
			   "repository name is longer than %d characters once "
			   "normalised (%zu)",
			   REF_MAX_NAME, namen);
	return build_ref(r, &pt, e);
}

void ref_release(struct ref *r)
{
	if (!r)
		return;
	free(r->domain);
	free(r->path);
	free(r->tag);
	free(r->digest);
	r->domain = r->path = r->tag = r->digest = NULL;
}

/* domain "/" path, then ":" tag and "@" digest when asked and present. */
static char *format(const struct ref *r, bool full, size_t max)
{
	struct buf b;
	char *s = NULL;

	if (!r || !r->domain || !r->path)
		return NULL;
	buf_init(&b, max);
	if (buf_append_str(&b, r->domain) < 0 || buf_append(&b, "/", 1) < 0 ||
	    buf_append_str(&b, r->path) < 0)
		goto out;
	if (full && r->tag &&
	    (buf_append(&b, ":", 1) < 0 || buf_append_str(&b, r->tag) < 0))
		goto out;
	if (full && r->digest &&
	    (buf_append(&b, "@", 1) < 0 || buf_append_str(&b, r->digest) < 0))
		goto out;
	s = (char *)buf_detach(&b, NULL);
out:
	buf_release(&b);
	return s;
}

char *ref_string(const struct ref *r)
{
	return format(r, true, REF_MAX_STRING);
}

char *ref_name(const struct ref *r)
{
	return format(r, false, REF_MAX_NAME);
}

const char *ref_api_host(const struct ref *r)
{
	if (!r || !r->domain)
		return NULL;
	if (strcmp(r->domain, DEFAULT_DOMAIN) == 0)
		return DEFAULT_API_HOST;
	return r->domain;
}

const char *ref_object(const struct ref *r)
{
	if (!r)
		return NULL;
	return r->digest ? r->digest : r->tag;
}
