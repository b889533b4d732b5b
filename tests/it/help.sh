#!/usr/bin/env bash
# `ferry help CMD` shows that command's help (not the top-level one),
# `--version` names the version and the libraries ferry runs with, and a
# usage error has the one documented prefix, `ferry: error:`.
set -uo pipefail
ferry=$1
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

for cmd in keygen export verify inspect import unpack cache; do
	expect "help $cmd: its usage line" 0 "^usage: ferry $cmd " help "$cmd"
	check "help $cmd is what $cmd --help prints" \
		[ "$("$ferry" help "$cmd" 2>&1)" = "$("$ferry" "$cmd" --help 2>&1)" ]
done
expect "help: the command list" 0 "^Commands:" help
expect "help of an unknown command" 2 "^ferry: error: no command 'bogus'" help bogus
for lib in "ferry [0-9]+\.[0-9]+\.[0-9]+" "libcurl [0-9]" "OpenSSL [0-9]" "libarchive [0-9]" "zstd [0-9]" "jansson [0-9]" "zlib [0-9]"; do
	expect "--version names /$lib/" 0 "^$lib" --version
	expect "export --version names /$lib/" 0 "^$lib" export --version
done
expect "usage error: the documented prefix" 2 "^ferry: error: unknown or incomplete option '--bogus'" export --bogus
expect "unknown command: the documented prefix" 2 "^ferry: error: unknown command 'bogus'" bogus
finish
