#!/usr/bin/env bash
# ferry cache prune|clear: prune removes blobs and partial downloads last
# used DAYS or more days ago and keeps the rest; clear removes every one;
# both print what they freed; only <hex> files in blobs/sha256 and partial
# are touched (never links or other files); a directory that is not laid
# out as ferry's cache is refused untouched.
set -uo pipefail
ferry=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
# shellcheck source=lib.sh
source "$here/lib.sh"

hex() { printf '%064x' "$1"; }
blob() { # DIR N DAYS-AGO KiB
	head -c $(($4 * 1024)) /dev/zero >"$1/$(hex "$2")"
	touch -d "@$(($(date +%s) - $3 * 86400))" "$1/$(hex "$2")"
}
make_cache() {
	rm -rf c victim
	mkdir -p c/blobs/sha256 c/partial victim
	blob c/blobs/sha256 1 40 1024 # old: pruned
	blob c/blobs/sha256 2 31 1024 # old: pruned
	blob c/blobs/sha256 3 1 512   # recent: kept
	blob c/partial 4 40 256       # old partial: pruned
	blob c/partial 5 0 128        # partial in progress: kept
	echo keep >c/blobs/sha256/README
	echo mine >victim/$(hex 9)
	touch -d @1000 victim/$(hex 9)
	ln -s ../../../victim/$(hex 9) c/blobs/sha256/$(hex 8)
}

make_cache
expect "prune: what it freed" 0 \
	"^pruned 'c': removed 2 blobs \(2\.0 MiB\) and 1 partial download \(0\.2 MiB\), freed 2\.2 MiB; kept 2 files \(0\.6 MiB\)$" \
	cache prune --older-than 30 --cache c
check "prune: old blobs gone" [ ! -e "c/blobs/sha256/$(hex 1)" -a ! -e "c/blobs/sha256/$(hex 2)" ]
check "prune: recent blob kept" [ -e "c/blobs/sha256/$(hex 3)" ]
check "prune: old partial gone, fresh one kept" [ ! -e "c/partial/$(hex 4)" -a -e "c/partial/$(hex 5)" ]
check "prune: other files and links untouched" [ -e c/blobs/sha256/README -a -L "c/blobs/sha256/$(hex 8)" ]
check "prune: nothing outside the cache touched" [ -e "victim/$(hex 9)" ]

make_cache
expect "prune: the default is 30 days" 0 "removed 2 blobs .* and 1 partial download" cache prune --cache c
make_cache
expect "prune --older-than 0: everything" 0 "removed 3 blobs \(2\.5 MiB\) and 2 partial downloads" \
	cache prune --older-than 0 --cache c
make_cache
expect "clear: everything, what it freed" 0 \
	"^cleared 'c': removed 3 blobs \(2\.5 MiB\) and 2 partial downloads \(0\.4 MiB\), freed 2\.9 MiB$" \
	cache clear --cache c
check "clear: only README and the link are left" \
	[ "$(find c -type f -o -type l | sort | tr '\n' ' ')" = "c/blobs/sha256/$(hex 8) c/blobs/sha256/README " ]
check "clear: nothing outside the cache touched" [ -e "victim/$(hex 9)" ]
expect "clear -q: silent" 0 '^$' cache clear --cache c -q

# the default cache is $XDG_CACHE_HOME/ferry
make_cache
mkdir -p xdg && mv c xdg/ferry
XDG_CACHE_HOME=$work/xdg expect "default cache: \$XDG_CACHE_HOME/ferry" 0 "^cleared '$work/xdg/ferry'" cache clear

# not a cache: refused, untouched
expect "a directory without blobs/sha256: refused" 1 \
	"^ferry: error: 'victim' is not a ferry cache \(no 'blobs/sha256' directory\); nothing was removed" \
	cache clear --cache victim
check "refused: untouched" [ -e "victim/$(hex 9)" ]
mkdir -p linked && ln -s "$work/xdg/ferry/blobs" linked/blobs
expect "blobs as a link: refused" 1 "is not a ferry cache" cache clear --cache linked
expect "a missing cache: an I/O error" 7 "cannot open cache 'nope'" cache prune --cache nope
expect "usage: an action is needed" 2 "say 'prune' or 'clear'" cache
expect "usage: an unknown action" 2 "say 'prune' or 'clear', not 'purge'" cache purge
expect "usage: bad --older-than" 2 "number of days, not 'x'" cache prune --older-than x --cache c
expect "usage: --older-than with clear" 2 "is for 'prune'" cache clear --older-than 3
expect "help" 0 "^usage: ferry cache prune" help cache
finish
