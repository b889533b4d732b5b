#!/usr/bin/env bash
# Import into Harbor, against a test double of Harbor's API
# (tests/fixtures/harbor.py) in front of a real registry: Harbor itself
# cannot run here. A missing project is a clear error; --create-projects
# creates it (private unless --public) through POST /api/v2.0/projects
# with the host's credentials; --dry-run creates nothing.
#
# Usage: harbor.sh FERRY STATE_DIR [FEATURE]   (FEATURE: see the end; all)
set -uo pipefail
ferry=$1
state=$2
feature=${3:-all}
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work" || exit 1
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"
img=$(grep -m1 library/alpine "$FERRY_TEST_IMAGES")

# Shared by the features: the key k and the bundle b.tar of one image.
make_shared() {
	"$ferry" keygen -o k -q >/dev/null || { echo "keygen failed"; return 1; }
	"$ferry" export -q "$FERRY_TEST_PLAIN/${img%%$'\t'*}" -o b.tar --compress none --key k.key \
		--insecure-registry 127.0.0.1 --cache cache >/dev/null || { echo "export failed"; return 1; }
}
# start_harbor: the shared files here, and a Harbor double with the project
# "existing" logging to api.log; sets $h and $common
start_harbor() {
	it_shared make_shared || return 1
	ln -s "$shared/k.pub" "$shared/b.tar" . || return 1
	python3 "$fixtures/harbor.py" port "$FERRY_TEST_PLAIN" api.log "admin:harbor-pw" existing &
	pid=$!
	for _ in $(seq 100); do [ -s port ] && break; sleep 0.1; done
	h=127.0.0.1:$(cat port)
	printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$h" "$(printf admin:harbor-pw | base64)" >auth.json
	echo '{}' >noauth.json
	common=(--key k.pub --insecure-registry 127.0.0.1 --authfile auth.json)
}
stop_harbor() {
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	pid=
}

feature_missing_project() {
	start_harbor || return
	expect "missing project" 3 "Harbor project 'proj$$' does not exist on '$h'.*--create-projects" \
		import b.tar --to "$h/proj$$" --state-dir s1 "${common[@]}"
	check "nothing created without --create-projects" bash -c "! grep -q POST api.log"
	expect "dry run names the project to create" 0 "Harbor projects to create: 1" \
		import b.tar --to "$h/proj$$" --state-dir s1 "${common[@]}" --create-projects --dry-run
	check "dry run created nothing" bash -c "! grep -q POST api.log"
	stop_harbor
}

feature_create_project() {
	local got
	start_harbor || return
	expect "no credentials" 4 "cannot create Harbor project 'proj$$'" \
		import b.tar --to "$h/proj$$" --state-dir s1 --key k.pub --insecure-registry 127.0.0.1 \
		--authfile noauth.json --create-projects
	expect "--create-projects" 0 "created 1 Harbor project" \
		import b.tar --to "$h/proj$$" --state-dir s1 "${common[@]}" --create-projects
	check "created private, with credentials" bash -c \
		"grep POST api.log | tail -1 | jq -e '.auth and (.body | fromjson | .project_name == \"proj$$\" and .metadata.public == \"false\")' >/dev/null"
	got=$(skopeo inspect --raw --tls-verify=false "docker://$h/proj$$/${img%%$'\t'*}" | sha256sum | cut -d' ' -f1)
	check "the image is in the new project with its digest" [ "sha256:$got" = "$(cut -f2 <<<"$img")" ]
	expect "--public" 0 "created 1 Harbor project" \
		import b.tar --to "$h/pub$$" --state-dir s2 "${common[@]}" --create-projects --public
	check "created public" bash -c \
		"grep POST api.log | tail -1 | jq -e '.body | fromjson | .metadata.public == \"true\"' >/dev/null"
	stop_harbor
}

feature_existing_project() {
	local n
	start_harbor || return
	n=$(grep -c POST api.log)
	expect "existing project: nothing created" 0 "imported" \
		import b.tar --to "$h/existing" --state-dir s3 "${common[@]}" --create-projects
	check "no POST for an existing project" [ "$(grep -c POST api.log)" = "$n" ]
	stop_harbor
}

it_main "$feature" missing_project create_project existing_project
