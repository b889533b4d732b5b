/* Unit tests: key generation, key files, signatures and base64 for each key
 * type, and agreement with the openssl command (run from a temporary
 * directory) on key ids, signatures and the encrypted key format. */
#include <dirent.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "check.h"
#include "cosign.h"
#include "digest.h"
#include "err.h"
#include "sig.h"
#include "bounds.h"

static const enum sig_type types[] = {SIG_ECDSA_P256, SIG_ED25519, SIG_RSA3072};
#define NTYPES (sizeof(types) / sizeof(types[0]))

static char dir[64];

/* "<dir>/<name>" into buf */
static const char *tpath(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", dir, name);
	return buf;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	int rc = 0;

	if (!f)
		return -1;
	if (n && fwrite(p, 1, n, f) != n)
		rc = -1;
	if (fclose(f))
		rc = -1;
	return rc;
}

/* Whole file into a malloc'd, NUL-terminated buffer (tests only). */
static char *read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	size_t cap = 0, len = 0;

	*n = 0;
	if (!f)
		return NULL;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			char *nb = realloc(b, cap = len + 65536);
			if (!nb) {
				free(b);
				fclose(f);
				return NULL;
			}
			b = nb;
		}
		size_t r = fread(b + len, 1, 4096, f);
		len += r;
		if (r == 0)
			break;
	}
	fclose(f);
	b[len] = '\0';
	*n = len;
	return b;
}

/* sha256 of `openssl pkey -pubin -outform DER`, as "sha256:<hex>" */
static void openssl_key_id(const char *pub, char *out, size_t outsz)
{
	char cmd[1024], hex[80] = "";
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "openssl pkey -pubin -in '%s' -outform DER | sha256sum", pub);
	out[0] = '\0';
	p = popen(cmd, "r");
	if (!p)
		return;
	if (fgets(hex, sizeof(hex), p) && strlen(hex) > 64)
		snprintf(out, outsz, "sha256:%.64s", hex);
	pclose(p);
}

/* Are there temporary files left in the test directory? */
static int leftovers(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".tmp-"))
			n++;
	closedir(d);
	return n;
}

