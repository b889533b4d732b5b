#!/usr/bin/env bash
# Weekly updates (SPEC section 7): delta bundles over earlier ones, and
# bundles split into signed volumes, against the real plain registry.
# usage: weekly.sh FERRY STATE_DIR FEATURE
set -uo pipefail
ferry=$1
state=$2
feature=$3
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"
run=w$$$RANDOM
src=$FERRY_TEST_PLAIN/${run}src
export SOURCE_DATE_EPOCH=1700000000

"$ferry" keygen -q -o k --type ed25519 >/dev/null || exit 1
"$ferry" keygen -q -o other >/dev/null || exit 1
x() { "$ferry" export -q --key k.key --insecure-registry 127.0.0.1 --cache cache "$@"; }
blobs() { # BUNDLE-OR-PARTS: the blob digests SHA256SUMS lists, sorted
	if [ -e "$1.parts" ]; then cat "$1".0*; else cat "$1"; fi |
		zstd -dcf | tar -xOf - SHA256SUMS | sed -n 's|^\([0-9a-f]*\)  blobs/sha256/.*|sha256:\1|p' | sort
}
omitted() { # BUNDLE: the digests its delta leaves out, sorted
	zstd -dcf <"$1" | tar -xOf - ferry.json | jq -r '.delta.omitted[]?' | sort
}
bundle_id() { zstd -dcf <"$1" | tar -xOf - ferry.json | jq -r .bundleId; }
refs() { sed "s|^|$FERRY_TEST_PLAIN/|" "$1"; }

# Week 1: four two-platform images; week 2: a new image, and two tags
# rebuilt with new layers.
week1() {
	python3 "$fixtures/gen_scale.py" "$FERRY_TEST_PLAIN" g1 --images 4 \
		--prefix "${run}src" >/dev/null || exit 1
	refs g1/images.txt >week1.txt
}
week2() {
	python3 "$fixtures/gen_scale.py" "$FERRY_TEST_PLAIN" g2 --images 5 \
		--prefix "${run}src" >/dev/null || exit 1
	python3 "$fixtures/gen_scale.py" "$FERRY_TEST_PLAIN" g2b --images 2 \
		--prefix "${run}src" --seed "week two" >/dev/null || exit 1
	refs g2/images.txt >week2.txt
}
week3() { # one more image
	python3 "$fixtures/gen_scale.py" "$FERRY_TEST_PLAIN" g3 --images 6 \
		--prefix "${run}src" --seed "ferry scale corpus" >/dev/null || exit 1
	python3 "$fixtures/gen_scale.py" "$FERRY_TEST_PLAIN" g3b --images 2 \
		--prefix "${run}src" --seed "week two" >/dev/null || exit 1
	refs g3/images.txt >week3.txt
}
quiet() { "$@" >/dev/null 2>&1; }
is_manifest() { # DIGEST in BUNDLE: an index or image manifest
	zstd -dcf <"$2" | tar -xOf - "blobs/sha256/${1#sha256:}" |
		jq -e '.schemaVersion == 2' >/dev/null 2>&1
}

case $feature in
delta_export)
	week1
	x -f week1.txt -o A.tar.zst || bad "export A"
	week2
	x -f week2.txt -o F.tar.zst || bad "full export of week 2"
	x -f week2.txt -o B.tar.zst --base A.tar.zst || bad "delta export B"
	blobs A.tar.zst >a.list
	blobs B.tar.zst >b.list
	blobs F.tar.zst >f.list
	omitted B.tar.zst >b.omit
	check "the delta leaves something out" [ -s b.omit ]
	check "what it leaves out, A carries" [ -z "$(comm -23 b.omit a.list)" ]
	check "carried plus left out is the full bundle" \
		diff <(sort -u b.list b.omit) f.list
	n=0
	for d in $(comm -12 b.list a.list); do
		is_manifest "$d" B.tar.zst || { n=$((n + 1)); echo "    carried again: $d"; }
	done
	check "no config or layer of A is carried again ($n)" [ "$n" = 0 ]
	check "the new image's blobs are carried" [ "$(comm -23 b.list a.list | wc -l)" -gt 4 ]
	check "ferry.json names A as base" \
		[ "$(zstd -dc <B.tar.zst | tar -xOf - ferry.json | jq -r '.delta.bases[0]')" = "$(bundle_id A.tar.zst)" ]
	out=$("$ferry" verify B.tar.zst --key k.pub 2>&1)
	check "verify passes the delta" [ $? = 0 ]
	check "verify names the base it needs" grep -q "$(bundle_id A.tar.zst)" <<<"$out"
	expect "unpack refuses a delta (no loader can load it)" 1 "is a delta" \
		unpack B.tar.zst --key k.pub -o B.tar
	check "... and writes nothing" [ ! -e B.tar ]
	check "verify --json lists the omitted blobs" \
		[ "$("$ferry" verify B.tar.zst --key k.pub --json | jq '.delta.omitted | length')" = "$(wc -l <b.omit)" ]
	;;
