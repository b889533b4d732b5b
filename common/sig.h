/* Signing keys and signatures (SPEC §2 keygen, §3 SHA256SUMS.sig).
 *
 * Three key types: ECDSA P-256 (the default), Ed25519 and RSA (3072 to
 * 8192 bits).  Keys are PEM files that the openssl command reads as they
 * are: the private key is PKCS#8 (encrypted with AES-256-CBC when a
 * passphrase is given), the public key a SubjectPublicKeyInfo.  Signatures
 * are exactly what these commands verify:
 *
 *   ECDSA P-256, RSA:  openssl dgst -sha256 -verify K.pub -signature SIG DATA
 *                      (ECDSA: DER ECDSA-Sig-Value over SHA-256;
 *                       RSA: PKCS#1 v1.5 with SHA-256)
 *   Ed25519:           openssl pkeyutl -verify -pubin -inkey K.pub -rawin
 *                      -in DATA -sigfile SIG   (pure Ed25519)
 *
 * A key id is "sha256:" + the hex SHA-256 of the public key's DER
 * (SubjectPublicKeyInfo), i.e. of `openssl pkey -pubin -outform DER`.
 */
#ifndef FERRY_SIG_H
#define FERRY_SIG_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

enum sig_type { SIG_ECDSA_P256, SIG_ED25519, SIG_RSA3072 };

/* Key files larger than this are refused (an RSA-8192 private key in PEM
 * is about 6.5 KB). */
#define SIG_MAX_KEY_FILE (64u * 1024u)
/* Signatures longer than this are refused before any use. */
#define SIG_MAX_SIG 1024u
/* First line of a passphrase file. */
#define SIG_MAX_PASSPHRASE_FILE 4096u
/* The openssl command silently cuts passphrases to 1023 bytes, so a key
 * encrypted with a longer one could not be read by it: keygen refuses. */
#define SIG_MAX_PASSPHRASE 1023u
/* Input accepted by sig_base64_decode. */
#define SIG_MAX_BASE64 (16u * 1024u)
/* RSA key sizes accepted. */
#define SIG_RSA_MIN_BITS 3072
#define SIG_RSA_MAX_BITS 8192

/* 0 and *t set for "ecdsa-p256", "ed25519", "rsa-3072"; -1 otherwise. */
int sig_type_parse(const char *s, enum sig_type *t);
const char *sig_type_name(enum sig_type t);

struct sig_key {
	void *pkey; /* EVP_PKEY */
	enum sig_type type;
	bool has_private;
	char key_id[72]; /* "sha256:" + 64 hex digits */
};

/* Generate a new key pair. */
int sig_keygen(struct sig_key *k, enum sig_type t, struct ferr *e);

/* Write PREFIX.key (PKCS#8 PEM, mode 0600; encrypted with AES-256-CBC
 * when pass is not NULL) and PREFIX.pub (SPKI PEM, mode 0644 less the
 * umask).  Refuses when either file already exists (FERR_IO naming it).
 * Each file is written to a temporary name in the same directory, synced,
 * then linked into place without replacing anything; on failure whatever
 * this call created is removed, and nothing that was there before is
 * touched. */
int sig_key_write(const struct sig_key *k, const char *prefix, const char *pass,
		  size_t passlen, struct ferr *e);

/* Load a private key (PKCS#8 PEM, encrypted or not, or a traditional EC /
 * RSA PEM).  pass may be NULL; it is needed when the key is encrypted.
 * FERR_IO when the file cannot be read, FERR_INPUT for a public key, an
 * encrypted key without or with the wrong passphrase, a malformed file or
 * an unsupported key type. */
int sig_load_private(struct sig_key *k, const char *path, const char *pass,
		     size_t passlen, struct ferr *e);
/* Load a public key (SPKI PEM, "-----BEGIN PUBLIC KEY-----").  A private
 * key given here is refused. */
int sig_load_public(struct sig_key *k, const char *path, struct ferr *e);
/* The same from a PEM held in memory; `name` is used in messages. */
int sig_load_public_mem(struct sig_key *k, const void *pem, size_t len,
			const char *name, struct ferr *e);

/* Sign `data`; *sig is malloc'd (free()), *siglen its length. */
int sig_sign(const struct sig_key *k, const void *data, size_t len,
	     unsigned char **sig, size_t *siglen, struct ferr *e);
/* 0 when `sig` is a valid signature of `data` by k; FERR_VERIFY when not
 * (also for an empty or oversized signature). */
int sig_verify(const struct sig_key *k, const void *data, size_t len,
	       const unsigned char *sig, size_t siglen, struct ferr *e);

/* Read the first line of `path` (without "\n" or "\r\n"), at most
 * SIG_MAX_PASSPHRASE_FILE bytes.  An empty line or a NUL byte is an error
 * (FERR_INPUT); FERR_IO when the file cannot be read.  *pass is malloc'd
 * and NUL-terminated; the caller wipes and frees it (auth_wipe_free or
 * sig_wipe_free). */
int sig_read_passphrase_file(const char *path, char **pass, size_t *len,
			     struct ferr *e);
/* Overwrite n bytes of p and free it; safe on NULL. */
void sig_wipe_free(void *p, size_t n);

/* Free the key; safe on a zeroed or released key. */
void sig_key_release(struct sig_key *k);

/* Base64 (standard alphabet, padded) on one line without a newline;
 * malloc'd, NULL when out of memory. */
char *sig_base64_encode(const unsigned char *p, size_t n);
/* Decode what sig_base64_encode or coreutils `base64` writes: base64
 * characters, with line breaks ("\n" or "\r\n") anywhere between them and
 * "=" padding only at the end.  Anything else (other characters, bad or
 * missing padding, non-zero unused bits, empty input, more than
 * SIG_MAX_BASE64 bytes) is refused with FERR_INPUT.  *out is malloc'd. */
int sig_base64_decode(const char *s, size_t n, unsigned char **out,
		      size_t *outlen, struct ferr *e);

#endif
