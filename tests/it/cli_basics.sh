#!/usr/bin/env bash
# The dispatcher: help, version, and exit code 2 for bad command lines.
#
# Usage: cli_basics.sh FERRY [FEATURE]   (FEATURE: see the end; all)
set -uo pipefail
ferry=$1
feature=${2:-all}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/cli-it.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
# shellcheck source=lib.sh
source "$here/lib.sh"
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
feature_help() {
	expect version 0 '^ferry [0-9]+\.[0-9]+\.[0-9]+$' --version
	expect help 0 'usage: ferry COMMAND' --help
	expect help-exit-codes 0 '3 network/registry' --help
}
feature_usage_errors() {
	expect no-args 2 'usage: ferry'
	expect unknown 2 "unknown command 'frobnicate'" frobnicate
}
it_main "$feature" help usage_errors