static void test_type_names(void)
{
	static const struct {
		const char *s;
		int ok;
		enum sig_type t;
	} cases[] = {
	    {"ecdsa-p256", 1, SIG_ECDSA_P256},
	    {"ed25519", 1, SIG_ED25519},
	    {"rsa-3072", 1, SIG_RSA3072},
	    {"ECDSA-P256", 0, 0},
	    {"ecdsa", 0, 0},
	    {"rsa-2048", 0, 0},
	    {"rsa", 0, 0},
	    {"ed448", 0, 0},
	    {"", 0, 0},
	    {"ed25519 ", 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum sig_type t = SIG_ED25519;
		int rc = sig_type_parse(cases[i].s, &t);
		CHECK((rc == 0) == cases[i].ok, "parse '%s'", cases[i].s);
		if (cases[i].ok) {
			CHECK(t == cases[i].t, "type of '%s'", cases[i].s);
			CHECK_STR(sig_type_name(t), cases[i].s,
				  "name round trip");
		}
	}
	{
		enum sig_type t;
		CHECK(sig_type_parse(NULL, &t) == -1, "NULL type name");
	}
}

/* Verify must fail with FERR_VERIFY. */
#define CHECK_BAD(k, d, n, s, sn, what)                                        \
	do {                                                                   \
		struct ferr e_;                                                \
		ferr_clear(&e_);                                               \
		int rc_ = sig_verify((k), (d), (n), (s), (sn), &e_);           \
		CHECK(rc_ == -1 && e_.cat == FERR_VERIFY && e_.msg[0],         \
		      "%s: %s must not verify (rc %d, cat %s: %s)",            \
		      sig_type_name(t), (what), rc_, ferr_cat_name(e_.cat),    \
		      e_.msg);                                                 \
	} while (0)

static void test_sign_verify(enum sig_type t)
{
	const char *name = sig_type_name(t);
	static const char msg[] = "abc123  blobs/sha256/x\n";
	size_t mlen = sizeof(msg) - 1;
	struct sig_key k = {0}, other = {0}, wrong = {0};
	unsigned char *s = NULL, *s2 = NULL, *os = NULL, *big = NULL;
	size_t sn = 0, s2n = 0, osn = 0;
	char data[sizeof(msg)];
	struct ferr e;

	ferr_clear(&e);
	if (sig_keygen(&k, t, &e) || sig_keygen(&other, t, &e) ||
	    sig_keygen(&wrong, types[(t + 1) % NTYPES], &e)) {
		CHECK(0, "%s: keygen: %s", name, e.msg);
		goto out;
	}
	CHECK(k.type == t && k.has_private && k.pkey, "%s: key fields", name);
	CHECK(digest_valid(k.key_id), "%s: key id '%s'", name, k.key_id);
	CHECK(strcmp(k.key_id, other.key_id) != 0, "%s: fresh keys differ",
	      name);
	CHECK(sig_sign(&k, msg, mlen, &s, &sn, &e) == 0, "%s: sign: %s", name,
	      e.msg);
	if (!s)
		goto out;
	if (t == SIG_ED25519)
		CHECK(sn == 64, "%s: length %zu", name, sn);
	else if (t == SIG_RSA3072)
		CHECK(sn == 384, "%s: length %zu", name, sn);
	else
		CHECK(sn >= 8 && sn <= 72 && s[0] == 0x30, "%s: DER length %zu",
		      name, sn);
	CHECK(sig_verify(&k, msg, mlen, s, sn, &e) == 0, "%s: verify: %s", name,
	      e.msg);

	/* every data byte matters */
	for (size_t i = 0; i < mlen; i++) {
		memcpy(data, msg, sizeof(msg));
		data[i] ^= 0x01;
		CHECK_BAD(&k, data, mlen, s, sn, "flipped data byte");
	}
	CHECK_BAD(&k, msg, mlen - 1, s, sn, "shorter data");
	CHECK_BAD(&k, msg, mlen + 1, s, sn, "longer data");
	/* every signature byte matters */
	for (size_t i = 0; i < sn; i++) {
		s[i] ^= 0x80;
		CHECK_BAD(&k, msg, mlen, s, sn, "flipped signature byte");
		s[i] ^= 0x80;
	}
	CHECK(sig_verify(&k, msg, mlen, s, sn, &e) == 0, "%s: restored", name);
	CHECK_BAD(&k, msg, mlen, s, sn - 1, "truncated signature");
	CHECK_BAD(&k, msg, mlen, s, 1, "one-byte signature");
	CHECK_BAD(&k, msg, mlen, s, 0, "empty signature");
	CHECK_BAD(&k, msg, mlen, NULL, 0, "NULL signature");
	big = calloc(1, 4096);
	if (big) {
		memcpy(big, s, sn);
		CHECK_BAD(&k, msg, mlen, big, sn + 1, "signature + 1 byte");
		CHECK_BAD(&k, msg, mlen, big, SIG_MAX_SIG + 1,
			  "oversized signature");
		{
			struct ferr e2;
			ferr_clear(&e2);
			sig_verify(&k, msg, mlen, big, SIG_MAX_SIG + 1, &e2);
			CHECK(strstr(e2.msg, "too long") != NULL,
			      "%s: oversized signature refused before use: %s",
			      name, e2.msg);
		}
		CHECK_BAD(&k, msg, mlen, big, 4096, "oversized signature");
		memset(big, 0, 4096);
		CHECK_BAD(&k, msg, mlen, big, sn, "zero signature");
	}
	/* another key, same type; a key of another type */
	CHECK_BAD(&other, msg, mlen, s, sn, "signature from another key");
	CHECK_BAD(&wrong, msg, mlen, s, sn, "key of another type");
	CHECK(sig_sign(&other, msg, mlen, &os, &osn, &e) == 0, "%s: sign 2",
	      name);
	if (os)
		CHECK_BAD(&k, msg, mlen, os, osn, "other key's signature");

	/* empty data */
	CHECK(sig_sign(&k, "", 0, &s2, &s2n, &e) == 0 &&
		  sig_verify(&k, "", 0, s2, s2n, &e) == 0 &&
		  sig_verify(&k, NULL, 0, s2, s2n, &e) == 0,
	      "%s: empty data: %s", name, e.msg);
	CHECK_BAD(&k, "x", 1, s2, s2n, "empty data's signature on 'x'");
	free(s2);
	s2 = NULL;
	/* Ed25519 is deterministic; ECDSA and RSA-PKCS#1: ECDSA randomised */
	CHECK(sig_sign(&k, msg, mlen, &s2, &s2n, &e) == 0, "%s: sign again",
	      name);
	if (s2) {
		int same = s2n == sn && !memcmp(s, s2, sn);
		CHECK(same == (t != SIG_ECDSA_P256), "%s: repeat signature %s",
		      name, same ? "identical" : "different");
		CHECK(sig_verify(&k, msg, mlen, s2, s2n, &e) == 0,
		      "%s: second signature verifies", name);
	}
out:
	free(s);
	free(s2);
	free(os);
	free(big);
	sig_key_release(&k);
	sig_key_release(&other);
	sig_key_release(&wrong);
}

static int mode_of(const char *path)
{
	struct stat st;
	return stat(path, &st) ? -1 : (int)(st.st_mode & 07777);
}

static int first_line_is(const char *path, const char *want)
{
	size_t n;
	char *b = read_file(path, &n);
	int ok = b && !strncmp(b, want, strlen(want)) &&
		 b[strlen(want)] == '\n';
	free(b);
	return ok;
}

static void test_files(enum sig_type t)
{
	const char *name = sig_type_name(t);
	char prefix[128], kp[160], pp[160], id[80], sp[160], dp[160];
	struct sig_key k = {0}, priv = {0}, pub = {0};
	unsigned char *s = NULL;
	size_t sn = 0;
	char *before = NULL, *after = NULL;
	size_t bn = 0, an = 0;
	struct ferr e;

	ferr_clear(&e);
	snprintf(prefix, sizeof(prefix), "%s/plain-%s", dir, name);
	snprintf(kp, sizeof(kp), "%s.key", prefix);
	snprintf(pp, sizeof(pp), "%s.pub", prefix);
	if (sig_keygen(&k, t, &e)) {
		CHECK(0, "%s: keygen: %s", name, e.msg);
		return;
	}
	CHECK(sig_key_write(&k, prefix, NULL, 0, &e) == 0, "%s: write: %s",
	      name, e.msg);
	CHECK(mode_of(kp) == 0600, "%s: key mode %o", name, mode_of(kp));
	CHECK(mode_of(pp) == 0644, "%s: pub mode %o", name, mode_of(pp));
	CHECK(first_line_is(kp, "-----BEGIN PRIVATE KEY-----"),
	      "%s: PKCS#8 PEM", name);
	CHECK(first_line_is(pp, "-----BEGIN PUBLIC KEY-----"), "%s: SPKI PEM",
	      name);
	CHECK(leftovers() == 0, "%s: no temporary files", name);

	CHECK(sig_load_private(&priv, kp, NULL, 0, &e) == 0,
	      "%s: load private: %s", name, e.msg);
	CHECK(sig_load_public(&pub, pp, &e) == 0, "%s: load public: %s", name,
	      e.msg);
	CHECK(priv.has_private && !pub.has_private && priv.type == t &&
		  pub.type == t,
	      "%s: loaded fields", name);
	CHECK(!strcmp(priv.key_id, k.key_id) && !strcmp(pub.key_id, k.key_id),
	      "%s: key id after loading: '%s' '%s' '%s'", name, k.key_id,
	      priv.key_id, pub.key_id);
	openssl_key_id(pp, id, sizeof(id));
	CHECK(!strcmp(k.key_id, id), "%s: key id %s, openssl's DER: %s", name,
	      k.key_id, id);

	/* loaded keys work together, and with the openssl command */
	if (priv.pkey && sig_sign(&priv, "data\n", 5, &s, &sn, &e) == 0) {
		char *b64 = sig_base64_encode(s, sn);
		char line[1200];

		CHECK(sig_verify(&pub, "data\n", 5, s, sn, &e) == 0,
		      "%s: loaded pair: %s", name, e.msg);
		tpath(dp, sizeof(dp), "data");
		tpath(sp, sizeof(sp), "data.sig");
		write_file(dp, "data\n", 5);
		write_file(sp, s, sn);
		if (t == SIG_ED25519)
			CHECK(run("openssl pkeyutl -verify -pubin -inkey '%s' "
				  "-rawin -in '%s' -sigfile '%s' >/dev/null "
				  "2>&1",
				  pp, dp, sp) == 0,
			      "%s: openssl pkeyutl verifies", name);
		else
			CHECK(run("openssl dgst -sha256 -verify '%s' "
				  "-signature '%s' '%s' >/dev/null 2>&1",
				  pp, sp, dp) == 0,
			      "%s: openssl dgst verifies", name);
		/* the bundle's SHA256SUMS.sig form: base64 line, decoded by
		 * coreutils */
		snprintf(line, sizeof(line), "%s\n", b64 ? b64 : "");
		tpath(sp, sizeof(sp), "data.sig.b64");
		write_file(sp, line, strlen(line));
		if (t == SIG_ED25519)
			CHECK(run("base64 -d '%s' > '%s.bin' && openssl pkeyutl "
				  "-verify -pubin -inkey '%s' -rawin -in '%s' "
				  "-sigfile '%s.bin' >/dev/null 2>&1",
				  sp, sp, pp, dp, sp) == 0,
			      "%s: base64 -d | openssl verifies", name);
		else
			CHECK(run("base64 -d '%s' > '%s.bin' && openssl dgst "
				  "-sha256 -verify '%s' -signature '%s.bin' "
				  "'%s' >/dev/null 2>&1",
				  sp, sp, pp, sp, dp) == 0,
			      "%s: base64 -d | openssl verifies", name);
		/* and the other way: openssl signs, we verify */
		tpath(sp, sizeof(sp), "ossl.sig");
		if (t == SIG_ED25519)
			CHECK(run("openssl pkeyutl -sign -inkey '%s' -rawin "
				  "-in '%s' -out '%s'",
				  kp, dp, sp) == 0,
			      "%s: openssl signs", name);
		else
			CHECK(run("openssl dgst -sha256 -sign '%s' -out '%s' "
				  "'%s'",
				  kp, sp, dp) == 0,
			      "%s: openssl signs", name);
		{
			size_t on = 0;
			char *osig = read_file(sp, &on);
			CHECK(osig && sig_verify(&pub, "data\n", 5,
						 (unsigned char *)osig, on,
						 &e) == 0,
			      "%s: openssl's signature verifies: %s", name,
			      e.msg);
			CHECK(osig && sig_verify(&pub, "data\n", 4,
						 (unsigned char *)osig, on,
						 &e) == -1,
			      "%s: openssl's signature, other data", name);
			free(osig);
		}
		/* a flipped byte makes openssl refuse too */
		s[sn / 2] ^= 0x04;
		tpath(sp, sizeof(sp), "data.sig");
		write_file(sp, s, sn);
		if (t == SIG_ED25519)
			CHECK(run("openssl pkeyutl -verify -pubin -inkey '%s' "
				  "-rawin -in '%s' -sigfile '%s' >/dev/null "
				  "2>&1",
				  pp, dp, sp) != 0,
			      "%s: openssl refuses a flipped byte", name);
		else
			CHECK(run("openssl dgst -sha256 -verify '%s' "
				  "-signature '%s' '%s' >/dev/null 2>&1",
				  pp, sp, dp) != 0,
			      "%s: openssl refuses a flipped byte", name);
		free(b64);
	}
	CHECK(run("openssl pkey -in '%s' -noout 2>/dev/null", kp) == 0,
	      "%s: openssl reads the key", name);

	/* never overwrite; the existing file is untouched */
	before = read_file(kp, &bn);
	ferr_clear(&e);
	CHECK(sig_key_write(&k, prefix, NULL, 0, &e) == -1 &&
		  e.cat == FERR_IO && strstr(e.msg, "already exists") &&
		  strstr(e.msg, kp),
	      "%s: overwrite refused: %s", name, e.msg);
	after = read_file(kp, &an);
	CHECK(before && after && bn == an && !memcmp(before, after, bn),
	      "%s: existing key untouched", name);
	free(after);
	after = NULL;
	/* only the .pub is there: nothing created, .pub kept */
	unlink(kp);
	free(before);
	before = read_file(pp, &bn);
	ferr_clear(&e);
	CHECK(sig_key_write(&k, prefix, NULL, 0, &e) == -1 &&
		  e.cat == FERR_IO && strstr(e.msg, pp),
	      "%s: existing .pub refused: %s", name, e.msg);
	CHECK(access(kp, F_OK) == -1, "%s: no .key created", name);
	after = read_file(pp, &an);
	CHECK(before && after && bn == an && !memcmp(before, after, bn),
	      "%s: existing .pub untouched", name);
	CHECK(leftovers() == 0, "%s: no temporary files after refusal", name);

	/* the wrong file in the wrong place */
	ferr_clear(&e);
	sig_key_release(&pub);
	CHECK(sig_load_public(&pub, kp, &e) == -1, "%s: missing file", name);
	CHECK(e.cat == FERR_IO && strstr(e.msg, kp), "%s: %s", name, e.msg);
	CHECK(sig_key_write(&k, prefix, NULL, 0, &e) == -1, "still refused");
	unlink(pp);
	CHECK(sig_key_write(&k, prefix, NULL, 0, &e) == 0,
	      "%s: write after removal: %s", name, e.msg);
	ferr_clear(&e);
	CHECK(sig_load_public(&pub, kp, &e) == -1 && e.cat == FERR_INPUT &&
		  strstr(e.msg, "is a private key") && strstr(e.msg, kp),
	      "%s: private key as public: %s", name, e.msg);
	CHECK(pub.pkey == NULL, "%s: nothing loaded", name);
	sig_key_release(&priv);
	ferr_clear(&e);
	CHECK(sig_load_private(&priv, pp, NULL, 0, &e) == -1 &&
		  e.cat == FERR_INPUT && strstr(e.msg, "is a public key") &&
		  strstr(e.msg, pp),
	      "%s: public key as private: %s", name, e.msg);
	/* a passphrase given for an unencrypted key is not needed */
	CHECK(sig_load_private(&priv, kp, "x", 1, &e) == 0,
	      "%s: unencrypted key with a passphrase: %s", name, e.msg);

	/* from memory */
	{
		size_t n;
		char *pem = read_file(pp, &n);
		struct sig_key m = {0};
		CHECK(pem &&
			  sig_load_public_mem(&m, pem, n, "trusted.pub", &e) ==
			      0 &&
			  !strcmp(m.key_id, k.key_id),
		      "%s: public key from memory: %s", name, e.msg);
		sig_key_release(&m);
		ferr_clear(&e);
		CHECK(pem && n > 40 &&
			  sig_load_public_mem(&m, pem, n - 40, "cut.pub", &e) ==
			      -1 &&
			  e.cat == FERR_INPUT && strstr(e.msg, "'cut.pub'"),
		      "%s: truncated PEM: %s", name, e.msg);
		free(pem);
	}
	free(s);
	free(before);
	free(after);
	sig_key_release(&k);
	sig_key_release(&priv);
	sig_key_release(&pub);
}

static void test_encrypted(enum sig_type t)
{
	const char *name = sig_type_name(t);
	static const char pass[] = "correct horse battery staple";
	char prefix[128], kp[160], pf[160];
	struct sig_key k = {0}, l = {0};
	struct ferr e;

	ferr_clear(&e);
	snprintf(prefix, sizeof(prefix), "%s/enc-%s", dir, name);
	snprintf(kp, sizeof(kp), "%s.key", prefix);
	if (sig_keygen(&k, t, &e)) {
		CHECK(0, "%s: keygen: %s", name, e.msg);
		return;
	}
	CHECK(sig_key_write(&k, prefix, pass, strlen(pass), &e) == 0,
	      "%s: write encrypted: %s", name, e.msg);
	CHECK(mode_of(kp) == 0600, "%s: encrypted key mode", name);
	CHECK(first_line_is(kp, "-----BEGIN ENCRYPTED PRIVATE KEY-----"),
	      "%s: encrypted PKCS#8", name);
	CHECK(run("grep -q 'PRIVATE KEY' '%s'", kp) == 0 &&
		  run("openssl asn1parse -in '%s' | grep -q aes-256-cbc", kp) ==
		      0,
	      "%s: AES-256-CBC", name);
	CHECK(sig_load_private(&l, kp, pass, strlen(pass), &e) == 0 &&
		  !strcmp(l.key_id, k.key_id) && l.has_private,
	      "%s: right passphrase: %s", name, e.msg);
	sig_key_release(&l);
	ferr_clear(&e);
	CHECK(sig_load_private(&l, kp, "correct horse", 13, &e) == -1 &&
		  e.cat == FERR_INPUT && strstr(e.msg, "wrong passphrase") &&
		  strstr(e.msg, kp),
	      "%s: wrong passphrase: %s", name, e.msg);
	ferr_clear(&e);
	CHECK(sig_load_private(&l, kp, NULL, 0, &e) == -1 &&
		  e.cat == FERR_INPUT && strstr(e.msg, "encrypted") &&
		  strstr(e.msg, kp),
	      "%s: no passphrase: %s", name, e.msg);
	CHECK(l.pkey == NULL, "%s: nothing loaded", name);
	/* openssl reads it with the passphrase file, not without */
	tpath(pf, sizeof(pf), "pass.txt");
	write_file(pf, pass, strlen(pass));
	CHECK(run("openssl pkey -in '%s' -passin 'file:%s' -noout", kp, pf) ==
		  0,
	      "%s: openssl decrypts", name);
	CHECK(run("openssl pkey -in '%s' -passin pass:nope -noout 2>/dev/null",
		  kp) != 0,
	      "%s: openssl needs the passphrase", name);
	sig_key_release(&k);
}

static void test_passphrase_limits(void)
{
	struct sig_key k = {0};
	char prefix[128], p[SIG_MAX_PASSPHRASE + 2];
	struct ferr e;

	ferr_clear(&e);
	if (sig_keygen(&k, SIG_ED25519, &e))
		return;
	snprintf(prefix, sizeof(prefix), "%s/limits", dir);
	memset(p, 'p', sizeof(p));
	CHECK(sig_key_write(&k, prefix, p, SIG_MAX_PASSPHRASE + 1, &e) == -1 &&
		  e.cat == FERR_INPUT,
	      "passphrase over openssl's limit: %s", e.msg);
	CHECK(sig_key_write(&k, prefix, p, 0, &e) == -1 && e.cat == FERR_INPUT,
	      "empty passphrase: %s", e.msg);
	CHECK(sig_key_write(&k, prefix, "a\0b", 3, &e) == -1 &&
		  e.cat == FERR_INPUT,
	      "NUL in passphrase: %s", e.msg);
	CHECK(leftovers() == 0 && run("test -e '%s.key'", prefix) != 0,
	      "nothing written");
	CHECK(sig_key_write(&k, prefix, p, SIG_MAX_PASSPHRASE, &e) == 0,
	      "longest passphrase: %s", e.msg);
	{
		struct sig_key l = {0};
		char kp[160], pf[160];
		snprintf(kp, sizeof(kp), "%s.key", prefix);
		CHECK(sig_load_private(&l, kp, p, SIG_MAX_PASSPHRASE, &e) == 0,
		      "longest passphrase loads: %s", e.msg);
		sig_key_release(&l);
		tpath(pf, sizeof(pf), "long.pass");
		write_file(pf, p, SIG_MAX_PASSPHRASE);
		CHECK(run("openssl pkey -in '%s' -passin 'file:%s' -noout", kp,
			  pf) == 0,
		      "openssl reads the longest passphrase");
	}
	/* no prefix, no such directory */
	CHECK(sig_key_write(&k, "", NULL, 0, &e) == -1, "empty prefix");
	ferr_clear(&e);
	snprintf(prefix, sizeof(prefix), "%s/nodir/k", dir);
	CHECK(sig_key_write(&k, prefix, NULL, 0, &e) == -1 &&
		  e.cat == FERR_IO && strstr(e.msg, "nodir/k.key"),
	      "missing directory: %s", e.msg);
	{
		struct sig_key pubonly = {0};
		char pp[160];
		snprintf(pp, sizeof(pp), "%s/limits.pub", dir);
		CHECK(sig_load_public(&pubonly, pp, &e) == 0, "load pub");
		snprintf(prefix, sizeof(prefix), "%s/pubonly", dir);
		CHECK(sig_key_write(&pubonly, prefix, NULL, 0, &e) == -1,
		      "a public key cannot be written as a key pair");
		unsigned char *s = NULL;
		size_t sn = 0;
		CHECK(sig_sign(&pubonly, "x", 1, &s, &sn, &e) == -1 && !s,
		      "a public key cannot sign");
		sig_key_release(&pubonly);
	}
	sig_key_release(&k);
}

/* Keys of other types and malformed files. */
static void write_pem(const char *path, EVP_PKEY *p, int priv, int trad)
{
	BIO *b = BIO_new_file(path, "w");
	if (!b)
		return;
	if (priv && trad)
		PEM_write_bio_PrivateKey_traditional(b, p, NULL, NULL, 0, NULL,
						     NULL);
	else if (priv)
		PEM_write_bio_PrivateKey(b, p, NULL, NULL, 0, NULL, NULL);
	else
		PEM_write_bio_PUBKEY(b, p);
	BIO_free(b);
}

static void test_unsupported(void)
{
	static const struct {
		const char *what, *alg, *curve;
		size_t bits;
	} cases[] = {
	    {"EC secp384r1", "EC", "P-384", 0},
	    {"EC secp256k1", "EC", "secp256k1", 0},
	    {"RSA-2048", "RSA", NULL, 2048},
	    {"ED448", "ED448", NULL, 0},
	    {"X25519", "X25519", NULL, 0},
	};
	char kp[160], pp[160];
	struct ferr e;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		EVP_PKEY *p;
		struct sig_key k = {0};

		if (cases[i].curve)
			p = EVP_PKEY_Q_keygen(NULL, NULL, cases[i].alg,
					      cases[i].curve);
		else if (cases[i].bits)
			p = EVP_PKEY_Q_keygen(NULL, NULL, cases[i].alg,
					      cases[i].bits);
		else
			p = EVP_PKEY_Q_keygen(NULL, NULL, cases[i].alg);
		CHECK(p != NULL, "generate %s", cases[i].what);
		if (!p)
			continue;
		tpath(kp, sizeof(kp), "other.key");
		tpath(pp, sizeof(pp), "other.pub");
		write_pem(kp, p, 1, 0);
		write_pem(pp, p, 0, 0);
		ferr_clear(&e);
		CHECK(sig_load_private(&k, kp, NULL, 0, &e) == -1 &&
			  e.cat == FERR_INPUT &&
			  strstr(e.msg, "unsupported key type") &&
			  strstr(e.msg, kp),
		      "%s private key refused: %s", cases[i].what, e.msg);
		ferr_clear(&e);
		CHECK(sig_load_public(&k, pp, &e) == -1 &&
			  e.cat == FERR_INPUT &&
			  strstr(e.msg, "unsupported key type") &&
			  strstr(e.msg, pp),
		      "%s public key refused: %s", cases[i].what, e.msg);
		CHECK(k.pkey == NULL, "nothing loaded");
		EVP_PKEY_free(p);
	}
	/* the traditional EC format of `openssl ecparam -genkey` is fine */
	{
		EVP_PKEY *p = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		struct sig_key k = {0};
		tpath(kp, sizeof(kp), "trad.key");
		write_pem(kp, p, 1, 1);
		CHECK(first_line_is(kp, "-----BEGIN EC PRIVATE KEY-----") &&
			  sig_load_private(&k, kp, NULL, 0, &e) == 0 &&
			  k.type == SIG_ECDSA_P256,
		      "traditional EC key: %s", e.msg);
		sig_key_release(&k);
		/* and its encrypted form ("Proc-Type: 4,ENCRYPTED") */
		BIO *b = BIO_new_file(kp, "w");
		CHECK(b && PEM_write_bio_PrivateKey_traditional(
			       b, p, EVP_aes_256_cbc(),
			       (const unsigned char *)"pw", 2, NULL, NULL) == 1,
		      "write encrypted traditional key");
		BIO_free(b);
		CHECK(sig_load_private(&k, kp, "pw", 2, &e) == 0 &&
			  k.type == SIG_ECDSA_P256,
		      "encrypted traditional EC key: %s", e.msg);
		sig_key_release(&k);
		ferr_clear(&e);
		CHECK(sig_load_private(&k, kp, "px", 2, &e) == -1 &&
			  strstr(e.msg, "wrong passphrase"),
		      "traditional key, wrong passphrase: %s", e.msg);
		ferr_clear(&e);
		CHECK(sig_load_private(&k, kp, NULL, 0, &e) == -1 &&
			  strstr(e.msg, "no passphrase"),
		      "traditional key, no passphrase: %s", e.msg);
		CHECK(k.pkey == NULL, "nothing loaded");
		EVP_PKEY_free(p);
	}
	/* malformed files */
	{
		static const struct {
			const char *content;
			const char *msg;
		} bad[] = {
		    {"", "not a PEM"},
		    {"hello\n", "not a PEM"},
		    {"-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC "
		     "KEY-----\n",
		     "not a PEM"},
		    {"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END "
		     "PUBLIC KEY-----\n",
		     "not a valid"},
		    {"-----BEGIN CERTIFICATE-----\nMCowBQYDK2VwAyEA\n-----END "
		     "CERTIFICATE-----\n",
		     "CERTIFICATE"},
		    {"-----BEGIN PRIVATE KEY-----\nMCowBQYDK2VwAyEA\n-----END "
		     "PRIVATE KEY-----\n",
		     NULL},
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			struct sig_key k = {0};
			tpath(kp, sizeof(kp), "bad.pem");
			write_file(kp, bad[i].content, strlen(bad[i].content));
			ferr_clear(&e);
			CHECK(sig_load_public(&k, kp, &e) == -1 &&
				  e.cat == FERR_INPUT && strstr(e.msg, kp) &&
				  (!bad[i].msg || strstr(e.msg, bad[i].msg)),
			      "bad public key %zu: %s", i, e.msg);
			ferr_clear(&e);
			CHECK(sig_load_private(&k, kp, NULL, 0, &e) == -1 &&
				  e.cat == FERR_INPUT && strstr(e.msg, kp),
			      "bad private key %zu: %s", i, e.msg);
			CHECK(k.pkey == NULL, "nothing loaded");
		}
		/* too large */
		char *huge = malloc(SIG_MAX_KEY_FILE + 10);
		struct sig_key k = {0};
		if (huge) {
			memset(huge, '\n', SIG_MAX_KEY_FILE + 10);
			write_file(kp, huge, SIG_MAX_KEY_FILE + 10);
			ferr_clear(&e);
			CHECK(sig_load_public(&k, kp, &e) == -1 &&
				  e.cat == FERR_INPUT &&
				  strstr(e.msg, "too large"),
			      "huge public key file: %s", e.msg);
			ferr_clear(&e);
			CHECK(sig_load_private(&k, kp, NULL, 0, &e) == -1 &&
				  e.cat == FERR_INPUT &&
				  strstr(e.msg, "too large"),
			      "huge private key file: %s", e.msg);
			CHECK(sig_load_public_mem(&k, huge,
						  SIG_MAX_KEY_FILE + 1, "mem",
						  &e) == -1,
			      "huge PEM in memory");
			free(huge);
		}
	}
	sig_key_release(NULL);
	{
		struct sig_key z = {0};
		sig_key_release(&z);
		sig_key_release(&z);
	}
}

