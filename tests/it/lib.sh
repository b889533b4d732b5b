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
jqe() { jq -e "$@" >/dev/null; }
# The closing line ctest and CI read, and the exit status.
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
}
