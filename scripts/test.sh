#!/usr/bin/env bash
# Install dependencies, lint (scripts/lint.sh), build, and run the whole
# test suite twice: once in a normal build and once with AddressSanitizer +
# UBSan; then the threaded features once more under ThreadSanitizer, and
# each libFuzzer target for 10 s. The suite starts its own registries on 127.0.0.1 and stops them
# afterwards. A lint failure fails the run, after the tests.
# Ends with one line per build: ctest's verdict and the build's wall time.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh || exit 1
jobs=$(nproc 2>/dev/null || echo 2)

build() { # DIR CMAKE-ARGS...
	local dir=$1
	shift
	cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null &&
		cmake --build "$dir" -j "$jobs" >/dev/null
}

status=0
summary=()
echo "== lint"
lint=ok
scripts/lint.sh || { status=1 lint=FAILED; }

# build_and_test NAME DIR [CMAKE-ARGS...]: build DIR, run its tests, and
# note ctest's closing line and the wall time (build + tests)
build_and_test() {
	local name=$1 dir=$2 start log verdict
	shift 2
	start=$(date +%s)
	echo "== build ($name)"
	if ! build "$dir" "$@"; then
		status=1
		summary+=("$name: build FAILED after $(($(date +%s) - start)) s")
		return
	fi
	echo "== tests ($name)"
	log=$dir/Testing/test-sh.log
	mkdir -p "$dir/Testing"
	# shellcheck disable=SC2086 # CTEST_ARGS is a list of words
	(cd "$dir" && ctest --output-on-failure -j 1 ${CTEST_ARGS:-}) | tee "$log"
	[ "${PIPESTATUS[0]}" = 0 ] || status=1
	verdict=$(grep -E '^[0-9]+% tests passed' "$log" | tail -1)
	summary+=("$name: ${verdict:-no ctest verdict}; wall $(($(date +%s) - start)) s")
}

build_and_test normal build
# (the 30 s stall-window test measures time only: once, above, is enough)
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	CTEST_ARGS="-E ^client\.trickle_real$" \
	build_and_test "AddressSanitizer + UBSan" build-asan -DFERRY_SANITIZE=ON
# ThreadSanitizer (clang) on the features that run threads: export's
# prefetch and workers, import's workers, split volumes' read-ahead, the
# pipe. A race report fails the test (TSan's exit code).
CC=clang TSAN_OPTIONS=halt_on_error=0:second_deadlock_stack=1 \
	CTEST_ARGS="-R ^(export\.(tree_parallel|tree_wide|tree_fanout|resume|interrupt)|import\.(parallel|roundtrip|shared_layers|state_truth)|weekly\.(split_parts|split_import|delta_import)|pipe\.(mirror|broken)|supply\.(roundtrip|many_repos|referrers_api))$" \
	build_and_test "ThreadSanitizer, threaded features" build-tsan -DFERRY_TSAN=ON
# Every libFuzzer target for a short bounded time over its seed corpus
# (scripts/fuzz.sh runs them longer).
CC=clang CTEST_ARGS="-L fuzz" \
	build_and_test "libFuzzer targets, 10 s each" build-fuzz -DFERRY_FUZZ=ON -DFERRY_FUZZ_SECONDS=10

echo "== summary"
echo "lint: $lint"
printf '%s\n' "${summary[@]}"
exit $status
