#!/usr/bin/env bash
# The bundle with the loaders a site already has (SPEC section 8), each the
# real program from Debian's packages, run with private roots and sockets:
#   loaders.sh ctr|docker|podman|skopeo FERRY STATE_DIR
# A plain .tar bundle loads as it is; a .tar.zst reaches the loader through
# 'ferry unpack' (to a file, and streamed into the loader); every loaded
# image is checked against the source digests.  A loader that cannot run
# here skips (exit 77) with its reason printed.
set -uo pipefail
mode=$1
ferry=$2
state=$3
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"

skip() {
	echo "SKIP loaders.$mode: $*"
	exit 77
}
case $mode in
ctr) need=(containerd ctr) ;;
docker) need=(dockerd /usr/bin/docker) ;;
podman) need=(podman) ;;
skopeo) need=(skopeo) ;;
*) echo "usage: loaders.sh ctr|docker|podman|skopeo FERRY STATE_DIR" >&2; exit 2 ;;
esac
for p in "${need[@]}"; do
	command -v "$p" >/dev/null || skip "'$p' is not installed (scripts/deps.sh installs it)"
done
if [ "$mode" != skopeo ] && [ "$(id -u)" != 0 ]; then
	skip "$mode needs root here to mount layers in its private root (run the suite as root, e.g. in the CI container)"
fi