static void test_passphrase_file(void)
{
	static const struct {
		const char *content;
		size_t len;
		const char *want; /* NULL: error */
	} cases[] = {
	    {"secret\n", 7, "secret"},
	    {"secret\r\n", 8, "secret"},
	    {"secret", 6, "secret"},
	    {"first\nsecond\n", 13, "first"},
	    {" spaced pass \n", 14, " spaced pass "},
	    {"a\rb\n", 4, "a\rb"},
	    {"\n", 1, NULL},
	    {"\r\n", 2, NULL},
	    {"", 0, NULL},
	    {"\nsecret\n", 8, NULL},
	    {"a\0b\n", 4, NULL},
	};
	char pf[160];
	struct ferr e;

	tpath(pf, sizeof(pf), "pass");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *p = NULL;
		size_t n = 0;
		int rc;

		write_file(pf, cases[i].content, cases[i].len);
		ferr_clear(&e);
		rc = sig_read_passphrase_file(pf, &p, &n, &e);
		if (cases[i].want) {
			CHECK(rc == 0 && p && n == strlen(cases[i].want) &&
				  !strcmp(p, cases[i].want),
			      "passphrase case %zu: %s", i, e.msg);
		} else {
			CHECK(rc == -1 && !p && e.cat == FERR_INPUT &&
				  strstr(e.msg, pf),
			      "passphrase case %zu refused: %s", i, e.msg);
		}
		sig_wipe_free(p, n);
	}
	{
		static char big[SIG_MAX_PASSPHRASE_FILE + 16];
		char *p = NULL;
		size_t n = 0;

		memset(big, 'x', sizeof(big));
		big[SIG_MAX_PASSPHRASE_FILE] = '\n';
		write_file(pf, big, SIG_MAX_PASSPHRASE_FILE + 1);
		CHECK(sig_read_passphrase_file(pf, &p, &n, &e) == 0 &&
			  n == SIG_MAX_PASSPHRASE_FILE,
		      "longest passphrase line: %s", e.msg);
		sig_wipe_free(p, n);
		p = NULL;
		big[SIG_MAX_PASSPHRASE_FILE] = '\r';
		big[SIG_MAX_PASSPHRASE_FILE + 1] = '\n';
		write_file(pf, big, SIG_MAX_PASSPHRASE_FILE + 2);
		CHECK(sig_read_passphrase_file(pf, &p, &n, &e) == 0 &&
			  n == SIG_MAX_PASSPHRASE_FILE,
		      "longest passphrase line, CRLF: %s", e.msg);
		sig_wipe_free(p, n);
		p = NULL;
		big[SIG_MAX_PASSPHRASE_FILE] = 'x';
		write_file(pf, big, SIG_MAX_PASSPHRASE_FILE + 1);
		ferr_clear(&e);
		CHECK(sig_read_passphrase_file(pf, &p, &n, &e) == -1 &&
			  e.cat == FERR_INPUT && strstr(e.msg, "too long"),
		      "passphrase over 4 KiB: %s", e.msg);
		write_file(pf, big, sizeof(big));
		CHECK(sig_read_passphrase_file(pf, &p, &n, &e) == -1 && !p,
		      "passphrase far over 4 KiB");
	}
	{
		char *p = NULL;
		size_t n = 0;
		ferr_clear(&e);
		CHECK(sig_read_passphrase_file("/nonexistent/pass", &p, &n,
					       &e) == -1 &&
			  e.cat == FERR_IO &&
			  strstr(e.msg, "/nonexistent/pass"),
		      "missing passphrase file: %s", e.msg);
	}
}

