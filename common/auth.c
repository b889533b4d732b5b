#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "bounds.h"

void auth_wipe_free(char *s)
{
	if (!s)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *auth_normalise_host(const char *key)
{
	const char *p = key;
	size_t n;
	char *h;

	if (strncasecmp(p, "https://", 8) == 0)
		p += 8;
	else if (strncasecmp(p, "http://", 7) == 0)
		p += 7;
	n = strcspn(p, "/");
	h = xstrndup(p, n);
	if (!h)
		return NULL;
	for (char *q = h; *q; q++)
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
	if (strcmp(h, "index.docker.io") == 0 ||
	    strcmp(h, "registry-1.docker.io") == 0) {
		free(h);
		h = strdup("docker.io");
	}
	return h;
}

void auth_store_release(struct auth_store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].host);
		auth_wipe_free(s->v[i].user);
		auth_wipe_free(s->v[i].pass);
	}
	free(s->v);
	free(s->path);
	s->v = NULL;
	s->n = 0;
	s->path = NULL;
}

/* Decode the "auth" field: base64 of "user:password". */
static int decode_auth(const char *b64, char **user, char **pass)
{
	size_t len = strlen(b64), cap, n;
	unsigned char *raw;
	int dec, rc = -1;
	char *colon;

	if (len == 0 || len > 64 * 1024)
		return -1;
	cap = len / 4 * 3 + 4;
	raw = malloc(cap + 1);
	if (!raw)
		return -1;
	dec = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len);
	if (dec < 0)
		goto out;
	n = (size_t)dec;
	/* EVP_DecodeBlock counts '=' padding as zero bytes. */
	if (len >= 1 && b64[len - 1] == '=' && n > 0)
		n--;
	if (len >= 2 && b64[len - 2] == '=' && n > 0)
		n--;
	raw[n] = '\0';
	if (memchr(raw, '\0', n))
		goto out;
	colon = strchr((char *)raw, ':');
	if (!colon)
		goto out;
	*user = xstrndup((char *)raw, (size_t)(colon - (char *)raw));
	*pass = strdup(colon + 1);
	if (!*user || !*pass) {
		auth_wipe_free(*user);
		auth_wipe_free(*pass);
		*user = *pass = NULL;
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(raw, cap + 1);
	free(raw);
	return rc;
}

int auth_store_parse(struct auth_store *s, const char *json, size_t len,
		     const char *name, struct ferr *e)
{
	json_error_t jerr;
	json_t *root, *auths, *ent;
	const char *key;
	int rc = -1;

	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return ferr_set(e, FERR_INPUT, 0,
				"cannot parse credentials file '%s': %s (line "
				"%d)",
				name, jerr.text, jerr.line);
	if (!json_is_object(root)) {
		ferr_set(e, FERR_INPUT, 0,
			 "credentials file '%s' is not a JSON object", name);
		goto out;
	}
	auths = json_object_get(root, "auths");
	if (!auths) {
		rc = 0;
		goto out;
	}
	if (!json_is_object(auths)) {
		ferr_set(e, FERR_INPUT, 0,
			 "credentials file '%s': 'auths' is not an object",
			 name);
		goto out;
	}
	json_object_foreach(auths, key, ent)
	{
		const char *a, *u, *p;
		char *user = NULL, *pass = NULL, *host;
		struct auth_cred *nv;

		if (!json_is_object(ent))
			continue;
		a = json_string_value(json_object_get(ent, "auth"));
		u = json_string_value(json_object_get(ent, "username"));
		p = json_string_value(json_object_get(ent, "password"));
		if (a && *a) {
			if (decode_auth(a, &user, &pass) < 0) {
				ferr_set(e, FERR_INPUT, 0,
					 "credentials file '%s': the 'auth' "
					 "entry for '%.200s' is not "
					 "base64 of 'user:password'",
					 name, key);
				goto out;
			}
		} else if (u && p) {
			user = strdup(u);
			pass = strdup(p);
		} else {
			continue; /* e.g. only an identity token */
		}
		host = auth_normalise_host(key);
		nv = realloc(s->v, (s->n + 1) * sizeof(*nv));
		if (!host || !user || !pass || !nv) {
			free(host);
			auth_wipe_free(user);
			auth_wipe_free(pass);
			if (nv)
				s->v = nv;
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		s->v = nv;
		s->v[s->n].host = host;
		s->v[s->n].user = user;
		s->v[s->n].pass = pass;
		s->n++;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

static int read_small_file(const char *path, struct buf *b, bool *missing,
			   struct ferr *e)
{
	char chunk[8192];
	int fd, rc = -1;
	ssize_t r;

	*missing = false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			*missing = true;
			return 0;
		}
		return ferr_errno(e, FERR_IO, errno, "cannot open '%s'", path);
	}
	for (;;) {
		r = read(fd, chunk, sizeof(chunk));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ferr_errno(e, FERR_IO, errno, "cannot read '%s'", path);
			goto out;
		}
		if (r == 0)
			break;
		if (buf_append(b, chunk, (size_t)r) < 0) {
			ferr_set(e, FERR_INPUT, 0,
				 "credentials file '%s' is larger than %u "
				 "bytes",
				 path, FERRY_MAX_AUTHFILE);
			goto out;
		}
	}
	rc = 0;
out:
	OPENSSL_cleanse(chunk, sizeof(chunk));
	close(fd);
	return rc;
}

