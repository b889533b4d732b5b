#!/usr/bin/env bash
# ferry benchmark: ferry export and import against skopeo and the raw limit, ferry verify against openssl.
#
#   bench/bench.sh [--size-mb N] [--repeat N] [--keep] [--clean]
#   bench/bench.sh --wan|--scale [--images N] [--rtt-ms MS] [--keep]
#   bench/bench.sh --weekly [--size-mb N] [--repeat N] [--pct P] [--split-size S] [--keep]
#   bench/bench.sh --mirror [--size-mb N] [--repeat N] [--keep]
#   bench/bench.sh --referrers [--images N] [--rtt-ms MS] [--repeat N] [--api] [--signed] [--keep]
#
#   --size-mb N  corpus size in MB of 10^6 bytes (default 1000)
#   --keep       also keep the registry storage (the next run skips the push)
#                and the outputs of this run (bundles, archives, blobs)
#   --repeat N   run every measurement N times, report the fastest (default 1)
#   --clean      delete bench/.work (corpora, registry storage) and exit
#   --wan        instead: export hundreds of small multi-arch images through
#                a latency proxy against 4 keep-alive curls (bench_scale.sh)
#   --scale      instead: export/import time and peak memory at N and 10 N
#                images, and their ratios (bench_scale.sh; with --wan, both)
#   --weekly     instead: a delta export (--base, P% new bytes, default 5)
#                against a full one, and verify of split parts (--split-size,
#                default 256M) against the one file (bench_weekly.sh)
#   --mirror     instead: registry to registry, ferry export -o - | ferry
#                import - against skopeo copy and curl (bench_mirror.sh)
#   --referrers  instead: export of N unsigned images with --referrers all
#                against --referrers none, on loopback and at MS ms RTT
#                (fastest of at least 3 each; bench_referrers.sh)
#   --api        with --referrers: through a registry that answers the
#                referrers API (one request per manifest)
#   --signed     with --referrers: every image signed, and --referrers all
#                exports with --verify-cosign-key (what signatures cost)
#
# Builds ferry (Release, in build-bench/) unless FERRY names a binary,
# generates the corpus once (bench/.work/corpus-<N>mb, kept between runs),
# starts a plain-HTTP docker-registry on a free 127.0.0.1 port, pushes the
# corpus with skopeo, then times, in one run, with /usr/bin/time:
#   ferry export --compress none, ferry export --compress zstd (empty cache
#   each), skopeo copy of every image to an oci-archive, and curl (4 in
#   parallel) + openssl dgst of every unique blob;
#   ferry verify of each of the two bundles, against the limit over the same
#   bytes: openssl dgst -sha256 of the .tar, zstd -dc | openssl dgst -sha256
#   of the .tar.zst (each bundle read once beforehand: page cache).
#   ferry import of the zstd bundle into an empty registry (a second
#   docker-registry, fresh storage for every timed run), against skopeo copy
#   of every image from the bundle (oci-archive:) and the raw limit: curl
#   (2 in parallel) pushing every unique blob from files extracted
#   beforehand, then the manifests and tags; extra disk use sampled for each,
#   every tag's digest in the target checked after each.
# If the ferry binary has no verify (import) command, those rows say failed.
# Prints a table, the ratios against the goals, and a last line
#   BENCH {json}
# Environment: FERRY (ferry binary; skips the build), PYTHON (python3),
# FERRY_REGISTRY_BIN (docker-registry), FERRY_BENCH_WORK (bench/.work).
# Exit status: 0 all measurements ran, 1 one of them failed (the others are
# still measured and reported), 2 usage.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
WORK=${FERRY_BENCH_WORK:-$HERE/.work}
PYTHON=${PYTHON:-python3}
REGISTRY_BIN=${FERRY_REGISTRY_BIN:-docker-registry}
TIME_BIN=/usr/bin/time
READY_TIMEOUT=30
SIZE_MB=1000
KEEP=0
CLEAN=0
REPEAT=1

# Goals (see bench/README.md).
GOAL_SKOPEO=0.30
GOAL_RAW=1.50
GOAL_ZSTD=1.25
GOAL_MIB=100
GOAL_VERIFY=1.25
GOAL_VERIFY_MIB=64
GOAL_IMPORT_SKOPEO=0.65
GOAL_IMPORT_RAW=1.20
GOAL_IMPORT_MIB=64
GOAL_IMPORT_DISK=0

say() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }
usage() { sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

SCALE_ARGS=()
SCALE_MODE=0
WEEKLY_ARGS=()
REFERRERS_ARGS=()
WEEKLY_MODE=0
MIRROR_MODE=0
while (($#)); do
    case $1 in
    --size-mb)
        (($# >= 2)) || usage
        SIZE_MB=$2
        shift 2
        ;;
    --size-mb=*)
        SIZE_MB=${1#*=}
        shift
        ;;
    --repeat)
        (($# >= 2)) || usage
        REPEAT=$2
        shift 2
        ;;
    --keep) KEEP=1; SCALE_ARGS+=(--keep); shift ;;
    --clean) CLEAN=1; shift ;;
    --wan | --scale) SCALE_ARGS+=("$1"); SCALE_MODE=1; shift ;;
    --images | --rtt-ms)
        (($# >= 2)) || usage
        SCALE_ARGS+=("$1" "$2")
        shift 2
        ;;
    --images=* | --rtt-ms=*) SCALE_ARGS+=("$1"); shift ;;
    --weekly) WEEKLY_MODE=1; shift ;;
    --mirror) MIRROR_MODE=1; shift ;;
    --referrers) REFERRERS_MODE=1; shift ;;
    --api | --signed) REFERRERS_ARGS+=("$1"); shift ;;
    --pct | --split-size)
        (($# >= 2)) || usage
        WEEKLY_ARGS+=("$1" "$2")
        shift 2
        ;;
    --pct=* | --split-size=*) WEEKLY_ARGS+=("$1"); shift ;;
    -h | --help) usage ;;
    *) echo "bench: unknown argument '$1'" >&2; usage ;;
    esac
done
# What discovering attachments costs a plain export: a benchmark of its own.
if ((${REFERRERS_MODE:-0} && !CLEAN)); then
    ((SCALE_MODE == 0 && WEEKLY_MODE == 0 && MIRROR_MODE == 0)) ||
        { echo "bench: --referrers does not combine with --wan, --scale, --weekly or --mirror" >&2; exit 2; }
    exec "$HERE/bench_referrers.sh" --repeat "$((REPEAT > 3 ? REPEAT : 3))" "${SCALE_ARGS[@]}" \
        "${REFERRERS_ARGS[@]}"
fi
# Many small images (WAN, 10x growth): a benchmark of its own.
((SCALE_MODE == 0 || WEEKLY_MODE == 0)) || { echo "bench: --weekly does not combine with --wan or --scale" >&2; exit 2; }
((SCALE_MODE == 0 || CLEAN)) || exec "$HERE/bench_scale.sh" "${SCALE_ARGS[@]}"
# Registry-to-registry mirroring: a benchmark of its own.
((MIRROR_MODE == 0 || (SCALE_MODE == 0 && WEEKLY_MODE == 0))) ||
    { echo "bench: --mirror does not combine with --wan, --scale or --weekly" >&2; exit 2; }