static void test_base64(void)
{
	static const struct {
		const char *plain, *b64;
	} vectors[] = {
	    {"f", "Zg=="},	  {"fo", "Zm8="},	 {"foo", "Zm9v"},
	    {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
	};
	static const struct {
		const char *in;
		const char *want; /* NULL: refused */
	} dec[] = {
	    {"Zm9vYmFy", "foobar"},
	    {"Zm9vYmFy\n", "foobar"},
	    {"Zm9vYmFy\r\n", "foobar"},
	    {"Zm9v\nYmFy\n", "foobar"},
	    {"Zm9vYmE=\n", "fooba"},
	    {"Zg==\n", "f"},
	    {"Zm9vYmF", NULL},	    /* truncated */
	    {"Zm9vYmF=", NULL},	    /* non-zero bits under the padding */
	    {"Zh==", NULL},	    /* same */
	    {"Zg=", NULL},	    /* short padding */
	    {"Zg===", NULL},	    /* long padding */
	    {"Z===", NULL},	    /* misplaced padding */
	    {"=Zg=", NULL},	    /* misplaced padding */
	    {"Zg=a", NULL},	    /* data inside the padding */
	    {"Zg==Zg==", NULL},	    /* data after the padding */
	    {"Zg==\nZg==\n", NULL}, /* data after the padding */
	    {"Zm9v YmFy", NULL},    /* space */
	    {"Zm9v\tYmFy", NULL},   /* tab */
	    {"Zm9v\rYmFy", NULL},   /* lone CR */
	    {"Zm9v*mFy", NULL},	    /* garbage */
	    {"Zm9v-_Fy", NULL},	    /* URL-safe alphabet */
	    {"", NULL},		    /* empty */
	    {"\n", NULL},	    /* empty */
	    {"====", NULL},
	    {"Zm9vYmFy\x80", NULL},
	};
	struct ferr e;

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		char *s =
		    sig_base64_encode((const unsigned char *)vectors[i].plain,
				      strlen(vectors[i].plain));
		unsigned char *o = NULL;
		size_t on = 0;
		CHECK_STR(s, vectors[i].b64, "encode");
		CHECK(sig_base64_decode(vectors[i].b64, strlen(vectors[i].b64),
					&o, &on, &e) == 0 &&
			  on == strlen(vectors[i].plain) &&
			  !memcmp(o, vectors[i].plain, on),
		      "decode '%s'", vectors[i].b64);
		free(s);
		free(o);
	}
	for (size_t i = 0; i < sizeof(dec) / sizeof(dec[0]); i++) {
		unsigned char *o = NULL;
		size_t on = 0;
		int rc;
		ferr_clear(&e);
		rc = sig_base64_decode(dec[i].in, strlen(dec[i].in), &o, &on,
				       &e);
		if (dec[i].want)
			CHECK(rc == 0 && on == strlen(dec[i].want) &&
				  !memcmp(o, dec[i].want, on),
			      "decode case %zu: %s", i, e.msg);
		else
			CHECK(rc == -1 && !o && e.cat == FERR_INPUT &&
				  strstr(e.msg, "base64"),
			      "decode case %zu refused: %s", i, e.msg);
		free(o);
	}
	{
		unsigned char *o = NULL;
		size_t on = 0;
		CHECK(sig_base64_decode("Zm9v\0mFy", 8, &o, &on, &e) == -1,
		      "NUL byte refused");
	}
	/* round trips of every length and byte value, one line and wrapped at
	 * 76 columns as coreutils does, and against coreutils itself */
	{
		unsigned char in[400];
		char wrapped[800], bp[160], op[160];
		for (size_t i = 0; i < sizeof(in); i++)
			in[i] = (unsigned char)(i * 37 + 11);
		for (size_t n = 1; n <= sizeof(in); n++) {
			char *s = sig_base64_encode(in, n);
			unsigned char *o = NULL;
			size_t on = 0, sl, w = 0;
			if (!s) {
				CHECK(0, "encode %zu", n);
				continue;
			}
			sl = strlen(s);
			CHECK(sl == (n + 2) / 3 * 4 && !strchr(s, '\n'),
			      "one line of the right length for %zu", n);
			CHECK(sig_base64_decode(s, sl, &o, &on, &e) == 0 &&
				  on == n && !memcmp(o, in, n),
			      "round trip %zu", n);
			free(o);
			o = NULL;
			for (size_t j = 0; j < sl; j++) {
				wrapped[w++] = s[j];
				if (j % 76 == 75)
					wrapped[w++] = '\n';
			}
			if (wrapped[w - 1] != '\n')
				wrapped[w++] = '\n';
			CHECK(sig_base64_decode(wrapped, w, &o, &on, &e) == 0 &&
				  on == n && !memcmp(o, in, n),
			      "wrapped round trip %zu", n);
			free(o);
			free(s);
		}
		tpath(bp, sizeof(bp), "b64.bin");
		tpath(op, sizeof(op), "b64.txt");
		write_file(bp, in, sizeof(in));
		CHECK(run("base64 '%s' > '%s'", bp, op) == 0,
		      "coreutils base64");
		{
			size_t tn = 0, on = 0;
			char *txt = read_file(op, &tn);
			unsigned char *o = NULL;
			CHECK(txt && strchr(txt, '\n') < txt + tn - 1 &&
				  sig_base64_decode(txt, tn, &o, &on, &e) ==
				      0 &&
				  on == sizeof(in) && !memcmp(o, in, on),
			      "decodes coreutils' wrapped output: %s", e.msg);
			free(o);
			free(txt);
		}
	}
	/* size cap */
	{
		char *big = malloc(SIG_MAX_BASE64 + 4);
		unsigned char *o = NULL;
		size_t on = 0;
		if (big) {
			memset(big, 'A', SIG_MAX_BASE64 + 4);
			CHECK(sig_base64_decode(big, SIG_MAX_BASE64, &o, &on,
						&e) == 0 &&
				  on == SIG_MAX_BASE64 / 4 * 3,
			      "decode at the cap: %s", e.msg);
			free(o);
			o = NULL;
			CHECK(sig_base64_decode(big, SIG_MAX_BASE64 + 4, &o,
						&on, &e) == -1 &&
				  !o,
			      "decode over the cap");
			free(big);
		}
	}
}

