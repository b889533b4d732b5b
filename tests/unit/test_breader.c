/* Unit tests for the streaming bundle reader: one row per rule of SPEC
 * section 4.  Each row builds a small bundle in memory (two images: an OCI
 * index over an OCI manifest, and that manifest tagged on its own; one
 * config, one layer), signed with a key generated here, then breaks one
 * thing in it, writes it out as tar, tar.gz or tar.zst and reads it back
 * with bundle_read.  The tar stream is written by hand so that rows can
 * hold what no honest writer produces (links, devices, pax global headers,
 * bad names, wrong order). */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>

#include "bounds.h"
#include "breader.h"
#include "bundle.h"
#include "check.h"
#include "digest.h"
#include "err.h"
#include "reg.h"
#include "sig.h"

/* ---- growing byte strings ---- */

struct bytes {
	unsigned char *p;
	size_t n, cap;
};

static void put(struct bytes *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		size_t nc = b->cap ? b->cap : 4096;
		while (nc < b->n + n)
			nc *= 2;
		b->p = realloc(b->p, nc);
		if (!b->p)
			abort();
		b->cap = nc;
	}
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put_zeros(struct bytes *b, size_t n)
{
	static const unsigned char z[512];

	while (n) {
		size_t k = n < sizeof(z) ? n : sizeof(z);
		put(b, z, k);
		n -= k;
	}
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	int n;
	char *s;

	va_start(ap, f);
	n = vsnprintf(NULL, 0, f, ap);
	va_end(ap);
	s = malloc((size_t)n + 1);
	if (!s)
		abort();
	va_start(ap, f);
	vsnprintf(s, (size_t)n + 1, f, ap);
	va_end(ap);
	return s;
}

/* ---- a hand-written ustar stream ---- */

struct ent {
	char name[128];
	char type; /* '0' file, '1' hard link, '2' symlink, '3' char device,
		      '5' directory, '6' fifo, 'g' pax global header */
	char link[100];
	unsigned char *data;
	size_t len;
};

#define MAX_ENTS 24

struct model {
	struct ent e[MAX_ENTS];
	size_t n;
};

static void octal(unsigned char *field, size_t width, uint64_t v)
{
	char tmp[24];

	snprintf(tmp, sizeof(tmp), "%0*llo", (int)width - 1,
		 (unsigned long long)v);
	memcpy(field, tmp, width - 1);
}

static void tar_header(struct bytes *b, const struct ent *en)
{
	unsigned char h[512];
	unsigned sum = 0;
	char ck[8];

	memset(h, 0, sizeof(h));
	memcpy(h, en->name, strlen(en->name) < 100 ? strlen(en->name) : 100);
	octal(h + 100, 8, en->type == '5' ? 0755 : 0644);
	octal(h + 108, 8, 0);
	octal(h + 116, 8, 0);
	octal(h + 124, 12, en->len);
	octal(h + 136, 12, 1700000000);
	memset(h + 148, ' ', 8);
	h[156] = (unsigned char)en->type;
	memcpy(h + 157, en->link, strlen(en->link));
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	for (size_t i = 0; i < sizeof(h); i++)
		sum += h[i];
	snprintf(ck, sizeof(ck), "%06o", sum);
	memcpy(h + 148, ck, 7);
	put(b, h, sizeof(h));
}

static void tar_write(const struct model *m, struct bytes *b)
{
	for (size_t i = 0; i < m->n; i++) {
		tar_header(b, &m->e[i]);
		put(b, m->e[i].data, m->e[i].len);
		put_zeros(b, (512 - m->e[i].len % 512) % 512);
	}
	put_zeros(b, 1024); /* end-of-archive marker */
}

static void set_ent(struct ent *en, const char *name, char type, const void *p,
		    size_t n)
{
	memset(en, 0, sizeof(*en));
	snprintf(en->name, sizeof(en->name), "%s", name);
	en->type = type;
	en->data = malloc(n ? n : 1);
	if (!en->data)
		abort();
	if (n)
		memcpy(en->data, p, n);
	en->len = n;
}

