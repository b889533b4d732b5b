/* Writes the seed corpora of the fuzz targets: fuzz_seedgen DIR writes
 * DIR/<target>/<name> for every target.  Bundles are signed with the test
 * key (fuzz_util.c) so that the reader verifies them; the two written with
 * the real archive writer (common/arc.c) are what ferry export produces.
 * The keys made for the sums seeds are new on every run. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arc.h"
#include "bundle.h"
#include "fuzz_util.h"
#include "reg.h"

static const char *root;

static void put(const char *target, const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, target);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		goto fail;
	snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0)
		goto fail;
	return;
fail:
	perror(path);
	exit(1);
}

/* a literal that may hold NUL bytes */
#define PUTL(t, n, lit) put((t), (n), (lit), sizeof(lit) - 1)

static void puts_(const char *target, const char *name, const char *s)
{
	put(target, name, s, strlen(s));
}

/* A mode byte (and for mode 2/3 a compression byte) then the rest. */
static void put_mode(const char *target, const char *name, const char *mode,
		     size_t modelen, const void *p, size_t n)
{
	unsigned char *b = malloc(modelen + n);

	memcpy(b, mode, modelen);
	memcpy(b + modelen, p, n);
	put(target, name, b, modelen + n);
	free(b);
}

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void ref_seeds(void)
{
	static const char *const s[][2] = {
	    {"short", "nginx"},
	    {"port_tag", "localhost:5000/a/b:t"},
	    {"tag_digest", "host.example/repo:v1.2@sha256:" HEX64},
	    {"digest_only", "repo@sha256:" HEX64},
	    {"ipv6", "[::1]:5000/x/y__z:latest"},
	    {"legacy_hub", "index.docker.io/library/busybox"},
	    {"underscore_domain", "a_b.com/x"},
	    {"upper_domain", "Foo/bar"},
	    {"empty_tag", "x:"},
	    {"image_id", HEX64},
	    {"other_algo", "x@sha512:" HEX64 HEX64},
	    {"separators", "a.b_c__d---e/f:T_a.g-"},
	};
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		puts_("fuzz_ref", s[i][0], s[i][1]);
}

#define OCI_MAN                                                                \
	"{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST                \
	"\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+"  \
	"json\",\"digest\":\"sha256:" HEX64 "\",\"size\":2},\"layers\":[{"     \
	"\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","       \
	"\"digest\":\"sha256:" HEX64 "\",\"size\":10}]}"

static void manifest_seeds(void)
{
	puts_("fuzz_manifest", "oci_manifest", "\n" OCI_MAN);
	puts_("fuzz_manifest", "docker_manifest",
	      MT_DOCKER_MANIFEST "\n{\"schemaVersion\":2,\"config\":{},"
				 "\"layers\":[]}");
	puts_("fuzz_manifest", "index_charset",
	      MT_OCI_INDEX
	      "; charset=utf-8\n{\"schemaVersion\":2,\"manifests\":"
	      "[{\"mediaType\":\"" MT_OCI_MANIFEST
	      "\",\"digest\":\"sha256:" HEX64 "\",\"size\":1,"
	      "\"platform\":{\"os\":\"linux\",\"architecture\":"
	      "\"arm64\",\"variant\":\"v8\"}}]}");
	puts_("fuzz_manifest", "schema1",
	      "\n{\"schemaVersion\":1,\"fsLayers\":[]}");
	puts_("fuzz_manifest", "ambiguous",
	      "\n{\"schemaVersion\":2,\"manifests\":[],\"layers\":[]}");
	puts_("fuzz_manifest", "type_mismatch", MT_DOCKER_LIST "\n" OCI_MAN);
	puts_("fuzz_manifest", "duplicate_key",
	      "\n{\"schemaVersion\":2,\"schemaVersion\":2}");
	puts_("fuzz_manifest", "not_object", "\n[2]");
}

static void http_seeds(void)
{
	static const unsigned char range[] = {
	    1,	 100, 0,   0,	0,   0,	  0,   0,   0,	 0xe8, 3,   0,
	    0,	 0,   0,   0,	0,   'b', 'y', 't', 'e', 's',  ' ', '1',
	    '0', '0', '-', '9', '9', '9', '/', '1', '0', '0',  '0'};

	PUTL("fuzz_http", "bearer",
	     "\0Bearer realm=\"https://auth.example/token\",service=\"registry."
	     "example\",scope=\"repository:a/b:pull,push\"");
	PUTL("fuzz_http", "basic_then_bearer",
	     "\0Basic realm=\"a\\\"b\", Bearer realm=x");
	PUTL("fuzz_http", "bearer_no_realm", "\0bearer service=x,,scope=\"y");
	put("fuzz_http", "content_range", range, sizeof(range));
	puts_("fuzz_http", "authfile",
	      "\x02{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":"
	      "\"dXNlcjpwYXNz\"},\"localhost:5000\":{\"username\":\"u\","
	      "\"password\":\"p\"},\"HTTPS://Reg.Example:443/path\":{}}}");
}

