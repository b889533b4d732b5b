#!/usr/bin/env bash
# Install dependencies, build, and run the whole test suite twice: once in
# a normal build and once with AddressSanitizer + UBSan.  The suite starts
# its own registries on 127.0.0.1 and stops them afterwards.
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
build build || exit 1
build build-asan -DFERRY_SANITIZE=ON || exit 1

echo "== tests (normal build)"
(cd build && ctest --output-on-failure -j 1) || status=1
echo "== tests (AddressSanitizer + UBSan build)"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --output-on-failure -j 1) || status=1
exit $status