static void ent_insert(struct model *m, size_t at, const struct ent *en)
{
	if (m->n == MAX_ENTS)
		abort();
	memmove(&m->e[at + 1], &m->e[at], (m->n - at) * sizeof(m->e[0]));
	m->e[at] = *en;
	m->n++;
}

static void ent_remove(struct model *m, size_t at)
{
	free(m->e[at].data);
	memmove(&m->e[at], &m->e[at + 1], (m->n - at - 1) * sizeof(m->e[0]));
	m->n--;
}

static void model_release(struct model *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->e[i].data);
	m->n = 0;
}

/* ---- the good bundle, with knobs for its documents ---- */

/* Entry positions in the good bundle. */
enum {
	E_LAYOUT,
	E_FERRY,
	E_INDEXJSON,
	E_MANIFESTJSON,
	E_SUMS,
	E_SIG,
	E_INDEX,
	E_MANIFEST,
	E_CONFIG,
	E_LAYER
};

struct knobs {
	const char *index_type;	   /* index.json's media type for the index */
	const char *manifest_type; /* the index's media type for the manifest */
	bool two_types;		   /* the manifest also has "manifests" */
	int layer_size_delta;	   /* added to the layer descriptor's size */
	bool big_config;	   /* config of FERRY_MAX_JSON + 1 bytes */
	bool tar_in_layer; /* layer: a tar holding a pax global header */
	/* SPEC §6: image 1 carries a signature (the manifest blob) on the
	 * index: 1 valid, 2 a tag its subject does not give, 3 a digest not
	 * in the bundle, 4 index.json without the tag, 5 ferry.json without
	 * it, 6 an untagged referrer given a tag, 7 a signature whose subject
	 * is neither the image nor in the bundle (its tag would overwrite
	 * another image's signature at the target) */
	int attach;
};

static struct sig_key key, other_key;

static void blob_ent(struct ent *en, const void *p, size_t n, struct digest *d)
{
	char name[128];

	digest_of(p, n, d, NULL);
	snprintf(name, sizeof(name), BUNDLE_BLOB_PREFIX "%s", digest_hex(d));
	set_ent(en, name, '0', p, n);
}

static void make_layer(const struct knobs *k, struct bytes *layer)
{
	struct model inner;
	struct ent g;
	unsigned char pattern[3000];

	if (!k->tar_in_layer) {
		for (size_t i = 0; i < sizeof(pattern); i++)
			pattern[i] = (unsigned char)(i * 7 + 1);
		put(layer, pattern, sizeof(pattern));
		return;
	}
	/* what git archive makes: a pax global header first; inside the
	 * layer it is data, not a header of the bundle */
	memset(&inner, 0, sizeof(inner));
	set_ent(&g, "pax_global_header", 'g', "17 comment=hello\n", 17);
	ent_insert(&inner, 0, &g);
	set_ent(&g, "hello.txt", '0', "hello\n", 6);
	ent_insert(&inner, 1, &g);
	tar_write(&inner, layer);
	model_release(&inner);
}

/* The four blobs: index, manifest, config, layer (in entry order). */
static void make_blobs(const struct knobs *k, struct model *m,
		       struct digest d[4])
{
	struct bytes layer = {0}, config = {0};
	char *man, *idx, *head;

