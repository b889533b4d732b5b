#!/usr/bin/env bash
# ferry verify against hostile bundles: the cases tests/fixtures/hostile.py
# makes from a good bundle (tampered blobs and documents, bad or foreign
# signatures, traversal names, links and devices, duplicates, wrong order,
# bad blob names, lying descriptor sizes, oversized and deeply nested JSON,
# truncated and corrupt compression, decompression bombs, non-bundles).
# Many are re-signed with the trusted key, so that the check under test is
# the only thing wrong.
#
# For each case: the exact exit code (5 verification, 6 malformed bundle),
# an error message matching the case's regex, a `ferry: error:` line,
# nothing that looks like success, no crash, timeout or sanitizer report,
# no raw control characters echoed from the bundle, bounded memory (an
# address-space limit, and a peak RSS well below the 64 MiB documents), and
# the same exit code with --json (whose standard output, if any, is JSON).
#
# Usage: hostile.sh FERRY STATE_DIR [FEATURE]   (STATE_DIR of a running
# registries.sh; FEATURE: see the end; all)
# Environment:
#   FERRY_SANITIZED=1         ASan/UBSan build: no address-space or RSS limit
#   FERRY_HOSTILE_VMEM_KB     address-space limit per run (default 307200)
#   FERRY_HOSTILE_MAX_RSS_KB  peak RSS allowed per run (default 49152)
#   FERRY_HOSTILE_TIMEOUT     seconds per run (default 60)
#   FERRY_HOSTILE_BOMB_CPU_S  CPU seconds a decompression bomb may cost
#                             (default 5; 20 with FERRY_SANITIZED=1): a
#                             100 GiB bomb must be refused from its headers
#   FERRY_HOSTILE_KEEP=DIR    copy the generated cases there (for debugging)
set -uo pipefail
ferry=$1
state=$2
feature=${3:-all}
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/hostile-it.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1

if [ "${FERRY_SANITIZED:-0}" = 1 ]; then
	vmem_kb=0 max_rss_kb=0
else
	vmem_kb=${FERRY_HOSTILE_VMEM_KB:-307200}
	max_rss_kb=${FERRY_HOSTILE_MAX_RSS_KB:-49152}
fi
limit_s=${FERRY_HOSTILE_TIMEOUT:-60}
bomb_cpu_s=${FERRY_HOSTILE_BOMB_CPU_S:-5}
[ "${FERRY_SANITIZED:-0}" = 1 ] && bomb_cpu_s=${FERRY_HOSTILE_BOMB_CPU_S:-20}

# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"

for t in python3 openssl zstd gzip jq; do
	command -v "$t" >/dev/null || {
		echo "hostile.sh: $t is needed"
		exit 1
	}
done

# run.py USAGE_FILE VMEM_KB SECONDS STDIN CMD...: CMD under an address-space
# limit of VMEM_KB (as `ulimit -v`; 0: none) and a timeout (as `timeout`:
# exit 124; killed by signal N: 128+N), its
# stdin from the file STDIN (- for /dev/null); writes to USAGE_FILE its peak
# RSS in KiB and the CPU seconds it used.
cat >run.py <<'EOF'
import resource, subprocess, sys
usage_file, vmem_kb, seconds, stdin_path = sys.argv[1:5]
def limit():
    if int(vmem_kb) > 0:
        resource.setrlimit(resource.RLIMIT_AS, (int(vmem_kb) * 1024,) * 2)
stdin = subprocess.DEVNULL if stdin_path == "-" else open(stdin_path, "rb")
p = subprocess.Popen(sys.argv[5:], stdin=stdin, preexec_fn=limit)
try:
    rc = p.wait(timeout=float(seconds))
except subprocess.TimeoutExpired:
    p.kill()
    p.wait()
    rc = 124
if rc < 0:
    rc = 128 - rc
with open(usage_file, "w") as f:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    f.write("%d %d\n" % (ru.ru_maxrss, ru.ru_utime + ru.ru_stime + 0.5))
sys.exit(rc)
EOF

