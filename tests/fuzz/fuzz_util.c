#define _GNU_SOURCE /* memfd_create */
#include "fuzz_util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "bundle.h"
#include "digest.h"
#include "reg.h"

static const char test_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgcVHIFnkvVM0YdS08\n"
    "i4TZY5p7+yrUfzGUTqOEpANsn26hRANCAAT/ngazt652z0+jLBQyWwThymcYISSr\n"
    "etFCc3UBrlBbghKuy+zNDwerLVv95JwaOqCrohm21P5/jDj0cxDu6Y2E\n"
    "-----END PRIVATE KEY-----\n";

const char fuzz_test_pub_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE/54Gs7euds9PoywUMlsE4cpnGCEk\n"
    "q3rRQnN1Aa5QW4ISrsvszQ8Hqy1b/eScGjqgq6IZttT+f4w49HMQ7umNhA==\n"
    "-----END PUBLIC KEY-----\n";

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		abort();
	return p;
}

size_t fuzz_split(const unsigned char *p, size_t n, struct fuzz_field *f)
{
	const size_t sl = strlen(FUZZ_SEP);
	size_t k = 0, start = 0;

	for (size_t i = 0; i + sl <= n && k + 1 < FUZZ_MAX_FIELDS; i++) {
		if (memcmp(p + i, FUZZ_SEP, sl) != 0)
			continue;
		f[k].p = p + start;
		f[k].n = i - start;
		k++;
		start = i + sl;
		i = start - 1;
	}
	f[k].p = p + start;
	f[k].n = n - start;
	return k + 1;
}

char *fuzz_strdup(const struct fuzz_field *f)
{
	char *s = xmalloc(f->n + 1);

	if (f->n)
		memcpy(s, f->p, f->n);
	s[f->n] = '\0';
	return s;
}

/* One memfd per process, rewritten for every input: the readers open the
 * /proc path afresh, so each gets its own offset. */
const char *fuzz_memfile(const void *p, size_t n)
{
	static int fd = -1;
	static char path[32];
	size_t off = 0;

	if (fd < 0) {
		fd = memfd_create("fuzz-input", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0)
		abort();
	while (off < n) {
		ssize_t w = pwrite(fd, (const char *)p + off, n - off,
				   (off_t)off);
		if (w <= 0)
			abort();
		off += (size_t)w;
	}
	return path;
}

static struct sig_key priv_key, pub_key;

static void load_keys(void)
{
	static int loaded;
	struct ferr e = {0};
	char path[32];
	int fd;

	if (loaded)
		return;
	fd = memfd_create("fuzz-key", MFD_CLOEXEC);
	if (fd < 0 || write(fd, test_key_pem, strlen(test_key_pem)) < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (sig_load_private(&priv_key, path, NULL, 0, &e) < 0 ||
	    sig_load_public_mem(&pub_key, fuzz_test_pub_pem,
				strlen(fuzz_test_pub_pem), "test key",
				&e) < 0) {
		fprintf(stderr, "fuzz: test key: %s\n", e.msg);
		abort();
	}
	close(fd);
	loaded = 1;
}

const struct sig_key *fuzz_test_private(void)
{
	load_keys();
	return &priv_key;
}

const struct sig_key *fuzz_test_public(void)
{
	load_keys();
	return &pub_key;
}

static void tar_put(struct fuzz_tar *t, const void *p, size_t n)
{
	if (t->n + n > t->cap) {
		size_t nc = t->cap ? t->cap : 4096;
		while (nc < t->n + n)
			nc *= 2;
		t->p = realloc(t->p, nc);
		if (!t->p)
			abort();
		t->cap = nc;
	}
	if (n)
		memcpy(t->p + t->n, p, n);
	t->n += n;
}

static void tar_pad(struct fuzz_tar *t)
{
	static const unsigned char zero[512];

	if (t->n % 512)
		tar_put(t, zero, 512 - t->n % 512);
}

void fuzz_tar_add(struct fuzz_tar *t, const char *name, const void *data,
		  size_t n)
{
	unsigned char h[512] = {0};
	unsigned sum = 0;

	snprintf((char *)h, 100, "%s", name);
	memcpy(h + 100, "0000644", 8);
	memcpy(h + 108, "0000000", 8);
	memcpy(h + 116, "0000000", 8);
	snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)n);
	memcpy(h + 136, "14712345670", 12);
	memset(h + 148, ' ', 8);
	h[156] = '0';
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	for (size_t i = 0; i < sizeof(h); i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	tar_put(t, h, sizeof(h));
	tar_put(t, data, n);
	tar_pad(t);
}

void fuzz_tar_end(struct fuzz_tar *t)
{
	static const unsigned char zero[1024];

	tar_put(t, zero, sizeof(zero));
}

void fuzz_tar_release(struct fuzz_tar *t)
{
	free(t->p);
	memset(t, 0, sizeof(*t));
}

void fuzz_tar_compress(struct fuzz_tar *t, int how)
{
	unsigned char *out;
	size_t outn;

	if (how == 1) {
		z_stream z;

		memset(&z, 0, sizeof(z));
		if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8,
				 Z_DEFAULT_STRATEGY) != Z_OK)
			abort();
		outn = deflateBound(&z, (uLong)t->n);
		out = xmalloc(outn);
		z.next_in = t->p;
		z.avail_in = (uInt)t->n;
		z.next_out = out;
		z.avail_out = (uInt)outn;
		if (deflate(&z, Z_FINISH) != Z_STREAM_END)
			abort();
		outn = z.total_out;
		deflateEnd(&z);
	} else if (how == 2) {
		outn = ZSTD_compressBound(t->n);
		out = xmalloc(outn);
		outn = ZSTD_compress(out, outn, t->p, t->n, 3);
		if (ZSTD_isError(outn))
			abort();
	} else {
		return;
	}
	free(t->p);
	t->p = out;
	t->n = t->cap = outn;
}