	make_layer(k, &layer);
	blob_ent(&m->e[E_LAYER], layer.p, layer.n, &d[3]);
	head = fmt("\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{"
		   "\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}",
		   d[3].str);
	put(&config, "{", 1);
	if (k->big_config) /* JSON whitespace up to one byte over the cap */
		while (config.n + strlen(head) < FERRY_MAX_JSON + 1)
			put(&config, " ", 1);
	put(&config, head, strlen(head));
	blob_ent(&m->e[E_CONFIG], config.p, config.n, &d[2]);
	man = fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{"
		  "\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
		  "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
		  "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":"
		  "\"%s\",\"size\":%lld}]%s}",
		  MT_OCI_MANIFEST, d[2].str, config.n, d[3].str,
		  (long long)layer.n + k->layer_size_delta,
		  k->two_types ? ",\"manifests\":[]" : "");
	blob_ent(&m->e[E_MANIFEST], man, strlen(man), &d[1]);
	idx = fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{"
		  "\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,"
		  "\"platform\":{\"architecture\":\"amd64\",\"os\":"
		  "\"linux\"}}]}",
		  MT_OCI_INDEX,
		  k->manifest_type ? k->manifest_type : MT_OCI_MANIFEST,
		  d[1].str, strlen(man));
	blob_ent(&m->e[E_INDEX], idx, strlen(idx), &d[0]);
	free(layer.p);
	free(config.p);
	free(man);
	free(idx);
	free(head);
}

static void make_bundle(const struct knobs *k, struct model *m)
{
	static char *platforms[] = {"linux/amd64"};
	struct digest d[4], fd[4];
	struct bundle_image im[2];
	struct bundle_attach at;
	char tag[BUNDLE_ATTACH_TAG_MAX];
	struct bundle_meta meta;
	struct bundle_sum sums[8];
	char names[4][128];
	char *ij, *mj, *fj, *st, *b64;
	unsigned char *sig;
	size_t siglen;

	memset(m, 0, sizeof(*m));
	m->n = E_LAYER + 1;
	make_blobs(k, m, d);
	memset(im, 0, sizeof(im));
	im[0].ref = "example.com/app:1";
	im[0].digest = d[0];
	im[0].media_type = k->index_type ? k->index_type : MT_OCI_INDEX;
	im[0].doc_size = m->e[E_INDEX].len;
	im[0].platforms = platforms;
	im[0].nplatforms = 1;
	im[1] = im[0];
	im[1].ref = "example.com/app:2";
	im[1].digest = d[1];
	im[1].media_type = MT_OCI_MANIFEST;
	im[1].doc_size = m->e[E_MANIFEST].len;
	if (k->attach) {
		memset(&at, 0, sizeof(at));
		at.kind = k->attach == 6 ? BA_REFERRER : BA_SIGNATURE;
		at.subject = d[0];
		at.digest = d[1];
		if (k->attach == 3)
			digest_of("elsewhere", 9, &at.digest, NULL);
		if (k->attach == 7)
			digest_of("another image", 13, &at.subject, NULL);
		at.media_type = MT_OCI_MANIFEST;
		at.size = m->e[E_MANIFEST].len;
		bundle_attach_tag(BA_SIGNATURE, &at.subject, tag);
		at.tag = k->attach == 2 ? (char *)"latest" : tag;
		im[0].attached = &at;
		im[0].nattached = k->attach == 4 ? 0 : 1;
	}
	ij = bundle_index_json(im, 2);
	if (k->attach)
		im[0].nattached = k->attach == 5 ? 0 : 1;
	mj = bundle_manifest_json(im, 2);
	memset(&meta, 0, sizeof(meta));
	meta.created = 1700000000;
	meta.channel = "default";
	meta.sequence = 7;
	meta.key_id = key.key_id;
	bundle_compute_id(&meta, ij, strlen(ij), d, 4, NULL);
	fj = bundle_ferry_json(&meta, im, 2);
	set_ent(&m->e[E_LAYOUT], BUNDLE_OCI_LAYOUT, '0',
		BUNDLE_OCI_LAYOUT_CONTENT, strlen(BUNDLE_OCI_LAYOUT_CONTENT));
	set_ent(&m->e[E_FERRY], BUNDLE_FERRY_JSON, '0', fj, strlen(fj));
	set_ent(&m->e[E_INDEXJSON], BUNDLE_INDEX_JSON, '0', ij, strlen(ij));
	set_ent(&m->e[E_MANIFESTJSON], BUNDLE_MANIFEST_JSON, '0', mj,
		strlen(mj));
	for (int i = 0; i < 4; i++) {
		digest_of(m->e[i].data, m->e[i].len, &fd[i], NULL);
		sums[i].path = m->e[i].name;
		sums[i].digest = fd[i];
		snprintf(names[i], sizeof(names[i]), "%s",
			 m->e[E_INDEX + i].name);
		sums[4 + i].path = names[i];
		sums[4 + i].digest = d[i];
	}
	st = bundle_sums_text(sums, 8);
	set_ent(&m->e[E_SUMS], BUNDLE_SUMS, '0', st, strlen(st));
	if (sig_sign(&key, st, strlen(st), &sig, &siglen, NULL) < 0)
		abort();
	b64 = sig_base64_encode(sig, siglen);
	set_ent(&m->e[E_SIG], BUNDLE_SUMS_SIG, '0', b64, strlen(b64));
	free(ij);
	free(mj);
	free(fj);
	free(st);
	free(sig);
	free(b64);
}

