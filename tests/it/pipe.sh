#!/usr/bin/env bash
# Mirroring through a pipe: `ferry export ... -o - | ferry import - ...`,
# with the same verification and no file in between.
# usage: pipe.sh FERRY STATE_DIR FEATURE
set -uo pipefail
ferry=$1
state=$2
feature=$3
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"
run=p$$$RANDOM
"$ferry" keygen -q -o k >/dev/null || exit 1
cut -f1 "$FERRY_TEST_IMAGES" | sed "s|^|$FERRY_TEST_PLAIN/|" >all.txt
digest_of() { skopeo inspect --raw --tls-verify=false "$1" 2>/dev/null | sha256sum | cut -d' ' -f1 | sed 's/^/sha256:/'; }
tags_under() { # PREFIX: tags the plain registry holds under it
	for r in $(curl -sf "http://$FERRY_TEST_PLAIN/v2/_catalog?n=10000" | jq -r '.repositories[]?' | grep "^$1/"); do
		curl -sf "http://$FERRY_TEST_PLAIN/v2/$r/tags/list" | jq -r '.tags[]?'
	done
}

case $feature in
mirror)
	"$ferry" export -q -f all.txt -o - --key k.key --insecure-registry 127.0.0.1 --cache cache |
		"$ferry" import - -q --key k.pub --to "$FERRY_TEST_PLAIN/$run" \
			--insecure-registry 127.0.0.1 --state-dir st
	check "export -o - | import - succeeds" [ "${PIPESTATUS[0]}${PIPESTATUS[1]}" = 00 ]
	while IFS=$'\t' read -r ref digest _; do
		check "$ref has its source digest" [ "$(digest_of "docker://$FERRY_TEST_PLAIN/$run/$ref")" = "$digest" ]
	done <"$FERRY_TEST_IMAGES"
	check "no file was written but the import state" [ -z "$(find . -maxdepth 1 -type f ! -name all.txt ! -name 'k.*')" ]
	out=$("$ferry" export -f all.txt -o - --key k.key --insecure-registry 127.0.0.1 --cache cache 2>&1 >/dev/null)
	check "with -o -, the summary goes to standard error" grep -q "wrote '-'" <<<"$out"
	;;
broken)
	# the source dies while the bundle streams: import sees a truncated
	# bundle and moves no tag; a wrong key moves nothing either
	"$ferry" export -q -f all.txt -o - --key k.key --insecure-registry 127.0.0.1 --cache cache2 |
		head -c 300000 |
		"$ferry" import - -q --key k.pub --to "$FERRY_TEST_PLAIN/${run}b" \
			--insecure-registry 127.0.0.1 --state-dir st 2>err.txt
	check "a cut stream fails the import with exit 6 (got ${PIPESTATUS[2]})" [ "${PIPESTATUS[2]}" = 6 ]
	check "no tag was written" [ -z "$(tags_under "${run}b")" ]
	"$ferry" keygen -q -o other >/dev/null
	"$ferry" export -q -f all.txt -o - --key other.key --insecure-registry 127.0.0.1 --cache cache2 |
		"$ferry" import - -q --key k.pub --to "$FERRY_TEST_PLAIN/${run}c" \
			--insecure-registry 127.0.0.1 --state-dir st 2>err.txt
	check "a bundle signed by another key is refused with exit 5" [ "${PIPESTATUS[1]}" = 5 ]
	check "nothing was pushed" [ -z "$(curl -sf "http://$FERRY_TEST_PLAIN/v2/_catalog?n=10000" | jq -r '.repositories[]?' | grep "^${run}c/")" ]
	;;
*)
	echo "unknown feature '$feature'"
	exit 2
	;;
esac
finish