/* The manifest template with its tokens replaced. */
static char *expand(const char *tpl, const struct digest *cd, size_t cn,
		    const struct digest *ld, const size_t *ln, size_t nl)
{
	size_t cap = strlen(tpl) * 40 + 1, o = 0;
	char *s = xmalloc(cap);

	for (const char *p = tpl; *p; p++) {
		int k = p[1] >= '0' && p[1] <= '7' ? p[1] - '0' : -1;

		if (p[0] == '@' && p[1] == 'C') {
			o += (size_t)snprintf(s + o, cap - o, "%s", cd->str);
			p++;
		} else if (p[0] == '@' && p[1] == 'S') {
			o += (size_t)snprintf(s + o, cap - o, "%zu", cn);
			p++;
		} else if (p[0] == '@' && k >= 0 && (size_t)k < nl) {
			o += (size_t)snprintf(s + o, cap - o, "%s", ld[k].str);
			p++;
		} else if (p[0] == '#' && k >= 0 && (size_t)k < nl) {
			o += (size_t)snprintf(s + o, cap - o, "%zu", ln[k]);
			p++;
		} else {
			s[o++] = *p;
		}
	}
	s[o] = '\0';
	return s;
}

static char *default_manifest(const struct digest *cd, size_t cn,
			      const struct digest *ld, const size_t *ln,
			      size_t nl)
{
	json_t *layers = json_array();
	json_t *root;
	char *s;

	for (size_t i = 0; i < nl; i++)
		json_array_append_new(
		    layers,
		    json_pack("{s:s, s:s, s:I}", "mediaType",
			      "application/vnd.oci.image.layer.v1.tar",
			      "digest", ld[i].str, "size", (json_int_t)ln[i]));
	root = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:o}", "schemaVersion",
			 2, "mediaType", MT_OCI_MANIFEST, "config", "mediaType",
			 "application/vnd.oci.image.config.v1+json", "digest",
			 cd->str, "size", (json_int_t)cn, "layers", layers);
	s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!s)
		abort();
	return s;
}