delta_chain)
	week1
	x -f week1.txt -o A.tar.zst || bad "export A"
	week2
	x -f week2.txt -o B.tar.zst --base A.tar.zst || bad "delta B over A"
	week3
	x -f week3.txt -o C.tar.zst --base B.tar.zst || bad "delta C over B"
	x -f week3.txt -o F.tar.zst || bad "full export of week 3"
	blobs C.tar.zst >c.list
	omitted C.tar.zst >c.omit
	blobs F.tar.zst >f.list
	check "C over B: carried plus left out is the full bundle" \
		diff <(sort -u c.list c.omit) f.list
	check "C leaves out what A carried and B only named" \
		[ -n "$(comm -12 c.omit <(blobs A.tar.zst))" ]
	check "C names B as its base" \
		[ "$(zstd -dc <C.tar.zst | tar -xOf - ferry.json | jq -r '.delta.bases[0]')" = "$(bundle_id B.tar.zst)" ]
	x -f week3.txt -o C2.tar.zst --base A.tar.zst --base B.tar.zst || bad "delta over two bases"
	check "two bases are both named" \
		[ "$(zstd -dc <C2.tar.zst | tar -xOf - ferry.json | jq '.delta.bases | length')" = 2 ]
	;;
delta_key)
	week1
	"$ferry" export -q --key other.key --insecure-registry 127.0.0.1 --cache cache \
		-f week1.txt -o A.tar.zst || bad "export A with another key"
	expect "a base signed by another key is refused" 5 "base bundle 'A.tar.zst'.*does not verify" \
		export --key k.key --insecure-registry 127.0.0.1 --cache cache -f week1.txt \
		-o B.tar.zst --base A.tar.zst
	check "no delta is written" [ ! -e B.tar.zst ]
	echo garbage >junk.tar
	expect "a base that is no bundle is refused" 6 "base bundle 'junk.tar'" \
		export --key k.key --insecure-registry 127.0.0.1 --cache cache -f week1.txt \
		-o B.tar.zst --base junk.tar
	expect "a missing base is refused" 7 "base bundle 'nothere.tar'" \
		export --key k.key --insecure-registry 127.0.0.1 --cache cache -f week1.txt \
		-o B.tar.zst --base nothere.tar
	;;
split_parts)
	week1
	x -f week1.txt -o one.tar.zst || bad "unsplit export"
	x -f week1.txt -o s.tar.zst --split-size 16K || bad "split export"
	size=$(stat -c %s one.tar.zst)
	n=$(((size + 16383) / 16384))
	check "parts: $n of them" [ "$(ls s.tar.zst.0* | wc -l)" = "$n" ]
	bad_size=0
	for p in $(ls s.tar.zst.0* | head -n -1); do
		[ "$(stat -c %s "$p")" = 16384 ] || bad_size=$((bad_size + 1))
	done
	check "every part but the last is exactly 16 KiB" [ "$bad_size" = 0 ]
	check "cat of the parts is the unsplit bundle, byte for byte" cmp <(cat s.tar.zst.0*) one.tar.zst
	check "sha256sum -c checks every part" sha256sum -c --quiet s.tar.zst.parts
	check "openssl verifies the parts list" quiet \
		openssl pkeyutl -verify -pubin -inkey k.pub -rawin -in s.tar.zst.parts \
		-sigfile <(base64 -d s.tar.zst.parts.sig)
	check "verify reads the parts list" "$ferry" verify s.tar.zst.parts --key k.pub -q
	check "verify reads from the first part" "$ferry" verify s.tar.zst.001 --key k.pub -q
	check "inspect reads the parts" eval "\"$ferry\" inspect s.tar.zst.parts >/dev/null"
	check "verify says how many parts" grep -q "parts       $n" <("$ferry" verify s.tar.zst.parts --key k.pub)
	expect "--split-size 1K is refused" 2 "split-size" export --key k.key -o z --split-size 1K x.io/a
	expect "--split-size with -o - is refused" 2 "split-size" export --key k.key -o - --split-size 1M "$src/app0000:1.0" --insecure-registry 127.0.0.1
	x -f week1.txt -o s.tar.zst --split-size 16K 2>err.txt
	check "an existing split bundle is not overwritten" [ $? = 7 ]
	check "... and the message names it" grep -q "s.tar.zst.parts' already exists" err.txt
	;;
