/* Manifest and index classification (reg_manifest_kind, used on what a
 * registry serves and on every document blob in a bundle).  Input: the
 * Content-Type value on the first line (an empty line: none), then the
 * body.  The body also goes through cosign's parsers (a signature
 * manifest's layers, a simple-signing payload), which read what a source
 * registry or a bundle holds, and through import's merge of a cosign tag,
 * as the manifest and the config a target registry holds. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cosign.h"
#include "reg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_merge(const unsigned char *p, size_t n)
{
	static const char ours[] =
	    "{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:"
	    "e5d898c85793190d3fb321606c7319d351b455c8bf66266d86015672a9a7f72e"
	    "\",\"size\":2},\"layers\":[{\"mediaType\":"
	    "\"" COSIGN_MT_SIMPLESIGNING "\",\"digest\":\"sha256:"
	    "e5d898c85793190d3fb321606c7319d351b455c8bf66266d86015672a9a7f72e"
	    "\",\"size\":9}]}";
	static const char cfg[] = "{\"rootfs\":{\"diff_ids\":[\"x\"]}}";
	enum cosign_merge how;
	char *c = NULL, *m = NULL;
	struct ferr e = {0};

	if (cosign_merge_plan(p, n, (const unsigned char *)ours, strlen(ours),
			      COSIGN_MT_SIMPLESIGNING, &how, &e) < 0 &&
	    !e.msg[0])
		abort();
	ferr_clear(&e);
	/* the target's manifest and config both from the input */
	if (cosign_merge_build(p, n, p, n, (const unsigned char *)ours,
			       strlen(ours), (const unsigned char *)cfg,
			       strlen(cfg), &c, &m, &e) == 0) {
		json_t *jm = json_loads(m, 0, NULL),
		       *jc = json_loads(c, 0, NULL);
		if (!jm || !jc)
			abort(); /* what it writes is JSON */
		json_decref(jm);
		json_decref(jc);
	} else if (c || m || !e.msg[0]) {
		abort();
	}
	free(c);
	free(m);
}

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
	{
		static const struct digest img = {
		    .str = "sha256:e5d898c85793190d3fb321606c7319d351b455c8bf6"
			   "6266d86015672a9a7f72e"};
		struct cosign_layer *l = NULL;
		size_t n = 0;

		if (cosign_sig_layers(copy, bodyn, &l, &n, &e) == 0)
			for (size_t i = 0; i < n; i++)
				if (!l[i].sig_b64 ||
				    !digest_valid(l[i].digest.str))
					abort();
		cosign_layers_release(l, n);
		if (cosign_payload_check(copy, bodyn, &img, &e) < 0 &&
		    !e.msg[0])
			abort();
		fuzz_merge(copy, bodyn);
	}
	free(copy);
	free(ct);
	return 0;
}
