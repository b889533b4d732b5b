#!/usr/bin/env bash
# Signatures, attestations, SBOMs and OCI 1.1 referrers travel with the
# images (SPEC section 6): export carries them, import pushes them with the
# same digests and tags, --verify-cosign-key gates an export and
# `verify --cosign-key` checks the carried signatures offline. What is
# attached at the source is made by tests/fixtures/cosign.py (cosign's
# format over the distribution API, crypto by openssl); what arrives at
# the target is checked with cosign.py and skopeo, not with ferry.
# usage: supply.sh FERRY STATE_DIR FEATURE
#
# jq programs are single-quoted on purpose ($x are jq variables).
# shellcheck disable=SC2016
set -uo pipefail
ferry=$1
state=$2
feature=${3:-all}
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"
P=$FERRY_TEST_PLAIN
run=s$$$RANDOM # fresh repositories for every run
X=(--insecure-registry 127.0.0.1)
MT_INDEX=application/vnd.oci.image.index.v1+json
alpine=$(grep -m1 '^library/alpine:3.14' "$FERRY_TEST_IMAGES" | cut -f1)

# jq -e over a file (last argument) or standard input, which must not be
# empty: jq -e passes on empty input
jqt() {
	local in
	if [ $# -gt 1 ] && [ -f "${*: -1}" ]; then
		[ -s "${*: -1}" ] && jq -e "$@" >/dev/null
	else
		in=$(cat)
		[ -n "$in" ] && jq -e "$@" >/dev/null <<<"$in"
	fi
}
cz() { python3 "$fixtures/cosign.py" "$@"; }
quiet() { "$@" >/dev/null 2>&1; }
hexof() { echo "${1#sha256:}"; }
# cosign-format key pair NAME.pem / NAME.pub
ckey() {
	openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt >"$1.pem" &&
		openssl pkey -in "$1.pem" -pubout -out "$1.pub"
}
# the bundle key k.key/k.pub and the cosign key pairs NAME...
keys() {
	local n
	"$ferry" keygen -q -o k >/dev/null || return 1
	for n; do ckey "$n" || return 1; done
}
keyid() { echo "sha256:$(openssl pkey -pubin -in "$1" -outform DER | sha256sum | cut -c1-64)"; }
# digest of what REF (docker://...) serves, read by skopeo
sdigest() { echo "sha256:$(skopeo inspect --raw --tls-verify=false "$1" 2>/dev/null | sha256sum | cut -c1-64)"; }
# HTTP status of a GET of HOST REPO REF with an OCI index/manifest Accept
mstatus() {
	curl -s -o /dev/null -w '%{http_code}' \
		-H "Accept: $MT_INDEX,application/vnd.oci.image.manifest.v1+json" "http://$1/v2/$2/manifests/$3"
}
getman() {
	curl -sf -H "Accept: $MT_INDEX,application/vnd.oci.image.manifest.v1+json" "http://$1/v2/$2/manifests/$3"
}
fjson() { tar -xOf "$1" ferry.json; }
ijson() { tar -xOf "$1" index.json; }
# the attachment tags and referrers of DIGEST at HOST/REPO, comparable
# between registries: cosign tag -> manifest digest, referrer digests
attached_view() {
	cz list "$1" "$2" "$3" | jq -c '{sig: .cosign.sig.digest, att: .cosign.att.digest,
		sbom: .cosign.sbom.digest, referrers: [.referrers.manifests[].digest] | sort}'
}
tags_of() { curl -sf "http://$1/v2/$2/tags/list" | jq -r '.tags[]?' | sort; }

# signed_app HOST REPO: alpine (an index of two platforms) as REPO:1,
# its top digest and first platform signed with c.pem, an attestation and
# an SBOM on the top digest, an OCI 1.1 SBOM referrer listed in the
# fallback tag, and a signature on that referrer.  Sets D, PD, R.
signed_app() {
	skopeo copy --all -q --src-tls-verify=false --dest-tls-verify=false \
		"docker://$P/$alpine" "docker://$1/$2:1" || return 1
	D=$(sdigest "docker://$1/$2:1")
	PD=$(skopeo inspect --raw --tls-verify=false "docker://$1/$2:1" | jq -r '.manifests[0].digest')
	cz sign "$1" "$2" "$D" --key c.pem >/dev/null &&
		cz sign "$1" "$2" "$PD" --key c.pem >/dev/null &&
		cz attest "$1" "$2" "$D" --key c.pem >/dev/null &&
		cz sbom "$1" "$2" "$D" >/dev/null &&
		R=$(cz referrer "$1" "$2" "$D" --artifact-type application/spdx+json --fallback) &&
		cz sign "$1" "$2" "$R" --key c.pem >/dev/null
}

