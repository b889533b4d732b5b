#!/usr/bin/env bash
# Install every build and test dependency on Debian 12 (idempotent: quick
# when everything is there already).
set -euo pipefail
pkgs=(
	build-essential cmake pkg-config
	libcurl4-openssl-dev libarchive-dev libjansson-dev libssl-dev libzstd-dev zlib1g-dev
	docker-registry skopeo apache2-utils openssl ca-certificates
	python3 curl zstd jq strace time
	clang libclang-rt-14-dev # scripts/fuzz.sh: libFuzzer and the sanitizers
)
missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
