#include "sig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <limits.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "digest.h"

#define ACCEPTED_TYPES                                                         \
	"ferry uses ECDSA P-256, Ed25519 or RSA with 3072 to 8192 bits"

int sig_type_parse(const char *s, enum sig_type *t)
{
	if (!s)
		return -1;
	if (!strcmp(s, "ecdsa-p256"))
		*t = SIG_ECDSA_P256;
	else if (!strcmp(s, "ed25519"))
		*t = SIG_ED25519;
	else if (!strcmp(s, "rsa-3072"))
		*t = SIG_RSA3072;
	else
		return -1;
	return 0;
}

const char *sig_type_name(enum sig_type t)
{
	switch (t) {
	case SIG_ECDSA_P256:
		return "ecdsa-p256";
	case SIG_ED25519:
		return "ed25519";
	case SIG_RSA3072:
		return "rsa-3072";
	}
	return "unknown";
}

void sig_wipe_free(void *p, size_t n)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, n);
	free(p);
}

void sig_key_release(struct sig_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey); /* clears the private key material */
	memset(k, 0, sizeof(*k));
}

/* Which of our types `pkey` is; -1 with a description of what it is. */
static int classify(EVP_PKEY *pkey, enum sig_type *t, char *what, size_t whatsz)
{
	const char *name;

	if (EVP_PKEY_is_a(pkey, "ED25519")) {
		*t = SIG_ED25519;
		return 0;
	}
	if (EVP_PKEY_is_a(pkey, "EC")) {
		char group[80] = "";
		size_t glen = 0;

		if (EVP_PKEY_get_utf8_string_param(pkey,
						   OSSL_PKEY_PARAM_GROUP_NAME,
						   group, sizeof(group),
						   &glen) != 1)
			group[0] = '\0';
		if (!strcmp(group, "prime256v1") || !strcmp(group, "P-256")) {
			*t = SIG_ECDSA_P256;
			return 0;
		}
		snprintf(what, whatsz, "EC %s",
			 group[0] ? group : "with explicit parameters");
		return -1;
	}
	if (EVP_PKEY_is_a(pkey, "RSA")) {
		int bits = EVP_PKEY_get_bits(pkey);

		if (bits >= SIG_RSA_MIN_BITS && bits <= SIG_RSA_MAX_BITS) {
			*t = SIG_RSA3072;
			return 0;
		}
		snprintf(what, whatsz, "RSA-%d", bits);
		return -1;
	}
	name = EVP_PKEY_get0_type_name(pkey);
	snprintf(what, whatsz, "%s", name ? name : "unknown");
	return -1;
}

static int set_key_id(struct sig_key *k, struct ferr *e)
{
	unsigned char *der = NULL;
	struct digest d;
	int n, rc;

	n = i2d_PUBKEY(k->pkey, &der);
	if (n <= 0) {
		ERR_clear_error();
		return ferr_set(e, FERR_INPUT, 0,
				"cannot encode the public key");
	}
	rc = digest_of(der, (size_t)n, &d, e);
	OPENSSL_free(der);
	if (rc)
		return -1;
	memcpy(k->key_id, d.str, DIGEST_STR_LEN + 1);
	return 0;
}

/* Take ownership of `pkey` into `k` once it is known to be one of ours. */
static int adopt(struct sig_key *k, EVP_PKEY *pkey, bool priv, const char *name,
		 struct ferr *e)
{
	char what[128];
	enum sig_type t;

	if (classify(pkey, &t, what, sizeof(what))) {
		EVP_PKEY_free(pkey);
		return ferr_set(
		    e, FERR_INPUT, 0,
		    "unsupported key type %s in '%s': " ACCEPTED_TYPES, what,
		    name);
	}
	k->pkey = pkey;
	k->type = t;
	k->has_private = priv;
	if (set_key_id(k, e)) {
		sig_key_release(k);
		return -1;
	}
	return 0;
}

