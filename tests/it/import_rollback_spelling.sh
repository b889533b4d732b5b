#!/usr/bin/env bash
# The rollback record is keyed by the registry, not by how --to spells it:
# case and trailing '/' make no new target (the default port: unit test).
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

core=$FERRY_TEST_PLAIN/$(grep -m1 harbor-core "$FERRY_TEST_IMAGES" | cut -f1)
"$ferry" keygen -o k -q >/dev/null
for seq in 10 5; do
	"$ferry" export -q "$core" -o "seq$seq.tar" --compress none --key k.key --insecure-registry 127.0.0.1 \
		--channel weekly --sequence "$seq" >/dev/null || bad "export sequence $seq"
done
port=${FERRY_TEST_PLAIN##*:}
"$ferry" import seq10.tar --key k.pub --to "localhost:$port/${run}rb" --state-dir st \
	--insecure-registry localhost -q || bad "import sequence 10"
for to in "LOCALHOST:$port/${run}rb" "localhost:$port/${run}rb/" "LocalHost:$port/${run}rb//"; do
	expect "older bundle refused through '$to'" 5 "rollback refused.*sequence 10.*sequence 5" \
		import seq5.tar --key k.pub --to "$to" --state-dir st --insecure-registry localhost
done
check "one record for all spellings" jqe '.imports | length == 1' st/import-state.json
check "recorded under the normal spelling" jqe ".imports[0].target == \"localhost:$port/${run}rb\"" st/import-state.json
expect "another prefix is another target" 0 "imported" import seq5.tar --key k.pub \
	--to "localhost:$port/${run}third" --state-dir st --insecure-registry localhost

finish
