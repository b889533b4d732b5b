#!/usr/bin/env bash
# Messages a user can act on: a TLS failure says --ca-file; a plain-HTTP
# registry without --insecure-registry fails at once saying so (no retries);
# a wrong --key names the key the bundle claims and the one given (also in
# verify --json); an interrupted export says that a rerun resumes; an
# images-file line error has the `ferry: error:` prefix; the plain progress
# never shows a total of 0 and the summary counts manifests apart.
set -uo pipefail
ferry=$1
state=$2
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d)
hang_pid=
cleanup() {
	[ -n "$hang_pid" ] && kill "$hang_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"

"$ferry" keygen -o k -q >/dev/null || bad "keygen"
"$ferry" keygen -o other -q >/dev/null || bad "keygen other"
image=$(cut -f1 "$FERRY_TEST_IMAGES" | head -1)

# --- TLS and scheme mismatches
expect "untrusted TLS: hints at --ca-file" 3 "pass --ca-file CA.pem \(or --insecure-registry HOST" \
	export "$FERRY_TEST_TLS/$image" -o x.tar --key k.key --cache c --progress none
expect "unreadable --ca-file: says which option" 3 "check the file given with --ca-file" \
	export "$FERRY_TEST_TLS/$image" -o x.tar --key k.key --cache c --ca-file /dev/null/x --progress none
start=$(date +%s%N)
expect "plain HTTP registry without --insecure-registry: says so" 3 \
	"registry '$FERRY_TEST_PLAIN' speaks plain HTTP, not HTTPS; pass --insecure-registry $FERRY_TEST_PLAIN" \
	export "$FERRY_TEST_PLAIN/$image" -o x.tar --key k.key --cache c --progress none -v
ms=$((($(date +%s%N) - start) / 1000000))
check "plain HTTP registry: fails at once (${ms} ms, no retries)" [ "$ms" -lt 2000 ]
out=$("$ferry" export "$FERRY_TEST_PLAIN/$image" -o x.tar --key k.key --cache c --progress none -v 2>&1)
check "plain HTTP registry: no retry logged" bash -c "! grep -q retrying <<<\"\$0\"" "$out"
check "no bundle left behind" [ ! -e x.tar ]

# --- a bundle, its progress and summary
out=$("$ferry" export "$FERRY_TEST_PLAIN/$image" -o b.tar --key k.key --cache c \
	--insecure-registry "$FERRY_TEST_PLAIN" --progress plain 2>&1)
echo "$out" >export.log
check "export works" [ -s b.tar ]
check "plain progress: never a total of 0" bash -c "! grep -qE '\[[0-9]+/0\]' export.log"
check "plain progress: a line per config or layer" grep -qE '^(fetched|cached ) sha256:[0-9a-f]{64} [0-9.]+ MiB \[[0-9]+(/[0-9]+)?\]$' export.log
nblobs=$(tar -tf b.tar | grep -c '^blobs/sha256/.')
check "summary: $nblobs blobs, configs and layers counted apart from manifests" \
	grep -qE "wrote 'b.tar': 1 image, $nblobs blobs \([0-9]+ configs and layers, [0-9]+ (manifests and indexes|manifest or index)\)" export.log
nlines=$(grep -cE '^(fetched|cached ) ' export.log)
check "summary: the configs and layers are the $nlines blob lines" \
	grep -q "($nlines configs and layers" export.log

# the bar on a terminal (script(1) gives a pty): no "ETA 0s", no rate that
# rounds to 0.0 MiB/s (a run from the cache fetches nothing)
for run in fetch cached; do
	[ $run = fetch ] && rm -rf c2
	script -qec "'$ferry' export '$FERRY_TEST_PLAIN/$image' -o tty-$run.tar --key k.key --cache c2 \
		--insecure-registry '$FERRY_TEST_PLAIN'" /dev/null >tty-$run.log 2>&1
	check "terminal bar ($run): drawn" grep -q 'layers+configs [0-9]*/[0-9]* images 1/1' tty-$run.log
	check "terminal bar ($run): no ETA 0s" bash -c "! grep -q 'ETA 0s' tty-$run.log"
	check "terminal bar ($run): no 0.0 MiB/s" bash -c "! grep -q ' 0\.0 MiB/s' tty-$run.log"
done

# --- wrong key: both key ids, in text and JSON
good=$(sed -n 's/.*signed by key \(sha256:[0-9a-f]*\).*/\1/p' export.log)
wrong=$("$ferry" verify b.tar --key other.pub --json 2>/dev/null | jq -r .trustedKeyId)
check "key ids known ($good, $wrong)" [ -n "$good" -a -n "$wrong" -a "$good" != "$wrong" ]
expect "verify, wrong key: names both keys" 5 \
	"with key '$wrong' \(given with --key\); the bundle says it was signed by key '$good'" verify b.tar --key other.pub
check "verify --json, wrong key: signingKeyId is the claimed key" \
	bash -c "'$ferry' verify b.tar --key other.pub --json 2>/dev/null | jq -e '.signingKeyId == \"$good\" and .trustedKeyId == \"$wrong\" and .verdict == \"failed\"' >/dev/null"
expect "import, wrong key: names both keys" 5 "the bundle says it was signed by key '$good'" \
	import b.tar --key other.pub --to "$FERRY_TEST_PLAIN/msg" --insecure-registry "$FERRY_TEST_PLAIN" --state-dir st

# --- images-file errors: the documented prefix
printf '%s\nnot a ref!\n' "$FERRY_TEST_PLAIN/$image" >bad.txt
expect "images-file line error: ferry: error: FILE:LINE:" 1 "^ferry: error: bad.txt:2: " \
	export -f bad.txt -o y.tar --key k.key --cache c --insecure-registry "$FERRY_TEST_PLAIN"

# --- interrupted: says a rerun resumes
exec 3< <(python3 -c 'import socket,sys,time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True); time.sleep(120)')
hang_pid=$!
read -r port <&3
"$ferry" export "127.0.0.1:$port/a/b:c" -o z.tar --key k.key --cache c --progress none >int.out 2>&1 &
pid=$!
sleep 1
kill -INT "$pid"
wait "$pid"
rc=$?
check "interrupted: exit 130 (got $rc)" [ "$rc" = 130 ]
check "interrupted: says a rerun resumes from the cache" grep -q "run the same command again to resume.*cache 'c'" int.out
finish