/* cosign's simple-signing payloads and signature manifests (SPEC §6). */
#define IMG                                                                    \
	"sha256:e5d898c85793190d3fb321606c7319d351b455c8bf66266d86015672a9a7f72e"
#define OTHER                                                                  \
	"sha256:58b336fdf330695a3335af81bd23959b50213c0e4394dd5cec6e7d3f58360f0b"
#define PAYLOAD(dg, type)                                                      \
	"{\"critical\":{\"identity\":{\"docker-reference\":\"r.example/"       \
	"app\"},\"image\":{\"docker-manifest-digest\":\"" dg                   \
	"\"},\"type\":\"" type "\"},\"optional\":null}"

static void test_cosign_payloads(void)
{
	static const struct {
		const char *name, *payload, *want; /* want: NULL = valid */
	} cases[] = {
	    {"valid", PAYLOAD(IMG, COSIGN_PAYLOAD_TYPE), NULL},
	    {"names another digest", PAYLOAD(OTHER, COSIGN_PAYLOAD_TYPE),
	     "names '" OTHER "'"},
	    {"another type", PAYLOAD(IMG, "something else"), "of type"},
	    {"not JSON", "{\"critical\":", "not cosign's simple signing"},
	    {"no critical", "{\"optional\":null}", "not cosign's simple"},
	    {"digest not a string",
	     "{\"critical\":{\"image\":{\"docker-manifest-digest\":1},"
	     "\"type\":\"" COSIGN_PAYLOAD_TYPE "\"}}",
	     "not cosign's simple"},
	    {"duplicate key (which one was signed?)",
	     "{\"critical\":{\"image\":{\"docker-manifest-digest\":\"" OTHER
	     "\"},\"type\":\"" COSIGN_PAYLOAD_TYPE
	     "\"},\"critical\":{\"image\":{\"docker-manifest-digest\":\"" IMG
	     "\"},\"type\":\"" COSIGN_PAYLOAD_TYPE "\"}}",
	     "not cosign's simple"},
	};
	struct digest img;
	struct ferr e;
	char *big;

	digest_parse(&img, IMG, NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = cosign_payload_check(
		    (const unsigned char *)cases[i].payload,
		    strlen(cases[i].payload), &img, &e);
		if (!cases[i].want)
			CHECK(rc == 0, "payload %s: %s", cases[i].name, e.msg);
		else
			CHECK(rc < 0 && e.cat == FERR_VERIFY &&
				  strstr(e.msg, cases[i].want),
			      "payload %s: rc %d '%s'", cases[i].name, rc,
			      rc < 0 ? e.msg : "");
	}
	/* a valid payload padded past the cap */
	big = calloc(1, FERRY_MAX_COSIGN_PAYLOAD + 64);
	memset(big, ' ', FERRY_MAX_COSIGN_PAYLOAD + 1);
	CHECK(cosign_payload_check((unsigned char *)big,
				   FERRY_MAX_COSIGN_PAYLOAD + 1, &img,
				   &e) < 0 &&
		  strstr(e.msg, "over the limit"),
	      "payload over the cap: '%s'", e.msg);
	free(big);
}