int sig_keygen(struct sig_key *k, enum sig_type t, struct ferr *e)
{
	EVP_PKEY *p = NULL;

	memset(k, 0, sizeof(*k));
	switch (t) {
	case SIG_ECDSA_P256:
		p = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		break;
	case SIG_ED25519:
		p = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
		break;
	case SIG_RSA3072:
		p = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
		break;
	}
	if (!p) {
		ERR_clear_error();
		return ferr_set(e, FERR_INPUT, 0, "cannot generate a %s key",
				sig_type_name(t));
	}
	return adopt(k, p, true, "generated key", e);
}

/* ---- files ---- */

/* Read at most `max` bytes of `path` into a malloc'd buffer of max + 1
 * bytes (NUL-terminated; wipe it with sig_wipe_free(buf, max + 1)).  With
 * `line`, stop at the first newline (so a terminal or a pipe works). Sets
 * *over when the file holds more than `max` bytes. */
static int read_capped(const char *path, size_t max, bool line,
		       unsigned char **out, size_t *outlen, bool *over,
		       struct ferr *e)
{
	unsigned char *b;
	size_t n = 0;
	int fd;

	*out = NULL;
	*outlen = 0;
	*over = false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ferr_errno(e, FERR_IO, errno, "cannot open '%s'", path);
	b = calloc(1, max + 1);
	if (!b) {
		close(fd);
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	}
	for (;;) {
		ssize_t r = read(fd, b + n, max + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = errno;

			close(fd);
			sig_wipe_free(b, max + 1);
			return ferr_errno(e, FERR_IO, err, "cannot read '%s'",
					  path);
		}
		if (r == 0)
			break;
		if (line && memchr(b + n, '\n', (size_t)r)) {
			n += (size_t)r;
			break;
		}
		n += (size_t)r;
		if (n > max)
			break;
	}
	close(fd);
	if (n > max) {
		*over = true;
		n = max; /* what follows is beyond the cap */
	}
	b[n] = '\0';
	*out = b;
	*outlen = n;
	return 0;
}

int sig_read_passphrase_file(const char *path, char **pass, size_t *len,
			     struct ferr *e)
{
	/* room for a full-length line and its "\r\n" */
	const size_t cap = SIG_MAX_PASSPHRASE_FILE + 2;
	unsigned char *b = NULL, *nl;
	size_t n = 0, ln;
	bool over = false;
	char *p;
	int rc = -1;

	*pass = NULL;
	*len = 0;
	if (read_capped(path, cap, true, &b, &n, &over, e))
		return -1;
	nl = memchr(b, '\n', n);
	if (nl) {
		ln = (size_t)(nl - b);
		if (ln && b[ln - 1] == '\r')
			ln--;
	} else {
		ln = over ? SIG_MAX_PASSPHRASE_FILE + 1 : n;
	}
	if (ln > SIG_MAX_PASSPHRASE_FILE) {
		ferr_set(e, FERR_INPUT, 0,
			 "the passphrase in '%s' is too long (more than %u "
			 "bytes)",
			 path, SIG_MAX_PASSPHRASE_FILE);
		goto out;
	}
	if (ln == 0) {
		ferr_set(e, FERR_INPUT, 0,
			 "'%s' holds an empty passphrase (its first line is "
			 "empty)",
			 path);
		goto out;
	}
	if (memchr(b, '\0', ln)) {
		ferr_set(e, FERR_INPUT, 0,
			 "the passphrase in '%s' contains a NUL byte", path);
		goto out;
	}
	p = malloc(ln + 1);
	if (!p) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	memcpy(p, b, ln);
	p[ln] = '\0';
	*pass = p;
	*len = ln;
	rc = 0;
out:
	sig_wipe_free(b, cap + 1);
	return rc;
}

static char *concat(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	char *s = malloc(na + nb + 1);

	if (!s)
		return NULL;
	memcpy(s, a, na);
	memcpy(s + na, b, nb + 1);
	return s;
}

