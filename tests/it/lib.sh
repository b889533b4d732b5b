# Shared by the integration scripts: counting checks and running ferry.
# The sourcing script sets $ferry (the binary under test).
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() {
	failed=$((failed + 1))
	echo "FAIL $*"
}
check() { # NAME CMD...: CMD must succeed
	local name=$1
	shift
	if "$@"; then ok; else bad "$name"; fi
}
# expect NAME CODE PATTERN ARGS...: ferry ARGS exits CODE and its output
# matches the extended regex PATTERN
expect() {
	local name=$1 code=$2 pattern=$3
	shift 3
	local out rc
	out=$("$ferry" "$@" 2>&1)
	rc=$?
	if [ "$rc" = "$code" ] && grep -qE -- "$pattern" <<<"$out"; then ok; else
		bad "$name: exit $rc (want $code), /$pattern/"
		echo "$out" | tail -5 | sed 's/^/    /'
	fi
}
# jqe EXPR FILE: FILE holds JSON for which EXPR is true (jq 1.6's -e
# passes on an empty file: an empty or missing file fails here)
jqe() {
	[ -s "${*: -1}" ] || return 1
	jq -e "$@" >/dev/null
}
# The closing line ctest and CI read, and the exit status.
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
}

# --- one ctest test per feature
# A script defines one function feature_NAME per feature and ends with
#   it_main "${FEATURE:-all}" NAME...
# where FEATURE is its last argument. Each feature runs in its own empty
# directory $work/NAME (the script makes $work); "all" runs every feature
# in order, as one would by hand.
it_main() {
	local it_want=$1 it_f
	shift
	case " $* all " in
	*" $it_want "*) ;;
	*)
		bad "unknown feature '$it_want' (this script has: $*)"
		finish
		return
		;;
	esac
	for it_f in "$@"; do
		[ "$it_want" = all ] || [ "$it_want" = "$it_f" ] || continue
		echo "== $it_f"
		if mkdir -p "$work/$it_f" && cd "$work/$it_f"; then "feature_$it_f"; else bad "$it_f: no directory"; fi
	done
	finish
}

# it_shared FUNCTION: what several features need (keys, an exported bundle)
# is made once by FUNCTION, run in the directory $shared, and reused by
# the other features and later runs for as long as its inputs are the
# same: the binary under test ($ferry or $regcheck), the fixture (its
# ports, its images) and the scripts. $shared is under $FERRY_IT_WORK (one
# per build, set by ctest), else under $work. FUNCTION runs in a subshell:
# what it defines is lost, only its files count; it fails by returning
# non-zero. The lock lasts until the script exits, so features of one
# script running in parallel do not rebuild $shared under each other.
it_shared() {
	local fn=$1 base stamp
	base=${FERRY_IT_WORK:-$work}/shared
	shared=$base/$(basename "$0" .sh).$fn
	mkdir -p "$base" || {
		bad "shared setup: cannot create '$base'"
		return 1
	}
	if [ -z "${it_lock:-}" ]; then
		exec {it_lock}>"$base/$(basename "$0" .sh).lock"
		flock "$it_lock"
	fi
	stamp=$(cat "$(dirname "${BASH_SOURCE[0]}")/$(basename "$0")" "${BASH_SOURCE[0]}" "${ferry:-/dev/null}" "${regcheck:-/dev/null}" \
		${state:+"$state/env.sh"} ${FERRY_TEST_IMAGES:+"$FERRY_TEST_IMAGES"} | sha256sum)
	[ -d "$shared" ] && [ "$(cat "$shared.stamp" 2>/dev/null)" = "$stamp" ] && return 0
	rm -rf "$shared" "$shared.stamp"
	mkdir -p "$shared"
	if (cd "$shared" && "$fn"); then
		echo "$stamp" >"$shared.stamp"
	else
		bad "shared setup $fn"
		rm -rf "$shared"
		return 1
	fi
}