struct blob {
	struct digest d;
	const void *p;
	size_t n;
};

/* Add a blob unless one with that content is there already. */
static void add_blob(struct blob *v, size_t *nv, const void *p, size_t n)
{
	struct digest d;

	if (digest_of(p, n, &d, NULL) < 0)
		abort();
	for (size_t i = 0; i < *nv; i++)
		if (digest_equal(&v[i].d, &d))
			return;
	v[*nv].d = d;
	v[*nv].p = p;
	v[*nv].n = n;
	(*nv)++;
}

/* SHA256SUMS over the fixed documents and the blobs, and its signature
 * (base64, one line). */
static void sums_and_sig(const void *const doc[4], const size_t docn[4],
			 const struct digest *bd, size_t nb, char **sums,
			 char **sig)
{
	static const char *const names[4] = {BUNDLE_OCI_LAYOUT,
					     BUNDLE_FERRY_JSON,
					     BUNDLE_INDEX_JSON,
					     BUNDLE_MANIFEST_JSON};
	struct bundle_sum s[4 + FUZZ_MAX_FIELDS];
	char paths[FUZZ_MAX_FIELDS][96];
	unsigned char *raw = NULL;
	size_t rawn = 0;
	char *b64;

	for (size_t i = 0; i < 4; i++) {
		s[i].path = names[i];
		digest_of(doc[i], docn[i], &s[i].digest, NULL);
	}
	for (size_t i = 0; i < nb; i++) {
		snprintf(paths[i], sizeof(paths[i]), BUNDLE_BLOB_PREFIX "%s",
			 digest_hex(&bd[i]));
		s[4 + i].path = paths[i];
		s[4 + i].digest = bd[i];
	}
	*sums = bundle_sums_text(s, 4 + nb);
	if (!*sums || sig_sign(fuzz_test_private(), *sums, strlen(*sums), &raw,
			       &rawn, NULL) < 0)
		abort();
	b64 = sig_base64_encode(raw, rawn);
	free(raw);
	if (!b64)
		abort();
	*sig = xmalloc(strlen(b64) + 2);
	snprintf(*sig, strlen(b64) + 2, "%s\n", b64);
	free(b64);
}

void fuzz_docs_bundle(struct fuzz_tar *t, const void *const doc[4],
		      const size_t docn[4], const void *const *blob,
		      const size_t *blobn, size_t nblobs)
{
	static const char *const names[4] = {BUNDLE_OCI_LAYOUT,
					     BUNDLE_FERRY_JSON,
					     BUNDLE_INDEX_JSON,
					     BUNDLE_MANIFEST_JSON};
	struct digest d[FUZZ_MAX_FIELDS];
	char *sums, *sig;

	if (nblobs > FUZZ_MAX_FIELDS)
		abort();
	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < nblobs; i++)
		digest_of(blob[i], blobn[i], &d[i], NULL);
	sums_and_sig(doc, docn, d, nblobs, &sums, &sig);
	for (int i = 0; i < 4; i++)
		fuzz_tar_add(t, names[i], doc[i], docn[i]);
	fuzz_tar_add(t, BUNDLE_SUMS, sums, strlen(sums));
	fuzz_tar_add(t, BUNDLE_SUMS_SIG, sig, strlen(sig));
	for (size_t i = 0; i < nblobs; i++) {
		char path[96];

		snprintf(path, sizeof(path), BUNDLE_BLOB_PREFIX "%s",
			 digest_hex(&d[i]));
		fuzz_tar_add(t, path, blob[i], blobn[i]);
	}
	fuzz_tar_end(t);
	free(sums);
	free(sig);
}