/* ---- the breakages ---- */

static void resign_other_text(struct model *m)
{
	unsigned char *sig;
	size_t siglen;
	char *b64;

	sig_sign(&key, "something else", 14, &sig, &siglen, NULL);
	b64 = sig_base64_encode(sig, siglen);
	free(m->e[E_SIG].data);
	m->e[E_SIG].data = (unsigned char *)b64;
	m->e[E_SIG].len = strlen(b64);
	free(sig);
}

static void edit_manifest_json(struct model *m)
{
	free(m->e[E_MANIFESTJSON].data);
	set_ent(&m->e[E_MANIFESTJSON], BUNDLE_MANIFEST_JSON, '0', "[ ]\n", 4);
}

static void flip_layer_byte(struct model *m)
{
	m->e[E_LAYER].data[100] ^= 1;
}

static void drop_layer(struct model *m)
{
	ent_remove(m, E_LAYER);
}

static void drop_manifest_json(struct model *m)
{
	ent_remove(m, E_MANIFESTJSON);
}

static void add_unlisted(struct model *m)
{
	struct ent en;
	struct digest d;

	blob_ent(&en, "extra\n", 6, &d);
	ent_insert(m, m->n, &en);
}

static void dup_layer(struct model *m)
{
	struct ent en = m->e[E_LAYER];

	set_ent(&en, m->e[E_LAYER].name, '0', m->e[E_LAYER].data,
		m->e[E_LAYER].len);
	ent_insert(m, m->n, &en);
}

static void dup_layout(struct model *m)
{
	struct ent en;

	set_ent(&en, BUNDLE_OCI_LAYOUT, '0', m->e[E_LAYOUT].data,
		m->e[E_LAYOUT].len);
	ent_insert(m, E_LAYOUT + 1, &en);
}

static void layer_as(struct model *m, char type, const char *link)
{
	struct ent *en = &m->e[E_LAYER];

	free(en->data);
	en->data = NULL;
	en->len = 0;
	en->type = type;
	snprintf(en->link, sizeof(en->link), "%s", link);
}

static void layer_symlink(struct model *m)
{
	layer_as(m, '2', BUNDLE_OCI_LAYOUT);
}

static void layer_hardlink(struct model *m)
{
	layer_as(m, '1', BUNDLE_OCI_LAYOUT);
}

static void layer_chardev(struct model *m)
{
	layer_as(m, '3', "");
}

static void layer_fifo(struct model *m)
{
	layer_as(m, '6', "");
}

static void add_directory(struct model *m)
{
	struct ent en;

	set_ent(&en, "blobs/", '5', "", 0);
	ent_insert(m, E_INDEX, &en);
}

static void rename_layout(struct model *m, const char *name)
{
	snprintf(m->e[E_LAYOUT].name, sizeof(m->e[E_LAYOUT].name), "%s", name);
}