static int write_all(int fd, const void *p, size_t n)
{
	const unsigned char *c = p;

	while (n) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Create a new temporary file next to `final` with `mode`, write `p` into
 * it and sync it.  On success *tmp is its malloc'd name. */
static int write_tmp(const char *final, mode_t mode, const void *p, size_t n,
		     char **tmp, struct ferr *e)
{
	static const char hex[] = "0123456789abcdef";
	size_t fn = strlen(final);
	char *name = malloc(fn + 32);
	int fd = -1, err;

	*tmp = NULL;
	if (!name)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (int tries = 0; fd < 0; tries++) {
		unsigned char r[6];

		if (tries == 16 || RAND_bytes(r, sizeof(r)) != 1) {
			ERR_clear_error();
			free(name);
			return ferr_set(e, FERR_IO, EEXIST,
					"cannot create a temporary file for "
					"'%s'",
					final);
		}
		memcpy(name, final, fn);
		memcpy(name + fn, ".tmp-", 5);
		for (size_t i = 0; i < sizeof(r); i++) {
			name[fn + 5 + 2 * i] = hex[r[i] >> 4];
			name[fn + 5 + 2 * i + 1] = hex[r[i] & 15];
		}
		name[fn + 5 + 2 * sizeof(r)] = '\0';
		fd = open(name,
			  O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
			  mode);
		if (fd < 0 && errno != EEXIST) {
			err = errno;
			free(name);
			return ferr_errno(e, FERR_IO, err, "cannot create '%s'",
					  final);
		}
	}
	if (write_all(fd, p, n) || fsync(fd)) {
		err = errno;
		close(fd);
		goto fail;
	}
	if (close(fd)) {
		err = errno;
		goto fail;
	}
	*tmp = name;
	return 0;
fail:
	unlink(name);
	free(name);
	return ferr_errno(e, FERR_IO, err, "cannot write '%s'", final);
}

static int exists_error(const char *path, struct ferr *e)
{
	return ferr_set(e, FERR_IO, EEXIST,
			"'%s' already exists; refusing to overwrite it", path);
}

static bool no_links(int err)
{
	return err == EPERM || err == ENOTSUP || err == ENOSYS ||
#if EOPNOTSUPP != ENOTSUP
	       err == EOPNOTSUPP ||
#endif
	       err == EMLINK;
}

/* Put `tmp` in place as `final` without ever replacing an existing file.
 * Returns 0 when linked (tmp remains, to be removed), 1 when renamed (on
 * file systems without hard links, such as FAT: checked just before), -1
 * on failure. */
static int publish(const char *tmp, const char *final, struct ferr *e)
{
	struct stat st;
	int err;

	if (link(tmp, final) == 0)
		return 0;
	err = errno;
	if (err == EEXIST)
		return exists_error(final, e);
	if (no_links(err)) {
		if (lstat(final, &st) == 0)
			return exists_error(final, e);
		if (errno != ENOENT)
			return ferr_errno(e, FERR_IO, errno,
					  "cannot access '%s'", final);
		if (rename(tmp, final) == 0)
			return 1;
		err = errno;
	}
	return ferr_errno(e, FERR_IO, err, "cannot create '%s'", final);
}

/* Best effort: make the new directory entries durable. */
static void sync_dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd;

	if (!slash)
		dir = concat(".", "");
	else if (slash == path)
		dir = concat("/", "");
	else {
		dir = malloc((size_t)(slash - path) + 1);
		if (dir) {
			memcpy(dir, path, (size_t)(slash - path));
			dir[slash - path] = '\0';
		}
	}
	if (!dir)
		return;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
}

/* PEM of the key in a BIO whose memory is wiped when it grows or is
 * freed. */
static int pem_of(const struct sig_key *k, bool priv, const char *pass,
		  size_t passlen, BIO **out, struct ferr *e)
{
	BIO *b = BIO_new(BIO_s_secmem());
	int ok;

	*out = NULL;
	if (!b)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	if (priv)
		ok = PEM_write_bio_PKCS8PrivateKey(
		    b, k->pkey, pass ? EVP_aes_256_cbc() : NULL, pass,
		    pass ? (int)passlen : 0, NULL, NULL);
	else
		ok = PEM_write_bio_PUBKEY(b, k->pkey);
	if (ok != 1) {
		ERR_clear_error();
		BIO_free(b);
		return ferr_set(e, FERR_INPUT, 0, "cannot encode the %s key",
				priv ? "private" : "public");
	}
	*out = b;
	return 0;
}