split_tamper)
	week1
	x -f week1.txt -o s.tar.zst --split-size 16K || bad "split export"
	mkdir pristine && cp s.tar.zst.* other.pub pristine/
	reset() { rm -f s.tar.zst.*; cp pristine/s.tar.zst.* .; }
	last=$(ls s.tar.zst.0* | tail -1)
	reset
	rm s.tar.zst.002
	expect "a missing part is named" 6 "part 's.tar.zst.002' is missing" verify s.tar.zst.parts --key k.pub
	reset
	mv s.tar.zst.002 t && mv s.tar.zst.003 s.tar.zst.002 && mv t s.tar.zst.003
	expect "swapped parts are named" 5 "part 's.tar.zst.002' does not match" verify s.tar.zst.parts --key k.pub
	reset
	python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[100]^=1; open(p,'wb').write(b)" s.tar.zst.003
	expect "a flipped byte is named" 5 "part 's.tar.zst.003' does not match" verify s.tar.zst.parts --key k.pub
	reset
	next=$(printf 's.tar.zst.%03d' $((10#${last##*.} + 1)))
	echo extra >"$next"
	expect "an extra part is named" 6 "'$next' is not listed" verify s.tar.zst.parts --key k.pub
	rm -f "$next"
	reset
	# change the first hex digit of the list (to another one)
	python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[0]=ord('1') if b[0]==ord('0') else ord('0'); open(p,'wb').write(b)" s.tar.zst.parts
	expect "an altered parts list fails its signature" 5 "s.tar.zst.parts.sig' does not verify" verify s.tar.zst.parts --key k.pub
	reset
	expect "the wrong key fails on the parts list" 5 "does not verify 's.tar.zst.parts'" verify s.tar.zst.parts --key pristine/other.pub
	reset
	rm s.tar.zst.parts.sig
	expect "a missing signature is refused" 6 "cannot open 's.tar.zst.parts.sig'" verify s.tar.zst.parts --key k.pub
	;;
split_interrupt)
	week1
	DIEPROXY_DELAY=1 python3 "$fixtures/dieproxy.py" proxy.port "$FERRY_TEST_PLAIN" slow.log - &
	pids+=($!)
	for _ in $(seq 100); do [ -s proxy.port ] && break; sleep 0.1; done
	sed "s|$FERRY_TEST_PLAIN|127.0.0.1:$(cat proxy.port)|" week1.txt >slow.txt
	"$ferry" export -q --key k.key --insecure-registry 127.0.0.1 --cache cache-i \
		-f slow.txt -o i.tar.zst --split-size 4K &
	fpid=$!
	sleep 3
	kill -INT "$fpid"
	wait "$fpid"
	check "interrupted split export exits 130" [ $? = 130 ]
	check "no part, list or temporary file is left" \
		[ -z "$(find . -maxdepth 1 -name 'i.tar.zst*' -o -maxdepth 1 -name '.i.tar.zst*')" ]
	;;
split_delta)
	week1
	x -f week1.txt -o A.tar.zst --split-size 16K || bad "split export A"
	week2
	x -f week2.txt -o B.tar.zst --split-size 16K --base A.tar.zst.parts || bad "split delta over split A"
	x -f week2.txt -o B1.tar.zst --base A.tar.zst.001 || bad "delta over A's first part"
	check "the split delta is the unsplit one" cmp <(cat B.tar.zst.0*) B1.tar.zst
	check "the split delta verifies" "$ferry" verify B.tar.zst.parts --key k.pub -q
	check "it leaves out what A carries" [ -n "$(omitted B1.tar.zst)" ]
	;;
delta_import)
	tgt=$FERRY_TEST_PLAIN/${run}t
	imp() { "$ferry" import -q --key k.pub --insecure-registry 127.0.0.1 --state-dir st "$@"; }
	week1
	x -f week1.txt -o A.tar.zst --sequence 1 || bad "export A"
	week2
	x -f week2.txt -o B.tar.zst --sequence 2 --base A.tar.zst || bad "delta B over A"
	week3
	x -f week3.txt -o C.tar.zst --sequence 3 --base B.tar.zst || bad "delta C over B"
	# B alone into an empty registry: refused, naming A, nothing written
	imp B.tar.zst --to "${tgt}alone" 2>err.txt
	rc=$?
	check "a delta into a registry without its base is refused with exit 1 ($rc)" [ "$rc" = 1 ]
	check "the refusal names the base bundle to import first" grep -q "$(bundle_id A.tar.zst)" err.txt
	check "no manifest or tag was written" \
		[ -z "$(grep -E "\"PUT /v2/${run}talone/[^ ]*/manifests/" "$FERRY_TEST_PLAIN_LOG")" ]
	# A, then B, then C: every tag has its source digest at each step
	check "import A" imp A.tar.zst --to "$tgt"
	check "import the delta B after A" imp B.tar.zst --to "$tgt"
	n=0
	while read -r ref; do
		want=$(curl -sfI -H 'Accept: application/vnd.oci.image.index.v1+json' \
			"http://$FERRY_TEST_PLAIN/v2/${ref%%:*}/manifests/${ref##*:}" | tr -d '\r' |
			sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
		got=$(curl -sfI -H 'Accept: application/vnd.oci.image.index.v1+json' \
			"http://$FERRY_TEST_PLAIN/v2/${run}t/${ref%%:*}/manifests/${ref##*:}" | tr -d '\r' |
			sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
		[ -n "$want" ] && [ "$want" = "$got" ] || { n=$((n + 1)); echo "    $ref: $got, want $want"; }
	done <g2/images.txt
	check "after A and B every week-2 tag has the source's digest ($n wrong)" [ "$n" = 0 ]
	check "import the delta C after B" imp C.tar.zst --to "$tgt"
	check "skopeo pulls a week-3 image back whole" \
		skopeo copy -q --all --src-tls-verify=false \
		"docker://$tgt/$(sed -n 6p g3/images.txt)" "oci:$work/pulled:x"
	expect "B again after C is refused as a rollback" 5 "older|rollback|sequence" \
		import B.tar.zst --key k.pub --to "$tgt" --insecure-registry 127.0.0.1 --state-dir st
	;;
split_import)
	tgt=$FERRY_TEST_PLAIN/${run}s
	week1
	x -f week1.txt -o s.tar.zst --split-size 16K || bad "split export"
	python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[-100]^=1; open(p,'wb').write(b)" \
		"$(ls s.tar.zst.0* | tail -2 | head -1)"
	"$ferry" import -q s.tar.zst.parts --key k.pub --to "${tgt}bad" --insecure-registry 127.0.0.1 \
		--state-dir st 2>err.txt
	check "an import from an altered part fails with exit 5" [ $? = 5 ]
	check "... naming the part" grep -q "part '.*s.tar.zst.0[0-9]*' does not match" err.txt
	check "... and moves no tag" \
		[ -z "$(grep -E "\"PUT /v2/${run}sbad/[^ ]*/manifests/[^s][^h]" "$FERRY_TEST_PLAIN_LOG")" ]
	rm -f s.tar.zst.*
	x -f week1.txt -o s.tar.zst --split-size 16K || bad "split export again"
	check "import from the parts list" "$ferry" import -q s.tar.zst.parts --key k.pub --to "$tgt" \
		--insecure-registry 127.0.0.1 --state-dir st
	first=$(sed -n 1p g1/images.txt)
	check "the image arrived with its digest" [ "$(skopeo inspect --raw --tls-verify=false "docker://$tgt/$first" | sha256sum | cut -d' ' -f1)" = \
		"$(skopeo inspect --raw --tls-verify=false "docker://$FERRY_TEST_PLAIN/$first" | sha256sum | cut -d' ' -f1)" ]
	;;
*)
	echo "unknown feature '$feature'"
	exit 2
	;;
esac
finish