static char *pub_pem(const struct sig_key *k)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p, *s;
	long n;

	if (!b || PEM_write_bio_PUBKEY(b, k->pkey) != 1)
		abort();
	n = BIO_get_mem_data(b, &p);
	s = strndup(p, (size_t)n);
	BIO_free(b);
	return s;
}

/* sums FUZZ_SEP base64(signature of the expanded sums by k) FUZZ_SEP pem */
static void sums_seed(const char *name, const char *tpl,
		      const struct sig_key *k, const char *pem)
{
	struct fuzz_field f = {(const unsigned char *)tpl, strlen(tpl)};
	size_t n, sign;
	char *sums = fuzz_sums_expand(&f, &n), *b64, *out;
	unsigned char *sig;
	size_t outn;

	if (sig_sign(k, sums, n, &sig, &sign, NULL) < 0)
		abort();
	b64 = sig_base64_encode(sig, sign);
	outn = strlen(tpl) + strlen(b64) + strlen(pem) + 16;
	out = malloc(outn);
	snprintf(out, outn, "%s" FUZZ_SEP "%s\n" FUZZ_SEP "%s", tpl, b64, pem);
	puts_("fuzz_sums", name, out);
	free(out);
	free(b64);
	free(sig);
	free(sums);
}

#define SUMS_FIXED                                                             \
	"@F  ferry.json\n@I  index.json\n@M  manifest.json\n@O  oci-layout\n"