static void test_cosign_verify(void)
{
	static const char payload[] = PAYLOAD(IMG, COSIGN_PAYLOAD_TYPE);
	static const char lie[] = PAYLOAD(OTHER, COSIGN_PAYLOAD_TYPE);
	struct sig_key keys[2];
	struct digest img;
	struct ferr e;
	unsigned char *s = NULL, *ls = NULL;
	size_t sn = 0, lsn = 0, which = 9;
	char *b64, *lb64, tampered[sizeof(payload)];

	memset(keys, 0, sizeof(keys));
	digest_parse(&img, IMG, NULL);
	if (sig_keygen(&keys[0], SIG_ECDSA_P256, &e) < 0 ||
	    sig_keygen(&keys[1], SIG_ECDSA_P256, &e) < 0 ||
	    sig_sign(&keys[1], payload, strlen(payload), &s, &sn, &e) < 0 ||
	    sig_sign(&keys[1], lie, strlen(lie), &ls, &lsn, &e) < 0) {
		CHECK(0, "cosign keys: %s", e.msg);
		return;
	}
	b64 = sig_base64_encode(s, sn);
	lb64 = sig_base64_encode(ls, lsn);
	CHECK(cosign_verify(keys, 2, (const unsigned char *)payload,
			    strlen(payload), b64, &img, &which, &e) == 0 &&
		  which == 1,
	      "signed by the second of two keys: %s", e.msg);
	CHECK(cosign_verify(keys, 1, (const unsigned char *)payload,
			    strlen(payload), b64, &img, &which, &e) < 0 &&
		  e.cat == FERR_VERIFY && strstr(e.msg, "does not verify"),
	      "an untrusted key: '%s'", e.msg);
	memcpy(tampered, payload, sizeof(payload));
	strstr(tampered, "/app")[3] = 'q'; /* another identity, same image */
	CHECK(cosign_verify(keys, 2, (const unsigned char *)tampered,
			    strlen(tampered), b64, &img, &which, &e) < 0 &&
		  e.cat == FERR_VERIFY,
	      "a payload changed after signing: '%s'", e.msg);
	CHECK(cosign_verify(keys, 2, (const unsigned char *)lie, strlen(lie),
			    lb64, &img, &which, &e) < 0 &&
		  strstr(e.msg, "names '" OTHER "'"),
	      "a valid signature of a payload naming another image: '%s'",
	      e.msg);
	CHECK(cosign_verify(keys, 2, (const unsigned char *)payload,
			    strlen(payload), "not base64!", &img, &which,
			    &e) < 0 &&
		  e.cat == FERR_VERIFY,
	      "a signature annotation that is not base64: '%s'", e.msg);
	free(b64);
	free(lb64);
	free(s);
	free(ls);
	sig_key_release(&keys[0]);
	sig_key_release(&keys[1]);
}