int sig_key_write(const struct sig_key *k, const char *prefix, const char *pass,
		  size_t passlen, struct ferr *e)
{
	static const char *const ext[2] = {".key", ".pub"};
	static const mode_t mode[2] = {0600, 0644};
	char *path[2] = {NULL, NULL}, *tmp[2] = {NULL, NULL};
	bool placed[2] = {false, false};
	BIO *pem[2] = {NULL, NULL};
	struct stat st;
	int rc = -1;

	if (!k || !k->pkey || !k->has_private)
		return ferr_set(e, FERR_INPUT, 0, "no private key to write");
	if (!prefix || !*prefix)
		return ferr_set(e, FERR_INPUT, 0,
				"empty file name prefix for the key files");
	if (pass && passlen == 0)
		return ferr_set(e, FERR_INPUT, 0, "empty passphrase");
	if (pass && passlen > SIG_MAX_PASSPHRASE)
		return ferr_set(
		    e, FERR_INPUT, 0,
		    "the passphrase is too long (%zu bytes): openssl "
		    "reads at most %u",
		    passlen, SIG_MAX_PASSPHRASE);
	if (pass && memchr(pass, '\0', passlen))
		return ferr_set(e, FERR_INPUT, 0,
				"the passphrase contains a NUL byte");
	for (int i = 0; i < 2; i++) {
		path[i] = concat(prefix, ext[i]);
		if (!path[i]) {
			ferr_set(e, FERR_IO, ENOMEM, "out of memory");
			goto out;
		}
	}
	/* Say which file is in the way before creating anything. */
	for (int i = 0; i < 2; i++) {
		if (lstat(path[i], &st) == 0) {
			exists_error(path[i], e);
			goto out;
		}
		if (errno != ENOENT) {
			ferr_errno(e, FERR_IO, errno, "cannot create '%s'",
				   path[i]);
			goto out;
		}
	}
	if (pem_of(k, true, pass, passlen, &pem[0], e) ||
	    pem_of(k, false, NULL, 0, &pem[1], e))
		goto out;
	for (int i = 0; i < 2; i++) {
		char *p = NULL;
		long n = BIO_get_mem_data(pem[i], &p);

		if (n <= 0 || !p) {
			ferr_set(e, FERR_INPUT, 0, "cannot encode the key");
			goto out;
		}
		if (write_tmp(path[i], mode[i], p, (size_t)n, &tmp[i], e))
			goto out;
	}
	for (int i = 0; i < 2; i++) {
		int r = publish(tmp[i], path[i], e);

		if (r < 0)
			goto out;
		placed[i] = true;
		if (r == 1) {
			free(tmp[i]);
			tmp[i] = NULL;
		}
	}
	rc = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (tmp[i]) {
			unlink(tmp[i]);
			free(tmp[i]);
		}
		if (rc && placed[i])
			unlink(path[i]);
		BIO_free(pem[i]);
	}
	if (path[0])
		sync_dir_of(path[0]);
	free(path[0]);
	free(path[1]);
	ERR_clear_error();
	return rc;
}

/* ---- loading ---- */

/* The first PEM block of buf: type name and DER contents (secure heap). */
struct pem_block {
	char *name;
	char *header;
	unsigned char *der;
	long derlen;
};

static int pem_first(const void *buf, size_t n, struct pem_block *b)
{
	BIO *bio;
	int ok;

	memset(b, 0, sizeof(*b));
	if (n > INT_MAX)
		return -1;
	bio = BIO_new_mem_buf(buf, (int)n);
	if (!bio)
		return -1;
	ok = PEM_read_bio_ex(bio, &b->name, &b->header, &b->der, &b->derlen,
			     PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE);
	BIO_free(bio);
	ERR_clear_error();
	if (ok != 1) {
		memset(b, 0, sizeof(*b));
		return -1;
	}
	return 0;
}

