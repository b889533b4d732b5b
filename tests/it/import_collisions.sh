#!/usr/bin/env bash
# Two images of one bundle that would land on the same target reference are
# an error before anything is pushed, naming both; --keep-registry keeps
# them apart.
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
catalog() { curl -sf "http://$FERRY_TEST_PLAIN/v2/_catalog?n=10000" | jq -r '.repositories[]?'; }

core=$(grep -m1 harbor-core "$FERRY_TEST_IMAGES" | cut -f1)
digest=$(grep -m1 harbor-core "$FERRY_TEST_IMAGES" | cut -f2)
port=${FERRY_TEST_PLAIN##*:}
# one registry under two names: two images, one repository path
"$ferry" keygen -o k -q >/dev/null
"$ferry" export -q "127.0.0.1:$port/$core" "localhost:$port/$core" -o b.tar --compress none --key k.key \
	--insecure-registry 127.0.0.1 --insecure-registry localhost >/dev/null || bad "export"
before=$(catalog)
expect "two images, one target: refused naming both" 1 \
	"images '127.0.0.1:$port/$core' and 'localhost:$port/$core' would both land on '$FERRY_TEST_PLAIN/${run}col/$core'" \
	import b.tar --key k.pub --to "$FERRY_TEST_PLAIN/${run}col" --state-dir st --insecure-registry 127.0.0.1
check "nothing was pushed" [ "$(catalog)" = "$before" ]
check "nothing was recorded" [ ! -e st/import-state.json ]
expect "a dry run says so too" 1 "would both land on" import b.tar --key k.pub \
	--to "$FERRY_TEST_PLAIN/${run}col" --state-dir st --insecure-registry 127.0.0.1 --dry-run
"$ferry" import b.tar --key k.pub --to "$FERRY_TEST_PLAIN/${run}col" --keep-registry --state-dir st \
	--insecure-registry 127.0.0.1 -q || bad "import --keep-registry"
for dom in "127.0.0.1-$port" "localhost-$port"; do
	check "--keep-registry: $dom has its own copy" [ "$(skopeo inspect --raw --tls-verify=false \
		"docker://$FERRY_TEST_PLAIN/${run}col/$dom/$core" | sha256sum | cut -d' ' -f1)" = "${digest#sha256:}" ]
done

finish
