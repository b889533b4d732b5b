#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
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

/* One host's answer from a credential helper (found or not), kept so
 * that each helper runs once per host; nodes never move (clients keep
 * pointers to `cred`). */
struct lazy_node {
	struct lazy_node *next;
	char *host;
	bool found;
	bool failed; /* a failure is the answer too: not retried per client */
	struct ferr err;
	struct auth_cred cred;
};

struct auth_lazy {
	pthread_mutex_t mu;
	struct lazy_node *head;
};

static void cred_release(struct auth_cred *c)
{
	free(c->host);
	auth_wipe_free(c->user);
	auth_wipe_free(c->pass);
	auth_wipe_free(c->identity_token);
	c->host = c->user = c->pass = c->identity_token = NULL;
}

static void lazy_release(struct auth_lazy *l)
{
	if (!l)
		return;
	while (l->head) {
		struct lazy_node *n = l->head;
		l->head = n->next;
		free(n->host);
		cred_release(&n->cred);
		free(n);
	}
	pthread_mutex_destroy(&l->mu);
	free(l);
}

void auth_store_release(struct auth_store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		cred_release(&s->v[i]);
	for (size_t i = 0; i < s->n_helpers; i++) {
		free(s->helpers[i].host);
		free(s->helpers[i].name);
	}
	lazy_release(s->lazy);
	free(s->helpers);
	free(s->v);
	free(s->path);
	free(s->creds_store);
	s->v = NULL;
	s->n = 0;
	s->path = NULL;
	s->creds_store = NULL;
	s->helpers = NULL;
	s->n_helpers = 0;
	s->lazy = NULL;
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

/* "credsStore" and "credHelpers": which helper serves which host. */
static int parse_helpers(struct auth_store *s, json_t *root, const char *name,
			 struct ferr *e)
{
	json_t *store = json_object_get(root, "credsStore");
	json_t *map = json_object_get(root, "credHelpers");
	const char *key;
	json_t *v;

	if (store && !(json_is_string(store) &&
		       (!*json_string_value(store) ||
			auth_helper_name_ok(json_string_value(store)))))
		return ferr_set(e, FERR_INPUT, 0,
				"credentials file '%s': 'credsStore' is not a "
				"helper name",
				name);
	if (store && *json_string_value(store) &&
	    !(s->creds_store = strdup(json_string_value(store))))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (map && !json_is_object(map))
		return ferr_set(e, FERR_INPUT, 0,
				"credentials file '%s': 'credHelpers' is not an "
				"object",
				name);
	json_object_foreach(map, key, v)
	{
		struct auth_helper_entry *nv;

		if (!json_is_string(v) ||
		    !auth_helper_name_ok(json_string_value(v)))
			return ferr_set(e, FERR_INPUT, 0,
					"credentials file '%s': the "
					"'credHelpers' entry for '%.200s' is "
					"not a helper name",
					name, key);
		nv = realloc(s->helpers, (s->n_helpers + 1) * sizeof(*nv));
		if (!nv)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		s->helpers = nv;
		nv[s->n_helpers].host = auth_normalise_host(key);
		nv[s->n_helpers].name = strdup(json_string_value(v));
		s->n_helpers++;
		if (!nv[s->n_helpers - 1].host || !nv[s->n_helpers - 1].name)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	/* made here, before any thread may look a host up */
	if ((s->creds_store || s->n_helpers) && !s->lazy) {
		if (!(s->lazy = calloc(1, sizeof(*s->lazy))))
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		pthread_mutex_init(&s->lazy->mu, NULL);
	}
	return 0;
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
	if (parse_helpers(s, root, name, e) < 0)
		goto out;
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
		const char *a, *u, *p, *it;
		char *user = NULL, *pass = NULL, *host, *tok = NULL;
		struct auth_cred *nv;

		if (!json_is_object(ent))
			continue;
		a = json_string_value(json_object_get(ent, "auth"));
		u = json_string_value(json_object_get(ent, "username"));
		p = json_string_value(json_object_get(ent, "password"));
		/* as docker stores an OAuth2 login (e.g. `az acr login`) */
		it = json_string_value(json_object_get(ent, "identitytoken"));
		if (it && *it && !(tok = strdup(it))) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		if (tok && !(a && *a)) {
			user = strdup(u ? u : "");
		} else if (a && *a) {
			if (decode_auth(a, &user, &pass) < 0) {
				auth_wipe_free(tok);
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
			continue; /* nothing usable */
		}
		host = auth_normalise_host(key);
		nv = realloc(s->v, (s->n + 1) * sizeof(*nv));
		if (!host || !user || (!pass && !tok) || !nv) {
			free(host);
			auth_wipe_free(user);
			auth_wipe_free(pass);
			auth_wipe_free(tok);
			if (nv)
				s->v = nv;
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		s->v = nv;
		memset(&s->v[s->n], 0, sizeof(s->v[s->n]));
		s->v[s->n].host = host;
		s->v[s->n].user = user;
		s->v[s->n].pass = pass;
		s->v[s->n].identity_token = tok;
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

	memset(s, 0, sizeof(*s));
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

/* The helper for normalised host `h`, or NULL. */
static const char *helper_for(const struct auth_store *s, const char *h)
{
	for (size_t i = 0; i < s->n_helpers; i++)
		if (strcmp(s->helpers[i].host, h) == 0)
			return s->helpers[i].name;
	return s->creds_store;
}

/* Ask `helper` about `h` once; later calls get the same answer. */
static int lazy_ask(const struct auth_store *s, const char *helper,
		    const char *h, const struct auth_cred **out, struct ferr *e)
{
	struct auth_lazy *l = s->lazy;
	/* Docker Hub's entry lives under its legacy key, as docker stores it */
	const char *url = strcmp(h, "docker.io") == 0
			      ? "https://index.docker.io/v1/"
			      : h;
	struct lazy_node *n;
	int rc = -1;

	pthread_mutex_lock(&l->mu);
	for (n = l->head; n; n = n->next)
		if (strcmp(n->host, h) == 0)
			break;
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n || !(n->host = strdup(h))) {
			free(n);
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		if (auth_helper_get(helper, url, &n->cred, &n->found, &n->err) <
		    0) {
			size_t k = strlen(n->err.msg);

			/* where it was named: the user may not know */
			if (s->path)
				snprintf(n->err.msg + k, sizeof(n->err.msg) - k,
					 " (named in '%s' for '%s')", s->path,
					 h);
			cred_release(&n->cred);
			n->failed = true;
			n->found = false;
		}
		n->cred.host = strdup(h);
		n->next = l->head;
		l->head = n;
	}
	if (n->failed) {
		*e = n->err;
		goto out;
	}
	*out = n->found ? &n->cred : NULL;
	rc = 0;
out:
	pthread_mutex_unlock(&l->mu);
	return rc;
}

int auth_store_lookup(const struct auth_store *s, const char *host,
		      const struct auth_cred **out, struct ferr *e)
{
	const char *helper;
	char *h;
	int rc = -1;

	*out = NULL;
	if (!s || !host)
		return 0;
	h = auth_normalise_host(host);
	if (!h)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	helper = s->lazy ? helper_for(s, h) : NULL;
	if (helper && lazy_ask(s, helper, h, out, e) < 0)
		goto out;
	if (!*out)
		*out = auth_store_find(s, h);
	rc = 0;
out:
	free(h);
	return rc;
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