feature_roundtrip() {
	local src=$run/rt/app plainrepo=$run/rt/plain U out t tags1 tags2 n
	keys c other || {
		bad "keys"
		return
	}
	signed_app "$P" "$src" || {
		bad "roundtrip: source setup"
		return
	}
	U=$(cz image "$P" "$plainrepo" 1 --seed unsigned)
	"$ferry" export -q "$P/$src:1" "$P/$plainrepo:1" -o b.tar --compress none --key k.key "${X[@]}"
	check "export of signed and unsigned images: exit 0" [ $? = 0 ]
	fjson b.tar >ferry.json
	ijson b.tar >index.json

	# ferry.json: what is attached, with the digests the source has
	check "ferry.json: the signed image lists 7 attachments" jqt '.images[0].attached | length == 7' ferry.json
	check "ferry.json: signature on the top digest, with its tag and the source's digest" jqt \
		--arg d "$D" --arg g "$(sdigest "docker://$P/$src:sha256-$(hexof "$D").sig")" --arg t "sha256-$(hexof "$D").sig" \
		'any(.images[0].attached[]; .kind == "signature" and .subject == $d and .digest == $g and .tag == $t
			and .mediaType == "application/vnd.oci.image.manifest.v1+json" and .size > 0)' ferry.json
	check "ferry.json: signature on the platform manifest" jqt --arg d "$PD" \
		--arg g "$(sdigest "docker://$P/$src:sha256-$(hexof "$PD").sig")" \
		'any(.images[0].attached[]; .kind == "signature" and .subject == $d and .digest == $g)' ferry.json
	check "ferry.json: attestation and sbom with their tags" jqt --arg d "$D" \
		--arg a "$(sdigest "docker://$P/$src:sha256-$(hexof "$D").att")" \
		--arg s "$(sdigest "docker://$P/$src:sha256-$(hexof "$D").sbom")" \
		'any(.images[0].attached[]; .kind == "attestation" and .subject == $d and .digest == $a and (.tag | endswith(".att")))
		and any(.images[0].attached[]; .kind == "sbom" and .subject == $d and .digest == $s and (.tag | endswith(".sbom")))' ferry.json
	check "ferry.json: the referrer, artifactType, no tag" jqt --arg d "$D" --arg r "$R" \
		'any(.images[0].attached[]; .kind == "referrer" and .subject == $d and .digest == $r
			and .artifactType == "application/spdx+json" and (has("tag") | not))' ferry.json
	check "ferry.json: the referrers index under the fallback tag" jqt --arg d "$D" \
		--arg g "$(sdigest "docker://$P/$src:sha256-$(hexof "$D")")" --arg t "sha256-$(hexof "$D")" \
		'any(.images[0].attached[]; .kind == "referrers" and .subject == $d and .digest == $g and .tag == $t
			and .mediaType == "application/vnd.oci.image.index.v1+json")' ferry.json
	check "ferry.json: the signature on the referrer (attached to an attachment)" jqt --arg r "$R" \
		'any(.images[0].attached[]; .kind == "signature" and .subject == $r)' ferry.json
	check "ferry.json: the unsigned image has nothing attached" jqt \
		'(.images[1].attached // []) == [] and (.images | length == 2)' ferry.json
	# index.json: the images first, then one descriptor per attachment tag
	check "index.json: images first, then the 6 attachment tags" jqt --arg a "$P/$src:1" --arg b "$P/$plainrepo:1" \
		'(.manifests | length == 8) and .manifests[0].annotations["org.opencontainers.image.ref.name"] == $a
		and .manifests[1].annotations["org.opencontainers.image.ref.name"] == $b' index.json
	jq -r --arg p "$P/$src" '.images[0].attached[] | select(.tag) | "\($p):\(.tag) \(.digest)"' ferry.json | sort >want
	jq -r '.manifests[2:][] | "\(.annotations["org.opencontainers.image.ref.name"]) \(.digest)"' index.json | sort >got
	check "index.json: each attachment tag's full reference and digest match ferry.json" \
		bash -c '[ "$(wc -l <want)" = 6 ] && cmp -s want got'
	n=0
	tar -tf b.tar >entries # listed once: grep -q would cut a pipe from tar
	for t in $(jq -r '.images[].attached[]?.digest' ferry.json); do
		grep -qx "blobs/sha256/${t#sha256:}" entries && n=$((n + 1))
	done
	check "every attached manifest is a blob of the bundle ($n of 7)" [ "$n" = 7 ]
	expect "ferry verify: OK" 0 "verdict: OK" verify b.tar --key k.pub

	# a dry run says what it would write, and writes no attachment
	out=$("$ferry" import b.tar -v --dry-run --key k.pub --to "$P/$run/in" "${X[@]}" --state-dir st 2>&1)
	check "dry run: exit 0" [ $? = 0 ]
	check "dry run: would push the signature tag" \
		grep -qE "^would push +tag $run/in/$src:sha256-$(hexof "$D").sig\$" <<<"$out"
	check "dry run: would push the fallback referrers tag" \
		grep -qE "^would push +tag $run/in/$src:sha256-$(hexof "$D")\$" <<<"$out"
	check "dry run: nothing at the target" \
		bash -c '! skopeo inspect --raw --tls-verify=false "docker://$0/$1:sha256-$2.sig" >/dev/null 2>&1' \
		"$P" "$run/in/$src" "$(hexof "$D")"
	# import into a prefix of the plain registry
	out=$("$ferry" import b.tar -v --key k.pub --to "$P/$run/in" "${X[@]}" --state-dir st 2>&1)
	check "import: exit 0" [ $? = 0 ]
	for t in "sha256-$(hexof "$D").sig" "sha256-$(hexof "$D").att" "sha256-$(hexof "$D").sbom" \
		"sha256-$(hexof "$PD").sig" "sha256-$(hexof "$R").sig" "sha256-$(hexof "$D")"; do
		check "import pushed tag $t" grep -qE "^pushed +tag $run/in/$src:$t\$" <<<"$out"
	done
	check "import wrote no tag for the unsigned image but its own" \
		[ "$(grep -cE "^pushed +tag $run/in/$plainrepo:" <<<"$out")" = 1 ]
	# at the target: the signatures verify (openssl) and name the image
	for t in "$D" "$PD" "$R"; do
		out=$(cz verify "$P" "$run/in/$src" "$t" --key c.pub)
		check "target: the signature of $t verifies with the trusted key" [ $? = 0 ]
		check "target: a valid signature layer for $t" grep -q '^valid ' <<<"$out"
	done
	# cosign.py verify checks critical.image.docker-manifest-digest; and
	# the payload, read straight from the target, names the image's digest
	check "target: the signature payload names the image's digest" bash -c "
		l=\$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
			http://$P/v2/$run/in/$src/manifests/sha256-$(hexof "$D").sig | jq -r '.layers[0].digest')
		curl -sf http://$P/v2/$run/in/$src/blobs/\$l | jq -e --arg d '$D' '.critical.image[\"docker-manifest-digest\"] == \$d' >/dev/null"
	check "target: another key does not verify (test of the test)" \
		bash -c "! python3 '$fixtures/cosign.py' verify '$P' '$run/in/$src' '$D' --key other.pub >/dev/null"
	for t in "$D" "$PD" "$R"; do
		check "target: attachments of $t same as at the source (cosign.py list)" \
			[ "$(attached_view "$P" "$run/in/$src" "$t")" = "$(attached_view "$P" "$src" "$t")" ]
	done
	check "target lists the referrer, with the source's digest" jqt --arg r "$R" \
		'.referrers == [$r] and .att != null and .sbom != null' <<<"$(attached_view "$P" "$run/in/$src" "$D")"
	check "skopeo: the .sig tag at the target has the source's digest" \
		[ "$(sdigest "docker://$P/$run/in/$src:sha256-$(hexof "$D").sig")" = \
		"$(sdigest "docker://$P/$src:sha256-$(hexof "$D").sig")" ]
	check "skopeo: the image at the target has its digest" [ "$(sdigest "docker://$P/$run/in/$src:1")" = "$D" ]
	out=$(cz verify "$P" "$run/in/$plainrepo" "$U" --key c.pub)
	check "target: the unsigned image has no signature (exit 1)" [ $? = 1 ]
	check "target: the unsigned image has no signature tag" \
		bash -c "! curl -sf http://$P/v2/$run/in/$plainrepo/tags/list | grep -q '\\.sig'"

	# a rerun (fresh local state: the registry decides) moves no tag
	tags1=$(for t in $(tags_of "$P" "$run/in/$src"); do echo "$t $(sdigest "docker://$P/$run/in/$src:$t")"; done)
	out=$("$ferry" import b.tar -v --key k.pub --to "$P/$run/in" "${X[@]}" --state-dir st2 2>&1)
	check "rerun of the import: exit 0" [ $? = 0 ]
	check "rerun: no tag pushed" bash -c "! grep -qE '^(pushed|merged) +tag' <<<'$out'"
	n=$(grep -cE "^skipped +tag $run/in/$src:sha256-" <<<"$out")
	check "rerun: the 6 attachment tags skipped (got $n)" [ "$n" = 6 ]
	tags2=$(for t in $(tags_of "$P" "$run/in/$src"); do echo "$t $(sdigest "docker://$P/$run/in/$src:$t")"; done)
	check "rerun: every tag still points where it did" [ "$tags1" = "$tags2" ]
	check "rerun: the fallback index lists the referrer once" jqt --arg r "$R" '[.manifests[].digest] == [$r]' \
		<<<"$(getman "$P" "$run/in/$src" "sha256-$(hexof "$D")")"

	# the state says imported, but the target's .sig tag was moved: the
	# registry decides, so the import runs again and puts it back
	skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
		"docker://$P/$plainrepo:1" "docker://$P/$run/in/$src:sha256-$(hexof "$D").sig" ||
		bad "moved .sig: setup"
	out=$("$ferry" import b.tar -v --key k.pub --to "$P/$run/in" "${X[@]}" --state-dir st 2>&1)
	check "moved .sig tag: the import runs again (exit 0)" [ $? = 0 ]
	check "moved .sig tag: not 'already imported'" bash -c "! grep -q 'already imported' <<<'$out'"
	check "moved .sig tag: back at the source's digest" \
		[ "$(sdigest "docker://$P/$run/in/$src:sha256-$(hexof "$D").sig")" = \
		"$(sdigest "docker://$P/$src:sha256-$(hexof "$D").sig")" ]
}

feature_none() {
	local src=$run/none/app S out
	keys c || {
		bad "keys"
		return
	}
	S=$(cz image "$P" "$src" 1 --seed none)
	cz sign "$P" "$src" "$S" --key c.pem >/dev/null
	cz referrer "$P" "$src" "$S" --fallback >/dev/null
	"$ferry" export -q "$P/$src:1" -o all.tar --compress none --key k.key "${X[@]}"
	check "default export carries the signature (test of the test)" jqt \
		'.images[0].attached | any(.[]; .kind == "signature")' <<<"$(fjson all.tar)"
	"$ferry" export -q "$P/$src:1" -o b.tar --compress none --key k.key "${X[@]}" --referrers none
	check "--referrers none: exit 0" [ $? = 0 ]
	check "--referrers none: nothing attached in ferry.json" jqt 'all(.images[]; has("attached") | not)' <<<"$(fjson b.tar)"
	check "--referrers none: index.json lists the image only" jqt '.manifests | length == 1' <<<"$(ijson b.tar)"
	check "--referrers none: fewer blobs than with the default" \
		[ "$(tar -tf b.tar | grep -c ^blobs/)" -lt "$(tar -tf all.tar | grep -c ^blobs/)" ]
	out=$("$ferry" import b.tar -v --key k.pub --to "$P/$run/none-in" "${X[@]}" --state-dir st 2>&1)
	check "--referrers none: import exit 0" [ $? = 0 ]
	check "target has the image" [ "$(sdigest "docker://$P/$run/none-in/$src:1")" = "$S" ]
	check "target has no signature or referrers tag" [ "$(tags_of "$P" "$run/none-in/$src")" = 1 ]
}

feature_gate() {
	local repo=$run/gate/app A U W Xd
	keys c w || {
		bad "keys"
		return
	}
	A=$(cz image "$P" "$repo" signed --seed a)
	U=$(cz image "$P" "$repo" unsigned --seed u)
	W=$(cz image "$P" "$repo" other --seed w)
	Xd=$(cz image "$P" "$repo" elsewhere --seed x)
	cz sign "$P" "$repo" "$A" --key c.pem >/dev/null
	cz sign "$P" "$repo" "$W" --key w.pem >/dev/null
	# a valid signature by the trusted key, but over a payload for A
	cz sign "$P" "$repo" "$Xd" --key c.pem --payload-digest "$A" >/dev/null
	gx() { "$ferry" export -q -o "$1" --compress none --key k.key "${X[@]}" "${@:2}"; }

	expect "unsigned image: exit 5 naming it" 5 "$P/$repo:unsigned" \
		export -q -o u.tar --key k.key "${X[@]}" "$P/$repo:signed" "$P/$repo:unsigned" --verify-cosign-key c.pub
	check "unsigned image: no bundle written" bash -c '[ -z "$(ls -A | grep "^u\.tar")" ]'
	expect "signed by an untrusted key: exit 5 naming it" 5 "$P/$repo:other" \
		export -q -o w.tar --key k.key "${X[@]}" "$P/$repo:other" --verify-cosign-key c.pub
	check "untrusted key: no bundle written" [ ! -e w.tar ]
	expect "payload naming another digest: exit 5 naming the image" 5 "$P/$repo:elsewhere" \
		export -q -o x.tar --key k.key "${X[@]}" "$P/$repo:elsewhere" --verify-cosign-key c.pub
	check "payload naming another digest: no bundle written" [ ! -e x.tar ]
	check "the mismatched signature is there and valid by itself (test of the test)" bash -c \
		"python3 '$fixtures/cosign.py' verify '$P' '$repo' '$Xd' --key c.pub | grep -q 'payload names $A'"

	local before pa
	before=$(wc -l <"$FERRY_TEST_PLAIN_LOG")
	gx ok.tar "$P/$repo:signed" --verify-cosign-key c.pub --cache fresh
	check "all signed: exit 0 and a bundle" [ $? = 0 ]
	pa=$(cz list "$P" "$repo" "$A" | jq -r '.cosign.sig.layers[0].digest')
	sleep 0.3 # the access log is written after the answer
	check "the payload the gate checked is fetched once, not again for the bundle" [ "$(tail -n +"$((before + 1))" \
		"$FERRY_TEST_PLAIN_LOG" | grep -cE "\"GET /v2/$repo/blobs/$pa ")" = 1 ]
	check "... and it is in the bundle" grep -qx "blobs/sha256/${pa#sha256:}" <(tar -tf ok.tar)
	check "all signed: the bundle is there" [ -s ok.tar ]
	check "ferry.json: cosignKeyId is the key's id" jqt --arg k "$(keyid c.pub)" \
		'.images[0].cosignKeyId == $k' <<<"$(fjson ok.tar)"
	check "ferry.json: the carried signature is listed" jqt --arg d "$A" \
		'any(.images[0].attached[]; .kind == "signature" and .subject == $d)' <<<"$(fjson ok.tar)"
	gx two.tar "$P/$repo:other" "$P/$repo:signed" --verify-cosign-key c.pub --verify-cosign-key w.pub
	check "two keys, images signed by either: exit 0" [ $? = 0 ]
	check "ferry.json: each image names the key that verified it" jqt --arg c "$(keyid c.pub)" --arg w "$(keyid w.pub)" \
		'[.images[].cosignKeyId] == [$w, $c]' <<<"$(fjson two.tar)"
	gx plain.tar "$P/$repo:signed"
	check "without the gate: no cosignKeyId" jqt 'all(.images[]; has("cosignKeyId") | not)' <<<"$(fjson plain.tar)"
	expect "--referrers none with --verify-cosign-key: usage error" 2 "verify-cosign-key" \
		export -q -o n.tar --key k.key "${X[@]}" "$P/$repo:signed" --referrers none --verify-cosign-key c.pub
	check "usage error: no bundle written" [ ! -e n.tar ]
}

# The contract of `ferry verify --cosign-key` (SPEC section 6).
feature_verify_cosign() {
	local repo=$run/vc/app A U out
	keys c w || {
		bad "keys"
		return
	}
	A=$(cz image "$P" "$repo" signed --seed va)
	U=$(cz image "$P" "$repo" unsigned --seed vu)
	cz sign "$P" "$repo" "$A" --key c.pem >/dev/null
	"$ferry" export -q -o s.tar --compress none --key k.key "${X[@]}" "$P/$repo:signed" || {
		bad "verify_cosign: export"
		return
	}
	"$ferry" export -q -o su.tar --compress none --key k.key "${X[@]}" "$P/$repo:signed" "$P/$repo:unsigned"
	expect "right key: exit 0, signed by its id" 0 "^cosign.*$P/$repo:signed.*signed by $(keyid c.pub)" \
		verify s.tar --key k.pub --cosign-key c.pub
	expect "wrong key: exit 5, not signed" 5 "^cosign.*$P/$repo:signed.*not signed" \
		verify s.tar --key k.pub --cosign-key w.pub
	check "wrong key: not reported as signed" bash -c \
		"! '$ferry' verify s.tar --key k.pub --cosign-key w.pub 2>&1 | grep -qE '^cosign.*signed by'"
	expect "two keys, the second right: exit 0" 0 "signed by $(keyid c.pub)" \
		verify s.tar --key k.pub --cosign-key w.pub --cosign-key c.pub
	expect "an image without signature: exit 5 naming it" 5 "^cosign.*$P/$repo:unsigned.*not signed" \
		verify su.tar --key k.pub --cosign-key c.pub
	out=$("$ferry" verify su.tar --key k.pub --cosign-key c.pub 2>&1)
	check "one cosign line per image" [ "$(grep -c '^cosign' <<<"$out")" = 2 ]
	check "the signed one is still reported signed" grep -qE "^cosign.*$P/$repo:signed.*signed by $(keyid c.pub)" <<<"$out"
	out=$("$ferry" verify su.tar --key k.pub --cosign-key c.pub --json 2>/dev/null)
	check "--json: exit 5" [ $? = 5 ]
	check "--json: cosign object per image" jqt --arg a "$P/$repo:signed" --arg u "$P/$repo:unsigned" --arg k "$(keyid c.pub)" \
		'(.images[] | select(.reference == $a) | .cosign | .signed == true and .keyId == $k)
		and (.images[] | select(.reference == $u) | .cosign | .signed == false and (.reason | length > 0))' <<<"$out"
	"$ferry" export -q -o none.tar --compress none --key k.key "${X[@]}" "$P/$repo:signed" --referrers none
	expect "a bundle exported without signatures: exit 5 naming the image" 5 "^cosign.*$P/$repo:signed.*not signed" \
		verify none.tar --key k.pub --cosign-key c.pub
	expect "without --cosign-key: no cosign verdict, exit 0" 0 "verdict: OK" verify su.tar --key k.pub

	# --platform subsets: upstream signed the index (and its first
	# platform). The gate checks the index's signature at the source; the
	# bundle's top is then a platform manifest, which only a signature of
	# its own covers: ferry.json's signedDigest is never enough offline
	local multi=$run/vc/multi p0 p1
	signed_app "$P" "$multi" || {
		bad "verify_cosign: multi-platform setup"
		return
	}
	p0=$(skopeo inspect --raw --tls-verify=false "docker://$P/$multi:1" |
		jq -r '.manifests[0].platform | "\(.os)/\(.architecture)\(if .variant then "/" + .variant else "" end)"')
	p1=$(skopeo inspect --raw --tls-verify=false "docker://$P/$multi:1" |
		jq -r '.manifests[1].platform | "\(.os)/\(.architecture)\(if .variant then "/" + .variant else "" end)"')
	"$ferry" export -q -o p1.tar --compress none --key k.key "${X[@]}" "$P/$multi:1" --platform "$p1" \
		--verify-cosign-key c.pub
	check "subset $p1: the gate passes on the index's signature at the source" [ $? = 0 ]
	check "subset $p1: ferry.json names the signed index as signedDigest" jqt --arg d "$D" \
		'.images[0].signedDigest == $d and .images[0].digest != $d' <<<"$(fjson p1.tar)"
	expect "subset $p1: verify --cosign-key says the index's signature does not cover it (exit 5)" 5 \
		"not signed: no cosign signature names .*a --platform subset of '$D'" \
		verify p1.tar --key k.pub --cosign-key c.pub
	"$ferry" export -q -o p0.tar --compress none --key k.key "${X[@]}" "$P/$multi:1" --platform "$p0"
	check "subset $p0: export exit 0" [ $? = 0 ]
	expect "subset $p0 (signed on its own upstream): verify --cosign-key exit 0" 0 \
		"^cosign.*$P/$multi:1.*signed by $(keyid c.pub)" verify p0.tar --key k.pub --cosign-key c.pub
}

# start_double: the Harbor double with the referrers API in front of the
# plain registry, project "proj"; sets $h and auth.json
start_double() {
	python3 "$fixtures/harbor.py" --referrers port "$P" api.log admin:harbor-pw proj &
	pid=$!
	for _ in $(seq 100); do [ -s port ] && break; sleep 0.1; done
	h=127.0.0.1:$(cat port)
	printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$h" "$(printf admin:harbor-pw | base64)" >auth.json
}

feature_referrers_api() {
	local src=$run/ra/app dst tgt out R0 fb
	keys c || {
		bad "keys"
		return
	}
	signed_app "$P" "$src" || {
		bad "referrers_api: source setup"
		return
	}
	"$ferry" export -q "$P/$src:1" -o b.tar --compress none --key k.key "${X[@]}" || {
		bad "referrers_api: export"
		return
	}
	start_double
	dst=proj/$run/ra/app
	out=$("$ferry" import b.tar -v --key k.pub --to "$h/proj" "${X[@]}" --authfile auth.json --state-dir st 2>&1)
	check "import into a registry with the referrers API: exit 0" [ $? = 0 ] || echo "$out" | tail -3
	check "the fallback tag is not needed there" \
		grep -qE "^not needed \(the registry indexes referrers\) +tag $dst:sha256-$(hexof "$D")\$" <<<"$out"
	check "the referrer push got OCI-Subject (double's log)" jqt -s --arg r "$R" \
		'any(.[]; .method == "PUT" and (.path | endswith("/manifests/" + $r)) and .status == 201)' api.log
	check "no fallback tag upstream (404 with an OCI index Accept)" \
		[ "$(mstatus "$P" "$dst" "sha256-$(hexof "$D")")" = 404 ]
	check "the .sig tag is upstream (test of the test for the 404)" \
		[ "$(mstatus "$P" "$dst" "sha256-$(hexof "$D").sig")" = 200 ]
	check "the double's referrers API lists the referrer" bash -c \
		"curl -sf http://$h/v2/$dst/referrers/$D | jq -e --arg r '$R' '[.manifests[].digest] == [\$r]
			and .manifests[0].artifactType == \"application/spdx+json\"' >/dev/null"
	check "the signatures verify through the double" quiet cz verify "$h" "$dst" "$D" --key c.pub

	# export from the double: the referrers come from the API
	: >api.log
	"$ferry" export -q "$h/$dst:1" -o api.tar --compress none --key k.key "${X[@]}" --authfile auth.json
	check "export from the registry with the API: exit 0" [ $? = 0 ]
	check "export asked the referrers API" jqt -s 'any(.[]; (.path | test("/referrers/sha256:")) and .status == 200)' api.log
	fjson api.tar >api.json
	check "that bundle carries the referrer" jqt --arg d "$D" --arg r "$R" \
		'any(.images[0].attached[]; .kind == "referrer" and .subject == $d and .digest == $r
			and .artifactType == "application/spdx+json")' api.json
	check "that bundle carries a referrers entry under the fallback tag" jqt --arg d "$D" --arg t "sha256-$(hexof "$D")" \
		'any(.images[0].attached[]; .kind == "referrers" and .subject == $d and .tag == $t)' api.json
	check "and the signature of the referrer" jqt --arg r "$R" \
		'any(.images[0].attached[]; .kind == "signature" and .subject == $r)' api.json
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	pid=

	# into a plain repository whose fallback tag already lists another
	# referrer: the import merges
	tgt=$run/merge
	skopeo copy --all -q --src-tls-verify=false --dest-tls-verify=false \
		"docker://$P/$src:1" "docker://$P/$tgt/$dst:1" || bad "merge: target setup"
	R0=$(cz referrer "$P" "$tgt/$dst" "$D" --artifact-type application/vnd.example.other --fallback)
	check "the target's fallback tag lists its own referrer first (test of the test)" jqt --arg a "$R0" \
		'[.manifests[].digest] == [$a]' <<<"$(getman "$P" "$tgt/$dst" "sha256-$(hexof "$D")")"
	out=$("$ferry" import api.tar -v --key k.pub --to "$P/$tgt" "${X[@]}" --state-dir st2 2>&1)
	check "import into a plain registry with a fallback tag: exit 0" [ $? = 0 ] || echo "$out" | tail -3
	check "the fallback tag was merged" grep -qE "^merged +tag $tgt/$dst:sha256-$(hexof "$D")\$" <<<"$out"
	fb=$(getman "$P" "$tgt/$dst" "sha256-$(hexof "$D")")
	check "the fallback index lists both referrers" jqt --arg a "$R0" --arg r "$R" \
		'.mediaType == "application/vnd.oci.image.index.v1+json" and ([.manifests[].digest] | sort) == ([$a, $r] | sort)' <<<"$fb"
	check "the carried referrer has the source's digest" \
		[ "$(sdigest "docker://$P/$tgt/$dst@$R")" = "$R" ]
	check "the carried referrer names the image" jqt --arg d "$D" '.subject.digest == $d' \
		<<<"$(getman "$P" "$tgt/$dst" "$R")"
	check "cosign.py list at the target: both referrers, from the fallback tag" jqt --arg a "$R0" --arg r "$R" \
		'.referrers.source == "fallback" and ([.referrers.manifests[].digest] | sort) == ([$a, $r] | sort)' \
		<<<"$(cz list "$P" "$tgt/$dst" "$D")"
	check "the referrer's signature verifies at the target" quiet cz verify "$P" "$tgt/$dst" "$R" --key c.pub

	# a target whose fallback tag holds a Docker manifest list (not an
	# OCI referrers index): refused, the tag left as it was
	local tgt2=$run/merge2 ml mt
	skopeo copy --all -q --src-tls-verify=false --dest-tls-verify=false \
		"docker://$P/$src:1" "docker://$P/$tgt2/$dst:1" || bad "docker list: target setup"
	ml=$(jq -cn --arg d "$PD" --argjson n "$(getman "$P" "$tgt2/$dst" "$PD" | wc -c)" \
		'{schemaVersion: 2, mediaType: "application/vnd.docker.distribution.manifest.list.v2+json",
		  manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $n,
		  platform: {architecture: "amd64", os: "linux"}}]}')
	curl -sf -X PUT -H "Content-Type: application/vnd.docker.distribution.manifest.list.v2+json" \
		--data-binary "$ml" "http://$P/v2/$tgt2/$dst/manifests/sha256-$(hexof "$D")" >/dev/null ||
		bad "docker list: put"
	out=$("$ferry" import api.tar --key k.pub --to "$P/$tgt2" "${X[@]}" --state-dir st3 2>&1)
	check "fallback tag holding a Docker list: refused (exit != 0)" [ $? != 0 ]
	check "fallback tag holding a Docker list: the error says so" grep -q "not an OCI index" <<<"$out"
	mt=$(curl -sf -H "Accept: application/vnd.docker.distribution.manifest.list.v2+json,$MT_INDEX" \
		"http://$P/v2/$tgt2/$dst/manifests/sha256-$(hexof "$D")" | jq -r .mediaType)
	check "fallback tag holding a Docker list: left as it was ($mt)" \
		[ "$mt" = application/vnd.docker.distribution.manifest.list.v2+json ]
	# found before any tag is written (SPEC section 4): the signature tag
	# the bundle carries is not there either
	check "fallback tag holding a Docker list: no tag written, the .sig neither" \
		[ "$(mstatus "$P" "$tgt2/$dst" "sha256-$(hexof "$D").sig")" = 404 ]
}

# Many images in many repositories, from two registry hosts (the same
# registry as 127.0.0.1 and as localhost), looked up by parallel workers:
# each worker keeps its repository's tag list and its host's referrers
# API state while the others add theirs (a use after free before; the
# ASan build reports it).
feature_many_repos() {
	local i d refs=() n
	keys c || {
		bad "keys"
		return
	}
	for i in $(seq 12); do
		d=$(cz image "$P" "$run/many/r$i" 1 --seed "many $i")
		cz sign "$P" "$run/many/r$i" "$d" --key c.pem >/dev/null || bad "sign r$i"
		if [ $((i % 2)) = 0 ]; then refs+=("$P/$run/many/r$i:1"); else refs+=("localhost:${P##*:}/$run/many/r$i:1"); fi
	done
	for i in 1 2; do
		"$ferry" export -q "${refs[@]}" -o "b$i.tar" --compress none --key k.key "${X[@]}" \
			--insecure-registry localhost --jobs 4 --verify-cosign-key c.pub
		check "export of 12 signed images with 4 workers, run $i: exit 0" [ $? = 0 ]
		n=$(fjson "b$i.tar" | jq --arg k "$(keyid c.pub)" \
			'[.images[] | select(.cosignKeyId == $k and any(.attached[]; .kind == "signature"))] | length')
		check "run $i: every image carries its verified signature ($n of 12)" [ "$n" = 12 ]
	done
}

# A weekly delta of signed images (SPEC sections 6 and 7): the delta
# carries every image's signature manifest, but not the payload layers its
# base already carries; verify --cosign-key says so for an unchanged image
# and checks a new one; base then delta into a registry: every signature
# verifies there.
feature_delta() {
	local a b out pa pb
	keys c || {
		bad "keys"
		return
	}
	a=$(cz image "$P" "$run/wk/a" 1 --seed "weekly a")
	cz sign "$P" "$run/wk/a" "$a" --key c.pem >/dev/null || bad "sign a"
	"$ferry" export -q "$P/$run/wk/a:1" -o base.tar --compress none --key k.key "${X[@]}" --cache cache \
		--sequence 1
	check "base export: exit 0" [ $? = 0 ]
	expect "base: a's signature verifies offline" 0 "signed by $(keyid c.pub)" \
		verify base.tar --key k.pub --cosign-key c.pub
	b=$(cz image "$P" "$run/wk/b" 1 --seed "weekly b")
	cz sign "$P" "$run/wk/b" "$b" --key c.pem >/dev/null || bad "sign b"
	"$ferry" export -q "$P/$run/wk/a:1" "$P/$run/wk/b:1" -o delta.tar --compress none --key k.key \
		"${X[@]}" --cache cache --base base.tar --verify-cosign-key c.pub --sequence 2
	check "delta export with the gate: exit 0" [ $? = 0 ]
	check "the delta lists both images' signatures" jqt \
		'[.images[].attached[] | select(.kind == "signature")] | length == 2' <<<"$(fjson delta.tar)"
	pa=$(cz list "$P" "$run/wk/a" "$a" | jq -r '.cosign.sig.layers[0].digest')
	pb=$(cz list "$P" "$run/wk/b" "$b" | jq -r '.cosign.sig.layers[0].digest')
	check "the delta leaves out a's signature payload (the base carries it)" jqt --arg p "$pa" \
		'.delta.omitted | index($p) != null' <<<"$(fjson delta.tar)"
	check "the delta carries b's signature payload" grep -qx "blobs/sha256/${pb#sha256:}" \
		<(tar -tf delta.tar)
	out=$("$ferry" verify delta.tar --key k.pub --cosign-key c.pub 2>&1)
	check "verify --cosign-key of the delta: exit 5 (a cannot be checked here)" [ $? = 5 ]
	check "it names the base as where a's payload is" grep -qE "$run/wk/a:1 not signed: .*a delta's base carries it" <<<"$out"
	check "it checks b, new in the delta" grep -qE "$run/wk/b:1 signed by $(keyid c.pub)" <<<"$out"
	# --base: the payloads the delta left out, from the base (read whole,
	# verified with the same key)
	out=$("$ferry" verify delta.tar --key k.pub --cosign-key c.pub --base base.tar 2>&1)
	check "verify --cosign-key --base: exit 0 (got $?)" [ $? = 0 ]
	check "... a is signed, its payload from the base" grep -qE "$run/wk/a:1 signed by $(keyid c.pub)" <<<"$out"
	check "... the base named, with its bundle id and the one payload it gave" \
		grep -qE "^base +base.tar \(bundle id $(fjson base.tar | jq -r .bundleId), signed by the same key\): 1 signature payloads" <<<"$out"
	check "--json: bases[] names the base and what it gave" jqt --arg id "$(fjson base.tar | jq -r .bundleId)" \
		'.bases == [{bundle: "base.tar", bundleId: $id, payloads: 1}] and (.images | all(.cosign.signed))' \
		<<<"$("$ferry" verify delta.tar --key k.pub --cosign-key c.pub --base base.tar --json)"
	expect "--base without --cosign-key: usage error" 2 "--base goes with --cosign-key" \
		verify delta.tar --key k.pub --base base.tar
	# a base that does not carry a's payload: a stays unchecked
	"$ferry" export -q "$P/$run/wk/b:1" -o onlyb.tar --compress none --key k.key "${X[@]}" --cache cache
	out=$("$ferry" verify delta.tar --key k.pub --cosign-key c.pub --base onlyb.tar 2>&1)
	check "a base without the payload: exit 5 (got $?)" [ $? = 5 ]
	check "... a still not checkable" grep -qE "$run/wk/a:1 not signed: .*--base" <<<"$out"
	# a base signed with another key is not trusted
	"$ferry" keygen -q -o other >/dev/null
	"$ferry" export -q "$P/$run/wk/a:1" -o otherkey.tar --compress none --key other.key "${X[@]}" --cache cache
	out=$("$ferry" verify delta.tar --key k.pub --cosign-key c.pub --base otherkey.tar 2>&1)
	check "a base signed by another key: exit 5 (got $?)" [ $? = 5 ]
	check "... naming that base" grep -q "base 'otherkey.tar'" <<<"$out"
	# a base whose payload was changed: the base is read whole and fails
	python3 - "$pa" <<'PY' || bad "tamper with the base's payload"
import sys, tarfile
name = "blobs/sha256/" + sys.argv[1].split(":")[1]
with tarfile.open("base.tar") as t:
    m = t.getmember(name)
data = bytearray(open("base.tar", "rb").read())
data[m.offset_data] ^= 0x01
open("badbase.tar", "wb").write(data)
PY
	out=$("$ferry" verify delta.tar --key k.pub --cosign-key c.pub --base badbase.tar 2>&1)
	check "a base with a changed payload: exit 5 (got $?)" [ $? = 5 ]
	check "... naming the base" grep -q "base 'badbase.tar'" <<<"$out"
	out=$("$ferry" import delta.tar --key k.pub --to "$P/$run/wk-in" "${X[@]}" --state-dir st 2>&1)
	check "the delta alone is refused, naming its base" [ $? != 0 ] && grep -q "$(fjson base.tar | jq -r .bundleId)" <<<"$out"
	"$ferry" import -q base.tar --key k.pub --to "$P/$run/wk-in" "${X[@]}" --state-dir st &&
		"$ferry" import -q delta.tar --key k.pub --to "$P/$run/wk-in" "${X[@]}" --state-dir st
	check "base then delta import: exit 0" [ $? = 0 ]
	check "target: a's signature verifies" quiet cz verify "$P" "$run/wk-in/$run/wk/a" "$a" --key c.pub
	check "target: b's signature verifies" quiet cz verify "$P" "$run/wk-in/$run/wk/b" "$b" --key c.pub
}

# One image in two registries, signed differently in each, exported from
# both under two tags: without --keep-registry both land in one target
# repository, where their signature tags would collide: refused before
# anything is pushed; with --keep-registry both arrive and verify.
feature_collisions() {
	local repo=$run/col/app D1 D2 T=$FERRY_TEST_TLS out
	local TX=(--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_AUTHFILE")
	keys c w || {
		bad "keys"
		return
	}
	D1=$(cz image "$P" "$repo" 1 --seed collide)
	D2=$(cz --ca "$FERRY_TEST_CA" --user "$FERRY_TEST_USER:$FERRY_TEST_PASS" image "$T" "$repo" 2 --seed collide)
	check "the same image in both registries" [ -n "$D1" ] && [ "$D1" = "$D2" ]
	cz sign "$P" "$repo" "$D1" --key c.pem >/dev/null || bad "sign in plain"
	cz --ca "$FERRY_TEST_CA" --user "$FERRY_TEST_USER:$FERRY_TEST_PASS" sign "$T" "$repo" "$D2" --key w.pem \
		>/dev/null || bad "sign in tls"
	"$ferry" export -q "$P/$repo:1" "$T/$repo:2" -o b.tar --compress none --key k.key "${X[@]}" "${TX[@]}"
	check "export from both registries: exit 0" [ $? = 0 ]
	check "two different signature manifests for one tag name" jqt \
		'[.images[].attached[] | select(.kind == "signature") | .digest] | unique | length == 2' <<<"$(fjson b.tar)"
	out=$("$ferry" import b.tar --key k.pub --to "$P/$run/col-in" "${X[@]}" --state-dir st 2>&1)
	check "one target repository for both: exit 1 (got $?)" [ $? = 1 ]
	check "the error names the tag both would land on" grep -q "would both land on '$run/col-in/$repo:sha256-$(hexof "$D1").sig'" <<<"$out"
	check "nothing pushed: no image tag" [ "$(mstatus "$P" "$run/col-in/$repo" 1)" = 404 ]
	"$ferry" import -q b.tar --key k.pub --to "$P/$run/col-keep" "${X[@]}" --state-dir st --keep-registry
	check "with --keep-registry: exit 0" [ $? = 0 ]
	check "each registry's signature arrives in its own repository" \
		quiet cz verify "$P" "$run/col-keep/${P/:/-}/$repo" "$D1" --key c.pub
	check "... and the other one with its own key" \
		quiet cz verify "$P" "$run/col-keep/${T/:/-}/$repo" "$D2" --key w.pub
}

# A site that signs what it imports with its own key (cosign adds a layer
# to the .sig tag) keeps that signature when a later bundle brings the
# image with a new upstream signature: import merges the two as cosign
# would, rather than replacing the site's. A target tag that cannot be
# merged fails the import with no tag moved.
feature_site_signatures() {
	local a=$run/site/a b=$run/site/b c=$run/site/c T=$run/site-in A B C TA TB TC out sig
	keys u u2 s || {
		bad "keys"
		return
	}
	A=$(cz image "$P" "$a" 1 --seed "site a")
	B=$(cz image "$P" "$b" 1 --seed "site b")
	C=$(cz image "$P" "$c" 1 --seed "site c")
	for r in "$a $A" "$b $B" "$c $C"; do
		# shellcheck disable=SC2086
		set -- $r
		cz sign "$P" "$1" "$2" --key u.pem >/dev/null || bad "upstream signs $1"
	done
	cz attest "$P" "$a" "$A" --key u.pem >/dev/null || bad "upstream attests a"
	local before
	"$ferry" export -q "$P/$a:1" "$P/$b:1" "$P/$c:1" -o w1.tar --compress none --key k.key "${X[@]}" \
		--cache cache --sequence 1 && before=$(wc -l <"$FERRY_TEST_PLAIN_LOG") &&
		"$ferry" import -q w1.tar --key k.pub --to "$P/$T" "${X[@]}" --state-dir st
	check "week 1: export and import, exit 0" [ $? = 0 ]
	sleep 0.3 # the access log is written after the answer
	check "week 1: images new to the target, so their cosign tags are not looked up" \
		[ "$(tail -n +"$((before + 1))" "$FERRY_TEST_PLAIN_LOG" |
			grep -cE "\"(GET|HEAD) /v2/$T/[^ ]*/manifests/sha256-")" = 0 ]
	TA=$T/$a TB=$T/$b TC=$T/$c
	check "week 1: a's .sig arrives with its source digest" \
		[ "$(sdigest "docker://$P/$TA:sha256-$(hexof "$A").sig")" = "$(sdigest "docker://$P/$a:sha256-$(hexof "$A").sig")" ]

	# inside the gap the site signs and attests a with its own key; upstream
	# signs a and b again with a second key
	cz sign "$P" "$TA" "$A" --key s.pem >/dev/null && cz attest "$P" "$TA" "$A" --key s.pem >/dev/null ||
		bad "the site signs a"
	cz sign "$P" "$a" "$A" --key u2.pem >/dev/null && cz sign "$P" "$b" "$B" --key u2.pem >/dev/null &&
		cz attest "$P" "$a" "$A" --key u2.pem >/dev/null || bad "upstream signs and attests again"
	# c's .sig tag at the target holds 1000 signatures already: merged
	# with upstream's new one it would pass the cap
	python3 - "$fixtures" "$P" "$TC" "$C" <<'PY' || bad "1000 signatures on c at the target"
import sys
sys.path.insert(0, sys.argv[1])
import cosign
reg, repo, digest = cosign.Registry(sys.argv[2]), sys.argv[3], sys.argv[4]
tag = cosign.cosign_tag(digest, "sig")
manifest, config = cosign.load_attached(reg, repo, tag)
payload = cosign.simple_signing_payload("site", digest)
layers = [(cosign.descriptor(cosign.MT_SIMPLESIGNING, payload, {cosign.SIG_ANNOTATION: f"c2l0ZQ{i}=="}), payload)
          for i in range(1000 - len(manifest["layers"]))]
cosign.push_attached(reg, repo, tag, manifest, config, layers)
PY
	cz sign "$P" "$c" "$C" --key u2.pem >/dev/null || bad "upstream signs c again"
	local new=$run/site/new N
	N=$(cz image "$P" "$new" 1 --seed "site new")
	"$ferry" export -q "$P/$a:1" "$P/$b:1" "$P/$c:1" "$P/$new:1" -o w2.tar --compress none --key k.key \
		"${X[@]}" --cache cache --sequence 2
	check "week 2: export, exit 0" [ $? = 0 ]

	sig=$(sdigest "docker://$P/$TA:sha256-$(hexof "$A").sig")
	out=$("$ferry" import w2.tar --key k.pub --to "$P/$T" "${X[@]}" --state-dir st 2>&1)
	check "a target .sig tag that merged would pass the cap: exit 1 (got $?)" [ $? = 1 ]
	check "... naming that tag" grep -q "$TC:sha256-$(hexof "$C").sig'.*1001 layers, more than 1000" <<<"$out"
	check "... before any tag moved: the new image has none" [ "$(mstatus "$P" "$T/$new" 1)" = 404 ]
	check "... and a's .sig is as the site left it" [ "$(sdigest "docker://$P/$TA:sha256-$(hexof "$A").sig")" = "$sig" ]
	# the site removes its 1000 signatures of c, and puts an index there
	getman "$P" "$TC" 1 >/dev/null &&
		printf '{"schemaVersion":2,"mediaType":"%s","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s}]}' \
			"$MT_INDEX" "$C" "$(getman "$P" "$TC" 1 | wc -c)" |
		curl -sf -X PUT -H "Content-Type: $MT_INDEX" --data-binary @- \
			"http://$P/v2/$TC/manifests/sha256-$(hexof "$C").sig" >/dev/null || bad "an index at c's .sig tag"

	out=$("$ferry" import w2.tar --key k.pub --to "$P/$T" "${X[@]}" --state-dir st2 --dry-run 2>&1)
	check "dry run: exit 0" [ $? = 0 ]
	check "dry run: a's .sig would be merged" grep -q "^would merge *tag $TA:sha256-$(hexof "$A").sig" <<<"$out"
	check "dry run: nothing written" [ "$(sdigest "docker://$P/$TA:sha256-$(hexof "$A").sig")" = "$sig" ]
	out=$("$ferry" import w2.tar --key k.pub --to "$P/$T" "${X[@]}" --state-dir st2 2>&1)
	check "week 2 import: exit 0" [ $? = 0 ]
	check "it says a's .sig was merged" grep -q "^merged *tag $TA:sha256-$(hexof "$A").sig" <<<"$out"
	for k in u u2 s; do
		check "a at the target: a signature by $k verifies" quiet cz verify "$P" "$TA" "$A" --key "$k.pub"
	done
	check "a's .sig: upstream's first layer, the site's, upstream's new one" \
		jqt --argjson src "$(cz list "$P" "$a" "$A")" \
			'.cosign.sig.layers as $t | ($src.cosign.sig.layers) as $s | ($t | length) == 3 and
			$t[0] == $s[0] and $t[2] == $s[1] and ($s | index([$t[1]]) == null)' <<<"$(cz list "$P" "$TA" "$A")"
	check "a's .att: upstream's first, the site's, upstream's new one" \
		jqt --argjson src "$(cz list "$P" "$a" "$A")" \
			'.cosign.att.layers as $t | ($src.cosign.att.layers) as $s | ($t | length) == 3 and
			$t[0] == $s[0] and $t[2] == $s[1]' <<<"$(cz list "$P" "$TA" "$A")"
	check "it says a's .att was merged" grep -q "^merged *tag $TA:sha256-$(hexof "$A").att" <<<"$out"
	check "the merged config lists three layers (skopeo reads it)" jqt '.rootfs.diff_ids | length == 3' \
		<<<"$(skopeo inspect --config --raw --tls-verify=false "docker://$P/$TA:sha256-$(hexof "$A").sig")"
	check "b, where upstream only added: its .sig is the source's, digest for digest" \
		[ "$(sdigest "docker://$P/$TB:sha256-$(hexof "$B").sig")" = "$(sdigest "docker://$P/$b:sha256-$(hexof "$B").sig")" ]
	check "b: the first upstream signature verifies" quiet cz verify "$P" "$TB" "$B" --key u.pub
	check "b: the second one too" quiet cz verify "$P" "$TB" "$B" --key u2.pub
	check "c, whose tag held an index, no signature: replaced by the source's" \
		[ "$(sdigest "docker://$P/$TC:sha256-$(hexof "$C").sig")" = "$(sdigest "docker://$P/$c:sha256-$(hexof "$C").sig")" ]
	check "the new image arrived" [ "$(mstatus "$P" "$T/$new" 1)" = 200 ]

	sig=$(sdigest "docker://$P/$TA:sha256-$(hexof "$A").sig")
	# the same state: a merged tag is not the bundle's digest, so the
	# rerun reads the bundle again, and writes nothing
	out=$("$ferry" import w2.tar --key k.pub --to "$P/$T" "${X[@]}" --state-dir st2 2>&1)
	check "a rerun: exit 0" [ $? = 0 ]
	check "a rerun keeps the merged .sig" grep -q "^kept.* tag $TA:sha256-$(hexof "$A").sig" <<<"$out"
	check "a rerun writes no tag" bash -c "! grep -qE '^(pushed|merged) ' <<<'$out'"
	check "... a's .sig unchanged" [ "$(sdigest "docker://$P/$TA:sha256-$(hexof "$A").sig")" = "$sig" ]
}

it_main "$feature" roundtrip none gate verify_cosign referrers_api many_repos delta collisions \
	site_signatures