static void absolute_layout(struct model *m)
{
	rename_layout(m, "/oci-layout");
}

static void dotdot_layout(struct model *m)
{
	rename_layout(m, "blobs/../oci-layout");
}

static void dotslash_layout(struct model *m)
{
	rename_layout(m, "./oci-layout");
}

static void insert_global(struct model *m, size_t at)
{
	struct ent g;

	set_ent(&g, "pax_global_header", 'g', "17 comment=hello\n", 17);
	ent_insert(m, at, &g);
}

static void global_first(struct model *m)
{
	insert_global(m, 0);
}

static void global_before_layer(struct model *m)
{
	insert_global(m, E_LAYER);
}

static void global_last(struct model *m)
{
	insert_global(m, m->n);
}

static void swap(struct model *m, size_t a, size_t b)
{
	struct ent t = m->e[a];

	m->e[a] = m->e[b];
	m->e[b] = t;
}

static void layer_before_config(struct model *m)
{
	swap(m, E_CONFIG, E_LAYER);
}

static void ferry_before_layout(struct model *m)
{
	swap(m, E_LAYOUT, E_FERRY);
}

static void trailing_data(struct bytes *t)
{
	unsigned char junk[512];

	memset(junk, 'x', sizeof(junk));
	put(t, junk, sizeof(junk));
}

static void cut_end_marker(struct bytes *t)
{
	t->n -= 1024;
}

static void cut_in_layer(struct bytes *t)
{
	/* the layer is last: 3000 bytes, padded to 3072, then the marker */
	t->n -= 1024 + 3072 - 1000;
}

/* ---- rows ---- */

enum comp { NONE, GZIP, ZSTD };

struct row {
	const char *name;
	enum comp comp;
	struct knobs k;
	void (*mutate)(struct model *m);
	void (*mutate_tar)(struct bytes *t);
	bool wrong_key;
	enum ferr_cat want;
	const char *msg; /* in the error message */
};