int fuzz_bundle_build(struct fuzz_tar *t, const struct fuzz_image *im,
		      time_t created, const char *channel, uint64_t sequence)
{
	struct digest cd, ld[8];
	size_t ln[8], nl = im->nlayers < 8 ? im->nlayers : 8, nb = 0;
	struct blob b[10];
	struct bundle_image bi;
	struct bundle_meta m;
	char *man, *doc[4] = {NULL, NULL, NULL, NULL};
	char *platform = "linux/amd64";
	struct digest all[10];
	int rc = -1;

	memset(t, 0, sizeof(*t));
	digest_of(im->config.p, im->config.n, &cd, NULL);
	for (size_t i = 0; i < nl; i++) {
		digest_of(im->layers[i].p, im->layers[i].n, &ld[i], NULL);
		ln[i] = im->layers[i].n;
	}
	man = im->manifest ? expand(im->manifest, &cd, im->config.n, ld, ln, nl)
			   : default_manifest(&cd, im->config.n, ld, ln, nl);
	add_blob(b, &nb, man, strlen(man));
	add_blob(b, &nb, im->config.p, im->config.n);
	for (size_t i = 0; i < nl; i++)
		add_blob(b, &nb, im->layers[i].p, im->layers[i].n);

	memset(&bi, 0, sizeof(bi));
	bi.ref = (char *)im->ref;
	bi.digest = b[0].d;
	bi.media_type = im->manifest_type ? im->manifest_type : MT_OCI_MANIFEST;
	bi.doc_size = b[0].n;
	bi.platforms = &platform;
	bi.nplatforms = 1;
	for (size_t i = 0; i < nb; i++) {
		bi.total_size += b[i].n;
		all[i] = b[i].d;
	}
	bi.has_docker = true;
	bi.docker_config = cd;
	bi.docker_layers = ld;
	bi.ndocker_layers = nl;

	memset(&m, 0, sizeof(m));
	m.created = created;
	m.channel = channel;
	m.sequence = sequence;
	m.key_id = fuzz_test_private()->key_id;
	doc[0] = strdup(BUNDLE_OCI_LAYOUT_CONTENT);
	doc[2] = bundle_index_json(&bi, 1);
	doc[3] = bundle_manifest_json(&bi, 1);
	if (!doc[0] || !doc[2] || !doc[3] ||
	    bundle_compute_id(&m, doc[2], strlen(doc[2]), all, nb, NULL) < 0)
		goto out;
	doc[1] = bundle_ferry_json(&m, &bi, 1);
	if (!doc[1])
		goto out;
	{
		const void *dp[4] = {doc[0], doc[1], doc[2], doc[3]};
		size_t dn[4] = {strlen(doc[0]), strlen(doc[1]), strlen(doc[2]),
				strlen(doc[3])};
		const void *bp[10];
		size_t bn[10];

		for (size_t i = 0; i < nb; i++) {
			bp[i] = b[i].p;
			bn[i] = b[i].n;
		}
		fuzz_docs_bundle(t, dp, dn, bp, bn, nb);
	}
	rc = 0;
out:
	for (int i = 0; i < 4; i++)
		free(doc[i]);
	free(man);
	return rc;
}

const char *const fuzz_fixed_docs[4] = {
    BUNDLE_OCI_LAYOUT_CONTENT, "{\"formatVersion\":1}",
    "{\"schemaVersion\":2,\"manifests\":[]}", "[]"};

char *fuzz_sums_expand(const struct fuzz_field *f, size_t *outn)
{
	char *s = malloc(f->n * 32 + 1);
	size_t o = 0;

	if (!s)
		abort();
	for (size_t i = 0; i < f->n; i++) {
		int k = -1;

		if (f->p[i] == '@' && i + 1 < f->n)
			for (int j = 0; j < 4; j++)
				if (f->p[i + 1] == "OFIM"[j])
					k = j;
		if (k < 0) {
			s[o++] = (char)f->p[i];
			continue;
		}
		{
			struct digest d;
			digest_of(fuzz_fixed_docs[k],
				  strlen(fuzz_fixed_docs[k]), &d, NULL);
			memcpy(s + o, digest_hex(&d), DIGEST_HEX_LEN);
			o += DIGEST_HEX_LEN;
			i++;
		}
	}
	s[o] = '\0';
	*outn = o;
	return s;
}
