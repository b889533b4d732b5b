#!/usr/bin/env bash
# ferry import against the real registries (plain, TLS + Basic, token):
# round trip with skopeo as the independent check, idempotent reruns,
# shared layers, a registry that dies at several points (no tag may point at
# incomplete content; a rerun completes), rollback protection, dry runs,
# and no temporary files.
#
# Usage: import.sh FERRY STATE_DIR [FEATURE]   (FEATURE: see the end; all)
set -uo pipefail
ferry=$1
state=$2
feature=${3:-all}
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d)
proxy_pid=
cleanup() {
	[ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1
# fresh repository names on every run, whatever the registries hold
run=r$$

# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"
digest_of() { # docker://REF [skopeo opts]: manifest digest as served
	skopeo inspect --raw "$@" 2>/dev/null | sha256sum | cut -d' ' -f1 | sed 's/^/sha256:/'
}
catalog() { # HOST CURL-OPTS...: repositories and their tags, sorted
	local host=$1
	shift
	local scheme=https
	[ "$host" = "$FERRY_TEST_PLAIN" ] && scheme=http
	for r in $(curl -sf "$@" "$scheme://$host/v2/_catalog?n=10000" | jq -r '.repositories[]?'); do
		echo "$r: $(curl -sf "$@" "$scheme://$host/v2/$r/tags/list" | jq -c '.tags | sort?')"
	done
}
core=$FERRY_TEST_PLAIN/$(grep -m1 harbor-core "$FERRY_TEST_IMAGES" | cut -f1)
jobs=$FERRY_TEST_PLAIN/$(grep -m1 harbor-jobservice "$FERRY_TEST_IMAGES" | cut -f1)

# Shared by the features: the key k, every image of the plain registry in
# all.tar.zst, harbor-core in a.tar, harbor-core and harbor-jobservice
# (which share layers with it) in b.tar, and the blob cache.
make_shared() {
	"$ferry" keygen -o k -q >/dev/null || { echo "keygen failed"; return 1; }
	cut -f1 "$FERRY_TEST_IMAGES" | sed "s|^|$FERRY_TEST_PLAIN/|" >all.txt
	"$ferry" export -q -f all.txt -o all.tar.zst --key k.key --insecure-registry 127.0.0.1 \
		--cache cache >/dev/null || { echo "export failed"; return 1; }
	"$ferry" export -q "$core" -o a.tar --compress none --key k.key --insecure-registry 127.0.0.1 \
		--cache cache >/dev/null || { echo "export a failed"; return 1; }
	"$ferry" export -q "$core" "$jobs" -o b.tar --compress none --key k.key --insecure-registry 127.0.0.1 \
		--cache cache >/dev/null || { echo "export b failed"; return 1; }
}
# use_shared NAME...: links to these shared files here (ferry only reads them;
# a feature that writes to the cache copies it)
use_shared() {
	local f
	it_shared make_shared || return 1
	for f in "$@"; do ln -s "$shared/$f" "$f" || return 1; done
}

# --- round trip into every setup; the same bundle again uploads nothing
feature_roundtrip() {
	use_shared k.pub all.tar.zst || return
	local setup host opts sk ref digest
	for setup in plain tls token; do
		case $setup in
		plain) host=$FERRY_TEST_PLAIN opts=(--insecure-registry 127.0.0.1) sk=(--tls-verify=false) ;;
		tls) host=$FERRY_TEST_TLS opts=(--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_AUTHFILE")
			sk=(--cert-dir "$FERRY_TEST_CERT_DIR" --authfile "$FERRY_TEST_AUTHFILE") ;;
		token) host=$FERRY_TEST_TOKEN opts=(--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_AUTHFILE")
			sk=(--cert-dir "$FERRY_TEST_CERT_DIR" --authfile "$FERRY_TEST_AUTHFILE") ;;
		esac
		if "$ferry" import all.tar.zst --key k.pub --to "$host/${run}rt" --state-dir "st-$setup" \
			--report "r-$setup.json" -q "${opts[@]}"; then ok; else bad "import into $setup"; fi
		while IFS=$'\t' read -r ref digest _; do
			check "$setup: $ref has its source digest" [ "$(digest_of "docker://$host/${run}rt/$ref" "${sk[@]}")" = "$digest" ]
		done <"$FERRY_TEST_IMAGES"
		ref=$(grep -m1 harbor-portal "$FERRY_TEST_IMAGES" | cut -f1)
		check "$setup: skopeo pulls the multi-arch image back" \
			skopeo copy -q --all --preserve-digests "${sk[@]/--cert-dir/--src-cert-dir}" \
			"docker://$host/${run}rt/$ref" "oci:pulled-$setup:x"
		check "$setup: report counts" jqe '.blobs.pushed > 0 and .tagsPushed == 7' "r-$setup.json"
		# the same bundle again, with fresh rollback state: nothing uploaded
		"$ferry" import all.tar.zst --key k.pub --to "$host/${run}rt" --state-dir "st2-$setup" \
			--report "r2-$setup.json" -q "${opts[@]}" || bad "re-import into $setup"
		check "$setup: second import uploads nothing" \
			jqe '.blobs.pushed == 0 and .blobs.bytesPushed == 0 and .manifestsPushed == 0 and .tagsPushed == 0' "r2-$setup.json"
	done
	# with the same state: a fast no-op
	expect "same bundle again" 0 "already imported" import all.tar.zst --key k.pub \
		--to "$FERRY_TEST_PLAIN/${run}rt" --state-dir st-plain --insecure-registry 127.0.0.1
}

# --- keep-registry layout
feature_keep_registry() {
	use_shared k.pub all.tar.zst || return
	local ref
	"$ferry" import all.tar.zst --key k.pub --to "$FERRY_TEST_PLAIN/${run}mirror" --keep-registry \
		--state-dir st-keep --insecure-registry 127.0.0.1 -q || bad "import --keep-registry"
	ref=$(head -1 "$FERRY_TEST_IMAGES" | cut -f1)
	check "--keep-registry keeps the source registry as a path component" \
		[ "$(digest_of "docker://$FERRY_TEST_PLAIN/${run}mirror/${FERRY_TEST_PLAIN/:/-}/$ref" --tls-verify=false)" = \
		"$(head -1 "$FERRY_TEST_IMAGES" | cut -f2)" ]
}

# --- a second bundle that shares layers: shared blobs are not sent again
feature_shared_layers() {
	use_shared k.pub a.tar b.tar || return
	local core_blobs total_b
	"$ferry" import a.tar --key k.pub --to "$FERRY_TEST_PLAIN/${run}shared" --state-dir st-a --insecure-registry 127.0.0.1 -q || bad "import a"
	"$ferry" import b.tar --key k.pub --to "$FERRY_TEST_PLAIN/${run}shared" --state-dir st-b --insecure-registry 127.0.0.1 \
		--report rb.json -q || bad "import b"
	core_blobs=$(tar -tf a.tar | grep -c '^blobs/')
	check "shared blobs skipped ($(jq -c .blobs rb.json), bundle a had $core_blobs blobs)" \
		jqe ".blobs.skipped >= $core_blobs - 1" rb.json
	check "the base layer shared across repositories is mounted, not sent" jqe '.blobs.mounted >= 1' rb.json
	total_b=$(tar -tvf b.tar | awk '/blobs\//{s+=$3} END{print s}')
	check "second bundle sent less than half its size" [ "$(jq .blobs.bytesPushed rb.json)" -lt "$((total_b / 2))" ]
}

# --- dry run: nothing written
feature_dry_run() {
	use_shared k.pub all.tar.zst || return
	local before
	before=$(catalog "$FERRY_TEST_PLAIN")
	expect "dry run" 0 "would send" import all.tar.zst --key k.pub --to "$FERRY_TEST_PLAIN/${run}dry" \
		--state-dir st-dry --insecure-registry 127.0.0.1 --dry-run
	check "dry run wrote nothing" [ "$(catalog "$FERRY_TEST_PLAIN")" = "$before" ]
	check "dry run kept no state" [ ! -e st-dry/import-state.json ]
}

# --- rollback protection
feature_rollback() {
	use_shared k.key k.pub || return
	cp -r "$shared/cache" cache
	"$ferry" export -q "$core" -o seq10.tar --compress none --key k.key --insecure-registry 127.0.0.1 \
		--cache cache --channel weekly --sequence 10 >/dev/null
	"$ferry" export -q "$core" -o seq5.tar --compress none --key k.key --insecure-registry 127.0.0.1 \
		--cache cache --channel weekly --sequence 5 >/dev/null
	"$ferry" import seq10.tar --key k.pub --to "$FERRY_TEST_PLAIN/${run}rb" --state-dir st-rb --insecure-registry 127.0.0.1 -q ||
		bad "import sequence 10"
	expect "older bundle refused" 5 "rollback refused.*sequence 10.*sequence 5" import seq5.tar --key k.pub \
		--to "$FERRY_TEST_PLAIN/${run}rb" --state-dir st-rb --insecure-registry 127.0.0.1
	expect "--allow-rollback accepts it" 0 "imported" import seq5.tar --key k.pub \
		--to "$FERRY_TEST_PLAIN/${run}rb" --state-dir st-rb --insecure-registry 127.0.0.1 --allow-rollback
	expect "and the state keeps the highest sequence" 5 "rollback refused" import seq5.tar --key k.pub \
		--to "$FERRY_TEST_PLAIN/${run}rb" --state-dir st-rb --insecure-registry 127.0.0.1
}

# --- errors
feature_errors() {
	use_shared k.pub all.tar.zst || return
	expect "wrong key" 5 "signature" import all.tar.zst --key <("$ferry" keygen -o other -q >/dev/null; cat other.pub) \
		--to "$FERRY_TEST_PLAIN/${run}x" --state-dir st-x --insecure-registry 127.0.0.1
	expect "wrong credentials" 4 "authentication to registry" import all.tar.zst --key k.pub \
		--to "$FERRY_TEST_TLS/${run}x" --state-dir st-x --ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_BAD_AUTHFILE"
	expect "no --to" 2 "--to" import all.tar.zst --key k.pub
}

# --- no temporary files, bounded memory
feature_footprint() {
	use_shared k.pub all.tar.zst || return
	local created
	mkdir tmpcheck
	TMPDIR=$PWD/tmpcheck /usr/bin/time -f '%M' -o mem.txt "$ferry" import all.tar.zst --key k.pub \
		--to "$FERRY_TEST_PLAIN/${run}tmpcheck" --state-dir st-tmp --insecure-registry 127.0.0.1 -q || bad "import (tmp check)"
	check "no temporary files in TMPDIR" [ -z "$(ls -A tmpcheck)" ]
	# every file import creates is its rollback state, nothing else
	# (LeakSanitizer cannot run under ptrace: leaks are checked by every other run)
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
		strace -f -qq -e trace=openat,open,creat,mkdir -o trace.txt "$ferry" import all.tar.zst --key k.pub \
		--to "$FERRY_TEST_PLAIN/${run}tmpcheck2" --state-dir st-tmp2 --insecure-registry 127.0.0.1 -q ||
		bad "import under strace"
	created=$(grep -E 'O_CREAT|creat\(|mkdir\(' trace.txt | grep -v ' = -1 ' | grep -v "st-tmp2" || true)
	check "import creates no file but its state ($(wc -l <<<"$created") other)" [ -z "$created" ]
	check "strace saw the state file" grep -q "st-tmp2/import-state.json" trace.txt
	check "peak memory $(cat mem.txt) KiB < 64 MiB" [ "$(cat mem.txt)" -lt 65536 ]
}

# --- upload Locations on another host get no credentials
feature_upload_credentials() {
	use_shared k.pub a.tar || return
	local fport
	rm -f fake.port
	python3 "$fixtures/fakereg.py" fake.port fake.log &
	proxy_pid=$!
	for _ in $(seq 100); do [ -s fake.port ] && break; sleep 0.1; done
	fport=$(sed -n 1p fake.port)
	printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$fport" "$(printf ferry:fake-secret | base64)" >fake-auth.json
	if "$ferry" import a.tar --key k.pub --to "127.0.0.1:$fport/uploc" --state-dir st-fake \
		--insecure-registry 127.0.0.1 --insecure-registry localhost --authfile fake-auth.json -q; then ok; else
		bad "import into a registry whose upload Locations are on another host"
	fi
	kill "$proxy_pid" 2>/dev/null
	wait "$proxy_pid" 2>/dev/null
	proxy_pid=
	check "uploads went to the Location's host" grep -q '"host": "localhost:'"$fport"'", "method": "PUT"' fake.log
	check "no credentials to the upload host" \
		bash -c "! grep '\"host\": \"localhost:' fake.log | grep -q '\"auth\": true'"
	check "credentials to the registry host" grep -q '"host": "127.0.0.1:'"$fport"'", "method": "POST", "path": "/v2/uploc/[^"]*", "auth": true' fake.log
}

# --- the registry dies halfway: during a layer (die1), between blobs and
# manifests (die2), during tagging (die3). Every tag that exists must point
# at complete content; the rerun completes.
dying_registry() { # N MATCH AFTER
	local n=$1 match=$2 after=$3
	local port target tags ref digest repo tag
	rm -f proxy.port
	DIEPROXY_MATCH=$match DIEPROXY_AFTER=$after python3 "$fixtures/dieproxy.py" proxy.port "$FERRY_TEST_PLAIN" proxy.log &
	proxy_pid=$!
	for _ in $(seq 100); do [ -s proxy.port ] && break; sleep 0.1; done
	port=$(cat proxy.port)
	target=127.0.0.1:$port/${run}die$n
	expect "dies at '$match' #$((after + 1)): error" 3 "registry '127.0.0.1:$port'" import all.tar.zst \
		--key k.pub --to "$target" --state-dir "st-die$n" --insecure-registry 127.0.0.1
	kill "$proxy_pid" 2>/dev/null # in case it did not die
	wait "$proxy_pid" 2>/dev/null
	proxy_pid=
	# look at the registry itself: every tag present is complete
	tags=0
	while IFS=$'\t' read -r ref digest _; do
		repo=${ref%:*}
		tag=${ref##*:}
		if skopeo inspect --raw --tls-verify=false "docker://$FERRY_TEST_PLAIN/${run}die$n/$ref" >/dev/null 2>&1; then
			tags=$((tags + 1))
			check "die$n: tag $ref points at complete content" skopeo copy -q --all --preserve-digests \
				--src-tls-verify=false "docker://$FERRY_TEST_PLAIN/${run}die$n/$ref" "oci:die$n-$tags:x"
			check "die$n: tag $ref has the right digest" [ "$(digest_of "docker://$FERRY_TEST_PLAIN/${run}die$n/$ref" --tls-verify=false)" = "$digest" ]
		fi
	done <"$FERRY_TEST_IMAGES"
	case $n in
	1 | 2) check "die$n: no tag written before everything was in place ($tags)" [ "$tags" = 0 ] ;;
	3) check "die$n: died during tagging ($tags tags written)" [ "$tags" -ge 1 ] ;;
	esac
	python3 "$fixtures/dieproxy.py" proxy.port2 "$FERRY_TEST_PLAIN" proxy.log - "$port" &
	proxy_pid=$!
	rm -f proxy.port2
	for _ in $(seq 100); do [ -s proxy.port2 ] && break; sleep 0.1; done
	if "$ferry" import all.tar.zst --key k.pub --to "$target" --state-dir "st-die$n" \
		--insecure-registry 127.0.0.1 --report "rdie$n.json" -q; then ok; else bad "die$n: rerun"; fi
	kill "$proxy_pid" 2>/dev/null
	wait "$proxy_pid" 2>/dev/null
	proxy_pid=
	while IFS=$'\t' read -r ref digest _; do
		check "die$n: after the rerun $ref is complete" \
			[ "$(digest_of "docker://$FERRY_TEST_PLAIN/${run}die$n/$ref" --tls-verify=false)" = "$digest" ]
	done <"$FERRY_TEST_IMAGES"
	[ "$n" -ge 2 ] && check "die$n: rerun skipped what was already there ($(jq -c .blobs "rdie$n.json"))" \
		jqe '.blobs.bytesPushed == 0' "rdie$n.json"
}
feature_dying_registry_layer() {
	use_shared k.pub all.tar.zst || return
	dying_registry 1 "PATCH /v2/.*/blobs/uploads" 0
}
feature_dying_registry_manifests() {
	use_shared k.pub all.tar.zst || return
	dying_registry 2 "PUT /v2/.*/manifests/sha256" 0
}
feature_dying_registry_tagging() {
	use_shared k.pub all.tar.zst || return
	dying_registry 3 "PUT /v2/.*/manifests/[^s][^/]*$" 2
}

it_main "$feature" roundtrip keep_registry shared_layers dry_run rollback errors footprint \
	upload_credentials dying_registry_layer dying_registry_manifests dying_registry_tagging