# verify_case NAME CODES REGEX FILE PUB [stdin]: CODES is one exit code or
# alternatives a|b; REGEX (grep -Ei) must match the output, unless empty.
# CODES 0 is a control: it must verify; the message checks are skipped.
verify_case() {
	local name=$1 codes=$2 regex=$3 file=$4 pub=$5 how=${6:-file}
	local out rc rss cpu jrc in=- target=$file why=()
	if [ "$how" = stdin ]; then in=$file target=-; fi
	out=$(python3 "$work/run.py" usage.txt "$vmem_kb" "$limit_s" "$in" "$ferry" verify "$target" --key "$pub" 2>&1)
	rc=$?
	read -r rss cpu <usage.txt || rss=0 cpu=0
	if [ "$rc" = 124 ]; then
		why+=("timed out after ${limit_s}s")
	elif [ "$rc" -gt 128 ] && [ "$rc" != 130 ]; then
		why+=("killed by signal $((rc - 128))")
	fi
	[[ "|$codes|" == *"|$rc|"* ]] || why+=("exit $rc, want $codes")
	if grep -Eq 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|MemorySanitizer|runtime error:' <<<"$out"; then
		why+=("sanitizer report")
	fi
	if [ "$max_rss_kb" -gt 0 ] && [ "$rss" -gt "$max_rss_kb" ]; then
		why+=("peak RSS ${rss} KiB > ${max_rss_kb} KiB")
	fi
	if [[ $name == *bomb* ]] && [ "$cpu" -gt "$bomb_cpu_s" ]; then
		why+=("used ${cpu}s of CPU: decompressed the bomb instead of refusing it early")
	fi
	if tr -d '\t' <<<"$out" | LC_ALL=C grep -q '[[:cntrl:]]'; then
		why+=("raw control characters in the output")
	fi
	if [ "$codes" != 0 ]; then
		grep -q '^ferry: error: ' <<<"$out" || why+=("no 'ferry: error:' line")
		if [ -n "$regex" ] && ! grep -Eiq -- "$regex" <<<"$out"; then
			why+=("message does not match /$regex/")
		fi
		if grep -Eiq '^ *(verdict: *)?ok([^a-z]|$)' <<<"$out"; then
			why+=("output looks like success")
		fi
	fi
	# the same with --json, unless it already failed
	if [ ${#why[@]} = 0 ] && [ "$how" = file ]; then
		python3 "$work/run.py" usage.txt "$vmem_kb" "$limit_s" - "$ferry" verify "$file" --key "$pub" --json \
			>json.out 2>json.err
		jrc=$?
		[ "$jrc" = "$rc" ] || why+=("--json: exit $jrc, $rc without")
		if [ -s json.out ] && ! jq -e type json.out >/dev/null 2>&1; then
			why+=("--json: standard output is not JSON")
		fi
		if grep -Eq 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' json.err; then
			why+=("--json: sanitizer report")
		fi
	fi
	if [ ${#why[@]} = 0 ]; then
		ok
	else
		local IFS=';'
		bad "$name ($how): ${why[*]}"
		head -c 2000 <<<"$out" | head -5 | cat -v | sed 's/^/    /'
	fi
}

# --- shared by the features: keys and a good bundle of three tags: an OCI
# index (twice, under two tags) and a Docker v2 manifest; the cases
# tests/fixtures/hostile.py makes from it
make_shared() {
	local refs=() r c ext
	"$ferry" keygen -o good -q >/dev/null || { echo "keygen ecdsa failed"; return 1; }
	"$ferry" keygen -o ed --type ed25519 -q >/dev/null || { echo "keygen ed25519 failed"; return 1; }
	"$ferry" keygen -o other -q >/dev/null || { echo "keygen second ecdsa failed"; return 1; }
	for r in library/alpine:3.14 library/alpine:latest library/busybox:1.36; do
		if cut -f1 "$FERRY_TEST_IMAGES" | grep -qxF "$r"; then refs+=("$FERRY_TEST_PLAIN/$r"); fi
	done
	if [ ${#refs[@]} -lt 2 ]; then
		mapfile -t refs < <(cut -f1 "$FERRY_TEST_IMAGES" | head -3 | sed "s|^|$FERRY_TEST_PLAIN/|")
	fi
	for c in none zstd; do
		ext=tar
		[ $c = zstd ] && ext=tar.zst
		if ! "$ferry" export "${refs[@]}" -o "good.$ext" --compress $c --key good.key \
			--insecure-registry 127.0.0.1 --cache cache -q >/dev/null; then
			echo "export of the good bundle ($c) failed"
			return 1
		fi
	done
	python3 "$fixtures/hostile.py" good.tar good.key other.key cases || { echo "hostile.py failed"; return 1; }
}
use_shared() {
	it_shared make_shared || return 1
	ln -s "$shared"/* .
	if [ -n "${FERRY_HOSTILE_KEEP:-}" ]; then mkdir -p "$FERRY_HOSTILE_KEEP" && cp -r cases/. "$FERRY_HOSTILE_KEEP/"; fi
}

# --- the good bundle verifies (if this fails, every case below is suspect)
feature_good_bundle() {
	use_shared || return
	verify_case good-tar 0 "" good.tar good.pub
	verify_case good-zstd 0 "" good.tar.zst good.pub
	verify_case good-zstd 0 "" good.tar.zst good.pub stdin
}

# --- the cases, and the controls (variants that must still verify)
feature_hostile() {
	use_shared || return
	local n=0 name file codes regex
	while IFS=$'\t' read -r name file codes regex; do
		verify_case "control $name" "$codes" "$regex" "cases/$file" good.pub
	done <cases/controls.tsv
	while IFS=$'\t' read -r name file codes regex; do
		verify_case "$name" "$codes" "$regex" "cases/$file" good.pub
		n=$((n + 1))
	done <cases/cases.tsv
	[ "$n" -ge 90 ] || bad "only $n cases in cases.tsv"
}

# --- keys that did not sign: another type, another ECDSA key
feature_wrong_key() {
	use_shared || return
	verify_case wrong-key-type 5 "signature|key" good.tar ed.pub
	verify_case wrong-key 5 "signature" good.tar other.pub
	verify_case wrong-key-type 5 "signature|key" good.tar.zst ed.pub stdin
}

# --- hostile input on standard input
feature_hostile_stdin() {
	use_shared || return
	local c name file codes regex
	for c in layer-flip-resigned zstd-trunc-middle zstd-bomb-entry; do
		IFS=$'\t' read -r name file codes regex < <(awk -F'\t' -v c="$c" '$1 == c' cases/cases.tsv)
		verify_case "$name" "$codes" "$regex" "cases/$file" good.pub stdin
	done
}

# --- the same cases imported: each is refused with the same exit code, no
# tag is written or moved anywhere, and a defect in the signature or
# SHA256SUMS pushes nothing at all (the catalog stays the same)
catalog() { curl -sf "http://$FERRY_TEST_PLAIN/v2/_catalog?n=100000" | jq -r '.repositories[]?' | sort; }
tagstate() {
	local r
	for r in $(catalog); do
		echo "$r $(curl -sf "http://$FERRY_TEST_PLAIN/v2/$r/tags/list" | jq -c '.tags // [] | sort')"
	done | grep -v ' \[\]$'
}
feature_import() {
	use_shared || return
	local tags_before prefix=hostile$$ ni=0 name file codes regex cat_before out rc check_n
	tags_before=$(tagstate)
	while IFS=$'\t' read -r name file codes regex; do
		cat_before=$(catalog)
		out=$(timeout 120 "$ferry" import "cases/$file" --key good.pub --to "$FERRY_TEST_PLAIN/$prefix" \
			--state-dir "$PWD/import-state" --insecure-registry 127.0.0.1 -q 2>&1)
		rc=$?
		if [[ "|$codes|" == *"|$rc|"* ]]; then ok; else
			bad "import $name: exit $rc, want $codes: $(tail -1 <<<"$out")"
		fi
		case $name in
		sig-* | sums-* | missing-sums | order-sig-* | order-sums-*)
			if [ "$(catalog)" = "$cat_before" ]; then ok; else bad "import $name pushed something"; fi ;;
		esac
		ni=$((ni + 1))
	done <cases/cases.tsv
	if [ "$(tagstate)" = "$tags_before" ]; then ok; else
		bad "hostile imports changed tags: $(diff <(echo "$tags_before") <(tagstate) | head -5)"
	fi
	check_n=$(catalog | grep -c "^$prefix/" || true)
	echo "($ni hostile imports; $check_n repositories hold untagged blobs, which registry GC removes)"
}

it_main "$feature" good_bundle hostile wrong_key hostile_stdin import