work=$(mktemp -d)
daemon_pid=
cleanup() {
	if [ -n "$daemon_pid" ]; then
		kill "$daemon_pid" 2>/dev/null
		for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$daemon_pid" 2>/dev/null
		wait "$daemon_pid" 2>/dev/null
	fi
	# a daemon killed hard may leave its mounts behind
	grep -o " $work/[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m"; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$work" || exit 1

# --- the bundles: every fixture image, default .tar.zst and plain .tar
"$ferry" keygen -o k -q >/dev/null
"$ferry" keygen -o other -q >/dev/null
cut -f1 "$FERRY_TEST_IMAGES" | sed "s|^|$FERRY_TEST_PLAIN/|" >all.txt
"$ferry" export -q -f all.txt -o b.tar.zst --key k.key --insecure-registry 127.0.0.1 \
	--cache cache >/dev/null || bad "export .tar.zst"
"$ferry" export -q -f all.txt -o b.tar --compress none --key k.key --insecure-registry 127.0.0.1 \
	--cache cache >/dev/null || bad "export .tar"
"$ferry" unpack -q b.tar.zst --key k.pub -o u.tar || bad "unpack to a file"

# A copy of the .tar.zst with one byte of its largest layer changed: the
# signature and SHA256SUMS still verify, that blob does not.
python3 - <<'EOF' || bad "make the tampered bundle"
import tarfile
with tarfile.open("u.tar") as t:
    m = max((m for m in t.getmembers() if m.name.startswith("blobs/")), key=lambda m: m.size)
    off = m.offset_data + m.size // 2
with open("u.tar", "rb") as f:
    data = bytearray(f.read())
data[off] ^= 0x01
open("bad.tar", "wb").write(data)
EOF
zstd -q -19 bad.tar -o bad.tar.zst && rm -f bad.tar

# ref TAB manifest digest, as exported (full references)
sed "s|^|$FERRY_TEST_PLAIN/|" "$FERRY_TEST_IMAGES" | cut -f1,2 | sort >want.tsv
# ref TAB config digest of the image manifest docker/podman load (manifest.json:
# linux/amd64, else the first)
while IFS=$'\t' read -r ref _; do
	line=$(awk -F'\t' -v r="$ref" '$1 == r && $2 == "linux/amd64"' "$FERRY_TEST_PLATFORMS" | head -1)
	[ -n "$line" ] || line=$(awk -F'\t' -v r="$ref" '$1 == r' "$FERRY_TEST_PLATFORMS" | head -1)
	printf '%s\t%s\n' "$FERRY_TEST_PLAIN/$ref" "$(cut -f4 <<<"$line" | cut -d' ' -f1)"
done < <(cut -f1 "$FERRY_TEST_IMAGES") | sort >want-config.tsv
# every blob one platform needs (index, manifest, config, layers)
platform_blobs() { # PLATFORM
	cut -f2 "$FERRY_TEST_IMAGES" | sort -u
	awk -F'\t' -v p="$1" '$2 == p { print $3; n = split($4, a, " "); for (i = 1; i <= n; i++) print a[i] }' \
		"$FERRY_TEST_PLATFORMS"
	# single-platform images whatever their platform
	awk -F'\t' '{ n[$1]++; l[$1] = $0 } END { for (r in n) if (n[r] == 1) print l[r] }' "$FERRY_TEST_PLATFORMS" |
		awk -F'\t' '{ print $3; n = split($4, a, " "); for (i = 1; i <= n; i++) print a[i] }'
}
tar tf b.tar | sed -n 's|^blobs/sha256/|sha256:|p' | sort >all-blobs.txt

quietly() { # CMD...: its output shown only when it fails
	"$@" >quiet.log 2>&1 || { tail -5 quiet.log | sed 's/^/    /'; return 1; }
}
wait_for() { # SECONDS CMD...: until CMD succeeds
	local n=$(($1 * 10))
	shift
	for _ in $(seq "$n"); do
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$daemon_pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# ================================================================ containerd
run_ctr() {
	local d=$work/ctd
	mkdir -p "$d"
	cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$d/c.sock"
[ttrpc]
  address = "$d/c.sock.ttrpc"
[debug]
  address = "$d/debug.sock"
[metrics]
  address = ""
EOF
	containerd --config "$d/config.toml" >"$d/log" 2>&1 &
	daemon_pid=$!
	ctr() { command ctr --address "$d/c.sock" "$@"; }
	if ! wait_for 30 ctr version; then
		tail -5 "$d/log"
		skip "containerd does not start here (log above)"
	fi
	echo "containerd $(command ctr --version | awk '{print $3}') running with a private root"
	images_of() { # NAMESPACE: ref TAB digest, sorted
		ctr -n "$1" images ls 2>/dev/null | awk 'NR > 1 { print $1 "\t" $3 }' | sort
	}
	# ctr ingests every entry of the tar (ferry.json, index.json and the sums
	# too) and leaves what no image refers to to the garbage collector, which
	# runs when it likes; deleting a lease with --sync runs it now
	content_of() {
		ctr -n "$1" leases create --id settle >/dev/null && ctr -n "$1" leases rm --sync settle >/dev/null
		ctr -n "$1" content ls -q | sort
	}
	same_blobs() { # NAMESPACE: the content store holds exactly the bundle's blobs
		content_of "$1" >"blobs-$1.txt"
		cmp -s all-blobs.txt "blobs-$1.txt" && return 0
		diff all-blobs.txt "blobs-$1.txt" | grep '^[<>]' | head -5 | sed 's/^/    /'
		return 1
	}

	# plain .tar as it is, every platform
	check "ctr imports the plain .tar" quietly ctr -n plain images import --all-platforms b.tar
	check "ctr: names from io.containerd.image.name, source digests" cmp -s want.tsv <(images_of plain)
	check "ctr --all-platforms: every blob of the bundle in the content store" \
		same_blobs plain

	# one platform: --platform linux/arm64/v8 takes that platform's blobs
	check "ctr imports with --platform linux/arm64/v8" \
		quietly ctr -n arm images import --platform linux/arm64/v8 b.tar
	check "ctr --platform: names and digests" cmp -s want.tsv <(images_of arm)
	content_of arm >arm-got.txt
	platform_blobs linux/arm64/v8 | sort -u >arm-want.txt
	platform_blobs linux/amd64 | sort -u | comm -23 - arm-want.txt >amd-only.txt
	check "ctr --platform: the arm64 blobs are there" test -z "$(comm -23 arm-want.txt arm-got.txt)"
	check "ctr --platform: the amd64-only blobs are not" test -z "$(comm -12 amd-only.txt arm-got.txt)"
	check "(the fixture has amd64-only blobs)" test -s amd-only.txt

	# the default .tar.zst through ferry unpack: streamed and from the file
	if "$ferry" unpack -q b.tar.zst --key k.pub -o - | ctr -n zst images import --all-platforms - >/dev/null; then
		ok
	else bad "ferry unpack -o - | ctr images import -"; fi
	check "ctr from the .tar.zst (stream): source digests" cmp -s want.tsv <(images_of zst)
	check "ctr from the .tar.zst (stream): every blob" same_blobs zst
	check "ctr imports the unpacked file" quietly ctr -n zstf images import --all-platforms u.tar
	check "ctr from the unpacked file: source digests" cmp -s want.tsv <(images_of zstf)

	# a defect fails the pipeline and no image appears
	if "$ferry" unpack -q bad.tar.zst --key k.pub -o - 2>err.txt | ctr -n bad images import --all-platforms - >/dev/null 2>&1; then
		bad "a tampered bundle streamed into ctr must fail the pipeline"
	else ok; fi
	check "tampered: ferry names the blob" grep -q "sha256" err.txt
	check "tampered: no image in ctr" test -z "$(ctr -n bad images ls -q)"
	# a wrong key: nothing reaches ctr
	if "$ferry" unpack -q b.tar.zst --key other.pub -o - 2>/dev/null | ctr -n wrong images import - >/dev/null 2>&1; then
		bad "a wrong key must fail the pipeline"
	else ok; fi
	check "wrong key: no image in ctr" test -z "$(ctr -n wrong images ls -q)"

	# k3s/RKE2: the agent imports every *.tar in its images directory into
	# the k8s.io namespace with all platforms (docs/loaders.md)
	mkdir -p agent/images
	check "k3s recipe: ferry unpack into the images directory" \
		"$ferry" unpack -q b.tar.zst --key k.pub -o agent/images/ferry-bundle.tar
	check "k3s recipe: only the verified tar is there" \
		test "$(ls -A agent/images)" = ferry-bundle.tar
	for f in agent/images/*.tar; do
		check "k3s recipe: containerd imports $f" quietly ctr -n k8s.io images import --all-platforms "$f"
	done
	check "k3s recipe: source digests in k8s.io" cmp -s want.tsv <(images_of k8s.io)

	# a bundle that carries a cosign signature (SPEC section 6): ctr also
	# records the signature's tag, and with --no-unpack does not try to
	# unpack it as a container image (docs/loaders.md)
	local repo=loaders$$/signed sd
	sd=$(python3 "$fixtures/cosign.py" image "$FERRY_TEST_PLAIN" "$repo" 1 --seed "loaders $$")
	openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt >c.pem
	python3 "$fixtures/cosign.py" sign "$FERRY_TEST_PLAIN" "$repo" "$sd" --key c.pem >/dev/null ||
		bad "signed bundle: sign"
	"$ferry" export -q "$FERRY_TEST_PLAIN/$repo:1" -o s.tar --compress none --key k.key \
		--insecure-registry 127.0.0.1 --cache cache >/dev/null || bad "signed bundle: export"
	check "signed bundle: ctr --no-unpack imports it" \
		quietly ctr -n signed images import --all-platforms --no-unpack s.tar
	check "signed bundle: the image, at its source digest" \
		grep -qx "$FERRY_TEST_PLAIN/$repo:1	$sd" <(images_of signed)
	check "signed bundle: the signature's tag as well" \
		grep -q "^$FERRY_TEST_PLAIN/$repo:sha256-${sd#sha256:}.sig	sha256:" <(images_of signed)
}

# ==================================================================== docker
run_docker() {
	local d=$work/dk
	mkdir -p "$d"
	echo '{}' >"$d/daemon.json" # not the host's /etc/docker/daemon.json
	dockerd --config-file "$d/daemon.json" --storage-driver vfs --iptables=false --ip6tables=false --bridge=none \
		--ip-masq=false --userland-proxy=false --data-root "$d/data" --exec-root "$d/exec" \
		-H "unix://$d/d.sock" --pidfile "$d/d.pid" >"$d/log" 2>&1 &
	daemon_pid=$!
	docker() { /usr/bin/docker -H "unix://$d/d.sock" "$@"; }
	if ! wait_for 60 docker version; then
		tail -5 "$d/log"
		skip "dockerd does not start here (log above)"
	fi
	echo "docker $(docker version -f '{{.Server.Version}}') running with a private root (vfs)"
	loaded() { # ref TAB image id (= config digest), for every wanted ref
		cut -f1 want-config.tsv | while read -r r; do
			printf '%s\t%s\n' "$r" "$(docker image inspect -f '{{.Id}}' "$r" 2>/dev/null)"
		done
	}
	check "docker loads the plain .tar" quietly docker load -q -i b.tar
	check "docker: every reference, image id = source config digest" cmp -s want-config.tsv <(loaded)
	docker images -q | sort -u | xargs -r /usr/bin/docker -H "unix://$d/d.sock" rmi -f >/dev/null 2>&1
	check "docker: nothing left before the .tar.zst" test -z "$(docker images -q)"
	if "$ferry" unpack -q b.tar.zst --key k.pub -o - | docker load -q >/dev/null; then ok; else
		bad "ferry unpack -o - | docker load"
	fi
	check "docker from the .tar.zst (stream): image ids = source config digests" cmp -s want-config.tsv <(loaded)
	docker images -q | sort -u | xargs -r /usr/bin/docker -H "unix://$d/d.sock" rmi -f >/dev/null 2>&1
	if "$ferry" unpack -q bad.tar.zst --key k.pub -o - 2>/dev/null | docker load -q >/dev/null 2>&1; then
		bad "a tampered bundle streamed into docker load must fail the pipeline"
	else ok; fi
	check "tampered: no image in docker" test -z "$(docker images -q)"
	if "$ferry" unpack -q b.tar.zst --key other.pub -o - 2>/dev/null | docker load -q >/dev/null 2>&1; then
		bad "a wrong key must fail the pipeline"
	else ok; fi
	check "docker loads the unpacked file" quietly docker load -q -i u.tar
	check "docker from the unpacked file: image ids" cmp -s want-config.tsv <(loaded)
	check "docker: a multi-arch image arrives as its linux/amd64 image" \
		test "$(docker image inspect -f '{{.Architecture}}' "$FERRY_TEST_PLAIN/library/alpine:3.14")" = amd64
}

# ==================================================================== podman
run_podman() {
	local p=$work/pm
	mkdir -p "$p/tmp"
	podman() {
		command podman --root "$p/root" --runroot "$p/run" --storage-driver vfs \
			--cgroup-manager cgroupfs --events-backend file --tmpdir "$p/tmp" "$@"
	}
	if ! podman info >"$p/info" 2>&1; then
		tail -5 "$p/info"
		skip "podman cannot set up its private storage here (above)"
	fi
	echo "podman $(podman version -f '{{.Client.Version}}') with private storage (vfs)"
	loaded() {
		cut -f1 want-config.tsv | while read -r r; do
			printf '%s\tsha256:%s\n' "$r" "$(podman image inspect -f '{{.Id}}' "$r" 2>/dev/null)"
		done
	}
	check "podman loads the plain .tar" quietly podman load -q -i b.tar
	check "podman: every reference, image id = source config digest" cmp -s want-config.tsv <(loaded)
	podman rmi -a -f >/dev/null 2>&1
	if "$ferry" unpack -q b.tar.zst --key k.pub -o - | podman load -q >/dev/null; then ok; else
		bad "ferry unpack -o - | podman load"
	fi
	check "podman from the .tar.zst (stream): image ids" cmp -s want-config.tsv <(loaded)
	podman rmi -a -f >/dev/null 2>&1
	check "podman loads the unpacked file" quietly podman load -q -i u.tar
	check "podman from the unpacked file: image ids" cmp -s want-config.tsv <(loaded)
	podman rmi -a -f >/dev/null 2>&1
	if "$ferry" unpack -q bad.tar.zst --key k.pub -o - 2>/dev/null | podman load -q >/dev/null 2>&1; then
		bad "a tampered bundle streamed into podman load must fail the pipeline"
	else ok; fi
	check "tampered: no image in podman" test -z "$(podman images -q)"
	# a bundle of one image goes through podman's OCI path: source digest
	podman rmi -a -f >/dev/null 2>&1
	for one in library/alpine:3.14 library/busybox:1.36; do
		rm -f one.tar
		"$ferry" export -q "$FERRY_TEST_PLAIN/$one" -o one.tar --compress none --key k.key \
			--insecure-registry 127.0.0.1 --cache cache >/dev/null || bad "export $one"
		check "podman loads a one-image bundle ($one)" quietly podman load -i one.tar
		check "podman: a one-image bundle keeps the source digest ($one)" \
			test "$(podman image inspect -f '{{.Digest}}' "$FERRY_TEST_PLAIN/$one")" = \
			"$(grep -F "$FERRY_TEST_PLAIN/$one" want.tsv | cut -f2)"
	done
	podman rmi -a -f >/dev/null 2>&1
	# OCI-typed images keep their manifest digest through oci-archive:
	ref=$FERRY_TEST_PLAIN/$(grep -m1 harbor-core "$FERRY_TEST_IMAGES" | cut -f1)
	check "podman pull oci-archive: (OCI-typed image)" quietly podman pull -q "oci-archive:u.tar:$ref"
	check "podman oci-archive: keeps the source manifest digest" \
		test "$(podman image inspect -f '{{.Digest}}' "$ref")" = "$(grep -F "$ref" want.tsv | cut -f2)"
}

# ==================================================================== skopeo
run_skopeo() {
	skopeo --version
	local ref mt digest
	while IFS=$'\t' read -r ref digest mt _; do
		ref=$FERRY_TEST_PLAIN/$ref
		case $mt in
		application/vnd.oci.*)
			for src in b.tar u.tar; do
				check "skopeo copies $ref from $src" skopeo copy -q --all --preserve-digests \
					"oci-archive:$src:$ref" "oci:out-$src:$ref"
				check "skopeo: $ref keeps its source digest ($src)" test "$(jq -r --arg r "$ref" \
					'.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $r) | .digest' \
					"out-$src/index.json")" = "$digest"
			done
			;;
		*)
			# skopeo 1.9 reads only OCI media types from index.json; the
			# documented workaround reads manifest.json (docker-archive:)
			if skopeo copy -q "oci-archive:b.tar:$ref" "oci:out-docker:x" 2>err.txt; then
				echo "note: this skopeo reads Docker-typed $ref through oci-archive: (newer than 1.9)"
				ok
			else
				check "skopeo 1.9 refuses Docker-typed $ref with the documented message" \
					grep -q "no descriptor found for reference" err.txt
			fi
			check "workaround: skopeo copy docker-archive:BUNDLE.tar:$ref" skopeo copy -q \
				"docker-archive:u.tar:$ref" "oci:out-workaround:x"
			check "workaround: the config digest is the source's" test "$(skopeo inspect --raw \
				oci:out-workaround:x | jq -r .config.digest)" = "$(grep -F "$ref" want-config.tsv | cut -f2)"
			;;
		esac
	done < <(sort -u -t$'\t' -k1,1 "$FERRY_TEST_IMAGES")
	if "$ferry" unpack -q bad.tar.zst --key k.pub -o bad-u.tar 2>/dev/null; then
		bad "a tampered bundle must not unpack"
	else ok; fi
	check "tampered: no tar for skopeo to read" test ! -e bad-u.tar
}

"run_$mode"
finish
