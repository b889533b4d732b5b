#!/usr/bin/env bash
# A full demo on this machine, no network needed: installs dependencies,
# builds ferry, starts local registries (a plain one holding generated test
# images as the "internet side", a TLS one with a password as the internal
# registry), then keygen -> export into a signed bundle -> ferry verify (and
# the same checks with nothing but tar, sha256sum, base64 and openssl) ->
# ferry import into the internal registry, and shows the result.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
ferry=$top/build/cli/ferry

demo=${DEMO_DIR:-$(mktemp -d /tmp/ferry-demo.XXXXXX)}
mkdir -p "$demo"
state=$demo/registries
stop() { "$top/tests/fixtures/registries.sh" stop "$state" >/dev/null 2>&1 || true; }
trap stop EXIT
echo "== starting a local registry with test images (in $demo)"
tests/fixtures/registries.sh start "$state" "$demo/images" >/dev/null
# shellcheck disable=SC1091
source "$state/env.sh"
cut -f1 "$FERRY_TEST_IMAGES" | sed "s|^|$FERRY_TEST_PLAIN/|" >"$demo/images.txt"
cat "$demo/images.txt"

cd "$demo"
echo
echo "== ferry keygen"
"$ferry" keygen -o demo
echo
echo "== ferry export"
"$ferry" export -f images.txt -o bundle.tar.zst --key demo.key \
	--insecure-registry "$FERRY_TEST_PLAIN" --cache cache --report report.json --progress none
echo
echo "== what is inside"
tar -tvf bundle.tar.zst | sed -n 1,8p
echo "..."
echo
echo "== ferry verify (offline audit with the trusted public key)"
"$ferry" verify bundle.tar.zst --key demo.pub
echo
echo "== checking it without ferry: sha256sum and openssl"
mkdir -p extracted && tar -xf bundle.tar.zst -C extracted
(cd extracted && sha256sum --quiet -c SHA256SUMS && echo "SHA256SUMS: all entries OK" &&
	openssl dgst -sha256 -verify ../demo.pub -signature <(base64 -d SHA256SUMS.sig) SHA256SUMS)
echo
echo "== ferry import into the internal registry (TLS, password from an auth file)"
"$ferry" import bundle.tar.zst --key demo.pub --to "$FERRY_TEST_TLS/internal" \
	--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_AUTHFILE" --state-dir state --progress none
echo
echo "== the result: source digest -> digest in the internal registry"
while IFS=$'\t' read -r ref digest _; do
	got=$(skopeo inspect --raw --cert-dir "$FERRY_TEST_CERT_DIR" --authfile "$FERRY_TEST_AUTHFILE" \
		"docker://$FERRY_TEST_TLS/internal/$ref" | sha256sum | cut -d' ' -f1)
	printf '%-36s %s %s\n' "$ref" "${digest:7:16}" "$([ "sha256:$got" = "$digest" ] && echo "= same" || echo "!= DIFFERENT")"
done <"$FERRY_TEST_IMAGES"
echo
echo "== importing the same bundle again is a no-op"
"$ferry" import bundle.tar.zst --key demo.pub --to "$FERRY_TEST_TLS/internal" \
	--ca-file "$FERRY_TEST_CA" --authfile "$FERRY_TEST_AUTHFILE" --state-dir state
echo
echo "Done. Bundle: $demo/bundle.tar.zst (reports: $demo/report.json)"