static const struct row rows[] = {
    {"valid tar", NONE, {0}, NULL, NULL, false, FERR_OK, NULL},
    {"valid: an attached signature and its tag",
     NONE,
     {.attach = 1},
     NULL,
     NULL,
     false,
     FERR_OK,
     NULL},
    {"attachment tag its subject does not give",
     NONE,
     {.attach = 2},
     NULL,
     NULL,
     false,
     FERR_BUNDLE,
     "with the tag 'latest'"},
    {"attachment not in the bundle",
     NONE,
     {.attach = 3},
     NULL,
     NULL,
     false,
     FERR_BUNDLE,
     "which is not in the bundle"},
    {"attachment tag missing from index.json",
     NONE,
     {.attach = 4},
     NULL,
     NULL,
     false,
     FERR_BUNDLE,
     "has 0 attachment tags, 'ferry.json' lists 1"},
    {"index.json tag ferry.json does not list",
     NONE,
     {.attach = 5},
     NULL,
     NULL,
     false,
     FERR_BUNDLE,
     "has 1 attachment tags, 'ferry.json' lists 0"},
    {"untagged referrer given a tag",
     NONE,
     {.attach = 6},
     NULL,
     NULL,
     false,
     FERR_BUNDLE,
     "attached referrer with the tag"},
    {"attachment whose subject is neither the image nor in the bundle",
     NONE,
     {.attach = 7},
     NULL,
     NULL,
     false,
     FERR_BUNDLE,
     "neither the image nor in the bundle"},
    {"valid tar.gz", GZIP, {0}, NULL, NULL, false, FERR_OK, NULL},
    {"valid tar.zst", ZSTD, {0}, NULL, NULL, false, FERR_OK, NULL},
    {"valid: a layer that is a tar with a pax global header",
     ZSTD,
     {.tar_in_layer = true},
     NULL,
     NULL,
     false,
     FERR_OK,
     NULL},
    {"bad signature",
     NONE,
     {0},
     resign_other_text,
     NULL,
     false,
     FERR_VERIFY,
     "does not verify"},
    {"wrong key", NONE, {0}, NULL, NULL, true, FERR_VERIFY, "does not verify"},
    {"SHA256SUMS mismatch",
     NONE,
     {0},
     edit_manifest_json,
     NULL,
     false,
     FERR_VERIFY,
     "'manifest.json' does not match its checksum"},
    {"blob content not matching its name",
     NONE,
     {0},
     flip_layer_byte,
     NULL,
     false,
     FERR_VERIFY,
     "does not match its digest"},
    {"size mismatch with descriptor",
     NONE,
     {.layer_size_delta = 1},
     NULL,
     NULL,
     false,
     FERR_VERIFY,
     "size mismatch"},
    {"missing blob",
     NONE,
     {0},
     drop_layer,
     NULL,
     false,
     FERR_BUNDLE,
     "missing from the bundle"},
    {"missing fixed entry",
     NONE,
     {0},
     drop_manifest_json,
     NULL,
     false,
     FERR_BUNDLE,
     "'manifest.json' is missing"},
    {"unlisted entry",
     NONE,
     {0},
     add_unlisted,
     NULL,
     false,
     FERR_BUNDLE,
     "not listed in 'SHA256SUMS'"},
    {"duplicated blob",
     NONE,
     {0},
     dup_layer,
     NULL,
     false,
     FERR_BUNDLE,
     "duplicate entry"},
    {"duplicated fixed entry",
     NONE,
     {0},
     dup_layout,
     NULL,
     false,
     FERR_BUNDLE,
     "duplicate entry 'oci-layout'"},
    {"symbolic link",
     NONE,
     {0},
     layer_symlink,
     NULL,
     false,
     FERR_BUNDLE,
     "symbolic link"},
    {"hard link",
     NONE,
     {0},
     layer_hardlink,
     NULL,
     false,
     FERR_BUNDLE,
     "hard link"},
    {"character device",
     NONE,
     {0},
     layer_chardev,
     NULL,
     false,
     FERR_BUNDLE,
     "device"},
    {"fifo", NONE, {0}, layer_fifo, NULL, false, FERR_BUNDLE, "fifo"},
    {"absolute path",
     NONE,
     {0},
     absolute_layout,
     NULL,
     false,
     FERR_BUNDLE,
     "absolute path"},
    {"'..' in a name",
     NONE,
     {0},
     dotdot_layout,
     NULL,
     false,
     FERR_BUNDLE,
     "contains '..'"},
    {"'./' prefix",
     NONE,
     {0},
     dotslash_layout,
     NULL,
     false,
     FERR_BUNDLE,
     "starts with './'"},
    {"directory entry",
     NONE,
     {0},
     add_directory,
     NULL,
     false,
     FERR_BUNDLE,
     "is a directory"},
    {"JSON document over 4 MiB",
     NONE,
     {.big_config = true},
     NULL,
     NULL,
     false,
     FERR_BUNDLE,
     "limit for JSON documents"},
    {"manifest that parses as two types",
     NONE,
     {.two_types = true},
     NULL,
     NULL,
     false,
     FERR_BUNDLE,
     "ambiguous"},
    {"media type disagreeing with its descriptor",
     NONE,
     {.index_type = MT_DOCKER_LIST},
     NULL,
     NULL,
     false,
     FERR_BUNDLE,
     "declares"},
    {"two descriptors of one manifest with different media types",
     NONE,
     {.manifest_type = MT_DOCKER_MANIFEST},
     NULL,
     NULL,
     false,
     FERR_VERIFY,
     "another descriptor"},
    {"pax global header first",
     NONE,
     {0},
     global_first,
     NULL,
     false,
     FERR_BUNDLE,
     "pax global header"},
    {"pax global header before a blob",
     NONE,
     {0},
     global_before_layer,
     NULL,
     false,
     FERR_BUNDLE,
     "pax global header"},
    {"pax global header before a blob, tar.zst",
     ZSTD,
     {0},
     global_before_layer,
     NULL,
     false,
     FERR_BUNDLE,
     "pax global header"},
    {"pax global header after the last entry",
     GZIP,
     {0},
     global_last,
     NULL,
     false,
     FERR_BUNDLE,
     "pax global header"},
    {"blobs out of order",
     NONE,
     {0},
     layer_before_config,
     NULL,
     false,
     FERR_BUNDLE,
     "out of order"},
    {"fixed entries out of order",
     NONE,
     {0},
     ferry_before_layout,
     NULL,
     false,
     FERR_BUNDLE,
     "out of order"},
    {"trailing data",
     NONE,
     {0},
     NULL,
     trailing_data,
     false,
     FERR_BUNDLE,
     "trailing data"},
    {"trailing data, tar.zst",
     ZSTD,
     {0},
     NULL,
     trailing_data,
     false,
     FERR_BUNDLE,
     "trailing data"},
    {"end-of-archive marker missing",
     NONE,
     {0},
     NULL,
     cut_end_marker,
     false,
     FERR_BUNDLE,
     "end-of-archive marker"},
    {"truncated in a blob, tar.gz",
     GZIP,
     {0},
     NULL,
     cut_in_layer,
     false,
     FERR_BUNDLE,
     "truncated"},
};

