/* Registry credentials and authentication challenges.
 *
 * Credentials come from a Docker config.json ("auths" entries).  They are
 * bound to the host they were stored for: the registry client never sends
 * them to another host (redirect targets, token realms elsewhere, upload
 * Locations).  Passwords are wiped from memory on release and never logged.
 */
#ifndef FERRY_AUTH_H
#define FERRY_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct auth_cred {
	char *host; /* normalised key: "host[:port]" */
	char *user;
	char *pass;
};

struct auth_store {
	struct auth_cred *v;
	size_t n;
	char *path; /* file the credentials came from, or NULL */
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
