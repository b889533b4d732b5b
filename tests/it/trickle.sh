#!/usr/bin/env bash
# The stall rule against a registry that trickles (tests/fixtures/fakereg.py
# sends 100 bytes a second, in the body or in the headers): a transfer
# below 1 KiB/s over the stall window has stalled, a request gives up after
# three stalls, and the command exits 3 (network) in bounded time.  A
# steady transfer above the rate over several windows still succeeds.
#
# Usage: trickle.sh FERRY REGCHECK [WINDOW]
#   WINDOW  stall window in seconds given to the client through
#           FERRY_TEST_STALL_SECONDS (default 2); "real" leaves the built-in
#           30 s and checks the promise itself: a trickling registry costs
#           a command less than 3 minutes (a slow test).
set -uo pipefail
ferry=$1
regcheck=$2
window=${3:-2}
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/trickle-it.XXXXXX") || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

python3 "$fixtures/fakereg.py" "$work/port" "$work/log" &
pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || {
	echo "fake registry did not start"
	exit 1
}
port=$(sed -n 1p "$work/port")
blob=$(sed -n 2p "$work/port")
size=$(sed -n 3p "$work/port")
host=127.0.0.1:$port
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$host" \
	"$(printf ferry:fake-secret | base64)" >"$work/auth.json"
"$ferry" keygen -q -o "$work/k" >/dev/null || exit 1

if [ "$window" = real ]; then
	unset FERRY_TEST_STALL_SECONDS
	win=30
else
	export FERRY_TEST_STALL_SECONDS=$window
	win=$window
fi
# Three stalls of one window each, plus backoff (under a second) and slack
# for a loaded machine; the promise (3 minutes with 30 s windows) scaled.
min_s=$((3 * win))
max_s=$((6 * win))
[ "$max_s" -lt 12 ] && max_s=12
# A client without the rule would wait forever: cut it off well after.
cutoff=$((max_s + 30))

# export_trickle NAME REPO: ferry export from a trickling repository.
export_trickle() {
	local name=$1 repo=$2 out rc t0 s
	t0=$(date +%s)
	out=$(timeout "$cutoff" "$ferry" export --insecure-registry 127.0.0.1 \
		--authfile "$work/auth.json" --key "$work/k.key" --progress none \
		-o "$work/$name.tar" "$host/$repo:t" 2>&1)
	rc=$?
	s=$(($(date +%s) - t0))
	if [ "$rc" = 3 ] && grep -qE "stalled: less than $((1024 * win)) bytes in $win s" <<<"$out"; then
		ok
	else
		bad "$name: exit $rc (want 3, 124 is the cut-off), /stalled/"
		echo "$out" | tail -3 | sed 's/^/    /'
	fi
	check "$name: gave up within ${max_s}s (took ${s}s)" [ "$s" -le "$max_s" ]
	check "$name: waited out three windows (took ${s}s)" [ "$s" -ge "$min_s" ]
	check "$name: stalled three times" [ "$(grep -c "\"path\": \"/v2/$repo/manifests/t\", \"auth\": true" "$work/log")" = 3 ]
	check "$name: no bundle left" [ ! -e "$work/$name.tar" ]
}

export_trickle body trickle/app
if [ "$window" != real ]; then
	export_trickle headers trickle-head/app

	# regcheck LABEL EXPECT PATTERN ARGS...: the client library directly.
	rc_check() {
		local name=$1 expect=$2 pattern=$3 out
		shift 3
		if out=$(timeout "$cutoff" "$regcheck" --insecure 127.0.0.1 \
			--authfile "$work/auth.json" --stall-seconds "$window" \
			--expect "$expect" "$host" "$@" 2>&1) &&
			grep -qE -- "$pattern" <<<"$out"; then
			ok
		else
			bad "$name: expected $expect /$pattern/"
			echo "$out" | tail -3 | sed 's/^/    /'
		fi
	}
	rc_check blob-trickle network "stalled: .*blob 'trickle/app@sha256:.*stalled 3 times in 3 attempts" \
		blob trickle/app "$blob" "$size"
	check "blob resumed where it stalled" grep -q '"path": "/v2/trickle/app/blobs/[^"]*", "auth": true, "range": "bytes=[0-9]*-"' "$work/log"
	# 200 KB at 40 KiB/s: five seconds, several windows, never stalled
	rc_check blob-steady ok "" blob steady/app "$blob" "$size"
fi

finish