/* ---- compression and the run ---- */

static void gzip_bytes(const struct bytes *in, struct bytes *out)
{
	z_stream z;
	unsigned char buf[65536];
	int zr;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	z.next_in = in->p;
	z.avail_in = (uInt)in->n;
	do {
		z.next_out = buf;
		z.avail_out = sizeof(buf);
		zr = deflate(&z, Z_FINISH);
		put(out, buf, sizeof(buf) - z.avail_out);
	} while (zr == Z_OK);
	if (zr != Z_STREAM_END)
		abort();
	deflateEnd(&z);
}

static void zstd_bytes(const struct bytes *in, struct bytes *out)
{
	size_t cap = ZSTD_compressBound(in->n), n;

	out->p = malloc(cap);
	if (!out->p)
		abort();
	n = ZSTD_compress(out->p, cap, in->p, in->n, 3);
	if (ZSTD_isError(n))
		abort();
	out->n = out->cap = n;
}

struct counts {
	int begun, ended, aborted, headers;
};

static int on_header(void *ctx, const struct bundle_header *h, struct ferr *e)
{
	(void)h;
	(void)e;
	((struct counts *)ctx)->headers++;
	return 0;
}

static int on_begin(void *ctx, const struct bundle_blob *b, struct ferr *e)
{
	(void)b;
	(void)e;
	((struct counts *)ctx)->begun++;
	return 0;
}

static int on_end(void *ctx, const struct bundle_blob *b, struct ferr *e)
{
	(void)b;
	(void)e;
	((struct counts *)ctx)->ended++;
	return 0;
}

static void on_abort(void *ctx)
{
	((struct counts *)ctx)->aborted++;
}

static const struct bundle_ops ops = {on_header, on_begin, NULL,
				      on_end,	 on_abort, NULL};

