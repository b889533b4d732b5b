/* Registry credentials and authentication challenges.
 *
 * Credentials come from a Docker config.json: "auths" entries (with their
 * "identitytoken"), and the credential helpers it names ("credHelpers" per
 * host, "credsStore" for every other host), run as docker runs them.  They
 * are bound to the host they were stored for: the registry client never
 * sends them to another host (redirect targets, token realms elsewhere,
 * upload Locations).  Passwords are wiped from memory on release and never
 * logged.
 */
#ifndef FERRY_AUTH_H
#define FERRY_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct auth_cred {
	char *host; /* normalised key: "host[:port]" */
	char *user;
	char *pass; /* NULL when identity_token is set */
	/* An identity (OAuth2 refresh) token from a credential helper (its
	 * Username was "<token>"): sent to the token service as a
	 * refresh_token grant, never as Basic credentials. */
	char *identity_token;
};

struct auth_helper_entry {
	char *host; /* normalised */
	char *name; /* NAME of docker-credential-NAME */
};

struct auth_lazy; /* answers of credential helpers, asked once per host */

struct auth_store {
	struct auth_cred *v;
	size_t n;
	char *path;	   /* file the credentials came from, or NULL */
	char *creds_store; /* "credsStore": helper for every host, or NULL */
	struct auth_helper_entry *helpers; /* "credHelpers" */
	size_t n_helpers;
	struct auth_lazy *lazy;
};

/* Load credentials.  `path` is the --authfile value (must exist) or NULL for
 * the default search: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json,
 * ~/.docker/config.json (a missing default file means no credentials). */
int auth_store_load(struct auth_store *s, const char *path, struct ferr *e);
/* Parse a config.json held in memory; `name` is used in messages. */
int auth_store_parse(struct auth_store *s, const char *json, size_t len,
		     const char *name, struct ferr *e);
void auth_store_release(struct auth_store *s);
/* Credentials for the registry API host `host` ("host[:port]"), or NULL.
 * Docker Hub's names (docker.io, index.docker.io, registry-1.docker.io and
 * the legacy "https://index.docker.io/v1/" key) are one registry. */
const struct auth_cred *auth_store_find(const struct auth_store *s,
					const char *host);

/* Credentials for `host` as docker finds them: its "credHelpers" helper,
 * else the "credsStore" helper, else (also when the helper has no entry
 * for the host) the "auths" entry.  *out is NULL when there are none.  A
 * helper that cannot be run or fails is an error (FERR_AUTH).  Each
 * helper runs at most once per host (thread-safe). */
int auth_store_lookup(const struct auth_store *s, const char *host,
		      const struct auth_cred **out, struct ferr *e);

/* Run `docker-credential-NAME get` with `server_url` on its standard
 * input (bounded output, FERRY_CREDHELPER_TIMEOUT_S).  *found is false when
 * the helper has no credentials for that server.  Fills c->user and
 * c->pass, or c->identity_token. */
int auth_helper_get(const char *name, const char *server_url,
		    struct auth_cred *c, bool *found, struct ferr *e);
/* A helper NAME is [A-Za-z0-9._-], not starting with '.'. */
bool auth_helper_name_ok(const char *name);

/* Reduce a config.json key or URL to "host[:port]" (lowercase, no scheme,
 * no path); Docker Hub's aliases become "docker.io".  malloc'd. */
char *auth_normalise_host(const char *key);

enum auth_scheme { AUTH_NONE = 0, AUTH_BASIC, AUTH_BEARER };

struct auth_challenge {
	enum auth_scheme scheme;
	char *realm;
	char *service;
	char *scope;
};

/* Parse a WWW-Authenticate value; the first Basic or Bearer challenge is
 * taken.  Unknown schemes give scheme AUTH_NONE and no error. */
int auth_challenge_parse(struct auth_challenge *c, const char *value,
			 struct ferr *e);
void auth_challenge_release(struct auth_challenge *c);

/* "Authorization: Basic <base64(user:pass)>" header line; malloc'd,
 * wipe after use (auth_wipe_free). */
char *auth_basic_header(const struct auth_cred *c);

/* Overwrite and free a string holding a secret. */
void auth_wipe_free(char *s);

#endif
