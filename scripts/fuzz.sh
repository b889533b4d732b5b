#!/usr/bin/env bash
# Build the libFuzzer targets (build-fuzz/, clang, ASan + UBSan) and run each
# for SECONDS (default 60) over its committed seed corpus.  What a run finds
# new is kept in build-fuzz/tests/fuzz/corpus/<target>/, crash inputs as
# build-fuzz/tests/fuzz/<target>-crash-* (reproduce: run the target on the
# file).  Then the registry fuzzer (target "registry"): ferry export under
# ASan against random registry trees.  Usage: scripts/fuzz.sh [SECONDS]
# [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift $(($# > 0 ? 1 : 0))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_ref fuzz_manifest fuzz_bundle fuzz_sums fuzz_http fuzz_parts)
case $secs in '' | *[!0-9]*)
	echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
	exit 2
	;;
esac
command -v clang >/dev/null || { echo "clang is needed (scripts/deps.sh installs it)" >&2; exit 1; }

CC=clang cmake -S . -B build-fuzz -DFERRY_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
	cmake --build build-fuzz -j 2 >/dev/null || { echo "build-fuzz: build failed" >&2; exit 1; }

dir=build-fuzz/tests/fuzz
passed=0 failed=0
for t in "${targets[@]}"; do
	[ "$t" = registry ] && continue
	mkdir -p "$dir/corpus/$t"
	log="$dir/$t.log"
	"$dir/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
		-print_final_stats=1 -artifact_prefix="$dir/$t-" \
		"$dir/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	if [ $rc -eq 0 ]; then
		passed=$((passed + 1))
		echo "ok     $t: ${execs:-?} executions in ${secs}s"
	else
		failed=$((failed + 1))
		echo "FAILED $t: ${execs:-?} executions, exit $rc (see $log)"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -3 | sed 's/^/       /'
	fi
done

# The registry fuzzer: ferry export (ASan + UBSan build) against a registry
# serving random trees (tests/fixtures/treereg.py), every other one with
# random attachments, new corpora for SECONDS.
if [ ${#targets[@]} -eq 6 ] || [[ " ${targets[*]} " == *" registry "* ]]; then
	cmake -S . -B build-asan -DFERRY_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
		cmake --build build-asan -j 2 --target ferry >/dev/null ||
		{ echo "build-asan: build failed" >&2; exit 1; }
	end=$(($(date +%s) + secs)) runs=0 bad=0
	while [ "$(date +%s)" -lt "$end" ]; do
		seed=$((RANDOM * 32768 + RANDOM))
		# every other corpus with random signatures, SBOMs and
		# referrers on the trees (loops, chains, lies)
		if ((runs % 2)); then
			script=export_attach.sh feature=attach_fuzz
		else
			script=export_engine.sh feature=fuzz
		fi
		out=$(FERRY_FUZZ_SEED=$seed FERRY_FUZZ_IMAGES=40 \
			"tests/it/$script" "$PWD/build-asan/cli/ferry" "$feature" 2>&1)
		runs=$((runs + 1))
		grep -q '^0 failed\|, 0 failed$' <<<"$out" || {
			bad=$((bad + 1))
			echo "FAILED registry: FERRY_FUZZ_SEED=$seed tests/it/$script FERRY $feature"
			grep -E 'FAIL|rnd-' <<<"$out" | head -5 | sed 's/^/       /'
		}
	done
	if [ $bad -eq 0 ]; then
		passed=$((passed + 1))
		echo "ok     registry: $runs corpora of 40 random trees in ${secs}s"
	else
		failed=$((failed + 1))
	fi
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