static void pem_block_release(struct pem_block *b)
{
	OPENSSL_secure_free(b->name);
	OPENSSL_secure_free(b->header);
	if (b->der)
		OPENSSL_secure_clear_free(b->der, (size_t)b->derlen);
	memset(b, 0, sizeof(*b));
}

struct pw {
	const char *p;
	size_t n;
};

static int pw_cb(char *buf, int size, int rwflag, void *u)
{
	const struct pw *pw = u;

	(void)rwflag;
	if (!pw || !pw->p || size <= 0 || pw->n > (size_t)size)
		return -1;
	memcpy(buf, pw->p, pw->n);
	return (int)pw->n;
}

static EVP_PKEY *from_p8(const PKCS8_PRIV_KEY_INFO *p8)
{
	return p8 ? EVP_PKCS82PKEY_ex(p8, NULL, NULL) : NULL;
}

/* "ENCRYPTED PRIVATE KEY": PKCS#8 decrypted with the passphrase.  *pkey
 * stays NULL when the decrypted content is no usable key. */
static int load_encrypted_p8(const struct pem_block *b, const char *path,
			     const char *pass, size_t passlen, EVP_PKEY **pkey,
			     struct ferr *e)
{
	const unsigned char *p = b->der;
	X509_SIG *p8e;
	PKCS8_PRIV_KEY_INFO *p8;

	if (!pass)
		return ferr_set(e, FERR_INPUT, 0,
				"private key '%s' is encrypted and no "
				"passphrase was given",
				path);
	p8e = d2i_X509_SIG(NULL, &p, b->derlen);
	if (!p8e || p != b->der + b->derlen) {
		X509_SIG_free(p8e);
		return ferr_set(e, FERR_INPUT, 0,
				"'%s' is not a valid encrypted private key",
				path);
	}
	p8 = PKCS8_decrypt_ex(p8e, pass, (int)passlen, NULL, NULL);
	X509_SIG_free(p8e);
	if (!p8)
		return ferr_set(e, FERR_INPUT, 0,
				"cannot decrypt private key '%s': wrong "
				"passphrase",
				path);
	*pkey = from_p8(p8);
	PKCS8_PRIV_KEY_INFO_free(p8);
	return 0;
}

/* "PRIVATE KEY": plain PKCS#8; NULL unless the DER is exactly one. */
static EVP_PKEY *load_plain_p8(const struct pem_block *b)
{
	const unsigned char *p = b->der;
	PKCS8_PRIV_KEY_INFO *p8;
	EVP_PKEY *pkey = NULL;

	p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, b->derlen);
	if (p8 && p == b->der + b->derlen)
		pkey = from_p8(p8);
	PKCS8_PRIV_KEY_INFO_free(p8);
	return pkey;
}

/* "EC PRIVATE KEY" or "RSA PRIVATE KEY": the traditional format, as
 * `openssl ecparam -genkey` writes, encrypted when its headers say so. */
static int load_traditional(const unsigned char *buf, size_t n,
			    const struct pem_block *b, const char *path,
			    const char *pass, size_t passlen, EVP_PKEY **pkey,
			    struct ferr *e)
{
	bool enc = b->header && strstr(b->header, "ENCRYPTED");
	struct pw pw = {pass, passlen};
	BIO *bio;

	if (enc && !pass)
		return ferr_set(e, FERR_INPUT, 0,
				"private key '%s' is encrypted and no "
				"passphrase was given",
				path);
	bio = BIO_new_mem_buf(buf, (int)n);
	if (bio)
		*pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, pw_cb, &pw, NULL,
						   NULL);
	BIO_free(bio);
	if (!*pkey && enc)
		return ferr_set(e, FERR_INPUT, 0,
				"cannot decrypt private key '%s': wrong "
				"passphrase",
				path);
	return 0;
}

/* The private key in the first PEM block of buf, by the block's type.
 * 0 with *pkey NULL when the block is of a private key type but holds
 * no usable key. */
