#!/usr/bin/env bash
# Registry client against the real CNCF distribution registries started by
# the fixture (plain HTTP, TLS + Basic auth, token auth): resolve and fetch
# every image of the generated set with verification, then the failures:
# untrusted TLS, missing and wrong credentials, corrupted storage, a
# registry that is down.
#
# Usage: real_registries.sh REGCHECK STATE_DIR [FEATURE]   (FEATURE: see
# the end; all)
set -euo pipefail
regcheck=$1
state=$2
feature=${3:-all}
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"
LAST_OUT=
run() { # NAME EXPECT PATTERN -- regcheck args...
	local name=$1 expect=$2 pattern=$3
	shift 3
	local out
	if out=$("$regcheck" --expect "$expect" "$@" 2>&1) &&
		{ [ -z "$pattern" ] || grep -qE -- "$pattern" <<<"$out"; }; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAIL $name: expected $expect /$pattern/"
		echo "$out" | tail -20 | sed 's/^/    /'
	fi
	LAST_OUT=$out
}
stat() { sed -n "s/^stat $1 //p" <<<"$LAST_OUT"; }
check() {
	local name=$1
	shift
	if "$@"; then passed=$((passed + 1)); else
		failed=$((failed + 1))
		echo "FAIL $name"
	fi
}

repos=$(cut -f1 "$FERRY_TEST_IMAGES" | sed 's/:[^:]*$//' | sort -u | wc -l)
images=$(grep -c . "$FERRY_TEST_IMAGES")
plain=(--insecure 127.0.0.1 "$FERRY_TEST_PLAIN")
tls=(--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_AUTHFILE" "$FERRY_TEST_TLS")
token=(--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_AUTHFILE" "$FERRY_TEST_TOKEN")
empty_auth=$work/empty-auth.json
echo '{}' >"$empty_auth"

# --- everything fetches and verifies, in all three setups
feature_fetch_all() {
	local setup
	for setup in plain tls token; do
		declare -n args=$setup
		run "fetch-all $setup" ok "" "${args[@]}" fetch-all "$FERRY_TEST_IMAGES"
		check "$setup: every image checked" [ "$(grep -c '^ok ' <<<"$LAST_OUT")" = "$images" ]
		check "$setup: connection reuse ($(stat connections) connections for $(stat requests) requests)" \
			[ "$(stat connections)" -le 3 ]
		check "$setup: no retries" [ "$(stat retries)" = 0 ]
	done
	check "token: one token per repository ($(stat token_fetches) for $repos)" \
		[ "$(stat token_fetches)" = "$repos" ]
	# anonymous pull through the token flow
	run "token anonymous" ok "" --ca-file "$FERRY_TEST_CA" --authfile "$empty_auth" \
		"$FERRY_TEST_TOKEN" manifest goharbor/harbor-core v2.3.0
}

# --- TLS is verified by default; --insecure-registry relaxes it for that host only
feature_tls_verify() {
	run "untrusted CA" network "certificate" --authfile "$FERRY_TEST_AUTHFILE" \
		"$FERRY_TEST_TLS" manifest goharbor/harbor-core v2.3.0
	run "insecure other host" network "certificate" --insecure 127.0.0.2 \
		--authfile "$FERRY_TEST_AUTHFILE" "$FERRY_TEST_TLS" manifest goharbor/harbor-core v2.3.0
	run "insecure this host" ok "" --insecure "$FERRY_TEST_TLS" \
		--authfile "$FERRY_TEST_AUTHFILE" "$FERRY_TEST_TLS" manifest goharbor/harbor-core v2.3.0
}

# --- credentials
feature_credentials() {
	run "basic: no credentials" auth "requires authentication" --ca-file "$FERRY_TEST_CA" \
		--authfile "$empty_auth" "$FERRY_TEST_TLS" manifest goharbor/harbor-core v2.3.0
	run "basic: wrong password" auth "authentication to registry .* failed for user '$FERRY_TEST_USER'" \
		--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_BAD_AUTHFILE" \
		"$FERRY_TEST_TLS" manifest goharbor/harbor-core v2.3.0
	run "token: wrong password" auth "authentication to registry .* failed" \
		--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_BAD_AUTHFILE" \
		"$FERRY_TEST_TOKEN" manifest goharbor/harbor-core v2.3.0
	check "no password in any output" bash -c "! grep -rqF -- '$FERRY_TEST_PASS' <<<'$LAST_OUT'"
}

feature_unknown_tag() {
	run "unknown tag" network "404" "${plain[@]}" manifest goharbor/harbor-core no-such-tag
}

# --- corrupted storage: a layer, then a manifest
line=$(grep -m1 goharbor/harbor-core "$FERRY_TEST_IMAGES")
repo=${line%%:*}
mdigest=$(cut -f2 <<<"$line")
layer=$(cut -f4 <<<"$line" | tr ' ' '\n' | while read -r d; do
	[ -n "$d" ] && printf '%s\t%s\n' "$(grep -F "$d" "$FERRY_TEST_BLOBS" | cut -f2)" "$d"
done | sort -n | tail -1 | cut -f2)
lsize=$(grep -F "$layer" "$FERRY_TEST_BLOBS" | cut -f2)
corrupt() { # DIGEST: flip one byte in the middle of its data file
	local hex=${1#sha256:}
	local f=$FERRY_TEST_PLAIN_STORAGE/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
	cp "$f" "$f.orig"
	python3 - "$f" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x01
open(p, "wb").write(b)
PY
}
restore() {
	local hex=${1#sha256:}
	local f=$FERRY_TEST_PLAIN_STORAGE/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
	mv "$f.orig" "$f"
}
feature_corrupt_storage() {
	run "layer before corruption" ok "" "${plain[@]}" blob "$repo" "$layer" "$lsize"
	corrupt "$layer"
	run "corrupted layer" verify "does not match its digest" "${plain[@]}" blob "$repo" "$layer" "$lsize"
	restore "$layer"
	corrupt "$mdigest"
	run "corrupted manifest by tag" verify "hashes to" "${plain[@]}" manifest "$repo" v2.3.0
	run "corrupted manifest by digest" verify "does not match its digest" "${plain[@]}" manifest "$repo" "$mdigest"
	restore "$mdigest"
	run "restored" ok "" "${plain[@]}" manifest "$repo" "$mdigest"
}

# --- registry down: network error after bounded retries
feature_registry_down() {
	local start elapsed
	"$fixtures/registries.sh" stop-one "$state" plain
	start=$(date +%s)
	run "registry down" network "cannot reach registry .* after 5 attempts" \
		"${plain[@]}" manifest "$repo" v2.3.0
	elapsed=$(($(date +%s) - start))
	check "gave up within 30 s (${elapsed} s)" [ "$elapsed" -le 30 ]
	"$fixtures/registries.sh" start-one "$state" plain
	run "registry back" ok "" "${plain[@]}" manifest "$repo" v2.3.0
}

it_main "$feature" fetch_all tls_verify credentials unknown_tag corrupt_storage registry_down
