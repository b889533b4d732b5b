#!/usr/bin/env bash
# The export engine against a registry serving generated trees
# (tests/fixtures/treereg.py): wide multi-arch images, repeated and nested
# index entries, huge indexes, many images resolved in parallel.
# usage: export_engine.sh FERRY FEATURE
set -uo pipefail
ferry=$1
feature=$2
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
work=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"

[ "$feature" = parallel ] && export TREEREG_DELAY_MS=50
# random trees: FERRY_FUZZ_SEED picks the corpus (default: a new one each run,
# printed, so a failure can be replayed)
seed=${FERRY_FUZZ_SEED:-$(( $(date +%s) % 100000 ))}
nrand=${FERRY_FUZZ_IMAGES:-40}
[ "$feature" = fuzz ] && export TREEREG_RANDOM="$seed:$nrand"
python3 "$fixtures/treereg.py" port log &
pid=$!
for _ in $(seq 200); do [ -s port ] && break; sleep 0.1; done
[ -s port ] || { echo "tree registry did not start"; exit 1; }
host=127.0.0.1:$(sed -n 1p port)
"$ferry" keygen -q -o k >/dev/null || { echo "keygen failed"; exit 1; }
x() { "$ferry" export -q --key k.key --insecure-registry 127.0.0.1 --cache cache --compress none "$@"; }
gets() { grep -c "^GET .*/$1/" log; }

case $feature in
wide)
	# Platform manifests that together add hundreds of items: the item
	# table grows while the walk still holds entries of it.
	for p in all linux/amd64,linux/arm64 linux/arm64,linux/amd64; do
		rm -rf cache out.tar
		x "$host/wide/app:1" -o out.tar --platform "$p" >out.txt 2>&1
		check "wide image exports with --platform $p" [ $? = 0 ]
		check "all 602 blobs of the wide image are in the bundle ($p)" \
			[ "$(tar -tf out.tar | grep -c '^blobs/sha256/')" -ge 605 ]
	done
	"$ferry" verify out.tar --key k.pub -q >/dev/null 2>&1
	check "the wide bundle verifies" [ $? = 0 ]
	;;
fanout)
	# 60 entries per level, 3 levels, all the same child: 216,000 walks
	# if each entry is fetched; each digest must be fetched once.
	timeout 60 "$ferry" export -q --key k.key --insecure-registry 127.0.0.1 \
		--cache cache --compress none "$host/fan/app:1" -o fan.tar >out.txt 2>&1
	check "repeated index entries export" [ $? = 0 ]
	n=$(gets fan/app/manifests)
	check "each manifest of the repeated tree is fetched once ($n GETs)" [ "$n" -le 4 ]
	"$ferry" verify fan.tar --key k.pub -q >/dev/null 2>&1
	check "the repeated-tree bundle verifies" [ $? = 0 ]
	# the exported index is byte-exact: it still lists its 60 entries
	top=$(jq -r '.manifests[0].digest' < <(tar -xOf fan.tar index.json) | cut -d: -f2)
	check "the top index keeps its 60 entries" \
		[ "$(tar -xOf fan.tar "blobs/sha256/$top" | jq '.manifests | length')" = 60 ]
	;;
deep)
	: >log
	timeout 60 "$ferry" export -q --key k.key --insecure-registry 127.0.0.1 \
		--cache cache "$host/deep/app:1" -o deep.tar >out.txt 2>&1
	rc=$?
	check "indexes nested 12 deep are refused with exit 1 (got $rc)" [ "$rc" = 1 ]
	check "the error says nesting" grep -q "nested too deep" out.txt
	check "no bundle is left" [ ! -e deep.tar ]
	check "the walk stopped early ($(gets deep/app/manifests) GETs)" [ "$(gets deep/app/manifests)" -le 8 ]
	;;
many)
	: >log
	timeout 60 "$ferry" export -q --key k.key --insecure-registry 127.0.0.1 \
		--cache cache "$host/many/app:1" -o many.tar >out.txt 2>&1
	rc=$?
	check "an index of 2000 entries is refused with exit 1 (got $rc)" [ "$rc" = 1 ]
	check "the error names the cap" grep -q "more than" out.txt
	check "the huge index was not walked ($(gets many/app/manifests) GETs)" [ "$(gets many/app/manifests)" -le 2 ]
	;;
parallel)
	# 40 two-platform images, each manifest answered after 50 ms: the
	# manifests are fetched by the --jobs pool, not one at a time, and the
	# bundle still lists the images in the order given.
	for i in $(seq 0 39); do echo "$host/many-$i/app:1"; done >refs.txt
	export SOURCE_DATE_EPOCH=1700000000
	x -f refs.txt -o p1.tar --jobs 1 >out.txt 2>&1
	check "40 images export with --jobs 1" [ $? = 0 ]
	check "--jobs 1 fetches one manifest at a time" [ "$(cat log.maxflight)" = 1 ]
	start=$(date +%s%N)
	x -f refs.txt -o p4.tar --jobs 4 >out.txt 2>&1
	check "40 images export with --jobs 4" [ $? = 0 ]
	ms=$((($(date +%s%N) - start) / 1000000))
	check "--jobs 4 fetches manifests in parallel ($(cat log.maxflight) at once, $ms ms)" \
		[ "$(cat log.maxflight)" -ge 3 ]
	check "images are listed in the order given" \
		diff <(tar -xOf p4.tar index.json | jq -r '.manifests[].annotations["org.opencontainers.image.ref.name"]') \
		refs.txt
	check "the same bundle content whatever --jobs" \
		cmp <(tar -xOf p1.tar SHA256SUMS) <(tar -xOf p4.tar SHA256SUMS)
	;;
