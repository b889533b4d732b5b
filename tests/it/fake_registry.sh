#!/usr/bin/env bash
# Registry client against a misbehaving registry: retries and backoff,
# immediate 4xx failures, lying digests, size caps, schema1, redirect loops,
# resumed blobs, and where credentials may go (redirects, token realms).
#
# Usage: fake_registry.sh REGCHECK [FEATURE]   (FEATURE: see the end; all)
set -euo pipefail
regcheck=$1
feature=${2:-all}
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"
# run NAME EXPECT [GREP] -- ARGS...: run regcheck, check category and message
run() {
	local name=$1 expect=$2 pattern=$3
	shift 3
	local out
	if out=$("$regcheck" --insecure 127.0.0.1 --insecure localhost \
		--authfile auth.json --expect "$expect" "$host" "$@" 2>&1) &&
		{ [ -z "$pattern" ] || grep -qE -- "$pattern" <<<"$out"; }; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAIL $name: expected $expect /$pattern/"
		echo "$out" | sed 's/^/    /'
	fi
	LAST_OUT=$out
}
stat() { sed -n "s/^stat $1 //p" <<<"$LAST_OUT"; }
check() { # check NAME CONDITION...
	local name=$1
	shift
	if "$@"; then passed=$((passed + 1)); else
		failed=$((failed + 1))
		echo "FAIL $name"
	fi
}

# start_fake: a fake registry for this feature, logging to ./log; sets
# $host, $port, $blob, $size and writes ./auth.json for the host
start_fake() {
	python3 "$fixtures/fakereg.py" "$PWD/port" "$PWD/log" &
	pid=$!
	for _ in $(seq 100); do [ -s port ] && break; sleep 0.1; done
	[ -s port ] || { echo "fake registry did not start"; exit 1; }
	port=$(sed -n 1p port)
	blob=$(sed -n 2p port)
	size=$(sed -n 3p port)
	host=127.0.0.1:$port
	printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$host" \
		"$(printf ferry:fake-secret | base64)" >auth.json
}
# stop_fake: stop it; credentials went only to the registry host itself
stop_fake() {
	local leaks
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
	leaks=$(python3 - log "$host" <<'PY'
import json, sys
bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["auth"] and r["host"] != sys.argv[2]:
        bad += 1
        print("credentials sent to", r["host"], r["path"], file=sys.stderr)
print(bad)
PY
)
	check "no credentials to other hosts" [ "$leaks" = 0 ]
}

feature_retries() {
	local start ms
	start_fake
	run plain ok "" manifest ok/app t
	run retry-5xx-429 ok "" manifest flaky/app t
	check "two retries" [ "$(stat retries)" = 2 ]
	start=$(date +%s%N)
	run gives-up network "answered 503 .* after 5 attempts" manifest down/app t
	ms=$((($(date +%s%N) - start) / 1000000))
	check "bounded backoff (${ms} ms)" [ "$ms" -lt 20000 ]
	run 4xx-at-once network "400.*MANIFEST_INVALID: you asked wrong" manifest bad/app t
	check "no retry on 400" [ "$(stat retries)" = 0 ]
	stop_fake
}

feature_content() {
	start_fake
	run lying-digest verify "content hashes to" manifest lying/app t
	run size-cap verify "larger than the 4194304-byte limit" manifest big/app t
	run schema1 input "schema 1" manifest schema1/app t
	run digest-mismatch verify "does not match its digest" manifest ok/app "sha256:$(printf %064d 0)"
	run bad-digest input "invalid digest" manifest ok/app "sha256:ABC"
	run blob-too-long verify "larger than its descriptor" blob long/app "$blob" "$size"
	run blob-corrupt verify "does not match its digest" blob corrupt/app "$blob" "$size"
	stop_fake
}

feature_redirects() {
	start_fake
	run redirect-loop network "too many redirects" manifest loop/app t
	run redirect-other-host ok "" blob redir/app "$blob" "$size"
	run redirect-plain-http network "not an https URL" blob redir-plain/app "$blob" "$size"
	check "redirect target was reached" grep -q '"host": "localhost:'"$port"'", "path": "/data/' log
	stop_fake
}

feature_resume() {
	start_fake
	run resume-206 ok "" blob cut/app "$blob" "$size"
	check "resumed once" [ "$(stat retries)" = 1 ]
	run bad-content-range network "Content-Range" blob badrange/app "$blob" "$size"
	check "range request sent" grep -q '"range": "bytes=100000-"' log
	stop_fake
}

feature_token_realm() {
	start_fake
	run token-realm-other-host ok "" manifest tokrealm/app t
	run token-realm-plain-http auth "not an https URL" manifest tokplain/app t
	run token-service-redirects-off-host ok "" manifest tokhop/app t
	check "token realm was reached without credentials" \
		grep -q '"host": "localhost:'"$port"'", "path": "/token?service=fake&scope=repository%3Atokrealm%2Fapp%3Apull", "auth": false' log
	check "token service on the registry's host got the credentials" \
		grep -q '"host": "127.0.0.1:'"$port"'", "path": "/tokenhop?[^"]*", "auth": true' log
	check "its redirect to another host carried none" \
		grep -q '"host": "localhost:'"$port"'", "path": "/token?service=fake&scope=repository%3Atokhop%2Fapp%3Apull", "auth": false' log
	stop_fake
}

it_main "$feature" retries content redirects resume token_realm
