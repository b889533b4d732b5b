#!/usr/bin/env bash
# Runs every ```sh block of docs/audit.md, in order, in one shell, against
# a real bundle: the audit procedure is documented only as it works. Then
# tampers with the extracted SHA256SUMS and checks that the documented
# openssl command fails.
#
# Usage: audit_doc.sh FERRY STATE_DIR [FEATURE]   (FEATURE: procedure; all)
set -uo pipefail
ferry=$1
state=$2
feature=${3:-all}
here=$(cd "$(dirname "$0")" && pwd)
doc=$(cd "$(dirname "$0")/../.." && pwd)/docs/audit.md
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
bin=$(dirname "$ferry")
# shellcheck source=lib.sh
source "$here/lib.sh"

feature_procedure() {
	local nblocks out want
	"$ferry" keygen -o ferry -q >/dev/null
	"$ferry" export -q "$FERRY_TEST_PLAIN/$(head -1 "$FERRY_TEST_IMAGES" | cut -f1)" \
		-o release.tar.zst --key ferry.key --insecure-registry 127.0.0.1 --cache cache >/dev/null ||
		{ bad "export failed"; return; }

	# the blocks, joined into one script; each block's status is checked
	python3 - "$doc" >blocks.sh <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
print("set -o pipefail")
for i, b in enumerate(blocks, 1):
    print(f"# block {i}")
    for line in b.strip().splitlines():
        print(f"{line} || {{ echo 'audit.md block {i} failed: {line}'; exit {i}; }}")
PY
	nblocks=$(grep -c '^# block' blocks.sh)
	if out=$(PATH="$bin:$PATH" bash blocks.sh 2>&1); then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAIL: $out"
	fi
	for want in "verdict: OK" "Verified OK" "nothing unlisted"; do
		if grep -q "$want" <<<"$out"; then passed=$((passed + 1)); else
			failed=$((failed + 1))
			echo "FAIL: output lacks '$want'"
		fi
	done
	if jq -e '.verdict == "ok"' audit.json >/dev/null; then passed=$((passed + 1)); else
		failed=$((failed + 1))
		echo "FAIL: audit.json"
	fi
	# the same openssl command must fail on a tampered SHA256SUMS
	sed -i '1s/^\(.\)/\1/;1s/^0/1/;1s/^[^1]/0/' extracted/SHA256SUMS
	if (cd extracted && ! openssl dgst -sha256 -verify ../ferry.pub \
		-signature <(base64 -d SHA256SUMS.sig) SHA256SUMS >/dev/null 2>&1); then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAIL: tampered SHA256SUMS still verifies"
	fi
	echo "($nblocks blocks of docs/audit.md run)"
}

it_main "$feature" procedure
