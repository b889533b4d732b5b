#!/usr/bin/env bash
# Many small blobs through many workers: every blob, manifest and tag is
# counted once (report, events and the registry agree), and a rerun skips
# everything.  Built with -fsanitize=thread, a race in the import engine
# fails this test (ferry exits 66).
set -uo pipefail
ferry=$1
state=$2
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
bench=$(cd "$(dirname "$0")/../../bench" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
run=r$$
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"

n=60 # images of two platforms: 6 blobs an image in its repository
python3 "$bench/many_images.py" "$FERRY_TEST_PLAIN" --images $n --prefix "${run}src/" >refs.txt ||
	bad "make $n images"
sed "s|^|$FERRY_TEST_PLAIN/|" refs.txt >images.txt
"$ferry" keygen -o k -q >/dev/null
# this test is about import: under ThreadSanitizer, export's own findings
# are left to the export tests
TSAN_OPTIONS=${TSAN_OPTIONS:+$TSAN_OPTIONS:}exitcode=0 \
	"$ferry" export -q -f images.txt -o b.tar --compress none --key k.key --insecure-registry 127.0.0.1 >/dev/null ||
	bad "export"
to=$FERRY_TEST_PLAIN/${run}par
"$ferry" import b.tar --key k.pub --to "$to" --state-dir st --insecure-registry 127.0.0.1 --jobs 16 \
	--progress json --report r.json 2>events.json >/dev/null || bad "import with 16 jobs"
events() { jq -s "[.[] | select(.event == \"$1\" and .action == \"$2\")] | length" events.json; }
check "report and events agree on blobs pushed" [ "$(events blob pushed)" = "$(jq .blobs.pushed r.json)" ]
check "report and events agree on blobs mounted" [ "$(events blob mounted)" = "$(jq .blobs.mounted r.json)" ]
check "every blob of every repository once ($(jq -c .blobs r.json))" \
	jqe ".blobs.pushed + .blobs.mounted + .blobs.skipped == $((n * 6))" r.json
check "every manifest and tag once" jqe ".manifestsPushed == $((n * 3)) and .tagsPushed == $n" r.json
check "report and events agree on manifests" [ "$(events manifest pushed)" = "$(jq .manifestsPushed r.json)" ]
bad_digests=0
while read -r ref; do
	want=$(skopeo inspect --raw --tls-verify=false "docker://$FERRY_TEST_PLAIN/$ref" | sha256sum)
	got=$(skopeo inspect --raw --tls-verify=false "docker://$to/$ref" | sha256sum)
	[ "$want" = "$got" ] || bad_digests=$((bad_digests + 1))
done < <(sed -n '1p;$p' refs.txt)
check "first and last image have their source digests" [ "$bad_digests" = 0 ]
"$ferry" import b.tar --key k.pub --to "$to" --state-dir st2 --insecure-registry 127.0.0.1 --jobs 16 \
	--report r2.json -q || bad "import again"
check "a rerun skips every blob and pushes nothing ($(jq -c .blobs r2.json))" \
	jqe ".blobs.skipped == $((n * 6)) and .blobs.pushed == 0 and .blobs.mounted == 0 and .manifestsPushed == 0 and .tagsPushed == 0" r2.json

finish
