#!/usr/bin/env bash
# Installable: `cmake --install` puts ferry in bin/, a man page per command
# and ferry(1) in share/man/man1, bash and zsh completion; the Debian
# package built from the tree (cpack) holds the same, depends on the
# package of every shared library the binary needs, and once unpacked into
# a scratch root runs `ferry --version` and shows its man pages.
set -uo pipefail
ferry=$1
build=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
# shellcheck source=lib.sh
source "$here/lib.sh"

commands=$("$ferry" --help | sed -n '/^Commands:/,/^$/p' | awk 'NF && !/^Commands:/ {print $1}')
check "the command list is read from --help ($(echo $commands))" [ -n "$commands" ]

# --- cmake --install into a prefix
if cmake --install "$build" --prefix "$work/inst" >install.log 2>&1; then ok; else
	bad "cmake --install"
	tail -5 install.log
fi
check "bin/ferry installed and runs" bash -c "'$work/inst/bin/ferry' --version >/dev/null"
pages() { # ROOT/share/man/man1: ferry.1 and one page per command
	check "$1: ferry(1)" [ -s "$1/ferry.1.gz" ]
	for c in $commands; do check "$1: ferry-$c(1)" [ -s "$1/ferry-$c.1.gz" ]; done
}
pages "$work/inst/share/man/man1"
check "bash completion installed" [ -s "$work/inst/share/bash-completion/completions/ferry" ]
check "zsh completion installed" [ -s "$work/inst/share/zsh/vendor-completions/_ferry" ]
check "bash completion loads and completes commands" bash -c \
	"source '$work/inst/share/bash-completion/completions/ferry' && COMP_WORDS=(ferry ex) COMP_CWORD=1 && _ferry && [ \"\${COMPREPLY[*]}\" = export ]"
check "bash completion: cache actions" bash -c \
	"source '$work/inst/share/bash-completion/completions/ferry' && COMP_WORDS=(ferry cache p) COMP_CWORD=2 && _ferry && [ \"\${COMPREPLY[*]}\" = prune ]"

# --- the Debian package
if cpack --config "$build/CPackConfig.cmake" -B "$work/pkg" >cpack.log 2>&1; then ok; else
	bad "cpack"
	tail -5 cpack.log
fi
deb=$(ls "$work"/pkg/ferry_*.deb 2>/dev/null | head -1)
check "a .deb was built ($(basename "$deb"))" [ -s "$deb" ]
check "package name and version" [ "$(dpkg-deb -f "$deb" Package Version | tr '\n' ' ')" = "Package: ferry Version: $("$ferry" --version | head -1 | cut -d' ' -f2) " ]
depends=$(dpkg-deb -f "$deb" Depends)
for p in libcurl4 libarchive13 libjansson4 libssl3 libzstd1 zlib1g; do
	check "Depends names $p" grep -qE "(^|, )$p( |,|$)" <<<"$depends"
done
dpkg-deb -x "$deb" root || bad "dpkg-deb -x"
check "unpacked: /usr/bin/ferry --version" bash -c "'$work/root/usr/bin/ferry' --version | grep -q '^ferry [0-9]'"
check "unpacked: --version names libcurl, OpenSSL, libarchive, zstd, jansson" bash -c \
	"out=\$('$work/root/usr/bin/ferry' --version); for l in libcurl OpenSSL libarchive zstd jansson; do grep -q \"^\$l \" <<<\"\$out\" || exit 1; done"
pages "$work/root/usr/share/man/man1"
check "man -l ferry(1)" bash -c "MANWIDTH=80 man -l '$work/root/usr/share/man/man1/ferry.1.gz' 2>/dev/null | grep -q 'ferry - carry container images into air-gapped sites'"
for c in $commands; do
	check "man -l ferry-$c(1): its name line" bash -c \
		"MANWIDTH=80 man -l '$work/root/usr/share/man/man1/ferry-$c.1.gz' 2>/dev/null | grep -q '^ *ferry-$c - '"
done
check "unpacked: completions" [ -s root/usr/share/bash-completion/completions/ferry -a -s root/usr/share/zsh/vendor-completions/_ferry ]
check "unpacked: docs" [ -s root/usr/share/doc/ferry/README.md -a -s root/usr/share/doc/ferry/install.md ]

# every shared library the binary links directly comes from a package it
# depends on (the sanitizer runtimes of an ASan build are not for shipping)
ldd root/usr/bin/ferry | awk '$2 == "=>" {print $1, $3}' >libs.txt
needed=$(readelf -d root/usr/bin/ferry | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
check "the binary links libraries ($(echo $needed))" [ -n "$needed" ]
for lib in $needed; do
	case $lib in libasan* | libubsan*) continue ;; esac
	path=$(awk -v l="$lib" '$1 == l {print $2}' libs.txt)
	pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1)
	[ -z "$pkg" ] && pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1)
	check "$lib comes from ${pkg:-?}, which Depends names" grep -qE "(^|, )${pkg:-none}( |,|$)" <<<"$depends"
done
finish