int auth_store_load(struct auth_store *s, const char *path, struct ferr *e)
{
	char *cand[4] = {NULL, NULL, NULL, NULL};
	bool must_exist[4] = {false, false, false, false};
	const char *env;
	struct buf b;
	int n = 0, rc = -1;

	s->v = NULL;
	s->n = 0;
	s->path = NULL;
	buf_init(&b, FERRY_MAX_AUTHFILE);
	if (path) {
		cand[n] = strdup(path);
		must_exist[n++] = true;
	} else {
		if ((env = getenv("REGISTRY_AUTH_FILE")) && *env)
			cand[n++] = strdup(env);
		if ((env = getenv("DOCKER_CONFIG")) && *env) {
			size_t l = strlen(env) + sizeof("/config.json");
			if ((cand[n] = malloc(l)))
				snprintf(cand[n], l, "%s/config.json", env);
			n++;
		}
		if ((env = getenv("HOME")) && *env) {
			size_t l = strlen(env) + sizeof("/.docker/config.json");
			if ((cand[n] = malloc(l)))
				snprintf(cand[n], l, "%s/.docker/config.json",
					 env);
			n++;
		}
	}
	for (int i = 0; i < n; i++) {
		bool missing;

		if (!cand[i]) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		buf_reset(&b);
		if (read_small_file(cand[i], &b, &missing, e) < 0)
			goto out;
		if (missing) {
			if (must_exist[i]) {
				ferr_errno(e, FERR_IO, ENOENT,
					   "cannot open credentials file '%s'",
					   cand[i]);
				goto out;
			}
			continue;
		}
		if (auth_store_parse(s, (const char *)b.data, b.len, cand[i],
				     e) < 0)
			goto out;
		s->path = cand[i];
		cand[i] = NULL;
		break;
	}
	rc = 0;
out:
	if (b.data)
		OPENSSL_cleanse(b.data, b.len);
	buf_release(&b);
	for (int i = 0; i < n; i++)
		free(cand[i]);
	if (rc < 0)
		auth_store_release(s);
	return rc;
}

const struct auth_cred *auth_store_find(const struct auth_store *s,
					const char *host)
{
	const struct auth_cred *hit = NULL;
	char *h;

	if (!s || !host)
		return NULL;
	h = auth_normalise_host(host);
	if (!h)
		return NULL;
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->v[i].host, h) == 0) {
			hit = &s->v[i];
			break;
		}
	}
	free(h);
	return hit;
}

void auth_challenge_release(struct auth_challenge *c)
{
	if (!c)
		return;
	free(c->realm);
	free(c->service);
	free(c->scope);
	c->realm = c->service = c->scope = NULL;
	c->scheme = AUTH_NONE;
}

/* Read one auth-param value: a token or a quoted-string with \-escapes. */
static const char *param_value(const char *p, char **out)
{
	struct buf b;

	buf_init(&b, FERRY_MAX_HEADER);
	*out = NULL;
	if (*p == '"') {
		p++;
		while (*p && *p != '"') {
			if (*p == '\\' && p[1])
				p++;
			if (buf_append(&b, p, 1) < 0)
				goto fail;
			p++;
		}
		if (*p != '"')
			goto fail;
		p++;
	} else {
		size_t n = strcspn(p, ", \t");
		if (buf_append(&b, p, n) < 0)
			goto fail;
		p += n;
	}
	if (buf_append(&b, "", 0) < 0)
		goto fail;
	*out = (char *)buf_detach(&b, NULL);
	return p;
fail:
	buf_release(&b);
	return NULL;
}

int auth_challenge_parse(struct auth_challenge *c, const char *value,
			 struct ferr *e)
{
	const char *p = value;

	memset(c, 0, sizeof(*c));
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "Basic", 5) == 0 &&
	    (p[5] == '\0' || p[5] == ' ' || p[5] == '\t')) {
		c->scheme = AUTH_BASIC;
		p += 5;
	} else if (strncasecmp(p, "Bearer", 6) == 0 &&
		   (p[6] == '\0' || p[6] == ' ' || p[6] == '\t')) {
		c->scheme = AUTH_BEARER;
		p += 6;
	} else {
		return 0;
	}
	for (;;) {
		size_t kn;
		const char *k;
		char *v = NULL;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		k = p;
		kn = strcspn(p, "= \t,");
		p += kn;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '=') /* a new scheme starts: we only take the first */
			break;
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		p = param_value(p, &v);
		if (!p) {
			auth_challenge_release(c);
			return ferr_set(e, FERR_NETWORK, 0,
					"malformed authentication challenge "
					"'%.200s'",
					value);
		}
		if (kn == 5 && strncasecmp(k, "realm", 5) == 0 && !c->realm)
			c->realm = v;
		else if (kn == 7 && strncasecmp(k, "service", 7) == 0 &&
			 !c->service)
			c->service = v;
		else if (kn == 5 && strncasecmp(k, "scope", 5) == 0 &&
			 !c->scope)
			c->scope = v;
		else
			free(v);
	}
	if (c->scheme == AUTH_BEARER && (!c->realm || !*c->realm)) {
		auth_challenge_release(c);
		return ferr_set(e, FERR_NETWORK, 0,
				"bearer challenge without a realm: '%.200s'",
				value);
	}
	return 0;
}

char *auth_basic_header(const struct auth_cred *c)
{
	static const char head[] = "Authorization: Basic ";
	size_t hn = sizeof(head) - 1;
	size_t ul = strlen(c->user), pl = strlen(c->pass);
	size_t rawn = ul + 1 + pl;
	size_t outn = hn + 4 * ((rawn + 2) / 3) + 1;
	unsigned char *raw = malloc(rawn + 1);
	char *out = malloc(outn);

	if (!raw || !out) {
		free(raw);
		free(out);
		return NULL;
	}
	memcpy(raw, c->user, ul);
	raw[ul] = ':';
	memcpy(raw + ul + 1, c->pass, pl);
	memcpy(out, head, hn);
	EVP_EncodeBlock((unsigned char *)out + hn, raw, (int)rawn);
	OPENSSL_cleanse(raw, rawn);
	free(raw);
	return out;
}