static void run_row(const struct row *rw, const char *dir)
{
	static const char *const comp_names[] = {"none", "gzip", "zstd"};
	struct model m;
	struct bytes tar = {0}, out = {0};
	struct bundle_header h;
	struct bundle_stats st;
	struct counts c = {0};
	struct ferr e;
	char path[600];
	FILE *f;
	int rc;

	make_bundle(&rw->k, &m);
	if (rw->mutate)
		rw->mutate(&m);
	tar_write(&m, &tar);
	model_release(&m);
	if (rw->mutate_tar)
		rw->mutate_tar(&tar);
	if (rw->comp == GZIP)
		gzip_bytes(&tar, &out);
	else if (rw->comp == ZSTD)
		zstd_bytes(&tar, &out);
	else
		out = tar, tar = (struct bytes){0};
	snprintf(path, sizeof(path), "%s/bundle", dir);
	f = fopen(path, "wb");
	if (!f || fwrite(out.p, 1, out.n, f) != out.n || fclose(f))
		abort();
	free(tar.p);
	free(out.p);

	ferr_clear(&e);
	rc = bundle_read(path, rw->wrong_key ? &other_key : &key, &ops, &c, &h,
			 &st, &e);
	unlink(path);
	CHECK(e.cat == rw->want, "%s: category %s, want %s (rc %d: %s)",
	      rw->name, ferr_cat_name(e.cat), ferr_cat_name(rw->want), rc,
	      e.msg);
	CHECK((rc == 0) == (rw->want == FERR_OK), "%s: rc %d", rw->name, rc);
	if (rw->msg)
		CHECK(strstr(e.msg, rw->msg) != NULL,
		      "%s: message '%s' lacks '%s'", rw->name, e.msg, rw->msg);
	/* every blob handed out ends or is aborted */
	CHECK(c.begun == c.ended + c.aborted && c.aborted <= 1,
	      "%s: %d begun, %d ended, %d aborted", rw->name, c.begun, c.ended,
	      c.aborted);
	if (rw->want == FERR_OK) {
		CHECK(c.headers == 1 && c.ended == 4 && st.blobs == 4,
		      "%s: %d headers, %d blobs ended, %llu counted", rw->name,
		      c.headers, c.ended, (unsigned long long)st.blobs);
		CHECK(h.nimages == 2 && h.verified && h.nblobs == 4 &&
			  h.sequence == 7,
		      "%s: header: %zu images, %zu blobs", rw->name, h.nimages,
		      h.nblobs);
		CHECK_STR(h.compression, comp_names[rw->comp], rw->name);
	}
	bundle_header_release(&h);
}

/* Inspect mode (no key): the header is read, nothing verified. */
static void inspect_reads_header(const char *dir)
{
	struct model m;
	struct bytes tar = {0};
	struct bundle_header h;
	struct ferr e;
	char path[600];
	FILE *f;
	int rc;

	make_bundle(&(struct knobs){0}, &m);
	resign_other_text(&m); /* a bad signature does not matter here */
	tar_write(&m, &tar);
	model_release(&m);
	snprintf(path, sizeof(path), "%s/bundle", dir);
	f = fopen(path, "wb");
	if (!f || fwrite(tar.p, 1, tar.n, f) != tar.n || fclose(f))
		abort();
	free(tar.p);
	ferr_clear(&e);
	rc = bundle_read(path, NULL, NULL, NULL, &h, NULL, &e);
	unlink(path);
	CHECK(rc == 0 && !h.verified && h.nimages == 2,
	      "inspect: rc %d (%s), %zu images", rc, e.msg, h.nimages);
	if (h.nimages == 2)
		CHECK_STR(h.images[0].media_type, MT_OCI_INDEX, "inspect");
	bundle_header_release(&h);
}

int main(void)
{
	char dir[] = "/tmp/test_breader.XXXXXX";
	const char *tmp = getenv("TMPDIR");
	char tdir[512];
	struct ferr e;

	if (tmp && *tmp && strlen(tmp) < 400) {
		snprintf(tdir, sizeof(tdir), "%s/test_breader.XXXXXX", tmp);
		if (!mkdtemp(tdir))
			return 1;
	} else {
		if (!mkdtemp(dir))
			return 1;
		snprintf(tdir, sizeof(tdir), "%s", dir);
	}
	if (sig_keygen(&key, SIG_ECDSA_P256, &e) < 0 ||
	    sig_keygen(&other_key, SIG_ECDSA_P256, &e) < 0) {
		fprintf(stderr, "keygen: %s\n", e.msg);
		return 1;
	}
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		run_row(&rows[i], tdir);
	inspect_reads_header(tdir);
	rmdir(tdir);
	sig_key_release(&key);
	sig_key_release(&other_key);
	return check_done();
}
