#!/usr/bin/env bash
# A full demo on this machine, no network needed: installs dependencies,
# builds ferry, starts a local registry holding generated test images, then
# keygen -> export into a signed bundle -> ferry verify -> the same checks
# with nothing but tar, sha256sum, base64 and openssl.
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
stop() { tests/fixtures/registries.sh stop "$state" >/dev/null 2>&1 || true; }
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
	--insecure-registry "$FERRY_TEST_PLAIN" --cache cache --report report.json
echo
echo "== what is inside"
tar -tvf bundle.tar.zst | head -8
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
echo "Done. Bundle: $demo/bundle.tar.zst (report: $demo/report.json)"
