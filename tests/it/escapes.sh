#!/usr/bin/env bash
# Text from a registry or a bundle reaches the terminal with its control
# characters escaped: `verify` and `inspect` (text and --json) of a bundle
# whose reference, platforms and channel carry escape sequences, a newline,
# a C1 control and a right-to-left override; the error for a bundle entry
# whose name carries them; and the errors quoting a registry's error
# message, challenge header and digest header (tests/fixtures/fakereg.py).
#
# Usage: escapes.sh FERRY STATE_DIR   (STATE_DIR of a running registries.sh)
set -uo pipefail
ferry=$1
state=$2
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
# shellcheck disable=SC1091
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/escapes-it.XXXXXX") || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1

# raw FILE: does FILE hold a character a terminal acts on (C0 but newline,
# DEL, C1, bidirectional override) or bytes that are not UTF-8?
cat >raw.py <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
try:
    text = data.decode("utf-8")
except UnicodeDecodeError:
    sys.exit(0)
bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f
       or 0x202a <= ord(c) <= 0x202e or 0x2066 <= ord(c) <= 0x2069]
sys.exit(0 if bad else 1)
EOF
clean() { ! python3 raw.py "$1"; }

# run NAME CODES FERRY-ARGS...: ferry's stdout and stderr into NAME.out and
# NAME.json (stdout alone); CODES is one exit code or a|b.
run() {
	local name=$1 codes=$2 rc
	shift 2
	"$ferry" "$@" >"$name.stdout" 2>"$name.stderr"
	rc=$?
	cat "$name.stdout" "$name.stderr" >"$name.out"
	if [[ "|$codes|" == *"|$rc|"* ]]; then ok; else
		bad "$name: exit $rc, want $codes"
		tail -3 "$name.out" | cat -v | sed 's/^/    /'
	fi
	check "$name: no raw control characters" clean "$name.out"
	check "$name: no forged line" bash -c "! grep -q '^forged' '$name.out'"
}
# shows NAME TEXT: NAME's output shows TEXT (escapes written as in C)
shows() {
	if grep -qF -- "$2" "$1.out"; then ok; else
		bad "$1: does not show '$2'"
		cat -v "$1.out" | tail -5 | sed 's/^/    /'
	fi
}

# --- a good bundle, then hostile text in it (re-signed: it verifies)
"$ferry" keygen -q -o k >/dev/null || exit 1
first=$(cut -f1 "$FERRY_TEST_IMAGES" | head -1)
"$ferry" export "$FERRY_TEST_PLAIN/$first" -o good.tar --compress none --key k.key \
	--insecure-registry 127.0.0.1 --cache cache -q >/dev/null || {
	bad "export of the good bundle"
	finish
	exit 1
}
python3 "$fixtures/escapes.py" good.tar k.key cases || exit 1

for cmd in verify inspect; do
	keyarg=()
	[ $cmd = verify ] && keyarg=(--key k.pub)
	run "$cmd-text" 0 $cmd cases/text.tar "${keyarg[@]}"
	shows "$cmd-text" 'evil.example/\x1b]0;pwned\x07app:\x1b[2Jt'
	shows "$cmd-text" 'linux/\x1b[31mamd64\x1b[0m,linux/arm64\nforged: line,linux/\u009b1m\u202eevil\x7f'
	shows "$cmd-text" 'chan\x1b[1Anel, sequence'

	run "$cmd-json" 0 $cmd cases/text.tar "${keyarg[@]}" --json
	check "$cmd-json: JSON" jqe type "$cmd-json.stdout"
	check "$cmd-json: platforms intact" jqe \
		'.images[0].platforms == ["linux/\u001b[31mamd64\u001b[0m", "linux/arm64\nforged: line", "linux/\u009b1m\u202eevil\u007f"]' \
		"$cmd-json.stdout"
	check "$cmd-json: reference intact" jqe \
		'.images[0].reference == "evil.example/\u001b]0;pwned\u0007app:\u001b[2Jt" and .channel == "chan\u001b[1Anel"' \
		"$cmd-json.stdout"
done

# (the reader itself shows such a name with '?' for each control)
run verify-entry '5|6' verify cases/entry.tar --key k.pub
shows verify-entry '[2Kevil'
shows verify-entry 'verdict: FAILED: '
run verify-entry-json '5|6' verify cases/entry.tar --key k.pub --json
check "verify-entry-json: JSON" jqe '.error.message | contains("[2Kevil")' verify-entry-json.stdout

# --- a registry whose answers carry escape sequences
python3 "$fixtures/fakereg.py" "$work/port" "$work/log" &
pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || {
	echo "fake registry did not start"
	exit 1
}
host=127.0.0.1:$(sed -n 1p "$work/port")
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$host" \
	"$(printf ferry:fake-secret | base64)" >auth.json
reg() { # NAME CODE REPO
	run "$1" "$2" export --insecure-registry 127.0.0.1 --authfile auth.json \
		--key k.key -o "$1.tar" --progress none "$host/$3:t"
}
reg registry-message 3 hostile/app
shows registry-message 'MANIFEST_INVALID: bad \x1b[31mred\x1b[0m\nforged: line\u009b2J\u202eevil'
reg registry-challenge 4 hostile-auth/app
shows registry-challenge "'Evil\\x1b[2J\\x1b]0;pwned\\x07 realm=x'"
reg registry-digest 5 hostile-dcd/app
shows registry-digest "'sha256:\\x1b[2J\\x1b[31mlies'"
run registry-verbose 5 export -v --insecure-registry 127.0.0.1 --authfile auth.json \
	--key k.key -o v.tar --progress plain "$host/hostile-dcd/app:t"

finish