static void test_cosign_layers(void)
{
	static const char man[] =
	    "{\"schemaVersion\":2,\"config\":{},\"layers\":["
	    "{\"mediaType\":\"" COSIGN_MT_SIMPLESIGNING "\",\"digest\":\"" IMG
	    "\",\"size\":250,\"annotations\":{\"" COSIGN_ANNOT_SIG
	    "\":\"QUJD\"}},"
	    "{\"mediaType\":\"text/spdx+json\",\"digest\":\"" OTHER
	    "\",\"size\":9,\"annotations\":{\"" COSIGN_ANNOT_SIG
	    "\":\"QUJD\"}},"
	    "{\"mediaType\":\"" COSIGN_MT_SIMPLESIGNING "\",\"digest\":\"" OTHER
	    "\",\"size\":9},"
	    "{\"mediaType\":\"" COSIGN_MT_SIMPLESIGNING "\",\"digest\":\"" OTHER
	    "\",\"size\":251,\"annotations\":{\"" COSIGN_ANNOT_SIG
	    "\":\"REVG\"}}]}";
	struct cosign_layer *l = NULL;
	size_t n = 0;
	struct ferr e;

	CHECK(cosign_sig_layers((const unsigned char *)man, strlen(man), &l, &n,
				&e) == 0 &&
		  n == 2,
	      "two simple-signing layers with a signature: %zu", n);
	CHECK(n == 2 && l[0].size == 250 && !strcmp(l[0].sig_b64, "QUJD") &&
		  !strcmp(l[1].digest.str, OTHER) &&
		  !strcmp(l[1].sig_b64, "REVG"),
	      "their digests, sizes and signatures");
	cosign_layers_release(l, n);
	CHECK(cosign_sig_layers((const unsigned char *)"{}", 2, &l, &n, &e) <
		      0 &&
		  !l && !n,
	      "a manifest without layers is refused");
}

/* A signature manifest with layers named by letters: A and B are two
 * payloads, S the site's signature of A's payload (same blob, another
 * signature annotation), X an ordinary image layer; n: how many more
 * layers, each a signature of its own. */
static char *sig_manifest_n(const char *layers, size_t n)
{
	size_t cap = 512 + (strlen(layers) + n) * 256, len = 0;
	char *out = malloc(cap);

	len += (size_t)snprintf(
	    out, cap,
	    "{\"schemaVersion\":2,\"mediaType\":\"application/"
	    "vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":"
	    "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" IMG
	    "\",\"size\":2},\"layers\":[");
	for (const char *p = layers; *p; p++)
		len += (size_t)snprintf(
		    out + len, cap - len,
		    "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":9,"
		    "\"annotations\":{\"" COSIGN_ANNOT_SIG "\":\"%s\"}}",
		    p == layers ? "" : ",",
		    *p == 'X' ? "application/vnd.oci.image.layer.v1.tar"
			      : COSIGN_MT_SIMPLESIGNING,
		    *p == 'B' ? OTHER : IMG, *p == 'S' ? "U0lURQ==" : "QQ==");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(
		    out + len, cap - len,
		    "%s{\"mediaType\":\"" COSIGN_MT_SIMPLESIGNING
		    "\",\"digest\":\"" IMG "\",\"size\":9,\"annotations\":{"
		    "\"" COSIGN_ANNOT_SIG "\":\"site %zu\"}}",
		    len && out[len - 1] == '[' ? "" : ",", i);
	snprintf(out + len, cap - len, "]}");
	return out;
}

static char *sig_manifest(const char *layers)
{
	return sig_manifest_n(layers, 0);
}

