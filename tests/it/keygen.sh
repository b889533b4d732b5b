#!/usr/bin/env bash
# ferry keygen: the three key types, file modes, openssl reading the files
# as they are, encrypted keys, refusal to overwrite, exit codes, and that
# the key pair signs and verifies with the openssl command exactly as
# SPEC §3 tells an auditor to check SHA256SUMS.sig.  (Signatures made by
# the library itself are checked against the same openssl commands in
# tests/unit/test_sig.c.)
#
# Usage: keygen.sh FERRY [FEATURE]   (FEATURE: see the end; all)
set -uo pipefail
ferry=$1
feature=${2:-all}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/keygen-it.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
umask 022

# shellcheck source=lib.sh
source "$here/lib.sh"
fail() {
	failed=$((failed + 1))
	echo "FAIL $*"
}
check() { # NAME command...
	local name=$1
	shift
	if "$@" >/dev/null 2>&1; then ok; else fail "$name"; fi
}
check_not() { # NAME command...
	local name=$1
	shift
	if "$@" >/dev/null 2>&1; then fail "$name"; else ok; fi
}
# NAME WANT-CODE PATTERN -- ferry arguments
expect() {
	local name=$1 want=$2 pattern=$3
	shift 3
	local out code
	out=$("$ferry" "$@" 2>&1)
	code=$?
	if [ "$code" = "$want" ] && grep -qE -- "$pattern" <<<"$out"; then
		ok
	else
		fail "$name: exit $code (want $want), output: $out"
	fi
}
mode() { stat -c %a "$1"; }
# sha256:<hex of the public key's DER>, computed by openssl
openssl_id() { echo "sha256:$(openssl pkey -pubin -in "$1" -outform DER | sha256sum | cut -c1-64)"; }
# Sign FILE with KEY using openssl into SIG; verify with the SPEC command.
ossl_sign() { # TYPE KEY DATA SIG [passin]
	if [ "$1" = ed25519 ]; then
		openssl pkeyutl -sign -inkey "$2" -rawin -in "$3" -out "$4" ${5:+-passin "$5"}
	else
		openssl dgst -sha256 -sign "$2" ${5:+-passin "$5"} -out "$4" "$3"
	fi
}
ossl_verify() { # TYPE PUB DATA SIG
	if [ "$1" = ed25519 ]; then
		openssl pkeyutl -verify -pubin -inkey "$2" -rawin -in "$3" -sigfile "$4"
	else
		openssl dgst -sha256 -verify "$2" -signature "$4" "$3"
	fi
}

# --- the three key types
feature_types() {
	local type out code want text id
	printf 'abc  blobs/sha256/abc\n' >SHA256SUMS
	for type in ecdsa-p256 ed25519 rsa-3072; do
		out=$("$ferry" keygen -o "k-$type" --type "$type" 2>&1)
		code=$?
		if [ "$code" = 0 ] && [ -f "k-$type.key" ] && [ -f "k-$type.pub" ]; then ok; else fail "$type: keygen exit $code: $out"; fi
		[ "$(mode "k-$type.key")" = 600 ] && ok || fail "$type: key mode $(mode "k-$type.key")"
		[ "$(mode "k-$type.pub")" = 644 ] && ok || fail "$type: pub mode $(mode "k-$type.pub")"
		check "$type: openssl reads the private key" openssl pkey -in "k-$type.key" -noout
		check "$type: openssl reads the public key" openssl pkey -pubin -in "k-$type.pub" -noout
		[ "$(head -1 "k-$type.key")" = "-----BEGIN PRIVATE KEY-----" ] && ok || fail "$type: PKCS#8 header"
		[ "$(head -1 "k-$type.pub")" = "-----BEGIN PUBLIC KEY-----" ] && ok || fail "$type: SPKI header"
		# the public file is the public half of the private one
		if cmp -s <(openssl pkey -in "k-$type.key" -pubout) "k-$type.pub"; then ok; else fail "$type: .pub matches .key"; fi
		case $type in
		ecdsa-p256) want='ASN1 OID: prime256v1' text=$(openssl pkey -in "k-$type.key" -noout -text) ;;
		ed25519) want='ED25519 Private-Key' text=$(openssl pkey -in "k-$type.key" -noout -text) ;;
		rsa-3072) want='Private-Key: \(3072 bit' text=$(openssl pkey -in "k-$type.key" -noout -text) ;;
		esac
		grep -qE "$want" <<<"$text" && ok || fail "$type: key type ($want)"
		# printed key id = sha256 of the DER public key; file names printed
		id=$(sed -n 's/^key id: *//p' <<<"$out")
		[ "$id" = "$(openssl_id "k-$type.pub")" ] && ok || fail "$type: key id '$id'"
		grep -q "k-$type.key" <<<"$out" && grep -q "k-$type.pub" <<<"$out" && ok || fail "$type: file names printed: $out"
		# openssl signs with the key and verifies with the exact SPEC commands,
		# the signature travelling as base64 like SHA256SUMS.sig
		if ossl_sign "$type" "k-$type.key" SHA256SUMS sig.bin 2>/dev/null &&
			base64 sig.bin >SHA256SUMS.sig; then ok; else fail "$type: openssl signs"; fi
		if [ "$type" = ed25519 ]; then
			check "$type: SPEC verify command" openssl pkeyutl -verify -pubin -inkey "k-$type.pub" -rawin -in SHA256SUMS -sigfile <(base64 -d SHA256SUMS.sig)
		else
			check "$type: SPEC verify command" openssl dgst -sha256 -verify "k-$type.pub" -signature <(base64 -d SHA256SUMS.sig) SHA256SUMS
		fi
		printf 'x' >>SHA256SUMS.tampered
		cat SHA256SUMS >>SHA256SUMS.tampered
		check_not "$type: tampered data fails" ossl_verify "$type" "k-$type.pub" SHA256SUMS.tampered sig.bin
		rm -f SHA256SUMS.tampered
	done
}

