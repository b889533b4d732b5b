#!/usr/bin/env bash
# Local state never stands in for the registry: a bundle recorded as
# imported is imported again when the target lacks one of its tags (a wiped
# or rebuilt registry) or a tag points elsewhere; only a target that still
# has every tag is "already imported".
set -uo pipefail
ferry=$1
state=$2
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
run=r$$
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"
digest_of() { # REF: manifest digest as served
	skopeo inspect --raw --tls-verify=false "docker://$1" 2>/dev/null | sha256sum | cut -d' ' -f1 | sed 's/^/sha256:/'
}

core=$(grep -m1 harbor-core "$FERRY_TEST_IMAGES" | cut -f1)
core_digest=$(grep -m1 harbor-core "$FERRY_TEST_IMAGES" | cut -f2)
jobs=$(grep -m1 harbor-jobservice "$FERRY_TEST_IMAGES" | cut -f1)
"$ferry" keygen -o k -q >/dev/null
"$ferry" export -q "$FERRY_TEST_PLAIN/$core" "$FERRY_TEST_PLAIN/$jobs" -o b.tar --compress none \
	--key k.key --insecure-registry 127.0.0.1 >/dev/null || bad "export"
to=$FERRY_TEST_PLAIN/${run}truth
imp() { "$ferry" import b.tar --key k.pub --to "$to" --state-dir st --insecure-registry 127.0.0.1 "$@"; }

imp -q || bad "first import"
expect "target unchanged: already imported" 0 "already imported" import b.tar --key k.pub \
	--to "$to" --state-dir st --insecure-registry 127.0.0.1

# the registry loses a tag (deleting the manifest drops the tags on it)
curl -sf -X DELETE "http://$FERRY_TEST_PLAIN/v2/${run}truth/${core%:*}/manifests/$core_digest" || bad "delete a manifest"
check "the tag is gone" [ "$(digest_of "$to/$core")" != "$core_digest" ]
expect "a tag is missing: imported again" 0 "^imported 'b.tar'" import b.tar --key k.pub \
	--to "$to" --state-dir st --insecure-registry 127.0.0.1 --report r1.json
check "the tag is back" [ "$(digest_of "$to/$core")" = "$core_digest" ]
check "report: imported again, tag written" jqe '.alreadyImported == false and .importedAgain and .tagsPushed >= 1' r1.json

# a tag moved to other content
skopeo copy -q --all --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
	"docker://$to/$jobs" "docker://$to/$core" || bad "move a tag"
check "the tag points elsewhere" [ "$(digest_of "$to/$core")" != "$core_digest" ]
out=$(imp 2>&1)
check "a tag points elsewhere: imported again" grep -q "^imported 'b.tar'" <<<"$out"
check "with a note naming the tag" grep -q "note: .*'$to/$core' is missing there or points elsewhere" <<<"$out"
check "the tag points back at the bundle's image" [ "$(digest_of "$to/$core")" = "$core_digest" ]
expect "and now it is already imported" 0 "already imported" import b.tar --key k.pub \
	--to "$to" --state-dir st --insecure-registry 127.0.0.1

finish
