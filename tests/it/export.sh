#!/usr/bin/env bash
# ferry export against the real registries (plain, TLS + Basic, token):
# the bundle is an OCI layout skopeo reads, with the digests of the source;
# SHA256SUMS and its signature check with sha256sum and openssl alone;
# exports are reproducible; failures (dead registry, corrupted blob, missing
# platform, unknown tag, bad images-file line, wrong credentials) leave no
# bundle behind and say what went wrong; a rerun resumes from the cache.
#
# Usage: export.sh FERRY STATE_DIR [FEATURE]   (FEATURE: see the end; all)
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
	for f in "$work"/*/corrupt-*; do [ -e "$f" ] && mv "$(cat "$f")".orig "$(cat "$f")"; done
	rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1

# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"
no_output() { # NAME: no such bundle and no temporary file left
	[ ! -e "$1" ] && [ -z "$(find . -maxdepth 1 -name '.*ferry-*')" ]
}

list() { # HOST: the fixture's images under that registry
	cut -f1 "$FERRY_TEST_IMAGES" | sed "s|^|$1/|"
}
portal=$FERRY_TEST_PLAIN/$(grep -m1 harbor-portal "$FERRY_TEST_IMAGES" | cut -f1)
want=$(grep -m1 harbor-portal "$FERRY_TEST_IMAGES" | cut -f2)

# Shared by the features: the keys, and the images of the plain registry
# exported into out-plain/b.tar.zst through the blob cache cache-plain.
make_shared() {
	"$ferry" keygen -o ecdsa -q >/dev/null || { echo "keygen ecdsa failed"; return 1; }
	"$ferry" keygen -o ed --type ed25519 -q >/dev/null || { echo "keygen ed25519 failed"; return 1; }
	list "$FERRY_TEST_PLAIN" >plain.txt
	mkdir -p out-plain
	"$ferry" export -f plain.txt -o out-plain/b.tar.zst --key ecdsa.key --cache cache-plain \
		--report out-plain/report.json --insecure-registry 127.0.0.1 -q >/dev/null ||
		{ echo "export from plain failed"; return 1; }
}
# use_shared [NAME...]: (copies of) these shared files here; default: all
use_shared() {
	it_shared make_shared || return 1
	if [ $# = 0 ]; then cp -r "$shared"/. .; else (cd "$shared" && cp -r "$@" "$OLDPWD"); fi
}

# --- every setup: export, then skopeo reads every image with the source digest
feature_skopeo_crosscheck() {
	use_shared ecdsa.key ecdsa.pub || return
	local setup host opts ref digest mt got
	for setup in plain tls token; do
		case $setup in
		plain) host=$FERRY_TEST_PLAIN opts=(--insecure-registry 127.0.0.1) ;;
		tls) host=$FERRY_TEST_TLS opts=(--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_AUTHFILE") ;;
		token) host=$FERRY_TEST_TOKEN opts=(--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_AUTHFILE") ;;
		esac
		list "$host" >"$setup.txt"
		mkdir -p "out-$setup"
		if "$ferry" export -f "$setup.txt" -o "out-$setup/b.tar.zst" --key ecdsa.key \
			--cache "cache-$setup" --report "out-$setup/report.json" "${opts[@]}" -q; then
			ok
		else
			bad "export from $setup"
			continue
		fi
		while IFS=$'\t' read -r ref digest mt _; do
			case $mt in
			application/vnd.docker.*)
				# skopeo 1.9 (Debian 12) skips index.json entries with Docker
				# media types: check the descriptor and the blob instead
				check "$setup: index.json names $ref with its source digest" bash -c \
					"tar -xOf out-$setup/b.tar.zst index.json | jq -e --arg r '$host/$ref' --arg d '$digest' '.manifests[] | select(.annotations[\"org.opencontainers.image.ref.name\"] == \$r and .digest == \$d)' >/dev/null"
				got=$(tar -xOf "out-$setup/b.tar.zst" "blobs/sha256/${digest#sha256:}" | sha256sum | cut -d' ' -f1)
				check "$setup: $ref manifest in the bundle" [ "sha256:$got" = "$digest" ]
				;;
			*)
				got=$(skopeo inspect --raw "oci-archive:out-$setup/b.tar.zst:$host/$ref" | sha256sum | cut -d' ' -f1)
				check "$setup: skopeo reads $ref with its source digest" [ "sha256:$got" = "$digest" ]
				;;
			esac
		done <"$FERRY_TEST_IMAGES"
		check "$setup: report lists every image" \
			[ "$(jq '.images | length' "out-$setup/report.json")" = "$(grep -c . "$FERRY_TEST_IMAGES")" ]
	done
}

# --- the bundle's layout, checked with tools that are not ferry
feature_layout() {
	use_shared ecdsa.pub out-plain || return
	mkdir x && tar -xf out-plain/b.tar.zst -C x
	check "entry order" [ "$(tar -tf out-plain/b.tar.zst | head -6 | tr '\n' ' ')" = \
		"oci-layout ferry.json index.json manifest.json SHA256SUMS SHA256SUMS.sig " ]
	check "regular files only, no ./ prefix" bash -c \
		"! tar -tvf out-plain/b.tar.zst | grep -v '^-rw-r--r-- 0/0' | grep -q . && ! tar -tf out-plain/b.tar.zst | grep -q '^\./'"
	check "each blob exactly once" [ "$(tar -tf out-plain/b.tar.zst | grep -c '^blobs/')" = \
		"$(tar -tf out-plain/b.tar.zst | grep '^blobs/' | sort -u | wc -l)" ]
	check "every fixture blob is in the bundle" [ "$(tar -tf out-plain/b.tar.zst | grep -c '^blobs/')" = \
		"$(grep -c . "$FERRY_TEST_BLOBS")" ]
	check "sha256sum -c SHA256SUMS" bash -c "cd x && sha256sum --quiet -c SHA256SUMS"
	check "SHA256SUMS lists every other entry" [ "$(wc -l <x/SHA256SUMS)" = \
		"$(($(tar -tf out-plain/b.tar.zst | wc -l) - 2))" ]
	check "openssl verifies the signature" bash -c \
		"cd x && openssl dgst -sha256 -verify ../ecdsa.pub -signature <(base64 -d SHA256SUMS.sig) SHA256SUMS >/dev/null"
	sed -i '1s/^./0/;1s/^0\(.\)/1\1/' x/SHA256SUMS
	check "a changed SHA256SUMS fails openssl" bash -c \
		"cd x && ! openssl dgst -sha256 -verify ../ecdsa.pub -signature <(base64 -d SHA256SUMS.sig) SHA256SUMS >/dev/null 2>&1"
	check "index.json names the full reference twice" bash -c \
		"jq -e '.manifests[] | select(.annotations[\"org.opencontainers.image.ref.name\"] == \"$FERRY_TEST_PLAIN/goharbor/harbor-core:v2.3.0\" and .annotations[\"io.containerd.image.name\"] == \"$FERRY_TEST_PLAIN/goharbor/harbor-core:v2.3.0\")' x/index.json >/dev/null"
	check "ferry.json metadata" jqe '.formatVersion == 1 and .channel == "default" and (.bundleId | length) == 64 and (.signingKeyId | startswith("sha256:")) and (.images | length) > 0' x/ferry.json
}

# --- skopeo copies out of the bundle into another registry
feature_skopeo_copy() {
	use_shared out-plain || return
	local ref got
	ref=$(grep -m1 harbor-portal "$FERRY_TEST_IMAGES" | cut -f1)
	if skopeo copy -q --all --preserve-digests --dest-tls-verify=false \
		"oci-archive:out-plain/b.tar.zst:$FERRY_TEST_PLAIN/$ref" "docker://$FERRY_TEST_PLAIN/copied/portal:v1" >/dev/null 2>&1; then
		got=$(skopeo inspect --raw --tls-verify=false "docker://$FERRY_TEST_PLAIN/copied/portal:v1" | sha256sum | cut -d' ' -f1)
		check "skopeo copy from the bundle keeps the multi-arch digest" [ "sha256:$got" = "$want" ]
	else
		bad "skopeo copy out of the bundle"
	fi
}

# --- reproducible: same inputs and SOURCE_DATE_EPOCH, same bytes
feature_reproducible() {
	use_shared ecdsa.key ed.key plain.txt cache-plain || return
	local i
	for i in 1 2; do
		SOURCE_DATE_EPOCH=1700000000 "$ferry" export -f plain.txt -o "r$i.tar" --compress none --key ed.key \
			--cache cache-plain --insecure-registry 127.0.0.1 -q >/dev/null || bad "reproducible export $i"
		SOURCE_DATE_EPOCH=1700000000 "$ferry" export -f plain.txt -o "e$i.tar.gz" --compress gzip --key ecdsa.key \
			--cache cache-plain --insecure-registry 127.0.0.1 -q >/dev/null || bad "reproducible export $i (ecdsa)"
	done
	check "ed25519 exports are byte-identical" cmp -s r1.tar r2.tar
	mkdir e1 e2 && tar -xf e1.tar.gz -C e1 && tar -xf e2.tar.gz -C e2
	check "ecdsa exports differ only in SHA256SUMS.sig" bash -c \
		"diff -r -q e1 e2 | grep -v SHA256SUMS.sig | (! grep -q .) && diff -q e1/SHA256SUMS e2/SHA256SUMS >/dev/null"
	check "tar headers are identical too" bash -c \
		"[ \"\$(tar -tvf e1.tar.gz)\" = \"\$(tar -tvf e2.tar.gz)\" ]"
	check "creation time from SOURCE_DATE_EPOCH" jqe '.created == "2023-11-14T22:13:20Z" and .sequence == 1700000000' e1/ferry.json
	rm -f r1.tar r2.tar e1.tar.gz e2.tar.gz
}

# --- platforms
feature_platforms() {
	use_shared ecdsa.key cache-plain || return
	local amd64 got
	amd64=$(jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest' \
		"$FERRY_TEST_LAYOUT/blobs/sha256/${want#sha256:}")
	"$ferry" export "$portal" -o one.tar --compress none --key ecdsa.key --cache cache-plain \
		--insecure-registry 127.0.0.1 --platform linux/amd64 -q >/dev/null || bad "export one platform"
	got=$(skopeo inspect --raw "oci-archive:one.tar:$portal" | sha256sum | cut -d' ' -f1)
	check "one platform: the tag points at that platform's manifest" [ "sha256:$got" = "$amd64" ]
	"$ferry" export "$portal" -o two.tar --compress none --key ecdsa.key --cache cache-plain \
		--insecure-registry 127.0.0.1 --platform linux/amd64,linux/arm64 -q >/dev/null || bad "export two platforms"
	check "two platforms: a filtered index with both" bash -c \
		"skopeo inspect --raw oci-archive:two.tar:$portal | jq -e '(.manifests | length) == 2 and .mediaType == \"application/vnd.oci.image.index.v1+json\"' >/dev/null"
	expect "missing platform" 1 "has no platform 'linux/s390x'.*it has: linux/amd64, linux/arm64" \
		export "$portal" -o p.tar --key ecdsa.key --cache cache-plain --insecure-registry 127.0.0.1 --platform linux/s390x
	check "missing platform leaves no output" no_output p.tar
}

# --- errors: each with its exit code, no bundle
feature_errors() {
	use_shared ecdsa.key cache-plain || return
	local before
	expect "unknown tag" 3 "image '$FERRY_TEST_PLAIN/goharbor/harbor-core:nope'.*not found" \
		export "$FERRY_TEST_PLAIN/goharbor/harbor-core:nope" -o u.tar --key ecdsa.key --cache cache-plain --insecure-registry 127.0.0.1
	printf '# test\n%s\n\nNot/Valid:ref\n%s  # ok\nalso bad!\n' "$portal" "$portal" >badlines.txt
	before=$(wc -l <"$FERRY_TEST_PLAIN_LOG")
	expect "bad images-file line" 1 "badlines.txt:4: invalid reference 'Not/Valid:ref'" \
		export -f badlines.txt -o u.tar --key ecdsa.key --cache cache-plain --insecure-registry 127.0.0.1
	expect "every bad line is named" 1 "badlines.txt:6: invalid reference 'also bad!'" \
		export -f badlines.txt -o u.tar --key ecdsa.key --cache cache-plain --insecure-registry 127.0.0.1
	check "nothing downloaded for a bad images file" [ "$(wc -l <"$FERRY_TEST_PLAIN_LOG")" = "$before" ]
	expect "wrong credentials (basic)" 4 "authentication to registry .* failed" \
		export "$FERRY_TEST_TLS/goharbor/harbor-core:v2.3.0" -o u.tar --key ecdsa.key --cache cache-tls \
		--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_BAD_AUTHFILE"
	expect "wrong credentials (token)" 4 "authentication to registry .* failed" \
		export "$FERRY_TEST_TOKEN/goharbor/harbor-core:v2.3.0" -o u.tar --key ecdsa.key --cache cache-token \
		--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_BAD_AUTHFILE"
	expect "untrusted TLS" 3 "certificate" \
		export "$FERRY_TEST_TLS/goharbor/harbor-core:v2.3.0" -o u.tar --key ecdsa.key --cache cache-tls \
		--authfile "$FERRY_TEST_AUTHFILE"
	expect "no key" 2 "--key" export "$portal" -o u.tar
	expect "bad --compress" 2 "--compress takes" export "$portal" -o u.tar --key ecdsa.key --compress lz4
	expect "missing key file" 7 "ecdsa-missing.key" export "$portal" -o u.tar --key ecdsa-missing.key
	touch exists.tar
	expect "existing output is refused" 7 "'exists.tar' already exists" \
		export "$portal" -o exists.tar --key ecdsa.key --cache cache-plain --insecure-registry 127.0.0.1
	check "existing output untouched" [ ! -s exists.tar ]
	rm -f exists.tar
	check "errors left no output" no_output u.tar
}

# --- a corrupted blob in the source: verification error, no bundle
feature_corrupt_blob() {
	use_shared ecdsa.key || return
	local core layer hex data
	core=$(grep -m1 harbor-core "$FERRY_TEST_IMAGES")
	layer=$(cut -f4 <<<"$core" | tr ' ' '\n' | while read -r d; do
		[ -n "$d" ] && printf '%s\t%s\n' "$(grep -F "$d" "$FERRY_TEST_BLOBS" | cut -f2)" "$d"
	done | sort -n | tail -1 | cut -f2)
	hex=${layer#sha256:}
	data=$FERRY_TEST_PLAIN_STORAGE/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
	cp "$data" "$data.orig" && echo "$data" >corrupt-1
	python3 -c "
import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=1; open(p,'wb').write(b)" "$data"
	expect "corrupted blob" 5 "blob '$layer' .* does not match its digest" \
		export "$FERRY_TEST_PLAIN/${core%%$'\t'*}" -o c.tar --key ecdsa.key --cache cache-corrupt --insecure-registry 127.0.0.1
	check "corrupted blob: no bundle" no_output c.tar
	check "corrupted blob: not kept in the cache" [ ! -e "cache-corrupt/blobs/sha256/$hex" ]
	mv "$data.orig" "$data" && rm -f corrupt-1
}

# --- the registry dies halfway; the rerun resumes without refetching
feature_resume() {
	use_shared ecdsa.key || return
	local pport start kept got
	python3 "$fixtures/dieproxy.py" proxy.port "$FERRY_TEST_PLAIN" proxy.log 4 &
	proxy_pid=$!
	for _ in $(seq 100); do [ -s proxy.port ] && break; sleep 0.1; done
	pport=$(cat proxy.port)
	list "127.0.0.1:$pport" >proxy.txt
	start=$(date +%s)
	expect "registry dies halfway" 3 "cannot reach registry '127.0.0.1:$pport'" \
		export -f proxy.txt -o d.tar --key ecdsa.key --cache cache-die --insecure-registry 127.0.0.1 --jobs 1
	check "gave up in bounded time" [ $(($(date +%s) - start)) -le 60 ]
	check "dead registry: no bundle" no_output d.tar
	wait "$proxy_pid" 2>/dev/null
	kept=$(ls cache-die/blobs/sha256 | wc -l)
	ls cache-die/blobs/sha256 | sort >first-run.list
	check "verified blobs kept in the cache ($kept)" [ "$kept" -ge 4 ]
	check "the cut blob is kept as a partial download" [ -n "$(ls cache-die/partial)" ]
	: >proxy.log
	python3 "$fixtures/dieproxy.py" proxy.port2 "$FERRY_TEST_PLAIN" proxy.log - "$pport" &
	proxy_pid=$!
	for _ in $(seq 100); do [ -s proxy.port2 ] && break; sleep 0.1; done
	if "$ferry" export -f proxy.txt -o d.tar --key ecdsa.key --cache cache-die --insecure-registry 127.0.0.1 \
		--jobs 1 --report d.json -q >/dev/null; then ok; else bad "rerun after the registry came back"; fi
	jq -r 'select(.method == "GET" and (.path | contains("/blobs/"))) | .path' proxy.log |
		sed 's|.*/blobs/sha256:||' | sort -u >second-run.list
	check "rerun fetched blobs ($(wc -l <second-run.list))" [ -s second-run.list ]
	check "rerun fetched none of the $kept verified blobs again" \
		[ -z "$(comm -12 first-run.list second-run.list)" ]
	check "rerun took them from the cache" [ "$(jq '.totals.bytesFromCache' d.json)" -gt 0 ]
	check "rerun resumed the cut blob with a Range request" grep -q '"range": "bytes=' proxy.log
	kill "$proxy_pid" 2>/dev/null
	proxy_pid=
	got=$(skopeo inspect --raw "oci-archive:d.tar:127.0.0.1:$pport/$(head -1 "$FERRY_TEST_IMAGES" | cut -f1)" | sha256sum | cut -d' ' -f1)
	check "resumed bundle is complete" [ "sha256:$got" = "$(head -1 "$FERRY_TEST_IMAGES" | cut -f2)" ]
}

# --- Ctrl-C: exit 130, nothing left behind
feature_interrupt() {
	use_shared ecdsa.key || return
	local fpid
	DIEPROXY_DELAY=1 python3 "$fixtures/dieproxy.py" proxy.port3 "$FERRY_TEST_PLAIN" slow.log - &
	proxy_pid=$!
	for _ in $(seq 100); do [ -s proxy.port3 ] && break; sleep 0.1; done
	list "127.0.0.1:$(cat proxy.port3)" >slow.txt
	"$ferry" export -f slow.txt -o i.tar --key ecdsa.key --cache cache-int --insecure-registry 127.0.0.1 -q &
	fpid=$!
	sleep 2
	kill -INT "$fpid"
	wait "$fpid"
	check "interrupted export exits 130" [ "$?" = 130 ]
	check "interrupted export leaves no output" no_output i.tar
	kill "$proxy_pid" 2>/dev/null
	proxy_pid=
}

it_main "$feature" skopeo_crosscheck layout skopeo_copy reproducible platforms errors \
	corrupt_blob resume interrupt
