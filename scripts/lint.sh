#!/usr/bin/env bash
# House style by tools, on the C sources of common/ export/ import/ cli/
# tests/:
#   - clang-format (14, .clang-format at the top): the files must already
#     be formatted; --fix formats them in place instead;
#   - cppcheck: warnings and portability problems fail the lint.
# Usage: scripts/lint.sh [--fix]
# Exit status 0 when both are clean; the last line says what failed.
set -uo pipefail
cd "$(dirname "$0")/.."
fix=0
case ${1:-} in
--fix) fix=1 ;;
"") ;;
*)
	echo "usage: scripts/lint.sh [--fix]" >&2
	exit 2
	;;
esac

for t in clang-format cppcheck; do
	command -v "$t" >/dev/null || {
		echo "lint.sh: $t is needed (scripts/deps.sh installs it)" >&2
		exit 1
	}
done

mapfile -t files < <(find common export import cli tests -name '*.[ch]' | LC_ALL=C sort)
status=0 failed=()

if [ "$fix" = 1 ]; then
	changed=$(for f in "${files[@]}"; do clang-format "$f" | cmp -s - "$f" || echo "$f"; done)
	clang-format -i "${files[@]}" || status=1
	echo "clang-format: reformatted $(grep -c . <<<"$changed") of ${#files[@]} files"
else
	out=$(mktemp)
	if ! clang-format --dry-run --Werror "${files[@]}" 2>"$out"; then
		status=1
		failed+=(clang-format)
		grep -E '^[^ ].*: error:' "$out" | cut -d: -f1 | sort | uniq -c |
			awk '{print "clang-format: " $2 ": " $1 " places to reformat"}'
		echo "clang-format: run scripts/lint.sh --fix to format them"
	fi
	rm -f "$out"
fi

# cppcheck: the checks of --enable=warning,portability (plus the errors
# it always reports). Suppressed, with the reason:
#  - literalWithCharPtrCompare, incorrectStringBooleanError in tests/unit:
#    CHECK_STR (tests/unit/check.h) takes NULL or a string as the wanted
#    value, so with a literal its NULL tests are constant, on purpose.
cppcheck --quiet --std=c11 --enable=warning,portability --error-exitcode=1 \
	--inline-suppr \
	--suppress='literalWithCharPtrCompare:tests/unit/*' \
	--suppress='incorrectStringBooleanError:tests/unit/*' \
	-I common -I export -I import -I cli \
	"${files[@]}" || {
	status=1
	failed+=(cppcheck)
}

if [ "$status" = 0 ]; then
	echo "lint: clean (${#files[@]} files)"
else
	echo "lint: FAILED (${failed[*]:-clang-format --fix})"
fi
exit $status
