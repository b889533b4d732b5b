#!/usr/bin/env bash
# ferry benchmark, many small images: export over a WAN, and the 10x growth.
# Run through bench/bench.sh --wan and/or --scale (see bench/README.md).
#
#   bench/bench_scale.sh [--wan] [--scale] [--images N] [--rtt-ms MS] [--keep]
#
#   --wan        export N images (default 300) through a latency proxy
#                (default 25 ms round trip) against 4 parallel keep-alive
#                curls fetching the same manifests and blobs through it
#   --scale      export and import N (default 30) and 10 N images: time and
#                peak memory, and their ratios
#   --images N   the corpus size of --wan, the small corpus of --scale
#   --rtt-ms MS  the round trip the proxy adds (default 25)
#   --keep       keep bench/.work/scale (registry storage, bundles, logs)
#
# Corpora come from tests/fixtures/gen_scale.py, pushed straight into a
# plain-HTTP docker-registry on a free 127.0.0.1 port (regenerated every
# run: it takes seconds). Environment as bench.sh: FERRY, PYTHON,
# FERRY_REGISTRY_BIN, FERRY_BENCH_WORK. Prints tables and one line
#   BENCH_WAN {json} / BENCH_SCALE {json}
# Exit status: 0 when every measurement ran, 1 when one failed, 2 usage.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
FIXTURES=$ROOT/tests/fixtures
WORK=${FERRY_BENCH_WORK:-$HERE/.work}
PYTHON=${PYTHON:-python3}
REGISTRY_BIN=${FERRY_REGISTRY_BIN:-docker-registry}
TIME_BIN=/usr/bin/time
WAN=0 SCALE=0 KEEP=0 IMAGES='' RTT_MS=25
GOAL_WAN=1.5
GOAL_SCALE_MEM=1.5

say() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }
usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
    case $1 in
    --wan) WAN=1; shift ;;
    --scale) SCALE=1; shift ;;
    --keep) KEEP=1; shift ;;
    --images) (($# >= 2)) || usage; IMAGES=$2; shift 2 ;;
    --images=*) IMAGES=${1#*=}; shift ;;
    --rtt-ms) (($# >= 2)) || usage; RTT_MS=$2; shift 2 ;;
    --rtt-ms=*) RTT_MS=${1#*=}; shift ;;
    -h | --help) usage ;;
    *) echo "bench: unknown argument '$1'" >&2; usage ;;
    esac
done
((WAN || SCALE)) || usage
[[ -z $IMAGES || $IMAGES =~ ^[1-9][0-9]*$ ]] || { echo "bench: --images needs a positive integer" >&2; exit 2; }
[[ $RTT_MS =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "bench: --rtt-ms needs a number" >&2; exit 2; }
WAN_N=${IMAGES:-300}
SCALE_N=${IMAGES:-30}

need() {
    local missing=() t
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (Debian packages: docker-registry curl openssl python3 jq time tar util-linux coreutils)"
}
need "$REGISTRY_BIN" curl openssl "$PYTHON" jq "$TIME_BIN" flock setsid sha256sum awk tar

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
exec 9>"$WORK/.lock"
flock -n 9 || die "another bench run is using $WORK"
RUN=$WORK/scale
LOGS=$RUN/logs
PIDS=()

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do
        if kill -TERM "$p" 2>/dev/null; then wait "$p" 2>/dev/null || true; fi
    done
    if ((KEEP)); then say "kept: $RUN"; else rm -rf "$RUN"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT
trap 'say terminated; exit 143' TERM
rm -rf "$RUN"
mkdir -p "$LOGS"

# ------------------------------------------------------------------ ferry

if [[ -n ${FERRY:-} ]]; then
    FERRY_BIN=$(command -v "$FERRY" 2>/dev/null || true)
    [[ -n $FERRY_BIN && -x $FERRY_BIN ]] || die "FERRY=$FERRY is not an executable"
    say "ferry: $FERRY_BIN (from FERRY)"
else
    say "building ferry (Release) in $ROOT/build-bench"
    if ! cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release >"$LOGS/build.log" 2>&1 ||
        ! make -C "$ROOT/build-bench" -j"$(nproc)" ferry >>"$LOGS/build.log" 2>&1; then
        die "building ferry failed (log: $LOGS/build.log)"
    fi
    FERRY_BIN=$ROOT/build-bench/cli/ferry
fi
"$FERRY_BIN" keygen -o "$RUN/k" -q >/dev/null || die "ferry keygen failed"

# ------------------------------------------------------------------ helpers

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_registry DIR: a plain-HTTP registry with storage in DIR on a free
# port, access log off; sets REG_HOST once it answers.
REG_HOST=
start_registry() {
    local dir=$1 host pid
    host=127.0.0.1:$(free_port)
    mkdir -p "$dir"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: $host
EOF
    (
        # REGISTRY_* variables would override the registry's configuration
        while read -r v; do unset "$v"; done < <(compgen -e | grep '^REGISTRY_' || true)
        exec setsid "$REGISTRY_BIN" serve "$dir/config.yml" </dev/null >"$dir/registry.log" 2>&1
    ) &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 300); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' "http://$host/v2/" || true) == 200 ]]; then
            REG_HOST=$host
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    die "the registry in $dir did not start (log: $dir/registry.log)"
}

# stop_last: stops the most recently started server (a target registry or a
# proxy), so that at most one of them runs next to the source registry.
stop_last() {
    local p=${PIDS[-1]}
    if kill -TERM "$p" 2>/dev/null; then wait "$p" 2>/dev/null || true; fi
    unset 'PIDS[-1]'
}

# start_proxy LOG: the latency proxy in front of the source registry; sets
# PROXY_HOST.
PROXY_HOST=
start_proxy() {
    local pf=$RUN/proxy.port delay
    rm -f "$pf"
    delay=$(awk -v r="$RTT_MS" 'BEGIN {print r / 2}')
    "$PYTHON" "$FIXTURES/latency_proxy.py" "$pf" "$SRC" --delay-ms "$delay" --lifetime 3600 --log "$1" &
    PIDS+=($!)
    for _ in $(seq 100); do [[ -s $pf ]] && break; sleep 0.1; done
    [[ -s $pf ]] || die "the latency proxy did not start"
    PROXY_HOST=127.0.0.1:$(cat "$pf")
}

# measure NAME CMD...: CMD under /usr/bin/time; SECS[NAME], KIB[NAME] (peak
# RSS), both empty if it failed; output in $LOGS/NAME.log.
declare -A SECS=() KIB=()
FAILED=0
measure() {
    local name=$1 rc=0 line
    shift
    sync
    "$TIME_BIN" -f '%e %M' -o "$LOGS/$name.time" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
    line=$(tail -n 1 "$LOGS/$name.time" 2>/dev/null || true)
    SECS[$name]=${line% *}
    KIB[$name]=${line#* }
    if ((rc != 0)); then
        SECS[$name]='' KIB[$name]=''
        FAILED=1
        say "$name failed (exit $rc): $(tail -n 3 "$LOGS/$name.log" | tr '\n' ' ')"
    fi
    return 0
}
ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b}'; }
mib() { [[ -n $1 ]] && awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
verdict() { if [[ -z $1 ]]; then echo n/a; else awk -v v="$1" -v g="$2" 'BEGIN {print (v <= g) ? "ok" : "MISSED"}'; fi; }
num() { [[ -n $1 ]] && echo "$1" || echo null; }

# ------------------------------------------------------------------ corpus

start_registry "$RUN/source"
SRC=$REG_HOST
say "source registry on $SRC"
# gen NAME COUNT: COUNT images under the prefix NAME into $RUN/NAME/
gen() {
    local t0=$SECONDS
    say "pushing $2 images into the source registry"
    "$PYTHON" "$FIXTURES/gen_scale.py" "$SRC" "$RUN/$1" --images "$2" --prefix "$1" >"$LOGS/gen-$1.log" 2>&1 ||
        die "gen_scale.py failed: $(tail -n 3 "$LOGS/gen-$1.log")"
    say "pushed $2 images ($(wc -l <"$RUN/$1/blobs.tsv") unique blobs) in $((SECONDS - t0))s"
}

# ------------------------------------------------------------------ WAN

bench_wan() {
    local c i nblobs bytes out
    gen wan "$WAN_N"
    nblobs=$(wc -l <"$RUN/wan/blobs.tsv")
    bytes=$(awk -F'\t' '{s += $4} END {print s}' "$RUN/wan/blobs.tsv")
    # ferry: the tags, through the proxy, into one bundle (empty cache)
    start_proxy "$LOGS/proxy-ferry.log"
    sed "s|^|$PROXY_HOST/|" "$RUN/wan/images.txt" >"$RUN/wan-ferry.txt"
    say "timing ferry export of $WAN_N images at ${RTT_MS} ms RTT"
    measure wan_ferry "$FERRY_BIN" export -f "$RUN/wan-ferry.txt" -o "$RUN/wan.tar" --compress none \
        --key "$RUN/k.key" --insecure-registry 127.0.0.1 --cache "$RUN/wan-cache" --progress none
    stop_last
    rm -rf "$RUN/wan-cache"
    ((KEEP)) || rm -f "$RUN/wan.tar"
    # the limit: every unique manifest and blob, already known, by 4 curl
    # processes (one keep-alive connection each), through a fresh proxy
    start_proxy "$LOGS/proxy-curl.log"
    mkdir -p "$RUN/wan-curl"
    for ((c = 0; c < 4; c++)); do : >"$RUN/wan-curl-$c.cfg"; done
    i=0
    while IFS=$'\t' read -r repo kind digest _ _; do
        [[ $kind == manifest ]] && kind=manifests || kind=blobs
        printf 'url = "http://%s/v2/%s/%s/%s"\noutput = "%s"\n' "$PROXY_HOST" "$repo" "$kind" "$digest" \
            "$RUN/wan-curl/${digest#sha256:}" >>"$RUN/wan-curl-$((i % 4)).cfg"
        i=$((i + 1))
    done <"$RUN/wan/blobs.tsv"
    say "timing 4 parallel keep-alive curls fetching the $nblobs manifests and blobs at ${RTT_MS} ms RTT"
    # shellcheck disable=SC2016
    measure wan_curl bash -c '
        for c in 0 1 2 3; do
            curl -sSf --noproxy "*" -H "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json" \
                -K "$1/wan-curl-$c.cfg" &
        done
        rc=0
        for c in 0 1 2 3; do wait -n || rc=1; done
        exit $rc' _ "$RUN"
    stop_last
    # not timed: curl fetched everything, intact
    out=$(cd "$RUN/wan-curl" && sha256sum -- * | awk '$1 != $2 {bad++} END {print NR, bad + 0}')
    if [[ $out != "$nblobs 0" ]]; then
        say "curl: $out (files, bad digests), $nblobs expected"
        SECS[wan_curl]=''
        FAILED=1
    fi
    ((KEEP)) || rm -rf "$RUN/wan-curl"
    R_WAN=$(ratio "${SECS[wan_ferry]}" "${SECS[wan_curl]}" || true)
    CONN_FERRY=$(grep -c '"open"' "$LOGS/proxy-ferry.log" || true)
    CONN_CURL=$(grep -c '"open"' "$LOGS/proxy-curl.log" || true)
    echo
    printf 'WAN export: %d images, %d unique manifests and blobs, %s bytes, %s ms RTT, source %s\n' \
        "$WAN_N" "$nblobs" "$bytes" "$RTT_MS" "$SRC"
    printf '%-44s %9s %10s %12s\n' "run" "seconds" "peak MiB" "connections"
    printf '%-44s %9s %10s %12s\n' "ferry export (via proxy)" "${SECS[wan_ferry]:-failed}" \
        "$(mib "${KIB[wan_ferry]}" || echo -)" "$CONN_FERRY"
    printf '%-44s %9s %10s %12s\n' "4 keep-alive curls, same requests known" "${SECS[wan_curl]:-failed}" \
        "$(mib "${KIB[wan_curl]}" || echo -)" "$CONN_CURL"
    printf '%-44s %9s %10s   %s\n' "ferry/curl (time)" "${R_WAN:-n/a}" "<= $GOAL_WAN" "$(verdict "$R_WAN" "$GOAL_WAN")"
    echo "BENCH_WAN $(jq -cn --argjson images "$WAN_N" --argjson blobs "$nblobs" --argjson bytes "$bytes" \
        --argjson rtt "$RTT_MS" --argjson fs "$(num "${SECS[wan_ferry]}")" --argjson fk "$(num "${KIB[wan_ferry]}")" \
        --argjson cs "$(num "${SECS[wan_curl]}")" --argjson cf "$CONN_FERRY" --argjson cc "$CONN_CURL" \
        --argjson r "$(num "${R_WAN:-}")" --argjson g "$GOAL_WAN" \
        '{images: $images, blobs: $blobs, bytes: $bytes, rtt_ms: $rtt,
          ferry: {seconds: $fs, peak_kib: $fk, connections: $cf},
          curl4: {seconds: $cs, connections: $cc},
          ratio_ferry_over_curl4: $r, goal: $g}')"
}

# ------------------------------------------------------------------ scale

bench_scale() {
    local big=$((SCALE_N * 10)) n count
    gen scale "$big"
    sed "s|^|$SRC/|" "$RUN/scale/images.txt" >"$RUN/scale-big.txt"
    head -n "$SCALE_N" "$RUN/scale-big.txt" >"$RUN/scale-small.txt"
    for n in small big; do
        count=$(wc -l <"$RUN/scale-$n.txt")
        say "timing ferry export of $count images"
        measure "export_$n" "$FERRY_BIN" export -f "$RUN/scale-$n.txt" -o "$RUN/scale-$n.tar" --compress none \
            --key "$RUN/k.key" --insecure-registry 127.0.0.1 --cache "$RUN/scale-cache" --progress none
        rm -rf "$RUN/scale-cache"
        if [[ -s $RUN/scale-$n.tar ]]; then
            start_registry "$RUN/target-$n"
            say "timing ferry import of $count images into an empty registry"
            measure "import_$n" "$FERRY_BIN" import "$RUN/scale-$n.tar" --key "$RUN/k.pub" --to "$REG_HOST" \
                --insecure-registry 127.0.0.1 --state-dir "$RUN/state-$n" --progress none
            stop_last
            ((KEEP)) || rm -rf "$RUN/target-$n" "$RUN/scale-$n.tar"
        else
            say "no bundle of $count images: its import is not measured"
            FAILED=1
        fi
    done
    local rte rti rme rmi pie pii
    rte=$(ratio "${SECS[export_big]}" "${SECS[export_small]}" || true)
    rti=$(ratio "${SECS[import_big]}" "${SECS[import_small]}" || true)
    rme=$(ratio "${KIB[export_big]}" "${KIB[export_small]}" || true)
    rmi=$(ratio "${KIB[import_big]}" "${KIB[import_small]}" || true)
    # time per image at 10N over time per image at N: 1 is linear
    pie=$(ratio "$rte" 10 || true)
    pii=$(ratio "$rti" 10 || true)
    echo
    printf 'scale: %d -> %d images (2-platform indexes), source %s\n' "$SCALE_N" "$big" "$SRC"
    printf '%-24s %12s %12s %10s %14s\n' "run" "seconds" "peak MiB" "images" "ms per image"
    for n in small big; do
        count=$(wc -l <"$RUN/scale-$n.txt")
        for op in export import; do
            printf '%-24s %12s %12s %10s %14s\n' "ferry $op" "${SECS[${op}_$n]:-failed}" \
                "$(mib "${KIB[${op}_$n]:-}" || echo -)" "$count" \
                "$(awk -v s="${SECS[${op}_$n]:-}" -v c="$count" 'BEGIN {if (s != "") printf "%.1f", s * 1000 / c}')"
        done
    done
    printf '\n%-40s %9s %10s   %s\n' "ratio (10N over N)" "value" "goal" "verdict"
    printf '%-40s %9s %10s   %s\n' "export time" "${rte:-n/a}" "~10" "(linear: 10)"
    printf '%-40s %9s %10s   %s\n' "export time per image" "${pie:-n/a}" "<= 1.5" "$(verdict "$pie" 1.5)"
    printf '%-40s %9s %10s   %s\n' "export peak memory" "${rme:-n/a}" "<= $GOAL_SCALE_MEM" "$(verdict "$rme" "$GOAL_SCALE_MEM")"
    printf '%-40s %9s %10s   %s\n' "import time" "${rti:-n/a}" "~10" "(linear: 10)"
    printf '%-40s %9s %10s   %s\n' "import time per image" "${pii:-n/a}" "<= 1.5" "$(verdict "$pii" 1.5)"
    printf '%-40s %9s %10s   %s\n' "import peak memory" "${rmi:-n/a}" "<= $GOAL_SCALE_MEM" "$(verdict "$rmi" "$GOAL_SCALE_MEM")"
    echo "BENCH_SCALE $(jq -cn --argjson n "$SCALE_N" --argjson big "$big" \
        --argjson es "$(num "${SECS[export_small]}")" --argjson ek "$(num "${KIB[export_small]}")" \
        --argjson eb "$(num "${SECS[export_big]}")" --argjson ekb "$(num "${KIB[export_big]}")" \
        --argjson is "$(num "${SECS[import_small]:-}")" --argjson ik "$(num "${KIB[import_small]:-}")" \
        --argjson ib "$(num "${SECS[import_big]:-}")" --argjson ikb "$(num "${KIB[import_big]:-}")" \
        --argjson rte "$(num "$rte")" --argjson rti "$(num "$rti")" \
        --argjson rme "$(num "$rme")" --argjson rmi "$(num "$rmi")" --argjson g "$GOAL_SCALE_MEM" \
        '{images: [$n, $big],
          export: {seconds: [$es, $eb], peak_kib: [$ek, $ekb]},
          import: {seconds: [$is, $ib], peak_kib: [$ik, $ikb]},
          ratios: {export_time: $rte, import_time: $rti, export_peak: $rme, import_peak: $rmi},
          goals: {export_peak: $g, import_peak: $g, time_per_image: 1.5}}')"
}

R_WAN=
((WAN == 0)) || bench_wan
((SCALE == 0)) || bench_scale
exit "$FAILED"
