#include "bundle.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void bundle_time_format(time_t t, char out[32])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int cmp_digest(const void *a, const void *b)
{
	return strcmp(((const struct digest *)a)->str,
		      ((const struct digest *)b)->str);
}

int bundle_compute_id(struct bundle_meta *m, const char *index_json,
		      size_t index_len, const struct digest *blobs,
		      size_t nblobs, struct ferr *e)
{
	struct digest_ctx c;
	struct digest idx, out;
	struct digest *sorted = NULL;
	char line[160];

	if (digest_of(index_json, index_len, &idx, e) < 0)
		return -1;
	if (nblobs) {
		sorted = malloc(nblobs * sizeof(*sorted));
		if (!sorted)
			return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		memcpy(sorted, blobs, nblobs * sizeof(*sorted));
		qsort(sorted, nblobs, sizeof(*sorted), cmp_digest);
	}
	if (digest_ctx_init(&c, e) < 0) {
		free(sorted);
		return -1;
	}
	{
		char when[32];
		bundle_time_format(m->created, when);
		snprintf(line, sizeof(line), "ferry-bundle-v1\ncreated %s\n",
			 when);
		digest_ctx_update(&c, line, strlen(line));
	}
	digest_ctx_update(&c, "channel ", 8);
	digest_ctx_update(&c, m->channel, strlen(m->channel));
	snprintf(line, sizeof(line), "\nsequence %llu\nindex %s\n",
		 (unsigned long long)m->sequence, idx.str);
	digest_ctx_update(&c, line, strlen(line));
	for (size_t i = 0; i < nblobs; i++) {
		digest_ctx_update(&c, sorted[i].str, DIGEST_STR_LEN);
		digest_ctx_update(&c, "\n", 1);
	}
	digest_ctx_final(&c, &out);
	digest_ctx_release(&c);
	memcpy(m->bundle_id, digest_hex(&out), 64);
	m->bundle_id[64] = '\0';
	free(sorted);
	return 0;
}

static char *dump(json_t *root, size_t flags)
{
	char *s = root ? json_dumps(root, flags) : NULL;
	size_t n;
	char *t;

	json_decref(root);
	if (!s)
		return NULL;
	/* end text documents with a newline, as tools expect */
	n = strlen(s);
	t = realloc(s, n + 2);
	if (!t) {
		free(s);
		return NULL;
	}
	t[n] = '\n';
	t[n + 1] = '\0';
	return t;
}

static json_t *index_desc(const char *mt, const struct digest *d, uint64_t size,
			  const char *ref)
{
	json_t *o = json_object(), *a = json_object();

	json_object_set_new(o, "mediaType", json_string(mt));
	json_object_set_new(o, "digest", json_string(d->str));
	json_object_set_new(o, "size", json_integer((json_int_t)size));
	json_object_set_new(a, BUNDLE_ANNOT_CONTAINERD, json_string(ref));
	json_object_set_new(a, BUNDLE_ANNOT_REF, json_string(ref));
	json_object_set_new(o, "annotations", a);
	return o;
}

/* "<repository>:<tag>", malloc'd. */
static char *tag_ref(const char *image_ref, const char *tag)
{
	char *repo = bundle_ref_repo(image_ref), *out = NULL;
	size_t n;

	if (!repo)
		return NULL;
	n = strlen(repo) + strlen(tag) + 2;
	out = malloc(n);
	if (out)
		snprintf(out, n, "%s:%s", repo, tag);
	free(repo);
	return out;
}

char *bundle_index_json(const struct bundle_image *im, size_t n)
{
	json_t *root = json_object(), *mans = json_array(),
	       *seen = json_object();
	bool ok = true;

	json_object_set_new(root, "schemaVersion", json_integer(2));
	json_object_set_new(root, "mediaType",
			    json_string(
				"application/vnd.oci.image.index.v1+json"));
	for (size_t i = 0; i < n; i++)
		json_array_append_new(
		    mans, index_desc(im[i].media_type, &im[i].digest,
				     im[i].doc_size, im[i].ref));
	/* then one descriptor per attached tag (each once: two images of
	 * one repository share their attachments) */
	for (size_t i = 0; i < n && ok; i++)
		for (size_t k = 0; k < im[i].nattached && ok; k++) {
			const struct bundle_attach *a = &im[i].attached[k];
			char *ref;

			if (!a->tag)
				continue;
			ref = tag_ref(im[i].ref, a->tag);
			ok = ref != NULL;
			if (ok && !json_object_get(seen, ref)) {
				json_object_set_new(seen, ref, json_true());
				json_array_append_new(
				    mans, index_desc(a->media_type, &a->digest,
						     a->size, ref));
			}
			free(ref);
		}
	json_decref(seen);
	json_object_set_new(root, "manifests", mans);
	if (!ok) {
		json_decref(root);
		return NULL;
	}
	return dump(root, JSON_COMPACT);
}

