#include "digest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

bool digest_hex_valid(const char *s, size_t n)
{
	if (n != DIGEST_HEX_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

bool digest_valid(const char *s)
{
	return s && strncmp(s, DIGEST_PREFIX, 7) == 0 &&
	       digest_hex_valid(s + 7, strlen(s + 7));
}

int digest_parse(struct digest *d, const char *s, struct ferr *e)
{
	if (!digest_valid(s)) {
		/* Quote at most a prefix: the text may be hostile and long. */
		return ferr_set(e, FERR_INPUT, 0,
				"invalid digest '%.80s': expected 'sha256:' and "
				"64 lowercase hex digits",
				s ? s : "");
	}
	memcpy(d->str, s, DIGEST_STR_LEN);
	d->str[DIGEST_STR_LEN] = '\0';
	return 0;
}

bool digest_equal(const struct digest *a, const struct digest *b)
{
	return memcmp(a->str, b->str, DIGEST_STR_LEN) == 0;
}

int digest_ctx_init(struct digest_ctx *c, struct ferr *e)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	c->md = NULL;
	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return ferr_set(e, FERR_IO, 0, "cannot initialise sha256");
	}
	c->md = md;
	return 0;
}

void digest_ctx_update(struct digest_ctx *c, const void *p, size_t n)
{
	if (n)
		EVP_DigestUpdate(c->md, p, n);
}

void digest_ctx_final(struct digest_ctx *c, struct digest *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_DigestFinal_ex(c->md, raw, &n);
	memcpy(out->str, DIGEST_PREFIX, 7);
	for (unsigned int i = 0; i < 32; i++) {
		out->str[7 + 2 * i] = hex[raw[i] >> 4];
		out->str[7 + 2 * i + 1] = hex[raw[i] & 15];
	}
	out->str[DIGEST_STR_LEN] = '\0';
}

void digest_ctx_restart(struct digest_ctx *c)
{
	EVP_DigestInit_ex(c->md, EVP_sha256(), NULL);
}

void digest_ctx_release(struct digest_ctx *c)
{
	if (!c)
		return;
	EVP_MD_CTX_free(c->md);
	c->md = NULL;
}

int digest_of(const void *p, size_t n, struct digest *out, struct ferr *e)
{
	struct digest_ctx c;

	if (digest_ctx_init(&c, e) < 0)
		return -1;
	digest_ctx_update(&c, p, n);
	digest_ctx_final(&c, out);
	digest_ctx_release(&c);
	return 0;
}

size_t digest_hash(const struct digest *d)
{
	size_t h = 0;
	const char *p = digest_hex(d);

	for (int i = 0; i < 16; i++)
		h = h * 16 +
		    (size_t)(p[i] <= '9' ? p[i] - '0' : p[i] - 'a' + 10);
	return h;
}