((MIRROR_MODE == 0 || ${#WEEKLY_ARGS[@]} == 0)) || { echo "bench: --pct and --split-size need --weekly" >&2; exit 2; }
MIRROR_ARGS=(--size-mb "$SIZE_MB" --repeat "$REPEAT")
((KEEP == 0)) || MIRROR_ARGS+=(--keep)
((MIRROR_MODE == 0 || CLEAN)) || exec "$HERE/bench_mirror.sh" "${MIRROR_ARGS[@]}"
# Weekly updates (delta bundles, split volumes): a benchmark of its own.
((WEEKLY_MODE || ${#WEEKLY_ARGS[@]} == 0)) || { echo "bench: --pct and --split-size need --weekly" >&2; exit 2; }
((KEEP == 0)) || WEEKLY_ARGS+=(--keep)
((WEEKLY_MODE == 0 || CLEAN)) ||
    exec "$HERE/bench_weekly.sh" --size-mb "$SIZE_MB" --repeat "$REPEAT" "${WEEKLY_ARGS[@]}"
[[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] || { echo "bench: --size-mb needs a positive integer" >&2; exit 2; }
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || { echo "bench: --repeat needs a positive integer" >&2; exit 2; }

if ((CLEAN)); then
    [[ -d $WORK ]] || exit 0
    exec 9>"$WORK/.lock"
    flock -n 9 || die "another bench run is using $WORK"
    find "$WORK" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
    rm -f "$WORK/.lock"
    rmdir "$WORK" 2>/dev/null || true
    say "removed $WORK"
    exit 0
fi

need() {
    local missing=() t
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (Debian packages: docker-registry skopeo curl openssl python3 jq time zstd tar findutils util-linux coreutils; to build ferry: cmake make gcc pkg-config libcurl4-openssl-dev libarchive-dev libjansson-dev libssl-dev libzstd-dev)"
}
need "$REGISTRY_BIN" skopeo curl openssl "$PYTHON" jq "$TIME_BIN" xargs flock setsid sha256sum awk zstd tar

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
exec 9>"$WORK/.lock"
flock -n 9 || die "another bench run is using $WORK"

CORPUS=$WORK/corpus-${SIZE_MB}mb
REGDIR=$WORK/registry-${SIZE_MB}mb
RUN=$WORK/run
LOGS=$WORK/logs
REG_PID=
TGT_PID=
SAMPLER_PID=

# Disk: corpus + registry storage + the zstd bundle + during the imports one
# target registry and one extraction of the bundle (skopeo's or raw's) at a
# time; with --keep, also every output (2 bundles, skopeo's archives at 1.6
# times the corpus, raw's blobs, 3 target registries and raw's extraction).
need_mb=$((SIZE_MB * 5 + 200))
((KEEP == 0)) || need_mb=$((SIZE_MB * 11 + 200))
[[ -d $CORPUS ]] || need_mb=$((need_mb + SIZE_MB))
avail_mb=$(($(df -Pk "$WORK" | awk 'NR == 2 {print $4}') / 1024))
((avail_mb >= need_mb)) || die "about ${need_mb} MiB of free disk needed under $WORK, ${avail_mb} MiB free"

# ------------------------------------------------------------------ cleanup

# stop_server PID WHAT: SIGTERM, SIGKILL after 10 s, reap.
stop_server() {
    local pid=$1 i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$2 (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

stop_registry() {
    [[ -n $REG_PID ]] || return 0
    stop_server "$REG_PID" registry
    REG_PID=
}

# The import target registry (see start_target).
stop_target() {
    [[ -n $TGT_PID ]] || return 0
    stop_server "$TGT_PID" "target registry"
    TGT_PID=
}

# The disk sampler (see start_sampler).
stop_sampler() {
    [[ -n $SAMPLER_PID ]] || return 0
    kill -TERM "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_sampler
    stop_target
    stop_registry
    if ((KEEP)); then
        say "kept: registry storage $REGDIR/storage, outputs $RUN, logs $LOGS"
    else
        rm -rf "$RUN" "$REGDIR"
    fi
    rm -rf "$CORPUS.partial"
    exit "$rc"
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT
trap 'say terminated; exit 143' TERM

rm -rf "$RUN" "$LOGS"
mkdir -p "$RUN/tmp" "$LOGS"

# ------------------------------------------------------------------ helpers

# measure NAME CMD...: runs CMD under /usr/bin/time, output to $LOGS/NAME.log;
# sets SECS[NAME] (wall), KIB[NAME] (peak RSS), CPU[NAME] (user+sys),
# OBLK[NAME] (file system outputs, 512-byte blocks: bytes written to files
# by the whole process tree, whatever became of the files), RC[NAME].
declare -A SECS=() KIB=() CPU=() OBLK=() RC=() OUTB=() INB=() NOTE=() WHY=()
measure() {
    local name=$1 rc=0 line
    shift
    sync # the previous run's dirty pages are not this run's work
    "$TIME_BIN" -f '%e %M %U %S %O' -o "$LOGS/$name.time" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
    line=$(tail -n 1 "$LOGS/$name.time" 2>/dev/null || true)
    if [[ $line =~ ^([0-9.]+)\ ([0-9]+)\ ([0-9.]+)\ ([0-9.]+)\ ([0-9]+)$ ]]; then
        SECS[$name]=${BASH_REMATCH[1]}
        KIB[$name]=${BASH_REMATCH[2]}
        CPU[$name]=$(awk -v u="${BASH_REMATCH[3]}" -v s="${BASH_REMATCH[4]}" 'BEGIN {printf "%.2f", u + s}')
        OBLK[$name]=${BASH_REMATCH[5]}
    else
        SECS[$name]=
        KIB[$name]=
        CPU[$name]=
        OBLK[$name]=
    fi
    RC[$name]=$rc
    return "$rc"
}

log_tail() {
    echo "---- last lines of $1 ----" >&2
    tail -n "${2:-15}" "$1" >&2 || true
    echo "----" >&2
}

# skopeo, isolated from the host's containers configuration and credentials.
mkdir -p "$WORK/skopeo"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$WORK/skopeo/policy.json"
: >"$WORK/skopeo/registries.conf"
echo '{"auths":{}}' >"$WORK/skopeo/auth.json"
export CONTAINERS_REGISTRIES_CONF=$WORK/skopeo/registries.conf
export REGISTRY_AUTH_FILE=$WORK/skopeo/auth.json
export TMPDIR=$RUN/tmp
SKOPEO_POLICY=$WORK/skopeo/policy.json

# ------------------------------------------------------------------ ferry

FERRY_BIN=
if [[ -n ${FERRY:-} ]]; then
    FERRY_BIN=$(command -v "$FERRY" 2>/dev/null || true)
    [[ -n $FERRY_BIN && -x $FERRY_BIN ]] || die "FERRY=$FERRY is not an executable"
    say "ferry: $FERRY_BIN (from FERRY)"
else
    say "building ferry (Release) in $ROOT/build-bench"
    t0=$SECONDS
    if cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release >"$WORK/build.log" 2>&1 &&
        make -C "$ROOT/build-bench" -j"$(nproc)" ferry >>"$WORK/build.log" 2>&1 &&
        [[ -x $ROOT/build-bench/cli/ferry ]]; then
        FERRY_BIN=$ROOT/build-bench/cli/ferry
        say "built $FERRY_BIN in $((SECONDS - t0))s"
    else
        log_tail "$WORK/build.log"
        say "ferry build failed (log: $WORK/build.log); ferry export will not be measured"
    fi
fi

# ------------------------------------------------------------------ corpus

GEN_SECS=
stamp=$(sha256sum "$HERE/gen_corpus.py" | cut -d' ' -f1)
if [[ ! -f $CORPUS/corpus.json || $(cat "$CORPUS.stamp" 2>/dev/null) != "$stamp" ]]; then
    say "generating the ${SIZE_MB} MB corpus in $CORPUS"
    rm -f "$CORPUS.stamp"
    t0=$(date +%s.%N)
    "$PYTHON" "$HERE/gen_corpus.py" "$CORPUS" --size-mb "$SIZE_MB" --force -q ||
        die "gen_corpus.py failed"
    GEN_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    echo "$stamp" >"$CORPUS.stamp"
    say "corpus generated in ${GEN_SECS}s"
else
    say "using the cached corpus $CORPUS"
fi
CORPUS_BYTES=$(jq -r .bytes "$CORPUS/corpus.json")
NBLOBS=$(jq -r .blobs "$CORPUS/corpus.json")
mapfile -t IMAGES <"$CORPUS/images.txt"
NIMAGES=${#IMAGES[@]}

# ------------------------------------------------------------------ registry

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# launch_registry DIR HOST PIDVAR: writes DIR/config.yml (storage in
# DIR/storage, log DIR/registry.log), starts the registry on HOST, stores its
# pid in the variable PIDVAR and waits until it answers; returns 1 (after
# saying why) if it exits or is not ready in time.
launch_registry() {
    local dir=$1 host=$2 pidvar=$3 pid deadline
    mkdir -p "$dir/storage"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $host
  secret: $(openssl rand -hex 16)
EOF
    (
        # REGISTRY_* variables would override the registry's configuration
        # (REGISTRY_AUTH_FILE, set above for skopeo, would even break it).
        while read -r v; do unset "$v"; done < <(compgen -e | grep '^REGISTRY_' || true)
        exec setsid "$REGISTRY_BIN" serve "$dir/config.yml" </dev/null >"$dir/registry.log" 2>&1
    ) &
    pid=$!
    printf -v "$pidvar" '%s' "$pid"
    deadline=$((SECONDS + READY_TIMEOUT))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 3 "http://$host/v2/" || true) == 200 ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log_tail "$dir/registry.log"
            say "the registry on $host exited during startup"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log_tail "$dir/registry.log"
            say "the registry on $host is not ready after ${READY_TIMEOUT}s"
            return 1
        fi
        sleep 0.1
    done
}

PORT=$(free_port)
HOST=127.0.0.1:$PORT
launch_registry "$REGDIR" "$HOST" REG_PID || die "the registry did not start"
say "registry on $HOST (pid $REG_PID), storage $REGDIR/storage"

# Are all tags in the registry with the corpus's manifest digests?
all_pushed() {
    local ref want got
    while IFS=$'\t' read -r ref want; do
        got=$(curl -sf --noproxy '*' -o /dev/null -I -w '%header{docker-content-digest}' \
            -H 'Accept: application/vnd.oci.image.index.v1+json' \
            -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
            "http://$HOST/v2/${ref%:*}/manifests/${ref##*:}" 2>/dev/null) || return 1
        [[ $got == "$want" ]] || return 1
    done < <(jq -r '.manifests[] | [.annotations["org.opencontainers.image.ref.name"], .digest] | @tsv' "$CORPUS/index.json")
}

PUSH_SECS=
if all_pushed; then
    say "the corpus is already in the registry storage; not pushing"
else
    say "pushing $NIMAGES images with skopeo"
    t0=$(date +%s.%N)
    for ref in "${IMAGES[@]}"; do
        skopeo --policy "$SKOPEO_POLICY" copy --all --preserve-digests --dest-tls-verify=false \
            "oci:$CORPUS:$ref" "docker://$HOST/$ref" >>"$LOGS/push.log" 2>&1 ||
            { log_tail "$LOGS/push.log"; die "pushing $ref failed"; }
    done
    PUSH_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    all_pushed || die "the registry does not serve the pushed tags with the corpus's digests"
    say "pushed in ${PUSH_SECS}s"
fi

# Same starting point for every contender: the registry's blobs in the page cache.
find "$REGDIR/storage" -type f -name data -exec cat {} + >/dev/null

FAILED=0
declare -A BEST=() BCPU=() PEAK=() SAMPLES=() DEAD=() DISK=() WROTE=()

# keep NAME: fold this round's result into the best-of-REPEAT figures.
keep_result() {
    local name=$1
    SAMPLES[$name]="${SAMPLES[$name]:-}${SAMPLES[$name]:+ }${SECS[$name]}"
    if [[ -z ${BEST[$name]:-} ]] || awk -v a="${SECS[$name]}" -v b="${BEST[$name]}" 'BEGIN {exit !(a < b)}'; then
        BEST[$name]=${SECS[$name]}
        BCPU[$name]=${CPU[$name]}
    fi
    if [[ -z ${PEAK[$name]:-} ]] || ((KIB[$name] > PEAK[$name])); then
        PEAK[$name]=${KIB[$name]}
    fi
}

# mark_failed NAME [WHY]: no figures for NAME, whatever the other rounds
# gave; WHY (shown instead of the exit status) says why it did not run.
mark_failed() {
    DEAD[$1]=1
    BEST[$1]='' BCPU[$1]='' PEAK[$1]='' SAMPLES[$1]='' DISK[$1]='' WROTE[$1]=''
    [[ -z ${2:-} ]] || WHY[$1]=$2
    FAILED=1
}

# ------------------------------------------------------------------ (a) ferry

printf '%s\n' "${IMAGES[@]/#/$HOST/}" >"$RUN/ferry-images.txt"
KEY=
if [[ -n $FERRY_BIN ]]; then
    if "$FERRY_BIN" keygen -o "$RUN/bench-key" >"$LOGS/keygen.log" 2>&1; then
        KEY=$(grep -l 'PRIVATE KEY' "$RUN"/bench-key* 2>/dev/null | head -n 1 || true)
        [[ -n $KEY ]] || say "ferry keygen wrote no PEM private key under $RUN/bench-key*"
    else
        say "ferry keygen failed: $(tail -n 1 "$LOGS/keygen.log")"
    fi
    if [[ -z $KEY ]]; then
        KEY=$RUN/openssl-p256.key
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KEY" 2>/dev/null
        say "signing with an ECDSA P-256 key made by openssl instead"
    fi
else
    for name in ferry_none ferry_zstd import_ferry; do
        RC[$name]=127
        mark_failed "$name" "no ferry binary"
    done
    say "ferry export failed (no ferry binary); it is not measured"
fi

# The public key for ferry verify: keygen's .pub next to the private key,
# else derived from the private key with openssl.
PUB=
VERIFY_OK=0
if [[ -n $FERRY_BIN ]]; then
    PUB=$(grep -l 'PUBLIC KEY' "${KEY%.*}".pub "$RUN"/bench-key* 2>/dev/null | head -n 1 || true)
    if [[ -z $PUB ]]; then
        PUB=$RUN/bench-verify.pub
        openssl pkey -in "$KEY" -pubout -out "$PUB" 2>/dev/null || PUB=
    fi
    # Is there a verify command? (It is being written: until then the verify
    # rows say failed and everything else is still measured.)
    rc=0
    "$FERRY_BIN" verify --help >"$LOGS/verify-help.log" 2>&1 || rc=$?
    if ((rc == 0)); then
        VERIFY_OK=1
    else
        say "ferry verify is not available (verify --help: exit $rc, $(head -n 1 "$LOGS/verify-help.log")); it is not measured"
        for name in verify_none verify_zstd; do
            RC[$name]=$rc
            mark_failed "$name" "no verify command"
        done
    fi
    if ((VERIFY_OK)) && [[ -z $PUB ]]; then
        say "no public key for ferry verify; it is not measured"
        VERIFY_OK=0
        for name in verify_none verify_zstd; do mark_failed "$name" "no public key"; done
    fi
else
    for name in verify_none verify_zstd; do
        RC[$name]=127
        mark_failed "$name" "no ferry binary"
    done
fi
if [[ -n $FERRY_BIN ]]; then
    rc=0
    "$FERRY_BIN" import --help >"$LOGS/import-help.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        say "ferry import is not available (import --help: exit $rc, $(head -n 1 "$LOGS/import-help.log")); it is not measured"
        RC[import_ferry]=$rc
        mark_failed import_ferry "no import command"
    elif [[ -z $PUB ]]; then
        say "no public key for ferry import; it is not measured"
        mark_failed import_ferry "no public key"
    fi
fi

# BUNDLE[none|zstd]: the bundle this round's export wrote, kept (unless
# --keep, only) until bench_verify (and, for zstd, the imports) have timed
# it; drop_bundle deletes it.
declare -A BUNDLE=()

drop_bundle() {
    [[ -z ${BUNDLE[$1]:-} ]] || ((KEEP)) || rm -f "${BUNDLE[$1]}"
    BUNDLE[$1]=
}

bench_ferry() {
    local comp=$1 name=ferry_$1 out cache n
    out=$RUN/ferry-$comp.tar
    [[ $comp == zstd ]] && out=$out.zst
    cache=$RUN/ferry-cache-$comp
    BUNDLE[$comp]=
    rm -rf "$cache" "$out"
    mkdir -p "$cache"
    say "timing ferry export --compress $comp$ROUND_NOTE"
    if measure "$name" "$FERRY_BIN" export -f "$RUN/ferry-images.txt" -o "$out" --key "$KEY" \
        --insecure-registry "$HOST" --compress "$comp" --cache "$cache" --progress none &&
        [[ -s $out ]]; then
        OUTB[$name]=$(stat -c %s "$out")
        # Sanity check (not timed): every blob of the corpus is in the bundle.
        if [[ $comp == none ]]; then
            n=$(tar -tf "$out" 2>/dev/null | grep -cE '^blobs/sha256/[0-9a-f]{64}$' || true)
        else
            n=$(zstd -dcq "$out" 2>/dev/null | tar -tf - 2>/dev/null | grep -cE '^blobs/sha256/[0-9a-f]{64}$' || true)
        fi
        NOTE[$name]="$n/$NBLOBS blobs"
        ((n == NBLOBS)) || say "warning: the ferry --compress $comp bundle has $n blobs, the corpus $NBLOBS"
        keep_result "$name"
        BUNDLE[$comp]=$out
    else
        [[ ${RC[$name]} != 0 ]] || RC[$name]=1
        say "ferry export failed (--compress $comp, exit ${RC[$name]}); continuing"
        log_tail "$LOGS/$name.log" 5
        mark_failed "$name"
        rm -rf "$out"
    fi
    # The bundle stays for bench_verify and the imports; drop_bundle deletes it.
    ((KEEP)) || rm -rf "$cache"
}

# ------------------------------------------------------------------ (a') verify

# bench_verify none|zstd: ferry verify of this round's bundle, and the limit
# over the same bytes: openssl dgst -sha256 BUNDLE.tar, or
# zstd -dc BUNDLE.tar.zst | openssl dgst -sha256.
bench_verify() {
    local comp=$1 vname=verify_$1 lname=limit_$1 out=${BUNDLE[$1]:-} size n
    if [[ -z $out || ! -s $out ]]; then
        # No bundle this round: neither can be measured.
        for n in "$vname" "$lname"; do
            [[ -n ${DEAD[$n]:-} ]] || mark_failed "$n" "no bundle (export failed)"
        done
        return 0
    fi
    size=$(stat -c %s "$out")
    # Same starting point for both: the bundle in the page cache.
    cat "$out" >/dev/null
    if [[ -z ${DEAD[$vname]:-} ]]; then
        say "timing ferry verify of the --compress $comp bundle$ROUND_NOTE"
        if measure "$vname" "$FERRY_BIN" verify "$out" --key "$PUB"; then
            INB[$vname]=$size
            keep_result "$vname"
        else
            say "ferry verify failed (--compress $comp bundle, exit ${RC[$vname]}); continuing"
            log_tail "$LOGS/$vname.log" 5
            mark_failed "$vname"
        fi
    fi
    if [[ -z ${DEAD[$lname]:-} ]]; then
        if [[ $comp == none ]]; then
            say "timing the verify limit: openssl dgst -sha256 of the --compress none bundle$ROUND_NOTE"
            measure "$lname" openssl dgst -sha256 "$out" || true
        else
            say "timing the verify limit: zstd -dc | openssl dgst -sha256 of the --compress zstd bundle$ROUND_NOTE"
            # shellcheck disable=SC2016
            measure "$lname" bash -c 'set -o pipefail; zstd -dcq -- "$1" | openssl dgst -sha256' _ "$out" || true
        fi
        if [[ ${RC[$lname]} == 0 ]] && grep -qE '= [0-9a-f]{64}$' "$LOGS/$lname.log"; then
            INB[$lname]=$size
            keep_result "$lname"
        else
            [[ ${RC[$lname]} != 0 ]] || RC[$lname]=1
            say "the verify limit failed (--compress $comp bundle, exit ${RC[$lname]}); continuing"
            log_tail "$LOGS/$lname.log" 5
            mark_failed "$lname"
        fi
    fi
}

# ------------------------------------------------------------------ (a'') import

# Every timed import gets $RUN/import-NAME/: its own empty target registry
# (registry/, fresh storage, a free port), an empty TMPDIR (tmp/) and what
# else it needs; all deleted after the run's check unless --keep.

# start_target NAME: a fresh $RUN/import-NAME/ with an empty registry in it;
# sets TGT_HOST. Returns 1 if the registry does not start.
TGT_HOST=
start_target() {
    local d=$RUN/import-$1
    rm -rf "$d"
    mkdir -p "$d/tmp"
    TGT_HOST=127.0.0.1:$(free_port)
    launch_registry "$d/registry" "$TGT_HOST" TGT_PID
}

# finish_target NAME: stops the target registry; deletes $RUN/import-NAME
# unless --keep.
finish_target() {
    stop_target
    ((KEEP)) || rm -rf "$RUN/import-$1"
}

# start_sampler FILE DIR...: in the background, every 0.1 s, sums the sizes
# of the files under DIR...; FILE holds the highest sum so far. Not part of
# the measured process tree. stop_sampler ends it.
start_sampler() {
    local out=$1
    shift
    echo 0 >"$out"
    (
        trap - EXIT INT TERM
        set +e +o pipefail
        max=0
        while :; do
            n=$(find "$@" -type f -printf '%s\n' 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}')
            if [[ $n =~ ^[0-9]+$ ]] && ((n > max)); then
                max=$n
                echo "$max" >"$out"
            fi
            sleep 0.1
        done
    ) &
    SAMPLER_PID=$!
}

# check_tags NAME: does every tag of the corpus have, in the target
# registry, the corpus's manifest digest (skopeo inspect --raw | sha256sum)?
# Not timed. Sets CHECK_OK and CHECK_N (tags right, tags); mismatches in
# $LOGS/NAME.check.log.
CHECK_OK=0
CHECK_N=0
check_tags() {
    local name=$1 ref want got ok=0 n=0
    : >"$LOGS/$name.check.log"
    while IFS=$'\t' read -r ref want; do
        n=$((n + 1))
        got=$(skopeo inspect --raw --tls-verify=false "docker://$TGT_HOST/$ref" 2>>"$LOGS/$name.check.log" |
            sha256sum | cut -d' ' -f1) || got=
        if [[ sha256:$got == "$want" ]]; then
            ok=$((ok + 1))
        else
            echo "$TGT_HOST/$ref: want $want, got ${got:+sha256:}${got:-nothing}" >>"$LOGS/$name.check.log"
        fi
    done < <(jq -r '.manifests[] | [.annotations["org.opencontainers.image.ref.name"], .digest] | @tsv' "$CORPUS/index.json")
    CHECK_OK=$ok CHECK_N=$n
    ((n > 0 && ok == n))
}

# finish_import NAME BUNDLE [NOTE]: after a timed import that exited 0: the
# tag check, then the figures (bundle size, peak extra disk from the
# sampler, bytes written from /usr/bin/time) or the failure.
finish_import() {
    local name=$1 b=$2 note=${3:-} d=$RUN/import-${1#import_} disk wrote
    if ! check_tags "$name"; then
        say "$name: only $CHECK_OK of $CHECK_N tags have the source digest in the target (see $LOGS/$name.check.log)"
        log_tail "$LOGS/$name.check.log" 5
        mark_failed "$name" "$CHECK_OK/$CHECK_N tags with the source digest"
        return 0
    fi
    NOTE[$name]="${note:+$note, }$CHECK_OK/$CHECK_N tags ok"
    INB[$name]=$(stat -c %s "$b")
    disk=$(cat "$d/disk.peak" 2>/dev/null || true)
    [[ $disk =~ ^[0-9]+$ ]] || disk=0
    wrote=$((${OBLK[$name]:-0} * 512))
    if [[ -z ${DISK[$name]:-} ]] || ((disk > DISK[$name])); then DISK[$name]=$disk; fi
    if [[ -z ${WROTE[$name]:-} ]] || ((wrote > WROTE[$name])); then WROTE[$name]=$wrote; fi
    keep_result "$name"
}

# The repositories and tags of a bundle, and raw's plan of requests.
#   refs INDEX.json: "REF REPO:TAG" a line for each image (REPO: REF
#     without its registry host, as ferry import names it by default)
#   raw DIR BASEURL UPLOADS CURLCONFIG: from the extracted bundle in DIR:
#     UPLOADS, 3 lines a blob (upload URL, digest, file), each unique
#     non-manifest blob once, to the first repository that needs it, largest
#     first; CURLCONFIG, one curl -K file: a cross-repository mount for
#     every other repository that needs a blob, then every manifest by
#     digest (children before their index), then the tags. Prints the count
#     of requests in CURLCONFIG.
IMPORT_PLAN_PY=$(
    cat <<'PY'
import json, os, sys

def repo_tag(ref):
    name, tag = ref, None
    if "@" in name:
        name = name.split("@", 1)[0]
    else:
        slash, colon = name.rfind("/"), name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1:]
    head, _, rest = name.partition("/")
    if rest and ("." in head or ":" in head or head == "localhost"):
        name = rest
    return name, tag

def images(index):
    for d in index["manifests"]:
        ref = (d.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        if not ref:
            sys.exit("index.json: a descriptor without org.opencontainers.image.ref.name")
        yield ref, d

if sys.argv[1] == "refs":
    with open(sys.argv[2]) as f:
        index = json.load(f)
    for ref, d in images(index):
        repo, tag = repo_tag(ref)
        print(ref, f"{repo}:{tag}" if tag else f"{repo}@{d['digest']}")
    sys.exit(0)

top, base, uploads_out, config_out = sys.argv[2:6]
def path(digest):
    algo, hexd = digest.split(":", 1)
    return os.path.join(top, "blobs", algo, hexd)
def load(digest):
    with open(path(digest), "rb") as f:
        return json.load(f)

first, linked, uploads, mounts = {}, set(), [], []
pushed, manifests, tags = set(), [], []

def blob(repo, digest):
    if (repo, digest) in linked:
        return
    linked.add((repo, digest))
    if digest in first:
        mounts.append((repo, digest, first[digest]))
    else:
        first[digest] = repo
        uploads.append((os.path.getsize(path(digest)), repo, digest))

def manifest(repo, desc):
    digest = desc["digest"]
    if (repo, digest) in pushed:
        return
    doc = load(digest)
    if "manifests" in doc:
        for child in doc["manifests"]:
            manifest(repo, child)
    else:
        blob(repo, doc["config"]["digest"])
        for layer in doc.get("layers") or []:
            blob(repo, layer["digest"])
    pushed.add((repo, digest))
    manifests.append((repo, digest, desc.get("mediaType") or doc.get("mediaType")))

with open(os.path.join(top, "index.json")) as f:
    index = json.load(f)
for ref, d in images(index):
    repo, tag = repo_tag(ref)
    manifest(repo, d)
    if tag:
        tags.append((repo, tag, d["digest"], d.get("mediaType") or load(d["digest"]).get("mediaType")))

def q(v):
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

with open(uploads_out, "w") as f:
    for _, repo, digest in sorted(uploads, key=lambda u: -u[0]):
        f.write(f"{base}/v2/{repo}/blobs/uploads/\n{digest}\n{path(digest)}\n")
sections = []
for repo, digest, src in mounts:
    sections.append([("url", f"{base}/v2/{repo}/blobs/uploads/?mount={digest}&from={src}"),
                     ("request", "POST")])
for repo, ref, digest, mtype in ([(r, d, d, m) for r, d, m in manifests] +
                                 [(r, t, d, m) for r, t, d, m in tags]):
    sections.append([("url", f"{base}/v2/{repo}/manifests/{ref}"), ("request", "PUT"),
                     ("header", f"Content-Type: {mtype}"), ("data-binary", "@" + path(digest))])
with open(config_out, "w") as f:
    f.write("next\n".join(
        "".join(f"{k} = {q(v)}\n" for k, v in sec + [("output", "/dev/null"),
                                                     ("write-out", "%{http_code} %{url_effective}\\n")])
        for sec in sections))
print(len(sections))
PY
)

# raw's one blob upload: POST, then a monolithic PUT to the Location.
cat >"$RUN/raw-push-blob.sh" <<'SH'
# raw-push-blob.sh UPLOADS_URL DIGEST FILE
set -eo pipefail
loc=$(curl -sSf --noproxy '*' -X POST -o /dev/null -w '%header{location}' "$1")
case $loc in /*) loc=${1%%/v2/*}$loc ;; esac
case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
exec curl -sSf --noproxy '*' -X PUT -H 'Content-Type: application/octet-stream' -H 'Expect:' \
    --data-binary "@$3" -o /dev/null "$loc${sep}digest=$2"
SH

# import_failed NAME: a timed import that did not exit 0.
import_failed() {
    [[ ${RC[$1]} != 0 ]] || RC[$1]=1
    say "$1 failed (exit ${RC[$1]}); continuing"
    log_tail "$LOGS/$1.log" 5
    mark_failed "$1"
}

bench_import_ferry() {
    local b=$1 name=import_ferry d=$RUN/import-ferry
    if ! start_target ferry; then
        mark_failed "$name" "target registry did not start"
        finish_target ferry
        return 0
    fi
    mkdir -p "$d/state"
    cat "$b" >/dev/null
    say "timing ferry import of the zstd bundle into an empty registry$ROUND_NOTE"
    start_sampler "$d/disk.peak" "$d/tmp"
    measure "$name" env TMPDIR="$d/tmp" "$FERRY_BIN" import "$b" --key "$PUB" --to "$TGT_HOST" \
        --insecure-registry 127.0.0.1 --state-dir "$d/state" --progress none --report "$d/report.json" || true
    stop_sampler
    if [[ ${RC[$name]} != 0 ]]; then
        import_failed "$name"
    elif [[ $(jq -r .alreadyImported "$d/report.json" 2>/dev/null) != false ]]; then
        say "ferry import did not import (report: alreadyImported $(jq -r .alreadyImported "$d/report.json" 2>/dev/null || echo missing))"
        log_tail "$LOGS/$name.log" 5
        mark_failed "$name" "nothing imported"
    else
        finish_import "$name" "$b" \
            "$(jq -r '.blobs | "\(.pushed) blobs pushed, \(.mounted) mounted"' "$d/report.json" 2>/dev/null || true)"
    fi
    finish_target ferry
}

bench_import_skopeo() {
    local b=$1 name=import_skopeo d=$RUN/import-skopeo
    if ! start_target skopeo; then
        mark_failed "$name" "target registry did not start"
        finish_target skopeo
        return 0
    fi
    # Not timed: the images of the bundle, from its index.json.
    if ! { zstd -dcq "$b" | tar -xOf - index.json >"$d/index.json"; } 2>"$LOGS/$name.prepare.log" ||
        ! "$PYTHON" -c "$IMPORT_PLAN_PY" refs "$d/index.json" >"$d/images.txt" 2>>"$LOGS/$name.prepare.log"; then
        log_tail "$LOGS/$name.prepare.log" 5
        mark_failed "$name" "cannot read the bundle's index.json"
        finish_target skopeo
        return 0
    fi
    cat "$b" >/dev/null
    say "timing skopeo copy of $(wc -l <"$d/images.txt") images from the zstd bundle into an empty registry$ROUND_NOTE"
    start_sampler "$d/disk.peak" "$d/tmp"
    # shellcheck disable=SC2016
    measure "$name" env TMPDIR="$d/tmp" bash -c '
        set -e
        host=$1 bundle=$2 policy=$3 tmp=$4 list=$5
        while read -r ref dest; do
            [[ -n $ref ]] || continue
            skopeo --tmpdir "$tmp" --policy "$policy" copy --all --preserve-digests --dest-tls-verify=false \
                "oci-archive:$bundle:$ref" "docker://$host/$dest"
        done <"$list"' _ "$TGT_HOST" "$b" "$SKOPEO_POLICY" "$d/tmp" "$d/images.txt" || true
    stop_sampler
    if [[ ${RC[$name]} != 0 ]]; then
        import_failed "$name"
    else
        finish_import "$name" "$b"
    fi
    finish_target skopeo
}

bench_import_raw() {
    local b=$1 name=import_raw d=$RUN/import-raw want got
    if ! start_target raw; then
        mark_failed "$name" "target registry did not start"
        finish_target raw
        return 0
    fi
    # Not timed: extract the bundle, plan the requests, read the files once.
    mkdir -p "$d/files"
    if ! { zstd -dcq "$b" | tar -xf - -C "$d/files"; } 2>"$LOGS/$name.prepare.log" ||
        ! want=$("$PYTHON" -c "$IMPORT_PLAN_PY" raw "$d/files" "http://$TGT_HOST" "$d/uploads.txt" \
            "$d/finish.curl" 2>>"$LOGS/$name.prepare.log"); then
        log_tail "$LOGS/$name.prepare.log" 5
        mark_failed "$name" "cannot extract or plan the bundle"
        finish_target raw
        return 0
    fi
    find "$d/files" -type f -exec cat {} + >/dev/null
    say "timing the raw import: curl -P2 of $(($(wc -l <"$d/uploads.txt") / 3)) blobs, then $want mounts, manifests and tags$ROUND_NOTE"
    start_sampler "$d/disk.peak" "$d/tmp" "$d/files"
    # shellcheck disable=SC2016
    measure "$name" env TMPDIR="$d/tmp" bash -c '
        set -eo pipefail
        xargs -d "\n" -n 3 -P 2 bash "$1" <"$2"
        curl -sS --noproxy "*" -K "$3" >"$4"' _ "$RUN/raw-push-blob.sh" "$d/uploads.txt" "$d/finish.curl" \
        "$d/finish.codes" || true
    stop_sampler
    got=$(grep -c '^201 ' "$d/finish.codes" 2>/dev/null || true)
    if [[ ${RC[$name]} != 0 ]]; then
        import_failed "$name"
    elif [[ $got != "$want" ]]; then
        say "raw import: $got of $want mounts, manifests and tags answered 201"
        grep -v '^201 ' "$d/finish.codes" | head -n 5 >&2 || true
        mark_failed "$name" "$got/$want requests answered 201"
    else
        finish_import "$name" "$b"
    fi
    finish_target raw
}

# bench_imports: the three imports of this round's zstd bundle.
bench_imports() {
    local b=${BUNDLE[zstd]:-} n
    if [[ -z $b || ! -s $b ]]; then
        for n in import_ferry import_skopeo import_raw; do
            [[ -n ${DEAD[$n]:-} ]] || mark_failed "$n" "no bundle (export failed)"
        done
        return 0
    fi
    [[ -n ${DEAD[import_ferry]:-} ]] || bench_import_ferry "$b"
    [[ -n ${DEAD[import_skopeo]:-} ]] || bench_import_skopeo "$b"
    [[ -n ${DEAD[import_raw]:-} ]] || bench_import_raw "$b"
}

# ------------------------------------------------------------------ (b) skopeo

bench_skopeo() {
    rm -rf "$RUN/skopeo" "${TMPDIR:?}"/*
    mkdir -p "$RUN/skopeo"
    say "timing skopeo copy of $NIMAGES images to oci-archive$ROUND_NOTE"
    # shellcheck disable=SC2016
    if measure skopeo bash -c '
        set -e
        host=$1 dir=$2 policy=$3 list=$4
        while read -r ref; do
            [[ -n $ref ]] || continue
            name=${ref//[\/:]/_}
            skopeo --policy "$policy" copy --all --preserve-digests --src-tls-verify=false \
                "docker://$host/$ref" "oci-archive:$dir/$name.tar:$ref"
        done <"$list"' _ "$HOST" "$RUN/skopeo" "$SKOPEO_POLICY" "$CORPUS/images.txt"; then
        OUTB[skopeo]=$(du -cb "$RUN"/skopeo/*.tar | tail -n 1 | cut -f1)
        NOTE[skopeo]="$(find "$RUN/skopeo" -name '*.tar' | wc -l) archives"
        keep_result skopeo
    else
        say "skopeo failed (exit ${RC[skopeo]})"
        log_tail "$LOGS/skopeo.log"
        mark_failed skopeo
    fi
    ((KEEP)) || rm -rf "$RUN/skopeo" "${TMPDIR:?}"/*
}

# ------------------------------------------------------------------ (c) raw

# xargs input, one argument a line: OUTFILE -H "Accept: TYPE" URL
while IFS=$'\t' read -r repo kind digest _size mtype; do
    case $kind in
    manifest) url=http://$HOST/v2/$repo/manifests/$digest ;;
    *) url=http://$HOST/v2/$repo/blobs/$digest ;;
    esac
    printf '%s\n-H\nAccept: %s\n%s\n' "$RUN/raw/${digest#sha256:}" "$mtype" "$url"
done <"$CORPUS/blobs.tsv" >"$RUN/raw-args.txt"

bench_raw() {
    local bad got
    rm -rf "$RUN/raw" "$RUN/raw.sums"
    mkdir -p "$RUN/raw"
    say "timing the raw limit: curl -P4 + openssl dgst of $NBLOBS blobs$ROUND_NOTE"
    # shellcheck disable=SC2016
    if measure raw bash -c '
        set -eo pipefail
        xargs -d "\n" -n 4 -P 4 curl -sSf --noproxy "*" -o <"$1"
        openssl dgst -sha256 -r "$2"/* >"$3"' _ "$RUN/raw-args.txt" "$RUN/raw" "$RUN/raw.sums"; then
        # Not timed: every file hashes to its name.
        bad=$(awk '{f = $2; sub(/^\*/, "", f); n = split(f, p, "/"); if (p[n] != $1) print p[n]}' "$RUN/raw.sums" | wc -l)
        got=$(wc -l <"$RUN/raw.sums")
        OUTB[raw]=$(du -cb "$RUN"/raw/* | tail -n 1 | cut -f1)
        NOTE[raw]="$got/$NBLOBS blobs"
        if ((bad > 0 || got != NBLOBS)); then
            say "raw: $bad blobs do not match their digest, $got of $NBLOBS fetched"
            mark_failed raw
        else
            keep_result raw
        fi
    else
        say "the raw fetch failed (exit ${RC[raw]})"
        log_tail "$LOGS/raw.log"
        mark_failed raw
    fi
    ((KEEP)) || rm -rf "$RUN/raw"
}

# ------------------------------------------------------------------ rounds

ROUND_NOTE=
for ((round = 1; round <= REPEAT; round++)); do
    ((REPEAT == 1)) || ROUND_NOTE=" (round $round of $REPEAT)"
    # Each bundle is verified right after its export, the zstd one then
    # imported, then deleted (unless --keep): never more than one bundle and
    # one cache on disk.
    [[ -n ${DEAD[ferry_none]:-} ]] || bench_ferry none
    bench_verify none
    drop_bundle none
    [[ -n ${DEAD[ferry_zstd]:-} ]] || bench_ferry zstd
    bench_verify zstd
    bench_imports
    drop_bundle zstd
    [[ -n ${DEAD[skopeo]:-} ]] || bench_skopeo
    [[ -n ${DEAD[raw]:-} ]] || bench_raw
done

stop_registry

# ------------------------------------------------------------------ report

# num EXPR: awk arithmetic, or empty when an operand is missing.
ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b}'; }
mibs() { [[ -n $1 ]] && awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
mbps() { [[ -n $1 ]] && awk -v n="$CORPUS_BYTES" -v s="$1" 'BEGIN {if (s > 0) printf "%.1f", n / 1e6 / s}'; }
mb() { [[ -n $1 ]] && awk -v n="$1" 'BEGIN {printf "%.1f MB", n / 1e6}'; }
verdict() { # VALUE GOAL: ok / MISSED / n/a (value must be <= goal)
    if [[ -z $1 ]]; then echo "n/a"; else awk -v v="$1" -v g="$2" 'BEGIN {print (v <= g) ? "ok" : "MISSED"}'; fi
}

R_SKOPEO=$(ratio "${BEST[ferry_none]:-}" "${BEST[skopeo]:-}" || true)
R_RAW=$(ratio "${BEST[ferry_none]:-}" "${BEST[raw]:-}" || true)
R_ZSTD=$(ratio "${BEST[ferry_zstd]:-}" "${BEST[ferry_none]:-}" || true)
R_VNONE=$(ratio "${BEST[verify_none]:-}" "${BEST[limit_none]:-}" || true)
R_VZSTD=$(ratio "${BEST[verify_zstd]:-}" "${BEST[limit_zstd]:-}" || true)
R_ISKOPEO=$(ratio "${BEST[import_ferry]:-}" "${BEST[import_skopeo]:-}" || true)
R_IRAW=$(ratio "${BEST[import_ferry]:-}" "${BEST[import_raw]:-}" || true)
# max_peak NAME...: the highest peak MiB of these runs, empty if none ran.
max_peak() {
    local n v m=
    for n in "$@"; do
        [[ -n ${PEAK[$n]:-} ]] || continue
        v=$(mibs "${PEAK[$n]}")
        if [[ -z $m ]] || awk -v a="$v" -v b="$m" 'BEGIN {exit !(a > b)}'; then m=$v; fi
    done
    echo "$m"
}
FERRY_PEAK=$(max_peak ferry_none ferry_zstd)
VERIFY_PEAK=$(max_peak verify_none verify_zstd)
IMPORT_PEAK=$(max_peak import_ferry)
IMPORT_DISK=${DISK[import_ferry]:-}

echo
printf 'ferry bench: %d images, %d unique blobs, %s bytes (%.1f MB), registry %s, %s CPUs\n' \
    "$NIMAGES" "$NBLOBS" "$CORPUS_BYTES" "$(awk -v n="$CORPUS_BYTES" 'BEGIN {print n / 1e6}')" \
    "$HOST" "$(nproc)"
[[ -z $GEN_SECS ]] || printf 'corpus generated in %ss\n' "$GEN_SECS"
[[ -z $PUSH_SECS ]] || printf 'corpus pushed in %ss\n' "$PUSH_SECS"
((REPEAT == 1)) || printf 'each run %d times: fastest time, highest peak memory\n' "$REPEAT"
printf '\n%-30s %9s %7s %10s %8s   %s\n' "run" "seconds" "CPU s" "peak MiB" "MB/s" "output"
row() {
    local name=$1 label=$2 s what
    s=${BEST[$name]:-}
    if [[ -z $s ]]; then
        what="exit ${RC[$name]:-?}"
        [[ -z ${WHY[$name]:-} ]] || what="${WHY[$name]}${RC[$name]:+ (exit ${RC[$name]})}"
        printf '%-30s %9s %7s %10s %8s   %s\n' "$label" "failed" "-" "-" "-" "$what"
    else
        if [[ -n ${INB[$name]:-} ]]; then
            what="reads $(mb "${INB[$name]}")"
        else
            what=$(mb "${OUTB[$name]:-}" || true)
        fi
        [[ -z ${DISK[$name]:-} ]] || what+=", extra disk $(mb "${DISK[$name]}")"
        [[ -z ${WROTE[$name]:-} ]] || what+=", wrote $(mb "${WROTE[$name]}")"
        printf '%-30s %9.2f %7s %10s %8s   %s\n' "$label" "$s" "${BCPU[$name]:-}" "$(mibs "${PEAK[$name]}")" \
            "$(mbps "$s")" "$what${NOTE[$name]:+, ${NOTE[$name]}}"
    fi
}
row ferry_none "ferry export --compress none"
row ferry_zstd "ferry export --compress zstd"
row skopeo "skopeo ($NIMAGES oci-archives)"
row raw "raw (curl -P4 + openssl)"
row verify_none "ferry verify (none bundle)"
row limit_none "openssl dgst (none bundle)"
row verify_zstd "ferry verify (zstd bundle)"
row limit_zstd "zstd -dc | openssl (zstd)"
row import_ferry "ferry import (zstd bundle)"
row import_skopeo "skopeo import ($NIMAGES copies)"
row import_raw "raw import (curl -P2)"
printf '\n%-30s %9s %10s   %s\n' "ratio (time)" "value" "goal" "verdict"
printf '%-30s %9s %10s   %s\n' "ferry(none)/skopeo" "${R_SKOPEO:-n/a}" "<= $GOAL_SKOPEO" "$(verdict "$R_SKOPEO" "$GOAL_SKOPEO")"
printf '%-30s %9s %10s   %s\n' "ferry(none)/raw" "${R_RAW:-n/a}" "<= $GOAL_RAW" "$(verdict "$R_RAW" "$GOAL_RAW")"
printf '%-30s %9s %10s   %s\n' "ferry(zstd)/ferry(none)" "${R_ZSTD:-n/a}" "<= $GOAL_ZSTD" "$(verdict "$R_ZSTD" "$GOAL_ZSTD")"
if [[ -z $FERRY_PEAK ]]; then
    v=n/a
else
    v=$(awk -v v="$FERRY_PEAK" -v g="$GOAL_MIB" 'BEGIN {print (v < g) ? "ok" : "MISSED"}')
fi
printf '%-30s %9s %10s   %s\n' "ferry peak MiB" "${FERRY_PEAK:-n/a}" "< $GOAL_MIB" "$v"
printf '%-30s %9s %10s   %s\n' "verify(none)/openssl" "${R_VNONE:-n/a}" "<= $GOAL_VERIFY" "$(verdict "$R_VNONE" "$GOAL_VERIFY")"
printf '%-30s %9s %10s   %s\n' "verify(zstd)/(zstd|openssl)" "${R_VZSTD:-n/a}" "<= $GOAL_VERIFY" "$(verdict "$R_VZSTD" "$GOAL_VERIFY")"
if [[ -z $VERIFY_PEAK ]]; then
    v=n/a
else
    v=$(awk -v v="$VERIFY_PEAK" -v g="$GOAL_VERIFY_MIB" 'BEGIN {print (v < g) ? "ok" : "MISSED"}')
fi
printf '%-30s %9s %10s   %s\n' "ferry verify peak MiB" "${VERIFY_PEAK:-n/a}" "< $GOAL_VERIFY_MIB" "$v"
printf '%-30s %9s %10s   %s\n' "import ferry/skopeo" "${R_ISKOPEO:-n/a}" "<= $GOAL_IMPORT_SKOPEO" \
    "$(verdict "$R_ISKOPEO" "$GOAL_IMPORT_SKOPEO")"
printf '%-30s %9s %10s   %s\n' "import ferry/raw" "${R_IRAW:-n/a}" "<= $GOAL_IMPORT_RAW" "$(verdict "$R_IRAW" "$GOAL_IMPORT_RAW")"
if [[ -z $IMPORT_PEAK ]]; then
    v=n/a
else
    v=$(awk -v v="$IMPORT_PEAK" -v g="$GOAL_IMPORT_MIB" 'BEGIN {print (v < g) ? "ok" : "MISSED"}')
fi
printf '%-30s %9s %10s   %s\n' "ferry import peak MiB" "${IMPORT_PEAK:-n/a}" "< $GOAL_IMPORT_MIB" "$v"
printf '%-30s %9s %10s   %s\n' "ferry import extra disk bytes" "${IMPORT_DISK:-n/a}" "= $GOAL_IMPORT_DISK" \
    "$(verdict "$IMPORT_DISK" "$GOAL_IMPORT_DISK")"

jrun() { # NAME -> JSON object
    local name=$1
    jq -cn --arg s "${BEST[$name]:-}" --arg k "${PEAK[$name]:-}" --arg cpu "${BCPU[$name]:-}" --arg o "${OUTB[$name]:-}" \
        --arg i "${INB[$name]:-}" --arg why "${WHY[$name]:-}" \
        --arg disk "${DISK[$name]:-}" --arg wrote "${WROTE[$name]:-}" \
        --arg rc "${RC[$name]:-}" --arg mbps "$(mbps "${BEST[$name]:-}" || true)" \
        --arg samples "${SAMPLES[$name]:-}" '
        def num: if . == "" then null else tonumber end;
        {ok: ($s != ""), exit: ($rc | num), seconds: ($s | num), cpu_seconds: ($cpu | num),
         peak_mib: (if $k == "" then null else (($k | tonumber) / 1024 * 10 | round / 10) end),
         mb_per_s: ($mbps | num), output_bytes: ($o | num)}
        + (if $i == "" then {} else {input_bytes: ($i | num)} end)
        + (if $disk == "" then {} else {extra_disk_bytes: ($disk | num), written_bytes: ($wrote | num)} end)
        + (if $why == "" then {} else {error: $why} end)
        + {samples: ($samples | split(" ") | map(select(. != "") | tonumber))}'
}
echo
echo "BENCH $(jq -cn --argjson bytes "$CORPUS_BYTES" --argjson images "$NIMAGES" \
    --argjson blobs "$NBLOBS" --argjson size_mb "$SIZE_MB" --argjson cpus "$(nproc)" --argjson repeat "$REPEAT" \
    --arg gen "${GEN_SECS:-}" --arg push "${PUSH_SECS:-}" \
    --argjson fn "$(jrun ferry_none)" --argjson fz "$(jrun ferry_zstd)" \
    --argjson sk "$(jrun skopeo)" --argjson raw "$(jrun raw)" \
    --argjson vn "$(jrun verify_none)" --argjson vz "$(jrun verify_zstd)" \
    --argjson ln "$(jrun limit_none)" --argjson lz "$(jrun limit_zstd)" \
    --argjson ifr "$(jrun import_ferry)" --argjson isk "$(jrun import_skopeo)" --argjson iraw "$(jrun import_raw)" \
    --arg ris "${R_ISKOPEO:-}" --arg rir "${R_IRAW:-}" --arg ip "${IMPORT_PEAK:-}" --arg idisk "${IMPORT_DISK:-}" \
    --argjson g_iskopeo "$GOAL_IMPORT_SKOPEO" --argjson g_iraw "$GOAL_IMPORT_RAW" \
    --argjson g_imib "$GOAL_IMPORT_MIB" --argjson g_idisk "$GOAL_IMPORT_DISK" \
    --arg rs "${R_SKOPEO:-}" --arg rr "${R_RAW:-}" --arg rz "${R_ZSTD:-}" --arg fp "${FERRY_PEAK:-}" \
    --arg rvn "${R_VNONE:-}" --arg rvz "${R_VZSTD:-}" --arg vp "${VERIFY_PEAK:-}" \
    --argjson g_skopeo "$GOAL_SKOPEO" --argjson g_raw "$GOAL_RAW" --argjson g_zstd "$GOAL_ZSTD" \
    --argjson g_mib "$GOAL_MIB" --argjson g_verify "$GOAL_VERIFY" --argjson g_vmib "$GOAL_VERIFY_MIB" '
    def num: if . == "" then null else tonumber end;
    {corpus: {size_mb: $size_mb, bytes: $bytes, images: $images, blobs: $blobs,
              generate_seconds: ($gen | num), push_seconds: ($push | num)},
     cpus: $cpus, repeat: $repeat,
     ferry_none: $fn, ferry_zstd: $fz, skopeo: $sk, raw: $raw,
     verify_none: $vn, verify_zstd: $vz, openssl_none: $ln, zstd_openssl: $lz,
     import_ferry: $ifr, import_skopeo: $isk, import_raw: $iraw,
     ratios: {ferry_none_over_skopeo: ($rs | num), ferry_none_over_raw: ($rr | num),
              ferry_zstd_over_ferry_none: ($rz | num),
              verify_none_over_openssl: ($rvn | num), verify_zstd_over_zstd_openssl: ($rvz | num),
              import_ferry_over_skopeo: ($ris | num), import_ferry_over_raw: ($rir | num)},
     ferry_peak_mib: ($fp | num), verify_peak_mib: ($vp | num),
     import_peak_mib: ($ip | num), import_extra_disk_bytes: ($idisk | num),
     goals: {ferry_none_over_skopeo: $g_skopeo, ferry_none_over_raw: $g_raw,
             ferry_zstd_over_ferry_none: $g_zstd, ferry_peak_mib: $g_mib,
             verify_none_over_openssl: $g_verify, verify_zstd_over_zstd_openssl: $g_verify,
             verify_peak_mib: $g_vmib,
             import_ferry_over_skopeo: $g_iskopeo, import_ferry_over_raw: $g_iraw,
             import_peak_mib: $g_imib, import_extra_disk_bytes: $g_idisk}}')"

exit "$FAILED"