static int private_from_pem(const unsigned char *buf, size_t n,
			    const char *path, const char *pass, size_t passlen,
			    EVP_PKEY **pkey, struct ferr *e)
{
	struct pem_block b = {0};
	int rc = -1;

	*pkey = NULL;
	if (pem_first(buf, n, &b))
		return ferr_set(e, FERR_INPUT, 0,
				"'%s' is not a PEM private key", path);
	if (strstr(b.name, "PUBLIC KEY")) {
		ferr_set(e, FERR_INPUT, 0,
			 "'%s' is a public key; the private key is needed here",
			 path);
	} else if (!strcmp(b.name, "ENCRYPTED PRIVATE KEY")) {
		rc = load_encrypted_p8(&b, path, pass, passlen, pkey, e);
	} else if (!strcmp(b.name, "PRIVATE KEY")) {
		*pkey = load_plain_p8(&b);
		rc = 0;
	} else if (!strcmp(b.name, "EC PRIVATE KEY") ||
		   !strcmp(b.name, "RSA PRIVATE KEY")) {
		rc = load_traditional(buf, n, &b, path, pass, passlen, pkey, e);
	} else {
		ferr_set(e, FERR_INPUT, 0,
			 "'%s' holds a PEM '%s', not a private key", path,
			 b.name);
	}
	pem_block_release(&b);
	return rc;
}

int sig_load_private(struct sig_key *k, const char *path, const char *pass,
		     size_t passlen, struct ferr *e)
{
	unsigned char *buf = NULL;
	size_t n = 0;
	bool over = false;
	EVP_PKEY *pkey = NULL;
	int rc = -1;

	memset(k, 0, sizeof(*k));
	if (pass && passlen > INT_MAX)
		return ferr_set(e, FERR_INPUT, 0, "the passphrase is too long");
	if (read_capped(path, SIG_MAX_KEY_FILE, false, &buf, &n, &over, e))
		return -1;
	if (over) {
		ferr_set(e, FERR_INPUT, 0,
			 "'%s' is too large for a key file (more than %u "
			 "bytes)",
			 path, SIG_MAX_KEY_FILE);
		goto out;
	}
	if (private_from_pem(buf, n, path, pass, passlen, &pkey, e) < 0)
		goto out;
	if (!pkey) {
		ferr_set(e, FERR_INPUT, 0,
			 "'%s' is not a valid private key or of an unsupported "
			 "type (" ACCEPTED_TYPES ")",
			 path);
		goto out;
	}
	rc = adopt(k, pkey, true, path, e);
out:
	sig_wipe_free(buf, SIG_MAX_KEY_FILE + 1);
	ERR_clear_error();
	return rc;
}

int sig_load_public_mem(struct sig_key *k, const void *pem, size_t len,
			const char *name, struct ferr *e)
{
	struct pem_block b = {0};
	const unsigned char *p;
	EVP_PKEY *pkey = NULL;
	int rc = -1;

	memset(k, 0, sizeof(*k));
	if (!name)
		name = "public key";
	if (len > SIG_MAX_KEY_FILE)
		return ferr_set(e, FERR_INPUT, 0,
				"'%s' is too large for a key file (more than %u "
				"bytes)",
				name, SIG_MAX_KEY_FILE);
	if (!pem || pem_first(pem, len, &b)) {
		ferr_set(e, FERR_INPUT, 0, "'%s' is not a PEM public key",
			 name);
		goto out;
	}
	if (strstr(b.name, "PRIVATE KEY")) {
		ferr_set(e, FERR_INPUT, 0,
			 "'%s' is a private key; give the public key (.pub) "
			 "here",
			 name);
		goto out;
	}
	if (strcmp(b.name, "PUBLIC KEY") != 0) {
		ferr_set(e, FERR_INPUT, 0,
			 "'%s' holds a PEM '%s', not a public key (-----BEGIN "
			 "PUBLIC KEY-----)",
			 name, b.name);
		goto out;
	}
	p = b.der;
	pkey = d2i_PUBKEY_ex(NULL, &p, b.derlen, NULL, NULL);
	if (!pkey || p != b.der + b.derlen) {
		EVP_PKEY_free(pkey);
		ferr_set(e, FERR_INPUT, 0,
			 "'%s' is not a valid public key or of an unsupported "
			 "type (" ACCEPTED_TYPES ")",
			 name);
		goto out;
	}
	rc = adopt(k, pkey, false, name, e);
out:
	pem_block_release(&b);
	ERR_clear_error();
	return rc;
}