char *bundle_manifest_json(const struct bundle_image *im, size_t n)
{
	json_t *root = json_array();

	for (size_t i = 0; i < n; i++) {
		json_t *d, *tags, *layers;
		char path[128];

		if (!im[i].has_docker)
			continue;
		d = json_object();
		tags = json_array();
		layers = json_array();
		snprintf(path, sizeof(path), BUNDLE_BLOB_PREFIX "%s",
			 digest_hex(&im[i].docker_config));
		json_object_set_new(d, "Config", json_string(path));
		/* a digest-only reference names no tag */
		if (!strchr(im[i].ref, '@'))
			json_array_append_new(tags, json_string(im[i].ref));
		json_object_set_new(d, "RepoTags", tags);
		for (size_t k = 0; k < im[i].ndocker_layers; k++) {
			snprintf(path, sizeof(path), BUNDLE_BLOB_PREFIX "%s",
				 digest_hex(&im[i].docker_layers[k]));
			json_array_append_new(layers, json_string(path));
		}
		json_object_set_new(d, "Layers", layers);
		json_array_append_new(root, d);
	}
	return dump(root, JSON_COMPACT);
}

json_t *bundle_attached_json(const struct bundle_image *im)
{
	json_t *arr = json_array();

	for (size_t k = 0; k < im->nattached; k++) {
		const struct bundle_attach *a = &im->attached[k];
		json_t *o = json_object();

		json_object_set_new(
		    o, "kind", json_string(bundle_attach_kind_name(a->kind)));
		json_object_set_new(o, "subject", json_string(a->subject.str));
		json_object_set_new(o, "digest", json_string(a->digest.str));
		json_object_set_new(o, "mediaType", json_string(a->media_type));
		json_object_set_new(o, "size",
				    json_integer((json_int_t)a->size));
		if (a->artifact_type)
			json_object_set_new(o, "artifactType",
					    json_string(a->artifact_type));
		if (a->tag)
			json_object_set_new(o, "tag", json_string(a->tag));
		json_array_append_new(arr, o);
	}
	return arr;
}

char *bundle_ferry_json(const struct bundle_meta *m,
			const struct bundle_image *im, size_t n)
{
	json_t *root = json_object(), *imgs = json_array();
	char when[32];

	bundle_time_format(m->created, when);
	json_object_set_new(root, "formatVersion",
			    json_integer(BUNDLE_FORMAT_VERSION));
	json_object_set_new(root, "tool", json_string("ferry " FERRY_VERSION));
	json_object_set_new(root, "bundleId", json_string(m->bundle_id));
	json_object_set_new(root, "created", json_string(when));
	json_object_set_new(root, "channel", json_string(m->channel));
	json_object_set_new(root, "sequence",
			    json_integer((json_int_t)m->sequence));
	json_object_set_new(root, "signingKeyId", json_string(m->key_id));
	for (size_t i = 0; i < n; i++) {
		json_t *d = json_object(), *pl = json_array();
		json_object_set_new(d, "reference", json_string(im[i].ref));
		json_object_set_new(d, "digest", json_string(im[i].digest.str));
		json_object_set_new(d, "mediaType",
				    json_string(im[i].media_type));
		for (size_t k = 0; k < im[i].nplatforms; k++)
			json_array_append_new(pl,
					      json_string(im[i].platforms[k]));
		json_object_set_new(d, "platforms", pl);
		json_object_set_new(d, "size",
				    json_integer((json_int_t)im[i].total_size));
		if (im[i].nattached)
			json_object_set_new(d, "attached",
					    bundle_attached_json(&im[i]));
		if (im[i].cosign_key_id)
			json_object_set_new(d, "cosignKeyId",
					    json_string(im[i].cosign_key_id));
		if (im[i].has_signed &&
		    !digest_equal(&im[i].signed_digest, &im[i].digest))
			json_object_set_new(d, "signedDigest",
					    json_string(
						im[i].signed_digest.str));
		json_array_append_new(imgs, d);
	}
	json_object_set_new(root, "images", imgs);
	if (m->nbases) {
		json_t *delta = json_object(), *b = json_array(),
		       *om = json_array();
		for (size_t i = 0; i < m->nbases; i++)
			json_array_append_new(b, json_string(m->bases[i]));
		for (size_t i = 0; i < m->nomitted; i++)
			json_array_append_new(om,
					      json_string(m->omitted[i].str));
		json_object_set_new(delta, "bases", b);
		json_object_set_new(delta, "omitted", om);
		json_object_set_new(root, "delta", delta);
	}
	return dump(root, JSON_INDENT(2));
}

