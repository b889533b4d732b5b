#include "cosign.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
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

/* The layers of an image manifest; NULL when `root` is not one. */
static json_t *manifest_layers(json_t *root)
{
	json_t *layers = json_object_get(root, "layers");

	if (!json_is_array(layers) ||
	    !json_is_object(json_object_get(root, "config")))
		return NULL;
	return layers;
}

static bool has_layer(json_t *layers, json_t *d)
{
	size_t i;
	json_t *x;

	json_array_foreach(layers, i, x) if (json_equal(x, d)) return true;
	return false;
}

/* How many of `from`'s layers `in` lacks. */
static size_t missing_layers(json_t *from, json_t *in)
{
	size_t i, n = 0;
	json_t *d;

	json_array_foreach(from, i, d) if (!has_layer(in, d)) n++;
	return n;
}

/* Append to `to` each layer of `from` it lacks (once, however often
 * `from` lists it).  *added: how many. */
static int append_missing(json_t *to, json_t *from, size_t *added)
{
	size_t i;
	json_t *d;

	*added = 0;
	json_array_foreach(from, i, d)
	{
		if (has_layer(to, d))
			continue;
		if (json_array_append(to, d) < 0)
			return -1;
		(*added)++;
	}
	return 0;
}

int cosign_config_of(const unsigned char *m, size_t len, struct digest *d,
		     uint64_t *size, struct ferr *e)
{
	json_t *root = json_loadb((const char *)m, len, 0, NULL);
	json_t *c = json_object_get(root, "config");
	json_t *sz = json_object_get(c, "size");
	int rc = 0;

	if (!json_is_integer(sz) || json_integer_value(sz) < 0 ||
	    digest_parse(d, json_string_value(json_object_get(c, "digest")),
			 NULL) < 0)
		rc = ferr_set(e, FERR_INPUT, 0,
			      "a manifest without a valid config descriptor");
	else
		*size = (uint64_t)json_integer_value(sz);
	json_decref(root);
	return rc;
}

/* How many layers of `layers` have media type `mt`. */
static size_t count_of_type(json_t *layers, const char *mt)
{
	size_t i, n = 0;
	json_t *d;

	json_array_foreach(layers, i, d)
	{
		const char *t =
		    json_string_value(json_object_get(d, "mediaType"));
		if (t && !strcmp(t, mt))
			n++;
	}
	return n;
}

/* Is the merge of what `h` lists (with our layers appended: hl) within
 * the caps? */
static int merge_fits(json_t *h, json_t *hl, struct ferr *e)
{
	char *s;
	size_t n;

	if (json_array_size(hl) > FERRY_MAX_SIG_LAYERS)
		return ferr_set(e, FERR_INPUT, 0,
				"merged, it would have %zu layers, more than "
				"%u",
				json_array_size(hl), FERRY_MAX_SIG_LAYERS);
	if (!(s = json_dumps(h, JSON_COMPACT)))
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	n = strlen(s);
	free(s);
	if (n > FERRY_MAX_JSON)
		return ferr_set(e, FERR_INPUT, 0,
				"merged, it would be %zu bytes, over the "
				"limit of %u",
				n, FERRY_MAX_JSON);
	return 0;
}

int cosign_merge_plan(const unsigned char *have, size_t hlen,
		      const unsigned char *ours, size_t olen,
		      const char *layer_mt, enum cosign_merge *out,
		      struct ferr *e)
{
	json_t *h = json_loadb((const char *)have, hlen, 0, NULL);
	json_t *o = json_loadb((const char *)ours, olen, 0, NULL);
	json_t *hl = manifest_layers(h), *ol = manifest_layers(o);
	size_t add, drop, mine;
	int rc = -1;

	if (!ol) {
		ferr_set(e, FERR_INPUT, 0,
			 "the bundle's is not an image manifest with layers");
		goto out;
	}
	mine = hl ? count_of_type(hl, layer_mt) : 0;
	if (!mine) { /* no signatures there to keep */
		*out = COSIGN_MERGE_REPLACE;
		rc = 0;
		goto out;
	}
	if (mine < json_array_size(hl)) {
		ferr_set(e, FERR_INPUT, 0,
			 "it holds cosign's layers and others; which to keep "
			 "is not for ferry to guess");
		goto out;
	}
	drop = missing_layers(hl, ol);
	if (append_missing(hl, ol, &add) < 0) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	if (add && drop && merge_fits(h, hl, e) < 0)
		goto out;
	*out = !drop  ? COSIGN_MERGE_OURS
	       : !add ? COSIGN_MERGE_THEIRS
		      : COSIGN_MERGE_BOTH;
	rc = 0;
out:
	json_decref(h);
	json_decref(o);
	return rc;
}