int sig_load_public(struct sig_key *k, const char *path, struct ferr *e)
{
	unsigned char *buf = NULL;
	size_t n = 0;
	bool over = false;
	int rc;

	memset(k, 0, sizeof(*k));
	if (read_capped(path, SIG_MAX_KEY_FILE, false, &buf, &n, &over, e))
		return -1;
	if (over)
		rc = ferr_set(e, FERR_INPUT, 0,
			      "'%s' is too large for a key file (more than %u "
			      "bytes)",
			      path, SIG_MAX_KEY_FILE);
	else
		rc = sig_load_public_mem(k, buf, n, path, e);
	/* wiped: it could be a private key given by mistake */
	sig_wipe_free(buf, SIG_MAX_KEY_FILE + 1);
	return rc;
}

/* ---- signatures ---- */

static EVP_MD_CTX *sig_ctx(const struct sig_key *k, bool sign)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	/* Ed25519 is "pure": it hashes the message itself. */
	const char *md = k->type == SIG_ED25519 ? NULL : "SHA256";
	int ok;

	if (!ctx)
		return NULL;
	if (sign)
		ok = EVP_DigestSignInit_ex(ctx, &pctx, md, NULL, NULL, k->pkey,
					   NULL);
	else
		ok = EVP_DigestVerifyInit_ex(ctx, &pctx, md, NULL, NULL,
					     k->pkey, NULL);
	if (ok == 1 && k->type == SIG_RSA3072)
		ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING);
	if (ok != 1) {
		EVP_MD_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int sig_sign(const struct sig_key *k, const void *data, size_t len,
	     unsigned char **sig, size_t *siglen, struct ferr *e)
{
	const unsigned char *d = data ? data : (const unsigned char *)"";
	EVP_MD_CTX *ctx = NULL;
	unsigned char *s = NULL;
	size_t n = 0;
	int rc = -1;

	*sig = NULL;
	*siglen = 0;
	if (!k || !k->pkey || !k->has_private)
		return ferr_set(e, FERR_INPUT, 0,
				"cannot sign: no private key loaded");
	ctx = sig_ctx(k, true);
	if (!ctx || EVP_DigestSign(ctx, NULL, &n, d, len) != 1 || !n)
		goto fail;
	s = malloc(n);
	if (!s) {
		ferr_set(e, FERR_IO, ENOMEM, "out of memory");
		goto out;
	}
	/* the digest context cannot be reused after a one-shot sign */
	EVP_MD_CTX_free(ctx);
	ctx = sig_ctx(k, true);
	if (!ctx || EVP_DigestSign(ctx, s, &n, d, len) != 1)
		goto fail;
	*sig = s;
	*siglen = n;
	s = NULL;
	rc = 0;
	goto out;
fail:
	ferr_set(e, FERR_INPUT, 0, "cannot sign with %s key '%s'",
		 sig_type_name(k->type), k->key_id);
out:
	free(s);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

int sig_verify(const struct sig_key *k, const void *data, size_t len,
	       const unsigned char *sig, size_t siglen, struct ferr *e)
{
	const unsigned char *d = data ? data : (const unsigned char *)"";
	EVP_MD_CTX *ctx;
	int size, ok;

	if (!k || !k->pkey)
		return ferr_set(e, FERR_INPUT, 0,
				"cannot verify: no public key loaded");
	if (!sig || siglen == 0)
		return ferr_set(e, FERR_VERIFY, 0, "the signature is empty");
	size = EVP_PKEY_get_size(k->pkey);
	if (siglen > SIG_MAX_SIG || size <= 0 || siglen > (size_t)size)
		return ferr_set(
		    e, FERR_VERIFY, 0,
		    "the signature is too long (%zu bytes) for %s key "
		    "'%s'",
		    siglen, sig_type_name(k->type), k->key_id);
	ctx = sig_ctx(k, false);
	if (!ctx) {
		ERR_clear_error();
		return ferr_set(e, FERR_INPUT, 0,
				"cannot verify with %s key '%s'",
				sig_type_name(k->type), k->key_id);
	}
	ok = EVP_DigestVerify(ctx, sig, siglen, d, len);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	if (ok != 1)
		return ferr_set(e, FERR_VERIFY, 0,
				"bad signature: it does not verify with %s key "
				"'%s'",
				sig_type_name(k->type), k->key_id);
	return 0;
}

/* ---- base64 ---- */

char *sig_base64_encode(const unsigned char *p, size_t n)
{
	size_t outn;
	char *s;

	if (n > (size_t)INT_MAX / 4 * 3 - 3)
		return NULL;
	outn = (n + 2) / 3 * 4;
	s = malloc(outn + 1);
	if (!s)
		return NULL;
	if (n)
		EVP_EncodeBlock((unsigned char *)s, p, (int)n);
	s[outn] = '\0';
	return s;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int sig_base64_decode(const char *s, size_t n, unsigned char **out,
		      size_t *outlen, struct ferr *e)
{
	unsigned char *o;
	uint32_t acc = 0;
	size_t q = 0, pad = 0, k = 0;
	bool done = false;

	*out = NULL;
	*outlen = 0;
	if (n > SIG_MAX_BASE64)
		return ferr_set(e, FERR_INPUT, 0,
				"invalid base64: more than %u bytes",
				SIG_MAX_BASE64);
	o = malloc(n / 4 * 3 + 3);
	if (!o)
		return ferr_set(e, FERR_IO, ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int v;

		if (c == '\n')
			continue;
		if (c == '\r' && i + 1 < n && s[i + 1] == '\n')
			continue;
		if (done) {
			ferr_set(e, FERR_INPUT, 0,
				 "invalid base64: data after the padding at "
				 "offset %zu",
				 i);
			goto fail;
		}
		if (c == '=') {
			if (q < 2) {
				ferr_set(e, FERR_INPUT, 0,
					 "invalid base64: misplaced '=' at "
					 "offset %zu",
					 i);
				goto fail;
			}
			pad++;
			v = 0;
		} else {
			v = b64_value(c);
			if (v < 0) {
				ferr_set(e, FERR_INPUT, 0,
					 "invalid base64: unexpected character "
					 "0x%02x at offset %zu",
					 c, i);
				goto fail;
			}
			if (pad) {
				ferr_set(e, FERR_INPUT, 0,
					 "invalid base64: misplaced '=' before "
					 "offset %zu",
					 i);
				goto fail;
			}
		}
		acc = acc << 6 | (uint32_t)v;
		if (++q < 4)
			continue;
		/* the bits under the padding must be zero (canonical) */
		if ((pad == 1 && (acc & 0xff)) ||
		    (pad == 2 && (acc & 0xffff))) {
			ferr_set(e, FERR_INPUT, 0,
				 "invalid base64: non-zero bits before the "
				 "padding");
			goto fail;
		}
		o[k++] = (unsigned char)(acc >> 16);
		if (pad < 2)
			o[k++] = (unsigned char)(acc >> 8);
		if (pad < 1)
			o[k++] = (unsigned char)acc;
		done = pad > 0;
		q = 0;
		acc = 0;
	}
	if (q) {
		ferr_set(e, FERR_INPUT, 0,
			 "invalid base64: truncated (missing padding)");
		goto fail;
	}
	if (!k) {
		ferr_set(e, FERR_INPUT, 0, "invalid base64: no data");
		goto fail;
	}
	*out = o;
	*outlen = k;
	return 0;
fail:
	free(o);
	return -1;
}
