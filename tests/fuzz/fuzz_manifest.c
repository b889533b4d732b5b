/* Manifest and index classification (reg_manifest_kind, used on what a
 * registry serves and on every document blob in a bundle).  Input: the
 * Content-Type value on the first line (an empty line: none), then the
 * body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t ctn = nl ? (size_t)(nl - data) : 0;
	const uint8_t *body = nl ? nl + 1 : data;
	size_t bodyn = size - (size_t)(body - data);
	char *ct = NULL;
	unsigned char *copy;
	struct ferr e = {0};
	const char *kind;

	if (ctn) {
		ct = malloc(ctn + 1);
		if (!ct)
			return 0;
		memcpy(ct, data, ctn);
		ct[ctn] = '\0';
	}
	/* an exact-size copy, so that reading past the body is caught */
	copy = malloc(bodyn ? bodyn : 1);
	if (!copy) {
		free(ct);
		return 0;
	}
	memcpy(copy, body, bodyn);
	kind = reg_manifest_kind(copy, bodyn, ct, &e);
	if (kind
		? strcmp(kind, MT_OCI_INDEX) && strcmp(kind, MT_OCI_MANIFEST) &&
		      strcmp(kind, MT_DOCKER_LIST) &&
		      strcmp(kind, MT_DOCKER_MANIFEST)
		: !e.msg[0])
		abort(); /* one of the four types, or a reason */
	free(copy);
	free(ct);
	return 0;
}