/* The merged config: the target's, with rootfs.diff_ids one per merged
 * layer (each its digest: cosign's layers are not compressed) and, where
 * the target's history has one entry per layer, one more for each added
 * layer (ours where ours has one per layer, else an empty one). */
static int merge_config(json_t *hc, json_t *oc, json_t *hl, size_t nhave,
			json_t *ol)
{
	json_t *rootfs = json_object_get(hc, "rootfs"), *ids, *d;
	json_t *hist = json_object_get(hc, "history");
	json_t *ohist = json_object_get(oc, "history");
	bool oaligned = json_array_size(ohist) == json_array_size(ol);
	size_t i, j;

	if (!json_is_object(rootfs) &&
	    json_object_set_new(hc, "rootfs",
				rootfs = json_pack("{s:s}", "type", "layers")))
		return -1;
	if (json_object_set_new(rootfs, "diff_ids", ids = json_array()) < 0)
		return -1;
	json_array_foreach(hl, i, d)
	{
		if (json_array_append(ids, json_object_get(d, "digest")) < 0)
			return -1;
		if (i < nhave || !json_is_array(hist) ||
		    json_array_size(hist) != i)
			continue; /* history: only while it is aligned */
		for (j = 0; j < json_array_size(ol); j++)
			if (json_equal(json_array_get(ol, j), d))
				break;
		if (oaligned ? json_array_append(hist, json_array_get(ohist, j))
			     : json_array_append_new(hist, json_object()))
			return -1;
	}
	return 0;
}

int cosign_merge_build(const unsigned char *have, size_t hlen,
		       const unsigned char *have_cfg, size_t hclen,
		       const unsigned char *ours, size_t olen,
		       const unsigned char *ours_cfg, size_t oclen,
		       char **config, char **manifest, struct ferr *e)
{
	json_t *h = json_loadb((const char *)have, hlen, 0, NULL);
	json_t *o = json_loadb((const char *)ours, olen, 0, NULL);
	json_t *hc = json_loadb((const char *)have_cfg, hclen, 0, NULL);
	json_t *oc = json_loadb((const char *)ours_cfg, oclen, 0, NULL);
	json_t *hl = manifest_layers(h), *ol = manifest_layers(o), *cd;
	size_t nhave = json_array_size(hl), added;
	struct digest dg;
	int rc = -1;

	*config = *manifest = NULL;
	if (!hl || !ol || !json_is_object(hc) || !json_is_object(oc)) {
		ferr_set(e, FERR_INPUT, 0,
			 "a cosign manifest or config that is not JSON of "
			 "the right shape");
		goto out;
	}
	if (append_missing(hl, ol, &added) < 0 ||
	    merge_config(hc, oc, hl, nhave, ol) < 0 ||
	    !(*config = json_dumps(hc, JSON_COMPACT)))
		goto nomem;
	if (strlen(*config) > FERRY_MAX_JSON) {
		ferr_set(e, FERR_INPUT, 0,
			 "the merged config would be %zu bytes, over the limit "
			 "of %u",
			 strlen(*config), FERRY_MAX_JSON);
		goto fail;
	}
	if (digest_of(*config, strlen(*config), &dg, e) < 0)
		goto fail;
	cd = json_object_get(h, "config");
	if (json_object_set_new(cd, "digest", json_string(dg.str)) < 0 ||
	    json_object_set_new(
		cd, "size", json_integer((json_int_t)strlen(*config))) < 0 ||
	    !(*manifest = json_dumps(h, JSON_COMPACT)))
		goto nomem;
	if (strlen(*manifest) > FERRY_MAX_JSON) {
		ferr_set(e, FERR_INPUT, 0,
			 "merged, it would be %zu bytes, over the limit of %u",
			 strlen(*manifest), FERRY_MAX_JSON);
		goto fail;
	}
	rc = 0;
	goto out;
nomem:
	ferr_set(e, FERR_IO, ENOMEM, "out of memory");
fail:
	free(*config);
	free(*manifest);
	*config = *manifest = NULL;
out:
	json_decref(h);
	json_decref(o);
	json_decref(hc);
	json_decref(oc);
	return rc;
}
