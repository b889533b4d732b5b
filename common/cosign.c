#include "cosign.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"

void cosign_layers_release(struct cosign_layer *l, size_t n)
{
	if (!l)
		return;
	for (size_t i = 0; i < n; i++)
		free(l[i].sig_b64);
	free(l);
}

int cosign_sig_layers(const unsigned char *manifest, size_t len,
		      struct cosign_layer **out, size_t *n, struct ferr *e)
{
	json_t *root, *layers, *d;
	size_t i;
	int rc = -1;

	*out = NULL;
	*n = 0;
	root = json_loadb((const char *)manifest, len, 0, NULL);
	layers = json_object_get(root, "layers");
	if (!json_is_array(layers)) {
		ferr_set(e, FERR_INPUT, 0,
			 "a signature manifest without layers");
		goto out;
	}
	*out = calloc(json_array_size(layers) + 1, sizeof(**out));
	if (!*out) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	json_array_foreach(layers, i, d)
	{
		const char *mt =
		    json_string_value(json_object_get(d, "mediaType"));
		const char *sig = json_string_value(json_object_get(
		    json_object_get(d, "annotations"), COSIGN_ANNOT_SIG));
		json_t *sz = json_object_get(d, "size");
		struct cosign_layer *l = &(*out)[*n];

		if (!mt || strcmp(mt, COSIGN_MT_SIMPLESIGNING) != 0 || !sig ||
		    !json_is_integer(sz) || json_integer_value(sz) < 0 ||
		    digest_parse(&l->digest,
				 json_string_value(json_object_get(d, "digest")),
				 NULL) < 0)
			continue;
		l->size = (uint64_t)json_integer_value(sz);
		if (!(l->sig_b64 = strdup(sig))) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
		(*n)++;
	}
	rc = 0;
out:
	if (rc < 0) {
		cosign_layers_release(*out, *n);
		*out = NULL;
		*n = 0;
	}
	json_decref(root);
	return rc;
}

int cosign_payload_check(const unsigned char *payload, size_t n,
			 const struct digest *image, struct ferr *e)
{
	json_t *root, *crit;
	const char *named, *type;
	int rc = -1;

	if (n > FERRY_MAX_COSIGN_PAYLOAD)
		return ferr_set(e, FERR_VERIFY, 0,
				"a signature payload of %zu bytes, over the "
				"limit of %u",
				n, FERRY_MAX_COSIGN_PAYLOAD);
	root = json_loadb((const char *)payload, n, JSON_REJECT_DUPLICATES,
			  NULL);
	crit = json_object_get(root, "critical");
	named = json_string_value(json_object_get(
	    json_object_get(crit, "image"), "docker-manifest-digest"));
	type = json_string_value(json_object_get(crit, "type"));
	if (!named || !type) {
		ferr_set(e, FERR_VERIFY, 0,
			 "a signature payload that is not cosign's simple "
			 "signing");
		goto out;
	}
	if (strcmp(type, COSIGN_PAYLOAD_TYPE) != 0) {
		ferr_set(e, FERR_VERIFY, 0,
			 "a signature payload of type '%.100s'", type);
		goto out;
	}
	if (strcmp(named, image->str) != 0) {
		ferr_set(e, FERR_VERIFY, 0,
			 "a signature whose payload names '%.100s', not '%s'",
			 named, image->str);
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int cosign_verify(const struct sig_key *keys, size_t nkeys,
		  const unsigned char *payload, size_t n, const char *sig_b64,
		  const struct digest *image, size_t *which, struct ferr *e)
{
	unsigned char *sig = NULL;
	size_t siglen = 0;

	if (cosign_payload_check(payload, n, image, e) < 0)
		return -1;
	if (sig_base64_decode(sig_b64, strlen(sig_b64), &sig, &siglen, e) < 0) {
		e->cat = FERR_VERIFY;
		return ferr_prefix(e, "a signature annotation");
	}
	for (size_t k = 0; k < nkeys; k++) {
		if (sig_verify(&keys[k], payload, n, sig, siglen, NULL) == 0) {
			*which = k;
			free(sig);
			return 0;
		}
	}
	free(sig);
	if (nkeys == 1)
		return ferr_set(e, FERR_VERIFY, 0,
				"the signature does not verify with the "
				"given key");
	return ferr_set(e, FERR_VERIFY, 0,
			"the signature verifies with none of the %zu given "
			"keys",
			nkeys);
}
