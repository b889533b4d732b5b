#!/usr/bin/env bash
# Every feature of every integration script (its `it_main "$feature" NAME...`
# line) is registered as a ctest test in tests/CMakeLists.txt
# (`ferry_it_test(TEST SCRIPT NAME ...)`), and every registered feature
# exists: a feature nobody runs would drop its checks silently.
# Usage: features_registered.sh [TESTS_DIR]   (default: this script's ../)
set -uo pipefail
tests=${1:-$(cd "$(dirname "$0")/.." && pwd)}
# shellcheck source=lib.sh
source "$tests/it/lib.sh"

# SCRIPT FEATURE per line, from the CMake files (calls may span lines)
registered=$(find "$tests" -name CMakeLists.txt -exec cat {} + | sed 's/#.*//' | tr '\n' ' ' |
	grep -oE 'ferry_it_test\([^)]*\)' | sed -E 's/^ferry_it_test\( *//; s/ *\)$//' |
	awk '{print $2, $3}' | sort -u)
# SCRIPT FEATURE per line, from the scripts' it_main lines
declared=$(for s in "$tests"/it/*.sh; do
	sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$s" | grep -E '^it_main "\$feature"' |
		sed -E 's/^it_main "\$feature"//' | tr -s ' \t' '\n' | grep . |
		sed "s|^|$(basename "$s") |"
done | sort -u)

check "some features are declared" [ -n "$declared" ]
while read -r script feature; do
	[ -n "$script" ] || continue
	check "$script: feature '$feature' has a ctest test (ferry_it_test ... $script $feature)" \
		grep -qxF "$script $feature" <<<"$registered"
done <<<"$declared"
while read -r script feature; do
	[ -n "$script" ] || continue
	check "ferry_it_test ... $script $feature: the script has that feature" \
		grep -qxF "$script $feature" <<<"$declared"
done <<<"$registered"
finish
