#!/usr/bin/env bash
# ferry benchmark, weekly updates: a delta export against a full one, and
# reading split volumes against reading the one file.
# Run through bench/bench.sh --weekly (see bench/README.md).
#
#   bench/bench_weekly.sh [--size-mb N] [--repeat N] [--pct P] [--split-size S] [--keep]
#
#   --size-mb N     the corpus of bench/gen_corpus.py (default 1000)
#   --repeat N      every measurement N times, the fastest kept (default 1)
#   --pct P         new bytes of the week, percent of the new state (default 5)
#   --split-size S  the volume size for the split bundles (default 256M)
#   --keep          keep bench/.work/weekly (registry storage, bundles, logs)
#
# Pushes the corpus (skopeo) into a fresh plain-HTTP docker-registry, exports
# it once (bundle A, not timed), pushes new top layers to a few tags
# (bench/weekly_change.py), then times, with empty caches, a full export of
# the new state against a delta over A (--compress none and zstd), and
# ferry verify of the new state's bundle split into S parts (BUNDLE.parts)
# against ferry verify of the same bytes as one file (none and zstd).
# Environment as bench.sh: FERRY, PYTHON, FERRY_REGISTRY_BIN,
# FERRY_BENCH_WORK. Prints a table and one line BENCH_WEEKLY {json}.
# Exit status: 0 when every measurement ran, 1 when one failed, 2 usage.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
WORK=${FERRY_BENCH_WORK:-$HERE/.work}
PYTHON=${PYTHON:-python3}
REGISTRY_BIN=${FERRY_REGISTRY_BIN:-docker-registry}
TIME_BIN=/usr/bin/time
SIZE_MB=1000 REPEAT=1 PCT=5 SPLIT=256M KEEP=0
GOAL_DELTA=0.15
GOAL_PARTS=1.05

say() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }
usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
    case $1 in
    --size-mb) (($# >= 2)) || usage; SIZE_MB=$2; shift 2 ;;
    --size-mb=*) SIZE_MB=${1#*=}; shift ;;
    --repeat) (($# >= 2)) || usage; REPEAT=$2; shift 2 ;;
    --repeat=*) REPEAT=${1#*=}; shift ;;
    --pct) (($# >= 2)) || usage; PCT=$2; shift 2 ;;
    --pct=*) PCT=${1#*=}; shift ;;
    --split-size) (($# >= 2)) || usage; SPLIT=$2; shift 2 ;;
    --split-size=*) SPLIT=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage ;;
    *) echo "bench: unknown argument '$1'" >&2; usage ;;
    esac
done
[[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] || { echo "bench: --size-mb needs a positive integer" >&2; exit 2; }
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || { echo "bench: --repeat needs a positive integer" >&2; exit 2; }
[[ $PCT =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "bench: --pct needs a number" >&2; exit 2; }
[[ $SPLIT =~ ^[1-9][0-9]*[KMG]?$ ]] || { echo "bench: --split-size needs a size (bytes, or with K/M/G)" >&2; exit 2; }

need() {
    local missing=() t
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (Debian packages: docker-registry skopeo curl python3 jq time tar zstd util-linux coreutils)"
}
need "$REGISTRY_BIN" skopeo curl "$PYTHON" jq "$TIME_BIN" flock setsid awk tar zstd

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
exec 9>"$WORK/.lock"
flock -n 9 || die "another bench run is using $WORK"
CORPUS=$WORK/corpus-${SIZE_MB}mb
RUN=$WORK/weekly
LOGS=$RUN/logs
PIDS=()

# Disk: corpus, registry storage (corpus + the change), bundle A, and at a
# time one full bundle, its split copy and their join, plus one cache.
need_mb=$((SIZE_MB * 6 + 500))
[[ -d $CORPUS ]] || need_mb=$((need_mb + SIZE_MB))
avail_mb=$(($(df -Pk "$WORK" | awk 'NR == 2 {print $4}') / 1024))
((avail_mb >= need_mb)) || die "about ${need_mb} MiB of free disk needed under $WORK, ${avail_mb} MiB free"

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
mkdir -p "$LOGS" "$RUN/tmp"

# skopeo, isolated from the host's containers configuration and credentials.
mkdir -p "$RUN/skopeo"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$RUN/skopeo/policy.json"
: >"$RUN/skopeo/registries.conf"
echo '{"auths":{}}' >"$RUN/skopeo/auth.json"
export CONTAINERS_REGISTRIES_CONF=$RUN/skopeo/registries.conf
export REGISTRY_AUTH_FILE=$RUN/skopeo/auth.json
export TMPDIR=$RUN/tmp

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

# ------------------------------------------------------------------ corpus

# The corpus of the main benchmark, shared with it (same stamp rule).
stamp=$(sha256sum "$HERE/gen_corpus.py" | cut -d' ' -f1)
if [[ ! -f $CORPUS/corpus.json || $(cat "$CORPUS.stamp" 2>/dev/null) != "$stamp" ]]; then
    say "generating the ${SIZE_MB} MB corpus in $CORPUS"
    rm -f "$CORPUS.stamp"
    "$PYTHON" "$HERE/gen_corpus.py" "$CORPUS" --size-mb "$SIZE_MB" --force -q || die "gen_corpus.py failed"
    echo "$stamp" >"$CORPUS.stamp"
else
    say "using the cached corpus $CORPUS"
fi
mapfile -t IMAGES <"$CORPUS/images.txt"

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_registry DIR: a plain-HTTP registry with storage in DIR on a free
# port, access log off; sets SRC once it answers.
SRC=
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
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $host
EOF
    (
        # REGISTRY_* variables would override the registry's configuration
        # (REGISTRY_AUTH_FILE, set above for skopeo, would even break it).
        while read -r v; do unset "$v"; done < <(compgen -e | grep '^REGISTRY_' || true)
        exec setsid "$REGISTRY_BIN" serve "$dir/config.yml" </dev/null >"$dir/registry.log" 2>&1
    ) &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 300); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' "http://$host/v2/" || true) == 200 ]]; then
            SRC=$host
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    die "the registry in $dir did not start (log: $dir/registry.log)"
}

# ------------------------------------------------------------------ helpers

# measure NAME CMD...: CMD under /usr/bin/time, output in $LOGS/NAME.log;
# folds the round into BEST[NAME] (fastest wall seconds), BCPU[NAME] (its
# user + system CPU seconds), PEAK[NAME] (highest peak RSS, KiB) and
# SAMPLES[NAME]; a failed round marks NAME failed.
declare -A BEST=() BCPU=() PEAK=() SAMPLES=() DEAD=() INB=()
FAILED=0
measure() {
    local name=$1 rc=0 line s k u y
    shift
    sync # the previous run's dirty pages are not this run's work
    "$TIME_BIN" -f '%e %M %U %S' -o "$LOGS/$name.time" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
    line=$(tail -n 1 "$LOGS/$name.time" 2>/dev/null || true)
    if ((rc != 0)) || ! [[ $line =~ ^([0-9.]+)\ ([0-9]+)\ ([0-9.]+)\ ([0-9.]+)$ ]]; then
        DEAD[$name]="exit $rc"
        FAILED=1
        say "$name failed (exit $rc): $(tail -n 3 "$LOGS/$name.log" | tr '\n' ' ')"
        return 0
    fi
    s=${BASH_REMATCH[1]} k=${BASH_REMATCH[2]} u=${BASH_REMATCH[3]} y=${BASH_REMATCH[4]}
    SAMPLES[$name]="${SAMPLES[$name]:-}${SAMPLES[$name]:+ }$s"
    if [[ -z ${BEST[$name]:-} ]] || awk -v a="$s" -v b="${BEST[$name]}" 'BEGIN {exit !(a < b)}'; then
        BEST[$name]=$s
        BCPU[$name]=$(awk -v u="$u" -v y="$y" 'BEGIN {printf "%.2f", u + y}')
    fi
    if [[ -z ${PEAK[$name]:-} ]] || ((k > PEAK[$name])); then PEAK[$name]=$k; fi
    return 0
}
best() { [[ -z ${DEAD[$1]:-} ]] && echo "${BEST[$1]:-}"; }
ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.3f", a / b}'; }
mib() { [[ -n $1 ]] && awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
mb() { [[ -n $1 ]] && awk -v n="$1" 'BEGIN {printf "%.1f MB", n / 1e6}'; }
verdict() { if [[ -z $1 ]]; then echo n/a; else awk -v v="$1" -v g="$2" 'BEGIN {print (v <= g) ? "ok" : "MISSED"}'; fi; }
num() { [[ -n $1 ]] && echo "$1" || echo null; }
ext() { [[ $1 == zstd ]] && echo tar.zst || echo tar; }

# export_cmd OUT COMP CACHE [ARGS...]: sets EXP to the ferry export of the
# corpus's tags into OUT
EXP=()
export_cmd() {
    local out=$1 comp=$2 cache=$3
    shift 3
    EXP=("$FERRY_BIN" export -f "$RUN/images.txt" -o "$out" --key "$RUN/k.key" --insecure-registry "$SRC"
        --compress "$comp" --cache "$cache" --progress none "$@")
}

# ------------------------------------------------------------------ source

start_registry "$RUN/registry"
say "registry on $SRC; pushing ${#IMAGES[@]} images with skopeo"
t0=$SECONDS
for ref in "${IMAGES[@]}"; do
    skopeo --policy "$RUN/skopeo/policy.json" copy --all --preserve-digests --dest-tls-verify=false \
        "oci:$CORPUS:$ref" "docker://$SRC/$ref" >>"$LOGS/push.log" 2>&1 ||
        die "pushing $ref failed: $(tail -n 3 "$LOGS/push.log" | tr '\n' ' ')"
done
say "pushed in $((SECONDS - t0))s"
sed "s|^|$SRC/|" "$CORPUS/images.txt" >"$RUN/images.txt"

# Last week: bundle A of the corpus as it is (not timed).
say "exporting last week's bundle A (not timed)"
export_cmd "$RUN/A.tar" none "$RUN/cache-A"
"${EXP[@]}" >"$LOGS/export-A.log" 2>&1 ||
    die "exporting A failed: $(tail -n 3 "$LOGS/export-A.log" | tr '\n' ' ')"
rm -rf "$RUN/cache-A"

# This week: new top layers on a few tags.
"$PYTHON" "$HERE/weekly_change.py" "$SRC" "$CORPUS" "$RUN/change" --pct "$PCT" >"$LOGS/change.log" 2>&1 ||
    die "weekly_change.py failed: $(tail -n 3 "$LOGS/change.log" | tr '\n' ' ')"
CHANGE=$(cat "$RUN/change/change.json")
say "changed $(jq -r '.tags | join(", ")' <<<"$CHANGE"): $(jq -r .new_bytes <<<"$CHANGE") new bytes," \
    "$(jq -r '.new_fraction * 10000 | round / 100' <<<"$CHANGE")% of $(jq -r .new_total_bytes <<<"$CHANGE")"
# Same starting point for every run: the registry's blobs in the page cache.
find "$RUN/registry/storage" -type f -name data -exec cat {} + >/dev/null

# ------------------------------------------------------------------ delta

# Full export of the new state against a delta over A, both with an empty
# cache, none then zstd, REPEAT rounds. The last full bundle of each
# compression is kept, with its cache, for the split runs.
declare -A FULLB=() DELTAB=()
bench_delta() {
    local r comp e
    for ((r = 1; r <= REPEAT; r++)); do
        for comp in none zstd; do
            e=$(ext "$comp")
            rm -rf "$RUN/full.$e" "$RUN/delta.$e" "$RUN/cache-$comp" "$RUN/cache-delta"
            say "round $r/$REPEAT: full export ($comp)"
            export_cmd "$RUN/full.$e" "$comp" "$RUN/cache-$comp"
            measure "full_$comp" "${EXP[@]}"
            say "round $r/$REPEAT: delta export over A ($comp)"
            export_cmd "$RUN/delta.$e" "$comp" "$RUN/cache-delta" --base "$RUN/A.tar"
            measure "delta_$comp" "${EXP[@]}"
            rm -rf "$RUN/cache-delta"
            FULLB[$comp]=$(stat -c %s "$RUN/full.$e" 2>/dev/null || echo)
            DELTAB[$comp]=$(stat -c %s "$RUN/delta.$e" 2>/dev/null || echo)
        done
    done
    # not timed: the delta carries every new blob, and far fewer bytes
    for comp in none zstd; do
        e=$(ext "$comp")
        [[ -s $RUN/delta.$e ]] || continue
        tar -tf "$RUN/delta.$e" >"$RUN/delta-$comp.list" 2>/dev/null || true
        while read -r d; do
            grep -q "${d#sha256:}" "$RUN/delta-$comp.list" || {
                say "delta ($comp) lacks the new blob $d"
                DEAD[delta_$comp]="lacks a new blob"
                FAILED=1
            }
        done <"$RUN/change/new_blobs.txt"
    done
}

# ------------------------------------------------------------------ split

# ferry verify of BUNDLE.parts against ferry verify of the one file made by
# joining those very parts (cat, not timed): the same bytes, REPEAT rounds,
# the order alternating; every file read once beforehand (page cache).
bench_split() {
    local comp e r one parts nparts
    for comp in none zstd; do
        e=$(ext "$comp")
        one=$RUN/week.$e parts=$RUN/split-$comp/week.$e
        rm -rf "$RUN/split-$comp" "$one"
        mkdir -p "$RUN/split-$comp"
        say "split export ($comp, --split-size $SPLIT; warm cache, not timed)"
        export_cmd "$parts" "$comp" "$RUN/cache-$comp" --split-size "$SPLIT"
        if ! "${EXP[@]}" >"$LOGS/split-$comp.log" 2>&1; then
            say "split export ($comp) failed: $(tail -n 3 "$LOGS/split-$comp.log" | tr '\n' ' ')"
            DEAD[parts_$comp]="no split bundle" DEAD[one_$comp]="no split bundle"
            FAILED=1
            continue
        fi
        rm -rf "$RUN/cache-$comp" "$RUN/full.$e"
        cat "$parts".[0-9][0-9][0-9] >"$one"
        nparts=$(wc -l <"$parts.parts")
        INB[$comp]=$(stat -c %s "$one")
        NPARTS[$comp]=$nparts
        for ((r = 1; r <= REPEAT; r++)); do
            if ((r % 2)); then
                cat "$one" >/dev/null
                say "round $r/$REPEAT: verify one file ($comp)"
                measure "one_$comp" "$FERRY_BIN" verify "$one" --key "$RUN/k.pub" --progress none
                cat "$parts".[0-9][0-9][0-9] >/dev/null
                say "round $r/$REPEAT: verify $nparts parts ($comp)"
                measure "parts_$comp" "$FERRY_BIN" verify "$parts.parts" --key "$RUN/k.pub" --progress none
            else
                cat "$parts".[0-9][0-9][0-9] >/dev/null
                say "round $r/$REPEAT: verify $nparts parts ($comp)"
                measure "parts_$comp" "$FERRY_BIN" verify "$parts.parts" --key "$RUN/k.pub" --progress none
                cat "$one" >/dev/null
                say "round $r/$REPEAT: verify one file ($comp)"
                measure "one_$comp" "$FERRY_BIN" verify "$one" --key "$RUN/k.pub" --progress none
            fi
        done
        ((KEEP)) || rm -rf "$RUN/split-$comp" "$one"
    done
}

declare -A NPARTS=()
bench_delta
bench_split

# ------------------------------------------------------------------ report

R_DN=$(ratio "$(best delta_none)" "$(best full_none)" || true)
R_DZ=$(ratio "$(best delta_zstd)" "$(best full_zstd)" || true)
R_PN=$(ratio "$(best parts_none)" "$(best one_none)" || true)
R_PZ=$(ratio "$(best parts_zstd)" "$(best one_zstd)" || true)
# The same ratios of CPU seconds (of the fastest rounds): no goal, but far
# less at the mercy of a loaded machine than wall time, and what the wall
# ratio comes to when no core is idle (the parts' read-ahead thread cannot
# overlap then).
cpu() { [[ -z ${DEAD[$1]:-} ]] && echo "${BCPU[$1]:-}"; }
C_DN=$(ratio "$(cpu delta_none)" "$(cpu full_none)" || true)
C_DZ=$(ratio "$(cpu delta_zstd)" "$(cpu full_zstd)" || true)
C_PN=$(ratio "$(cpu parts_none)" "$(cpu one_none)" || true)
C_PZ=$(ratio "$(cpu parts_zstd)" "$(cpu one_zstd)" || true)

row() { # NAME LABEL OUTPUT
    local s
    s=$(best "$1")
    printf '%-40s %9s %8s %9s   %s\n' "$2" "${s:-failed}" "${BCPU[$1]:-}" "$(mib "${PEAK[$1]:-}" || echo -)" \
        "${DEAD[$1]:-$3}"
}
echo
printf 'weekly: %s MB corpus, week change %s (%s new bytes, %s%% of %s), source %s, best of %d\n' \
    "$SIZE_MB" "$(jq -r '.tags | join(" ")' <<<"$CHANGE")" "$(jq -r .new_bytes <<<"$CHANGE")" \
    "$(jq -r '.new_fraction * 10000 | round / 100' <<<"$CHANGE")" "$(jq -r .new_total_bytes <<<"$CHANGE")" "$SRC" "$REPEAT"
printf '%-40s %9s %8s %9s   %s\n' run seconds "CPU s" "peak MiB" output
for comp in none zstd; do
    row "full_$comp" "ferry export, full ($comp)" "$(mb "${FULLB[$comp]:-}" || true)"
    row "delta_$comp" "ferry export --base A ($comp)" "$(mb "${DELTAB[$comp]:-}" || true)"
done
for comp in none zstd; do
    row "one_$comp" "ferry verify B ($comp)" "reads $(mb "${INB[$comp]:-}" || echo '?')"
    row "parts_$comp" "ferry verify B.parts ($comp)" "reads ${NPARTS[$comp]:-?} parts of $SPLIT"
done
printf '\n%-40s %9s %10s   %-8s %9s\n' "ratio (wall time)" value goal verdict "CPU s"
printf '%-40s %9s %10s   %-8s %9s\n' "delta/full export (none)" "${R_DN:-n/a}" "<= $GOAL_DELTA" \
    "$(verdict "$R_DN" "$GOAL_DELTA")" "${C_DN:-n/a}"
printf '%-40s %9s %10s   %-8s %9s\n' "delta/full export (zstd)" "${R_DZ:-n/a}" "<= $GOAL_DELTA" \
    "$(verdict "$R_DZ" "$GOAL_DELTA")" "${C_DZ:-n/a}"
printf '%-40s %9s %10s   %-8s %9s\n' "verify parts/one file (none)" "${R_PN:-n/a}" "<= $GOAL_PARTS" \
    "$(verdict "$R_PN" "$GOAL_PARTS")" "${C_PN:-n/a}"
printf '%-40s %9s %10s   %-8s %9s\n' "verify parts/one file (zstd)" "${R_PZ:-n/a}" "<= $GOAL_PARTS" \
    "$(verdict "$R_PZ" "$GOAL_PARTS")" "${C_PZ:-n/a}"

jrun() { # NAME [BYTES] -> JSON object
    jq -cn --argjson s "$(num "$(best "$1")")" --argjson c "$(num "${BCPU[$1]:-}")" \
        --argjson k "$(num "${PEAK[$1]:-}")" --argjson b "$(num "${2:-}")" \
        --arg samples "${SAMPLES[$1]:-}" --arg err "${DEAD[$1]:-}" \
        '{seconds: $s, cpu_seconds: $c, peak_kib: $k, bytes: $b,
          samples: ($samples | split(" ") | map(select(. != "") | tonumber))}
         + (if $err != "" then {error: $err} else {} end)'
}
echo "BENCH_WEEKLY $(jq -cn --argjson size "$SIZE_MB" --argjson repeat "$REPEAT" --arg split "$SPLIT" \
    --argjson change "$CHANGE" \
    --argjson fn "$(jrun full_none "${FULLB[none]:-}")" --argjson dn "$(jrun delta_none "${DELTAB[none]:-}")" \
    --argjson fz "$(jrun full_zstd "${FULLB[zstd]:-}")" --argjson dz "$(jrun delta_zstd "${DELTAB[zstd]:-}")" \
    --argjson on "$(jrun one_none "${INB[none]:-}")" --argjson pn "$(jrun parts_none "${INB[none]:-}")" \
    --argjson oz "$(jrun one_zstd "${INB[zstd]:-}")" --argjson pz "$(jrun parts_zstd "${INB[zstd]:-}")" \
    --argjson np "$(num "${NPARTS[none]:-}")" --argjson nz "$(num "${NPARTS[zstd]:-}")" \
    --argjson rdn "$(num "$R_DN")" --argjson rdz "$(num "$R_DZ")" \
    --argjson rpn "$(num "$R_PN")" --argjson rpz "$(num "$R_PZ")" \
    --argjson cdn "$(num "$C_DN")" --argjson cdz "$(num "$C_DZ")" \
    --argjson cpn "$(num "$C_PN")" --argjson cpz "$(num "$C_PZ")" \
    --argjson gd "$GOAL_DELTA" --argjson gp "$GOAL_PARTS" \
    '{corpus_mb: $size, repeat: $repeat, split_size: $split, parts: {none: $np, zstd: $nz}, change: $change,
      runs: {full_none: $fn, delta_none: $dn, full_zstd: $fz, delta_zstd: $dz,
             verify_one_none: $on, verify_parts_none: $pn, verify_one_zstd: $oz, verify_parts_zstd: $pz},
      ratios: {delta_over_full_none: $rdn, delta_over_full_zstd: $rdz,
               parts_over_one_none: $rpn, parts_over_one_zstd: $rpz},
      cpu_ratios: {delta_over_full_none: $cdn, delta_over_full_zstd: $cdz,
                   parts_over_one_none: $cpn, parts_over_one_zstd: $cpz},
      goals: {delta_over_full: $gd, parts_over_one: $gp}}')"
exit "$FAILED"