static void test_cosign_merge_plan(void)
{
	static const struct {
		const char *have, *ours;
		size_t more; /* site signatures added to `have` */
		int want;    /* an enum cosign_merge, or -1: refused */
	} rows[] = {
	    {"A", "A", 0, COSIGN_MERGE_OURS},
	    {"", "A", 0, COSIGN_MERGE_REPLACE},	 /* nothing to keep */
	    {"A", "AB", 0, COSIGN_MERGE_OURS},	 /* upstream signed again */
	    {"AB", "A", 0, COSIGN_MERGE_THEIRS}, /* an older bundle */
	    {"AS", "A", 0, COSIGN_MERGE_THEIRS}, /* merged before */
	    {"AS", "AB", 0, COSIGN_MERGE_BOTH},	 /* the site signed too */
	    {"S", "A", 0, COSIGN_MERGE_BOTH},	 /* same payload, other key */
	    {"BA", "AB", 0, COSIGN_MERGE_OURS},	 /* order does not matter */
	    {"A", "", 0, COSIGN_MERGE_THEIRS},
	    {NULL, "A", 0, COSIGN_MERGE_REPLACE}, /* an index: no signature */
	    {"X", "A", 0, COSIGN_MERGE_REPLACE},  /* an image's layer */
	    {"AX", "B", 0, -1}, /* signatures and more: not guessed */
	    {"A", NULL, 0, -1}, /* the bundle's: no manifest */
	    {"", "AB", 998, COSIGN_MERGE_BOTH}, /* 1000 together */
	    {"", "AB", 999, -1},		/* 1001 */
	    {"S", "ABB", 997,
	     COSIGN_MERGE_BOTH}, /* 1000: B twice counts once */
	};
	struct ferr e;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *h = rows[i].have
			      ? sig_manifest_n(rows[i].have, rows[i].more)
			      : strdup("{\"schemaVersion\":2,"
				       "\"manifests\":[]}");
		char *o = rows[i].ours ? sig_manifest(rows[i].ours)
				       : strdup("{\"schemaVersion\":2}");
		enum cosign_merge how = COSIGN_MERGE_OURS;
		int rc = cosign_merge_plan((unsigned char *)h, strlen(h),
					   (unsigned char *)o, strlen(o),
					   COSIGN_MT_SIMPLESIGNING, &how, &e);

		CHECK(rows[i].want < 0 ? rc < 0
				       : rc == 0 && (int)how == rows[i].want,
		      "merge plan row %zu (%s into %s+%zu): rc %d, %d", i,
		      rows[i].ours ? rows[i].ours : "no manifest",
		      rows[i].have ? rows[i].have : "an index", rows[i].more,
		      rc, (int)how);
		free(h);
		free(o);
	}
}

static void test_cosign_merge_build(void)
{
	char *h = sig_manifest("AS"), *o = sig_manifest("AB");
	static const char hc[] =
	    "{\"architecture\":\"\",\"history\":[{\"c\":1},{\"c\":2}],"
	    "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" IMG "\",\"" IMG
	    "\"]}}";
	static const char oc[] =
	    "{\"history\":[{\"c\":1},{\"c\":3}],\"rootfs\":{\"type\":"
	    "\"layers\",\"diff_ids\":[\"" IMG "\",\"" OTHER "\"]}}";
	char *cfg = NULL, *man = NULL;
	struct digest dg;
	struct ferr e;
	json_t *c, *m;

	CHECK(cosign_merge_build((unsigned char *)h, strlen(h),
				 (unsigned char *)hc, strlen(hc),
				 (unsigned char *)o, strlen(o),
				 (unsigned char *)oc, strlen(oc), &cfg, &man,
				 &e) == 0,
	      "merge build: %s", e.msg);
	c = json_loads(cfg ? cfg : "", 0, NULL);
	m = json_loads(man ? man : "", 0, NULL);
	digest_of(cfg ? cfg : "", cfg ? strlen(cfg) : 0, &dg, &e);
	CHECK(json_array_size(json_object_get(m, "layers")) == 3 &&
		  !strcmp(json_string_value(json_object_get(
			      json_array_get(json_object_get(m, "layers"), 2),
			      "digest")),
			  OTHER),
	      "merged: the target's two layers, then the bundle's new one");
	CHECK(!strcmp(json_string_value(json_object_get(
			  json_object_get(m, "config"), "digest")),
		      dg.str) &&
		  json_integer_value(
		      json_object_get(json_object_get(m, "config"), "size")) ==
		      (json_int_t)strlen(cfg),
	      "merged: the manifest names the merged config");
	CHECK(json_array_size(json_object_get(json_object_get(c, "rootfs"),
					      "diff_ids")) == 3 &&
		  !strcmp(json_string_value(json_array_get(
			      json_object_get(json_object_get(c, "rootfs"),
					      "diff_ids"),
			      2)),
			  OTHER) &&
		  json_integer_value(json_object_get(
		      json_array_get(json_object_get(c, "history"), 2), "c")) ==
		      3 &&
		  !strcmp(json_string_value(json_object_get(c, "architecture")),
			  ""),
	      "merged config: the target's, with the new layer's diff_id and "
	      "history entry");
	json_decref(c);
	json_decref(m);
	free(cfg);
	free(man);
	CHECK(cosign_merge_build((unsigned char *)h, strlen(h),
				 (unsigned char *)"[]", 2, (unsigned char *)o,
				 strlen(o), (unsigned char *)oc, strlen(oc),
				 &cfg, &man, &e) < 0 &&
		  !cfg && !man,
	      "a target config that is not an object is refused");
	free(h);
	free(o);
}

/* Merged configs from configs that do not match their layers. */
static void test_cosign_merge_configs(void)
{
	static const struct {
		const char *hc, *oc;
		long hist; /* history entries wanted, -1: none */
	} rows[] = {
	    {"{}", "{}", -1},					/* no rootfs */
	    {"{\"history\":[{}]}", "{\"history\":[{},{}]}", 1}, /* misaligned */
	    {"{\"history\":[{},{}]}", "{}", 3}, /* ours has none: {} */
	    {"{\"rootfs\":\"x\",\"history\":[{},{}]}",
	     "{\"history\":[{},{\"c\":3}]}", 3},
	};
	char *h = sig_manifest("AS"), *o = sig_manifest("AB");

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *cfg = NULL, *man = NULL;
		struct ferr e;
		json_t *c, *ids;
		int rc = cosign_merge_build((unsigned char *)h, strlen(h),
					    (unsigned char *)rows[i].hc,
					    strlen(rows[i].hc),
					    (unsigned char *)o, strlen(o),
					    (unsigned char *)rows[i].oc,
					    strlen(rows[i].oc), &cfg, &man, &e);

		c = json_loads(cfg ? cfg : "", 0, NULL);
		ids = json_object_get(json_object_get(c, "rootfs"), "diff_ids");
		CHECK(rc == 0 && json_array_size(ids) == 3 &&
			  !strcmp(json_string_value(json_array_get(ids, 0)),
				  IMG) &&
			  !strcmp(json_string_value(json_array_get(ids, 2)),
				  OTHER),
		      "merged config row %zu: one diff_id per layer", i);
		CHECK(rows[i].hist < 0
			  ? !json_object_get(c, "history")
			  : (long)json_array_size(
				json_object_get(c, "history")) == rows[i].hist,
		      "merged config row %zu: history", i);
		json_decref(c);
		free(cfg);
		free(man);
	}
	free(h);
	free(o);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	umask(022);
	snprintf(dir, sizeof(dir), "%s/test_sig.XXXXXX",
		 tmp && *tmp && strlen(tmp) < 40 ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_type_names();
	test_base64();
	test_passphrase_file();
	for (size_t i = 0; i < NTYPES; i++) {
		test_sign_verify(types[i]);
		test_files(types[i]);
		test_encrypted(types[i]);
	}
	test_passphrase_limits();
	test_unsupported();
	test_cosign_payloads();
	test_cosign_verify();
	test_cosign_layers();
	test_cosign_merge_plan();
	test_cosign_merge_build();
	test_cosign_merge_configs();
	run("rm -rf '%s'", dir);
	return check_done();
}
