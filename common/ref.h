/* Image references, parsed and normalised exactly as Docker does.
 *
 *   nginx                      -> docker.io/library/nginx:latest
 *   localhost:5000/a/b:t       -> localhost:5000/a/b:t
 *   repo@sha256:<hex>          -> docker.io/library/repo@sha256:<hex>
 *   host/repo:tag@sha256:<hex> -> tag and digest both kept
 */
#ifndef FERRY_REF_H
#define FERRY_REF_H

#include "err.h"

#define REF_MAX_NAME 255 /* domain + "/" + path, as Docker */
#define REF_MAX_TAG 128

struct ref {
	char *domain; /* "docker.io", "localhost:5000", "[::1]:5000" */
	char *path;   /* "library/nginx" */
	char *tag;    /* NULL when only a digest was given */
	char *digest; /* "sha256:<hex>" or NULL */
};

/* Parse and normalise `s`.  On failure sets e (FERR_INPUT) with a message
 * naming `s` and what is wrong with it; `r` is then left empty. */
int ref_parse(struct ref *r, const char *s, struct ferr *e);
void ref_release(struct ref *r);

/* Full normalised form ("docker.io/library/nginx:latest"); malloc'd. */
char *ref_string(const struct ref *r);
/* "domain/path"; malloc'd. */
char *ref_name(const struct ref *r);
/* Host to talk to for this reference's registry API: docker.io is
 * reached at registry-1.docker.io, everything else at its domain. */
const char *ref_api_host(const struct ref *r);
/* The tag or digest to ask the registry for (digest wins when both). */
const char *ref_object(const struct ref *r);

#endif