# keys differ each time; -q prints nothing
feature_quiet() {
	"$ferry" keygen -q -o q1 >q.out 2>&1 && [ ! -s q.out ] && ok || fail "-q is quiet: $(cat q.out)"
	"$ferry" keygen -q -o q2 >/dev/null 2>&1
	cmp -s q1.pub q2.pub && fail "two keys are identical" || ok
	expect default-type 0 'type: +ecdsa-p256' keygen -o dflt
}

# encrypted private key
feature_encrypted() {
	printf 'abc  blobs/sha256/abc\n' >SHA256SUMS
	printf 'correct horse battery staple\n' >pass.txt
	expect encrypted 0 'encrypted' keygen -o enc --passphrase-file pass.txt
	[ "$(head -1 enc.key)" = "-----BEGIN ENCRYPTED PRIVATE KEY-----" ] && ok || fail "encrypted PKCS#8 header"
	[ "$(mode enc.key)" = 600 ] && ok || fail "encrypted key mode"
	check "openssl decrypts with -passin file:" openssl pkey -in enc.key -noout -passin file:pass.txt
	check_not "openssl needs the passphrase" openssl pkey -in enc.key -noout -passin pass:wrong
	check_not "openssl needs a passphrase" openssl pkey -in enc.key -noout -passin pass:
	openssl asn1parse -in enc.key 2>/dev/null | grep -q aes-256-cbc && ok || fail "AES-256-CBC"
	check "encrypted key signs" ossl_sign ecdsa-p256 enc.key SHA256SUMS enc.sig file:pass.txt
	check "and verifies" ossl_verify ecdsa-p256 enc.pub SHA256SUMS enc.sig
	printf 'crlf pass\r\n' >crlf.txt
	expect crlf-passphrase 0 'encrypted' keygen -o crlf --passphrase-file crlf.txt --type ed25519
	check "CRLF stripped from the passphrase" openssl pkey -in crlf.key -noout -passin 'pass:crlf pass'
	: >empty.txt
	expect empty-passphrase 1 "empty passphrase" keygen -o e1 --passphrase-file empty.txt
	expect missing-passphrase-file 7 "cannot open 'nope.txt'" keygen -o e2 --passphrase-file nope.txt
	head -c 2000 /dev/zero | tr '\0' p >long.txt
	expect long-passphrase 1 "too long" keygen -o e3 --passphrase-file long.txt
	[ ! -e e1.key ] && [ ! -e e2.key ] && [ ! -e e3.key ] && [ ! -e e1.pub ] && ok || fail "nothing written on passphrase errors"
}

# never overwrite: message, exit code, files untouched
feature_no_overwrite() {
	"$ferry" keygen -o k-ed25519 --type ed25519 -q >/dev/null 2>&1 || fail "keygen ed25519"
	cp k-ed25519.key before.key
	cp k-ed25519.pub before.pub
	expect overwrite 7 "'k-ed25519.key' already exists; refusing to overwrite it" keygen -o k-ed25519 --type ed25519
	cmp -s before.key k-ed25519.key && cmp -s before.pub k-ed25519.pub && ok || fail "existing keys untouched"
	rm k-ed25519.key
	expect overwrite-pub 7 "'k-ed25519.pub' already exists" keygen -o k-ed25519
	[ ! -e k-ed25519.key ] && cmp -s before.pub k-ed25519.pub && ok || fail "lone .pub untouched, no .key created"
	ln -s /nonexistent/target dangling.key
	expect dangling-symlink 7 "'dangling.key' already exists" keygen -o dangling
	[ -L dangling.key ] && [ ! -e dangling.pub ] && ok || fail "dangling symlink kept"
	expect no-directory 7 "cannot create 'no/such/dir/k.key'" keygen -o no/such/dir/k
	ls | grep -q '\.tmp-' && fail "temporary files left: $(ls)" || ok
}

# command line errors: exit 2
feature_usage() {
	expect bad-type 2 "--type takes ecdsa-p256, ed25519 or rsa-3072, not 'rsa-2048'" keygen -o x --type rsa-2048
	expect no-output 2 'missing -o PREFIX' keygen
	expect output-no-value 2 "option '-o' needs a value" keygen -o
	expect type-no-value 2 "option '--type' needs a value" keygen -o x --type
	expect unknown-option 2 "unknown option '--frob'" keygen -o x --frob
	expect unknown-short 2 "unknown option '-z'" keygen -z -o x
	expect extra-arg 2 "unexpected argument 'extra'" keygen -o x extra
	expect empty-prefix 2 "-o takes a file name prefix" keygen -o ''
	expect dir-prefix 2 "-o takes a file name prefix" keygen -o ./
	expect bad-progress 2 "--progress" keygen -o x --progress sometimes
	[ ! -e x.key ] && [ ! -e x.pub ] && ok || fail "nothing written on usage errors"
	expect help 0 'usage: ferry keygen -o PREFIX' keygen --help
	expect help-short 0 '--passphrase-file' keygen -h
	expect version 0 '^ferry [0-9]' keygen --version
}

it_main "$feature" types quiet encrypted no_overwrite usage
