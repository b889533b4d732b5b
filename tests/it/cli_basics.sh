#!/usr/bin/env bash
# The dispatcher: help, version, and exit code 2 for bad command lines.
set -uo pipefail
ferry=$1
passed=0 failed=0
expect() { # NAME WANT-CODE PATTERN -- args
	local name=$1 want=$2 pattern=$3
	shift 3
	local out code
	out=$("$ferry" "$@" 2>&1)
	code=$?
	if [ "$code" = "$want" ] && grep -qE -- "$pattern" <<<"$out"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAIL $name: exit $code (want $want), output: $out"
	fi
}
expect version 0 '^ferry [0-9]+\.[0-9]+\.[0-9]+$' --version
expect help 0 'usage: ferry COMMAND' --help
expect help-exit-codes 0 '3 network/registry' --help
expect no-args 2 'usage: ferry' 
expect unknown 2 "unknown command 'frobnicate'" frobnicate
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