static int cmp_sum(const void *a, const void *b)
{
	return strcmp(((const struct bundle_sum *)a)->path,
		      ((const struct bundle_sum *)b)->path);
}

char *bundle_sums_text(const struct bundle_sum *in, size_t n)
{
	struct bundle_sum *sums = malloc((n + 1) * sizeof(*sums));
	struct buf b;

	if (!sums)
		return NULL;
	memcpy(sums, in, n * sizeof(*sums));
	buf_init(&b, (size_t)-1 / 2);
	qsort(sums, n, sizeof(*sums), cmp_sum);
	for (size_t i = 0; i < n; i++) {
		if (buf_append(&b, digest_hex(&sums[i].digest),
			       DIGEST_HEX_LEN) ||
		    buf_append_str(&b, "  ") ||
		    buf_append_str(&b, sums[i].path) ||
		    buf_append_str(&b, "\n")) {
			buf_release(&b);
			free(sums);
			return NULL;
		}
	}
	free(sums);
	return (char *)buf_detach(&b, NULL);
}

void bundle_images_release(struct bundle_image *im, size_t n)
{
	if (!im)
		return;
	for (size_t i = 0; i < n; i++) {
		free(im[i].ref);
		for (size_t k = 0; k < im[i].nplatforms; k++)
			free(im[i].platforms[k]);
		free(im[i].platforms);
		free(im[i].docker_layers);
		bundle_attached_release(im[i].attached, im[i].nattached);
		free(im[i].cosign_key_id);
	}
	free(im);
}

void bundle_attached_release(struct bundle_attach *a, size_t n)
{
	if (!a)
		return;
	for (size_t k = 0; k < n; k++) {
		free(a[k].artifact_type);
		free(a[k].tag);
	}
	free(a);
}

static const char *const kind_names[] = {"signature", "attestation", "sbom",
					 "referrer", "referrers"};
static const char *const kind_suffix[] = {".sig", ".att", ".sbom", "", ""};

const char *bundle_attach_kind_name(enum bundle_attach_kind k)
{
	return (unsigned)k <= BA_REFERRERS ? kind_names[k] : "?";
}

int bundle_attach_kind_parse(const char *name)
{
	for (int k = 0; k <= BA_REFERRERS; k++)
		if (!strcmp(name, kind_names[k]))
			return k;
	return -1;
}

void bundle_attach_tag(enum bundle_attach_kind k, const struct digest *subject,
		       char *out)
{
	snprintf(out, BUNDLE_ATTACH_TAG_MAX, "sha256-%s%s", digest_hex(subject),
		 (unsigned)k <= BA_REFERRERS ? kind_suffix[k] : "");
}

int bundle_attach_kind_of_tag(const char *tag, const struct digest *subject)
{
	char want[BUNDLE_ATTACH_TAG_MAX];

	for (int k = 0; k <= BA_REFERRERS; k++) {
		if (k == BA_REFERRER)
			continue;
		bundle_attach_tag((enum bundle_attach_kind)k, subject, want);
		if (!strcmp(tag, want))
			return k;
	}
	return -1;
}

char *bundle_ref_repo(const char *ref)
{
	size_t n = strcspn(ref, "@"), slash = 0, colon = 0;

	/* a ':' after the last '/' starts the tag (before it: a port) */
	for (size_t i = 0; i < n; i++) {
		if (ref[i] == '/')
			slash = i + 1, colon = 0;
		else if (ref[i] == ':' && slash)
			colon = i;
	}
	return strndup(ref, colon ? colon : n);
}
