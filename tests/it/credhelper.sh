#!/usr/bin/env bash
# Docker credential helpers (credsStore, credHelpers in config.json): ferry
# runs docker-credential-NAME get with the server on standard input, uses
# the user/secret it answers against the TLS + Basic registry and the token
# registry, and an identity token ("<token>" user) as an OAuth2
# refresh_token grant; the secret is never in argv nor in ferry's output;
# a helper that fails, hangs or floods is an authentication error.
set -uo pipefail
ferry=$1
state=$2
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"

export PATH="$fixtures/credhelper:$PATH"
export FERRYTEST_CREDS=$work/creds
"$ferry" keygen -o k -q >/dev/null || bad "keygen"
image=$(cut -f1 "$FERRY_TEST_IMAGES" | head -1)

# config.json with credsStore or a credHelpers entry, and no "auths"
echo '{"credsStore":"ferrytest"}' >store.json
printf '{"credHelpers":{"%s":"ferrytest","%s":"ferrytest"}}\n' \
	"$FERRY_TEST_TLS" "$FERRY_TEST_TOKEN" >helpers.json
export_from() { # NAME HOST AUTHFILE EXPECTED-EXIT PATTERN
	local name=$1 host=$2 auth=$3 code=$4 pattern=$5
	rm -rf cache out.tar
	expect "$name" "$code" "$pattern" export "$host/$image" -o out.tar --key k.key \
		--cache cache --ca-file "$FERRY_TEST_CA" --authfile "$auth" --progress none
}

printf '%s %s %s\n' "$FERRY_TEST_TLS" "$FERRY_TEST_USER" "$FERRY_TEST_PASS" \
	"$FERRY_TEST_TOKEN" "$FERRY_TEST_USER" "$FERRY_TEST_PASS" >creds
for auth in store helpers; do
	: >creds.log
	export_from "$auth: TLS + Basic with the helper's password" "$FERRY_TEST_TLS" $auth.json 0 "wrote"
	check "$auth: helper asked once, for '$FERRY_TEST_TLS', argv just 'get'" \
		[ "$(cat creds.log)" = "argv=get server=$FERRY_TEST_TLS" ]
	: >creds.log
	export_from "$auth: token registry with the helper's password" "$FERRY_TEST_TOKEN" $auth.json 0 "wrote"
	check "$auth: helper asked for '$FERRY_TEST_TOKEN'" grep -qx "argv=get server=$FERRY_TEST_TOKEN" creds.log
done
check "the token service saw user '$FERRY_TEST_USER' with a push-less pull" \
	bash -c "tail -3 '$FERRY_TEST_TOKEN_LOG' | grep -q '\"authenticated\":true'"

# the secret appears nowhere: not in our output, not in any argv seen
out=$("$ferry" export "$FERRY_TEST_TLS/$image" -o out2.tar --key k.key --cache cache \
	--ca-file "$FERRY_TEST_CA" --authfile store.json -v 2>&1)
check "the password is not in the -v output" bash -c "! grep -qF -- '$FERRY_TEST_PASS' <<<\"\$0\"" "$out"
check "the password is not in the helper's argv" bash -c "! grep -qF -- '$FERRY_TEST_PASS' creds.log"

# wrong password from the helper: an authentication failure naming the user
printf '%s %s %s\n' "$FERRY_TEST_TLS" "$FERRY_TEST_USER" wrong >creds
export_from "wrong password from the helper" "$FERRY_TEST_TLS" store.json 4 "failed for user '$FERRY_TEST_USER'"
# no entry in the helper: anonymous (the "auths" entries are the fallback)
: >creds
export_from "no entry: anonymous, refused" "$FERRY_TEST_TLS" store.json 4 "requires authentication"
jq -n --arg h "$FERRY_TEST_TLS" --arg a "$(printf '%s:%s' "$FERRY_TEST_USER" "$FERRY_TEST_PASS" | base64 -w0)" \
	'{credsStore:"ferrytest", auths:{($h):{auth:$a}}}' >fallback.json
export_from "no entry in the helper: the auths entry is used" "$FERRY_TEST_TLS" fallback.json 0 "wrote"

# identity token: "<token>" as the user, the secret a refresh token
printf '%s <token> %s\n' "$FERRY_TEST_TOKEN" "$FERRY_TEST_REFRESH_TOKEN" >creds
export_from "identity token: refresh_token grant" "$FERRY_TEST_TOKEN" helpers.json 0 "wrote"
check "the token service got a refresh_token grant for '$FERRY_TEST_USER'" \
	bash -c "grep 'refresh_token' '$FERRY_TEST_TOKEN_LOG' | tail -1 | jq -e '.authenticated and .user == \"$FERRY_TEST_USER\" and .method == \"POST\"' >/dev/null"
check "the refresh token is not in the token service's URL" \
	bash -c "! grep -qF -- '$FERRY_TEST_REFRESH_TOKEN' '$FERRY_TEST_TOKEN_LOG'"
# the same in an "auths" entry (as `az acr login` writes it)
jq -n --arg h "$FERRY_TEST_TOKEN" --arg t "$FERRY_TEST_REFRESH_TOKEN" \
	--arg a "$(printf '00000000-0000-0000-0000-000000000000:' | base64 -w0)" \
	'{auths:{($h):{auth:$a, identitytoken:$t}}}' >idtoken.json
before=$(grep -c refresh_token "$FERRY_TEST_TOKEN_LOG")
export_from "identitytoken in auths: refresh_token grant" "$FERRY_TEST_TOKEN" idtoken.json 0 "wrote"
check "identitytoken in auths: the token service got the grant" \
	[ "$(grep -c refresh_token "$FERRY_TEST_TOKEN_LOG")" -gt "$before" ]
printf '%s <token> %s\n' "$FERRY_TEST_TOKEN" refresh-wrong >creds
export_from "a stale identity token says to log in again" "$FERRY_TEST_TOKEN" helpers.json 4 "refused the identity token.*log in again"
printf '%s <token> %s\n' "$FERRY_TEST_TLS" "$FERRY_TEST_REFRESH_TOKEN" >creds
export_from "identity token for a Basic registry: said plainly" "$FERRY_TEST_TLS" helpers.json 4 "identity token"

# helpers that misbehave
printf '%s %s %s\n' "$FERRY_TEST_TLS" "$FERRY_TEST_USER" "$FERRY_TEST_PASS" >creds
FERRYTEST_MODE=fail export_from "failing helper: its message" "$FERRY_TEST_TLS" store.json 4 \
	"credential helper 'docker-credential-ferrytest' failed for '$FERRY_TEST_TLS' \(exit 1\): keychain is locked"
FERRYTEST_MODE=flood export_from "flooding helper: bounded" "$FERRY_TEST_TLS" store.json 4 "printed more than 65536 bytes"
start=$(date +%s)
FERRYTEST_MODE=hang export_from "hanging helper: timeout" "$FERRY_TEST_TLS" store.json 4 "did not answer within 30 s"
check "hanging helper: given up within 40 s" [ $(($(date +%s) - start)) -lt 40 ]
echo '{"credsStore":"missing-helper"}' >missing.json
export_from "helper not on PATH" "$FERRY_TEST_TLS" missing.json 4 "'docker-credential-missing-helper' is not on PATH \(named in 'missing.json' for '$FERRY_TEST_TLS'\)"
echo '{"credsStore":"../../bin/sh"}' >evil.json
export_from "helper name with a path: refused" "$FERRY_TEST_TLS" evil.json 1 "'credsStore' is not a helper name"
finish