missing)
	# every reference is tried: each missing image is named in one run
	x "$host/many-0/app:1" "$host/nope-1/app:1" "$host/many-1/app:1" \
		"$host/nope-2/app:2" -o m.tar >out.txt 2>&1
	rc=$?
	check "missing images fail the export with exit 3 (got $rc)" [ "$rc" = 3 ]
	check "the first missing image is named" grep -q "nope-1/app:1'.*not found" out.txt
	check "the second missing image is named too" grep -q "nope-2/app:2'.*not found" out.txt
	check "the last line says how many more" grep -q "and 1 more image that cannot be exported" out.txt
	check "every line has the one error prefix" [ "$(grep -vc '^ferry: error: ' out.txt)" = 0 ]
	check "no bundle is written" [ ! -e m.tar ]
	;;
cache_safety)
	# A link planted in the cache must not make export write through it,
	# and the cache must be a private directory of ours.
	x "$host/many-0/app:1" -o first.tar >out.txt 2>&1
	check "first export" [ $? = 0 ]
	echo "precious" >victim
	mkdir -p c2/partial c2/blobs/sha256
	chmod 700 c2 c2/partial c2/blobs c2/blobs/sha256
	for h in $(tar -tf first.tar | sed -n 's|^blobs/sha256/||p'); do
		ln -s "$work/victim" "c2/partial/$h"
		ln -s "$work/victim" "c2/blobs/sha256/$h"
	done
	"$ferry" export -q --key k.key --insecure-registry 127.0.0.1 --cache c2 \
		--compress none "$host/many-0/app:1" -o second.tar >out.txt 2>&1
	check "export with planted links succeeds" [ $? = 0 ]
	check "the file the links point to is untouched" [ "$(cat victim)" = precious ]
	check "the bundle is the same" cmp <(tar -xOf first.tar SHA256SUMS | grep blobs/) \
		<(tar -xOf second.tar SHA256SUMS | grep blobs/)
	mkdir c3 && chmod 777 c3
	expect "a world-writable cache is refused" 7 "cache '.*c3' is writable by other users" \
		export --key k.key --insecure-registry 127.0.0.1 --cache c3 "$host/many-0/app:1" -o c3.tar
	mkdir c4 && chown 65534 c4
	expect "a cache of another user is refused" 7 "cache '.*c4' belongs to another user" \
		export --key k.key --insecure-registry 127.0.0.1 --cache c4 "$host/many-0/app:1" -o c4.tar
	ln -s c2 c5
	expect "a cache that is a link is refused" 7 "cache 'c5' is not a directory" \
		export --key k.key --insecure-registry 127.0.0.1 --cache c5 "$host/many-0/app:1" -o c5.tar
	before=$(ls -d /tmp/ferry-cache-* 2>/dev/null | wc -l)
	( cd "$work" && env -u HOME -u XDG_CACHE_HOME "$ferry" export -q --key k.key \
		--insecure-registry 127.0.0.1 "$host/many-0/app:1" -o nohome.tar >out.txt 2>&1 )
	check "without HOME export still works" [ -s nohome.tar ]
	check "without HOME no predictable /tmp cache is made" \
		[ "$(ls -d /tmp/ferry-cache-* 2>/dev/null | wc -l)" = "$before" ]
	;;
fuzz)
	# A hostile registry serving random trees: export must never crash,
	# hang or fetch without bound; it either writes a bundle that
	# verifies, or fails with a data, network or verification error.
	echo "random registry corpus: FERRY_FUZZ_SEED=$seed FERRY_FUZZ_IMAGES=$nrand"
	crashes=0 slow=0 badcode=0 unverified=0 exported=0
	for k in $(seq 0 $((nrand - 1))); do
		rm -f r.tar
		start=$(date +%s)
		timeout 60 "$ferry" export -q --key k.key --insecure-registry 127.0.0.1 \
			--cache cache --compress none "$host/rnd-$k/app:1" -o r.tar >out.txt 2>&1
		rc=$?
		[ $(($(date +%s) - start)) -le 45 ] || { slow=$((slow + 1)); echo "    rnd-$k took long"; }
		case $rc in
		0)
			exported=$((exported + 1))
			"$ferry" verify r.tar --key k.pub -q >/dev/null 2>&1 ||
				{ unverified=$((unverified + 1)); echo "    rnd-$k: bundle does not verify"; }
			;;
		1 | 3 | 5) ;;
		124 | 1[2-9][0-9] | 2[0-9][0-9])
			crashes=$((crashes + 1))
			echo "    rnd-$k: exit $rc"
			tail -3 out.txt | sed 's/^/      /'
			;;
		*)
			badcode=$((badcode + 1))
			echo "    rnd-$k: unexpected exit $rc: $(tail -1 out.txt)"
			;;
		esac
	done
	check "no crash, sanitizer report or hang in $nrand random trees ($crashes)" [ "$crashes" = 0 ]
	check "every failure is a data, network or verification error ($badcode)" [ "$badcode" = 0 ]
	check "every export finished in bounded time ($slow)" [ "$slow" = 0 ]
	check "every bundle written verifies ($exported written, $unverified not)" [ "$unverified" = 0 ]
	check "some random trees export cleanly ($exported)" [ "$exported" -gt 0 ]
	;;
*)
	echo "unknown feature '$feature'"
	exit 2
	;;
esac
finish