static void sums_seeds(void)
{
	struct sig_key ed, rsa;

	sums_seed("test_key", SUMS_FIXED, fuzz_test_private(), "");
	if (sig_keygen(&ed, SIG_ED25519, NULL) < 0 ||
	    sig_keygen(&rsa, SIG_RSA3072, NULL) < 0)
		abort();
	{
		char *pem = pub_pem(&ed);
		sums_seed("ed25519_blob",
			  HEX64 "  blobs/sha256/" HEX64 "\n" SUMS_FIXED, &ed,
			  pem);
		free(pem);
		pem = pub_pem(&rsa);
		sums_seed("rsa3072", SUMS_FIXED, &rsa, pem);
		free(pem);
	}
	sig_key_release(&ed);
	sig_key_release(&rsa);
	puts_("fuzz_sums", "unsorted",
	      "@F  ferry.json\n@O  oci-layout\n" FUZZ_SEP "AAAA\n");
	puts_("fuzz_sums", "no_newline", "@O  oci-layout" FUZZ_SEP "QQ==");
	puts_("fuzz_sums", "bad_padding",
	      "@O  ./oci-layout\n" FUZZ_SEP "QQ=\r\nA=" FUZZ_SEP
	      "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
}

#define F FUZZ_SEP
#define CONFIG "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{}}"
#define DOCKER_MAN                                                             \
	"{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_MANIFEST             \
	"\",\"config\":{\"mediaType\":\"application/vnd.docker.container."     \
	"image.v1+json\",\"digest\":\"@C\",\"size\":@S},\"layers\":[{"         \
	"\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\"," \
	"\"digest\":\"@0\",\"size\":#0},{\"mediaType\":\"application/vnd."     \
	"docker.image.rootfs.diff.tar.gzip\",\"digest\":\"@1\",\"size\":#1}]}"
#define INDEX                                                                  \
	"{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX                   \
	"\",\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST                  \
	"\",\"digest\":\"@C\",\"size\":@S,\"platform\":{\"os\":\"linux\","     \
	"\"architecture\":\"amd64\"}}]}"

/* Re-write a fuzz_tar's entries with the real writer (pax, 1 MiB records,
 * zstd frames as ferry export makes them). */
static void real_writer(const struct fuzz_tar *t, enum arc_compress c,
			const char *name)
{
	struct arc_writer *w;
	struct ferr e = {0};
	FILE *f = tmpfile();
	unsigned char *out;
	long n;

	if (!f ||
	    arc_writer_open(&w, fileno(f), c, 1, 1795960800, "seed", &e) < 0)
		abort();
	for (size_t off = 0; off + 512 <= t->n && t->p[off];) {
		size_t size = strtoull((const char *)t->p + off + 124, NULL, 8);
		char path[101];

		memcpy(path, t->p + off, 100);
		path[100] = '\0';
		if (arc_entry_mem(w, path, t->p + off + 512, size, &e) < 0)
			abort();
		off += 512 + (size + 511) / 512 * 512;
	}
	if (arc_writer_finish(w, &e) < 0)
		abort();
	arc_writer_release(w);
	n = ftell(f);
	out = malloc((size_t)n);
	rewind(f);
	if (n <= 0 || fread(out, 1, (size_t)n, f) != (size_t)n)
		abort();
	fclose(f);
	put_mode("fuzz_bundle", name, "\0", 1, out, (size_t)n);
	free(out);
}

#define FERRY_JSON(mt)                                                           \
	"{\"formatVersion\":1,\"tool\":\"ferry 0.1.0\",\"bundleId\":\"@B\","     \
	"\"created\":\"2026-11-29T14:00:00Z\",\"channel\":\"default\","          \
	"\"sequence\":7,\"signingKeyId\":\"@K\",\"images\":[{\"reference\":"     \
	"\"docker.io/library/doc:latest\",\"digest\":\"@0\",\"mediaType\":\"" mt \
	"\",\"platforms\":[\"linux/amd64\"],\"size\":4096}]}"
#define INDEX_JSON(mt)                                                         \
	"{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX                   \
	"\",\"manifests\":[{\"mediaType\":\"" mt "\",\"digest\":\"@0\","       \
	"\"size\":#0,\"annotations\":{\"io.containerd.image.name\":\"docker."  \
	"io/library/doc:latest\",\"org.opencontainers.image.ref.name\":"       \
	"\"docker.io/library/doc:latest\"}}]}"
#define MANIFEST(mt, cfg, layer)                                               \
	"{\"schemaVersion\":2,\"mediaType\":\"" mt "\",\"config\":{"           \
	"\"mediaType\":\"application/vnd.oci.image.config.v1+json\","          \
	"\"digest\":\"@" cfg "\",\"size\":#" cfg "},\"layers\":[{"             \
	"\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","            \
	"\"digest\":\"@" layer "\",\"size\":#" layer "}]}"

static void documents_seeds(void)
{
	PUTL("fuzz_bundle", "documents_manifest",
	     "\4\0" FERRY_JSON(MT_OCI_MANIFEST) F INDEX_JSON(MT_OCI_MANIFEST) F
	     "[{\"Config\":\"@1\",\"RepoTags\":[\"docker."
	     "io/library/doc:latest\"],\"Layers\":[\"@2\"]}]" F F MANIFEST(
		 MT_OCI_MANIFEST, "1", "2") F CONFIG F "layer");
	PUTL("fuzz_bundle", "documents_index_zstd",
	     "\4\2" FERRY_JSON(MT_OCI_INDEX) F INDEX_JSON(MT_OCI_INDEX) F
	     "[]" F BUNDLE_OCI_LAYOUT_CONTENT F
	     "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX
	     "\",\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST
	     "\",\"digest\":\"@1\",\"size\":#1,\"platform\":{\"os\":\"linux\","
	     "\"architecture\":\"arm64\"}}]}" F MANIFEST(MT_OCI_MANIFEST, "2",
							 "3") F CONFIG F
	     "layer");
}

static void bundle_seeds(void)
{
	static const char *const comp[3] = {"tar", "gzip", "zstd"};
	struct fuzz_image im;
	struct fuzz_tar t;
	char name[64];

	PUTL("fuzz_bundle", "structured_oci",
	     "\2\0docker.io/library/fuzz:latest" F F F CONFIG F "layer one" F
	     "layer two");
	PUTL("fuzz_bundle", "structured_docker_zstd",
	     "\2\2localhost:5000/a/b:t" F MT_DOCKER_MANIFEST F DOCKER_MAN F
	     "{}" F "first layer" F "second layer");
	PUTL("fuzz_bundle", "structured_index_gzip_inspect",
	     "\3\1host.example/x@sha256:" HEX64 F MT_OCI_INDEX F INDEX F
		 OCI_MAN);
	PUTL("fuzz_bundle", "structured_shared_layer",
	     "\2\0registry.example:5000/team/app:v1" F F F CONFIG F "same" F
	     "same");
	for (int c = 0; c < 3; c++) {
		memset(&im, 0, sizeof(im));
		im.ref = "docker.io/library/seed:latest";
		im.config.p = (const unsigned char *)CONFIG;
		im.config.n = strlen(CONFIG);
		im.layers[0].p = (const unsigned char *)"raw layer";
		im.layers[0].n = 9;
		im.nlayers = 1;
		if (fuzz_bundle_build(&t, &im, 1795960800, "default", 7) < 0)
			abort();
		if (c == 0)
			put_mode("fuzz_bundle", "raw_tar_inspect", "\1", 1, t.p,
				 t.n);
		if (c == 2) {
			real_writer(&t, ARC_ZSTD, "export_zstd");
			real_writer(&t, ARC_GZIP, "export_gzip");
		}
		fuzz_tar_compress(&t, c);
		snprintf(name, sizeof(name), "raw_%s", comp[c]);
		put_mode("fuzz_bundle", name, "\0", 1, t.p, t.n);
		fuzz_tar_release(&t);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: fuzz_seedgen DIR\n");
		return 2;
	}
	root = argv[1];
	if (mkdir(root, 0755) < 0 && errno != EEXIST) {
		perror(root);
		return 1;
	}
	ref_seeds();
	manifest_seeds();
	http_seeds();
	sums_seeds();
	bundle_seeds();
	documents_seeds();
	return 0;
}
