#!/usr/bin/env bash
# What export carries along with the images (SPEC section 6) against a
# registry that serves hostile attachments (tests/fixtures/treereg.py,
# att-*/app:1): loops through tags, nesting and fan-out past the caps of
# common/bounds.h, referrers naming another subject, tags of the wrong
# kind, tag lists and referrers answers that never end.  SPEC section 4:
# export must not crash, loop or fetch without bound; it either writes a
# bundle that verifies or fails with a clear error and writes none.
#
# Usage: export_attach.sh FERRY [FEATURE]   (FEATURE: see the end; all)
set -uo pipefail
ferry=$1
feature=${2:-all}
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$(cd "$here/../fixtures" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/attach-it.XXXXXX") || exit 1
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=lib.sh
source "$here/lib.sh"

# random trees with random attachments (attach_fuzz): FERRY_FUZZ_SEED picks
# the corpus; the default is fixed so that the suite is reproducible
seed=${FERRY_FUZZ_SEED:-20261202}
nrand=${FERRY_FUZZ_IMAGES:-40}
if [ "$feature" = attach_fuzz ] || [ "$feature" = all ]; then
	export TREEREG_RANDOM="$seed:$nrand" TREEREG_RANDOM_ATTACH=1
fi
log=$work/log
python3 "$fixtures/treereg.py" "$work/port" "$log" &
pid=$!
for _ in $(seq 300); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || {
	echo "tree registry did not start"
	exit 1
}
host=127.0.0.1:$(cat "$work/port")
"$ferry" keygen -q -o "$work/k" >/dev/null || {
	echo "keygen failed"
	exit 1
}

# ex NAME [ARGS...]: export att-NAME/app:1 into out.tar with a fresh log;
# sets rc; output in out.txt
ex() {
	local name=$1
	shift
	: >"$log"
	rm -rf out.tar cache
	timeout 120 "$ferry" export -q --key "$work/k.key" --insecure-registry 127.0.0.1 \
		--cache cache --compress none "$@" "$host/att-$name/app:1" -o out.tar >out.txt 2>&1
	rc=$?
}
# requests of the last export whose path matches the regex
reqs() { grep -cE "^GET /v2/[^ ]*$1" "$log"; }
# manifest paths asked for more than once in the last export
twice() { grep -E '^GET /v2/[^ ]*/manifests/' "$log" | sort | uniq -d | wc -l; }
attached() { tar -xOf out.tar ferry.json | jq '[.images[].attached // [] | .[]] | length'; }
verifies() { "$ferry" verify out.tar --key "$work/k.pub" -q >/dev/null 2>&1; }
# refused CODE REGEX WHAT: the last export failed with CODE, said REGEX,
# left no bundle
refused() {
	check "$3: exit $1 (got $rc: $(tail -1 out.txt))" [ "$rc" = "$1" ]
	check "$3: the error says /$2/" grep -qE -- "$2" out.txt
	check "$3: no bundle" [ ! -e out.tar ]
}

feature_attach_sound() {
	# signed index, SBOM and two referrers on a platform manifest, a
	# signature on a referrer: 6 attachments, through the fallback tag and
	# through the referrers API
	for name in ok apiok; do
		ex "$name"
		check "att-$name exports (exit $rc: $(tail -1 out.txt))" [ "$rc" = 0 ]
		check "att-$name carries its 6 attachments ($(attached))" [ "$(attached)" = 6 ]
		check "att-$name bundle verifies" verifies
		check "att-$name: no manifest asked for twice ($(twice))" [ "$(twice)" = 0 ]
		check "att-$name: the tag list read once ($(reqs /tags/list))" [ "$(reqs /tags/list)" = 1 ]
	done
	check "through the API, no fallback tag is asked for" [ "$(reqs '/manifests/sha256-[0-9a-f]{64}$')" = 0 ]
	check "through the API, one referrers request for each of the 8 subjects ($(reqs /referrers/))" \
		[ "$(reqs /referrers/)" = 8 ]
	# a registry that answers 405 to the referrers path has no API: the
	# fallback tag is read instead
	ex api405
	check "att-api405 (referrers path answered 405) exports (exit $rc: $(tail -1 out.txt))" [ "$rc" = 0 ]
	check "att-api405 carries its 6 attachments through the fallback tag ($(attached))" [ "$(attached)" = 6 ]
	check "att-api405: the referrers path asked once ($(reqs /referrers/))" [ "$(reqs /referrers/)" = 1 ]
	ex ok --referrers none
	check "--referrers none exports" [ "$rc" = 0 ]
	check "--referrers none carries nothing" [ "$(attached)" = 0 ]
	check "--referrers none asks for no tag list, referrer or attachment tag" \
		[ "$(reqs '(/tags/list|/referrers/|/manifests/sha256-)')" = 0 ]
}

feature_attach_loop() {
	# X.sig -> M, M.sig -> X, M.att -> M
	ex loop
	check "a loop through tags exports (exit $rc: $(tail -1 out.txt))" [ "$rc" = 0 ]
	check "the loop's 3 attachments are carried ($(attached))" [ "$(attached)" = 3 ]
	check "no manifest asked for twice ($(twice))" [ "$(twice)" = 0 ]
	check "few requests ($(reqs /manifests/))" [ "$(reqs /manifests/)" -le 5 ]
	check "the loop's bundle verifies" verifies
}

feature_attach_depth() {
	# FERRY_MAX_ATTACH_DEPTH is 4: a chain of 4 signatures on signatures is
	# carried, a 5th level is refused
	ex deep4
	check "4 nested signatures export (exit $rc: $(tail -1 out.txt))" [ "$rc" = 0 ]
	check "all 4 are carried ($(attached))" [ "$(attached)" = 4 ]
	check "the nested bundle verifies" verifies
	ex deep5
	refused 1 "nested more than 4 deep" "5 nested signatures"
	# 50 referrers of referrers: the walk stops early
	ex deep
	refused 1 "nested more than 4 deep" "50 nested referrers"
	check "the nested referrers were not all walked ($(reqs /manifests/) manifest GETs)" \
		[ "$(reqs /manifests/)" -le 14 ]
}

feature_attach_fanout() {
	ex fanidx
	refused 1 "1001 referrers, more than the limit of 1000" "a fallback index of 1001 referrers"
	check "none of its referrers was fetched ($(reqs /manifests/))" [ "$(reqs /manifests/)" -le 3 ]
	# 350 platforms with 3 cosign tags each: 1050 attachments
	ex wide
	refused 1 "more than 1000 attached" "350 platforms with 3 attachments each"
	check "the wide walk stopped at the cap ($(reqs /manifests/) manifest GETs)" \
		[ "$(reqs /manifests/)" -le $((2 + 350 + 1001)) ]
	# 600 referrers, 500 of them signed: 1101 over two levels
	ex refwide
	refused 1 "more than 1000 attached" "600 referrers and 500 signatures on them"
	check "the two-level walk stopped at the cap ($(reqs /manifests/) manifest GETs)" \
		[ "$(reqs /manifests/)" -le $((2 + 1001)) ]
	# one referrer listed 500 times: fetched and carried once
	ex dup
	check "a referrer listed 500 times exports (exit $rc: $(tail -1 out.txt))" [ "$rc" = 0 ]
	check "it is fetched once ($(reqs '/manifests/sha256:') GETs by digest)" \
		[ "$(reqs '/manifests/sha256:')" -le 1 ]
	check "it is carried once, with its index ($(attached))" [ "$(attached)" = 2 ]
	check "the bundle verifies" verifies
}

feature_attach_subject() {
	ex wrongsubj
	refused 5 "does not name it as its subject" "a referrer of another subject (fallback tag)"
	ex nosubj
	refused 5 "does not name it as its subject" "a referrer with no subject (fallback tag)"
	ex apiwrongsubj
	refused 5 "does not name it as its subject" "a referrer of another subject (referrers API)"
}

feature_attach_api() {
	ex apinotidx
	refused 1 "referrers of .*: not an index" "a referrers answer that is no index"
	ex apihuge
	refused 1 "referrers of .*: more than the limit" "a referrers answer of 1001 entries"
	check "nothing it lists is fetched ($(reqs /manifests/))" [ "$(reqs /manifests/)" -le 2 ]
	ex apipages
	refused 1 "more than 16 pages" "a referrers answer with a next page for ever"
	check "16 pages asked for ($(reqs /referrers/))" [ "$(reqs /referrers/)" = 16 ]
	ex apipaged
	check "a referrers answer in 3 pages exports (exit $rc: $(tail -1 out.txt))" [ "$rc" = 0 ]
	check "its 3 referrers and their index are carried ($(attached))" [ "$(attached)" = 4 ]
	check "the paged bundle verifies" verifies
}

feature_attach_taglist() {
	# a tag list that never ends is given up (FERRY_MAX_TAG_PAGES) and
	# every attachment tag asked for instead; one that is no JSON likewise
	ex tagpages
	check "a tag list paginating for ever: export succeeds (exit $rc: $(tail -1 out.txt))" [ "$rc" = 0 ]
	check "its pages are bounded ($(reqs /tags/list))" [ "$(reqs /tags/list)" -le 100 ]
	check "the signature is still found ($(attached))" [ "$(attached)" = 1 ]
	check "the bundle verifies" verifies
	ex tagjunk
	check "a tag list that is no JSON: export succeeds (exit $rc: $(tail -1 out.txt))" [ "$rc" = 0 ]
	check "the signature is still found ($(attached))" [ "$(attached)" = 1 ]
	# a tag list whose next page is on another host is not taken for a
	# whole one (credentials stay here, and the signature's tag is on the
	# page not read)
	ex tagaway
	check "a tag list continued on another host: export succeeds (exit $rc: $(tail -1 out.txt))" [ "$rc" = 0 ]
	check "the signature is still found ($(attached))" [ "$(attached)" = 1 ]
}

feature_attach_kinds() {
	ex fbnotidx
	refused 1 "the referrers tag 'sha256-[0-9a-f]{64}' is not an index" "a fallback tag that is an image"
	ex sigidx
	refused 1 "tag 'sha256-[0-9a-f]{64}\.sig' is an index" "a cosign tag that is an index"
}

feature_attach_fuzz() {
	# random trees with random attachments: never a crash, a hang or an
	# unexpected exit; every bundle written verifies
	echo "random corpus: FERRY_FUZZ_SEED=$seed FERRY_FUZZ_IMAGES=$nrand"
	local crashes=0 slow=0 badcode=0 unverified=0 exported=0 withatt=0 k start refusals=
	for k in $(seq 0 $((nrand - 1))); do
		rm -rf out.tar cache
		start=$(date +%s)
		timeout 60 "$ferry" export -q --key "$work/k.key" --insecure-registry 127.0.0.1 \
			--cache cache --compress none "$host/rnd-$k/app:1" -o out.tar >out.txt 2>&1
		rc=$?
		[ $(($(date +%s) - start)) -le 45 ] || {
			slow=$((slow + 1))
			echo "    rnd-$k took long"
		}
		case $rc in
		0)
			exported=$((exported + 1))
			[ "$(attached)" -gt 0 ] && withatt=$((withatt + 1))
			verifies || {
				unverified=$((unverified + 1))
				echo "    rnd-$k: bundle does not verify"
			}
			;;
		1 | 3 | 5) refusals="$refusals $rc" ;;
		124 | 1[2-9][0-9] | 2[0-9][0-9])
			crashes=$((crashes + 1))
			echo "    rnd-$k: exit $rc"
			tail -3 out.txt | sed 's/^/      /'
			;;
		*)
			badcode=$((badcode + 1))
			echo "    rnd-$k: unexpected exit $rc: $(tail -1 out.txt)"
			;;
		esac
	done
	echo "exported $exported ($withatt with attachments); refused with exit:${refusals:- none}"
	check "no crash, sanitizer report or hang in $nrand random trees ($crashes)" [ "$crashes" = 0 ]
	check "every failure is a data, network or verification error ($badcode)" [ "$badcode" = 0 ]
	check "every export finished in bounded time ($slow)" [ "$slow" = 0 ]
	check "every bundle written verifies ($exported written, $unverified not)" [ "$unverified" = 0 ]
	check "some random trees export with attachments ($withatt of $exported)" [ "$withatt" -gt 0 ]
}

it_main "$feature" attach_sound attach_loop attach_depth attach_fanout attach_subject \
	attach_api attach_taglist attach_kinds attach_fuzz
