#!/usr/bin/env bash
# ferry benchmark, registry-to-registry mirroring: the ferry pipe
# (export -o - | import -) against skopeo copy and the raw limit.
# Run through bench/bench.sh --mirror (see bench/README.md).
#
#   bench/bench_mirror.sh [--size-mb N] [--repeat N] [--keep]
#
#   --size-mb N  the corpus of bench/gen_corpus.py (default 1000)
#   --repeat N   every measurement N times, the fastest kept (default 1)
#   --keep       keep bench/.work/mirror (registry storage, logs)
#
# Pushes the corpus (skopeo) into a fresh plain-HTTP docker-registry (the
# source), then times, each into a new empty target registry: the ferry pipe
# (--compress zstd and none), skopeo copy --all --preserve-digests of every
# image in turn and 4 at a time (xargs -P4), and the raw limit (curl GET
# piped into curl PUT for every unique blob, 4 at a time, then the
# manifests and tags). After each run every tag in the target must have
# the source digest. Environment as bench.sh: FERRY, PYTHON,
# FERRY_REGISTRY_BIN, FERRY_BENCH_WORK. Prints a table and one line
# BENCH_MIRROR {json}. Exit status: 0 when every measurement ran, 1 when
# one failed, 2 usage.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
WORK=${FERRY_BENCH_WORK:-$HERE/.work}
PYTHON=${PYTHON:-python3}
REGISTRY_BIN=${FERRY_REGISTRY_BIN:-docker-registry}
TIME_BIN=/usr/bin/time
SIZE_MB=1000 REPEAT=1 KEEP=0
JOBS=4
GOAL_SKOPEO=1.00
GOAL_MIB=100

say() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }
usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
    case $1 in
    --size-mb) (($# >= 2)) || usage; SIZE_MB=$2; shift 2 ;;
    --size-mb=*) SIZE_MB=${1#*=}; shift ;;
    --repeat) (($# >= 2)) || usage; REPEAT=$2; shift 2 ;;
    --repeat=*) REPEAT=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage ;;
    *) echo "bench: unknown argument '$1'" >&2; usage ;;
    esac
done
[[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] || { echo "bench: --size-mb needs a positive integer" >&2; exit 2; }
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || { echo "bench: --repeat needs a positive integer" >&2; exit 2; }

need() {
    local missing=() t
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (Debian packages: docker-registry skopeo curl python3 jq time util-linux findutils coreutils)"
}
need "$REGISTRY_BIN" skopeo curl "$PYTHON" jq "$TIME_BIN" flock setsid awk xargs sha256sum

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
exec 9>"$WORK/.lock"
flock -n 9 || die "another bench run is using $WORK"
CORPUS=$WORK/corpus-${SIZE_MB}mb
RUN=$WORK/mirror
LOGS=$RUN/logs
SRC_PID='' TGT_PID=''

# Disk: corpus, source storage, one target at a time (two with --keep of
# the last round's targets, five), one export cache.
need_mb=$((SIZE_MB * 4 + 300))
((KEEP == 0)) || need_mb=$((SIZE_MB * 8 + 300))
[[ -d $CORPUS ]] || need_mb=$((need_mb + SIZE_MB))
avail_mb=$(($(df -Pk "$WORK" | awk 'NR == 2 {print $4}') / 1024))
((avail_mb >= need_mb)) || die "about ${need_mb} MiB of free disk needed under $WORK, ${avail_mb} MiB free"

# stop_server PID: SIGTERM, SIGKILL after 10 s, reap.
stop_server() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    if kill -TERM "$pid" 2>/dev/null; then
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_server "$TGT_PID"
    stop_server "$SRC_PID"
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
POLICY=$RUN/skopeo/policy.json

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
CORPUS_BYTES=$(jq -r .bytes "$CORPUS/corpus.json")
NBLOBS=$(jq -r .blobs "$CORPUS/corpus.json")

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_registry DIR PIDVAR HOSTVAR: a plain-HTTP registry with fresh
# storage in DIR on a free port, access log off; sets PIDVAR and HOSTVAR
# once it answers, returns 1 if it does not.
start_registry() {
    local dir=$1 host pid
    host=127.0.0.1:$(free_port)
    rm -rf "$dir"
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
    printf -v "$2" '%s' "$pid"
    printf -v "$3" '%s' "$host"
    for _ in $(seq 300); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' "http://$host/v2/" || true) == 200 ]]; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    say "the registry in $dir did not start (log: $dir/registry.log)"
    return 1
}

# ------------------------------------------------------------------ source

SRC=
start_registry "$RUN/source" SRC_PID SRC || die "the source registry did not start"
say "source registry on $SRC; pushing ${#IMAGES[@]} images with skopeo"
t0=$SECONDS
for ref in "${IMAGES[@]}"; do
    skopeo --policy "$POLICY" copy --all --preserve-digests --dest-tls-verify=false \
        "oci:$CORPUS:$ref" "docker://$SRC/$ref" >>"$LOGS/push.log" 2>&1 ||
        die "pushing $ref failed: $(tail -n 3 "$LOGS/push.log" | tr '\n' ' ')"
done
PUSH_SECS=$((SECONDS - t0))
say "pushed in ${PUSH_SECS}s"
sed "s|^|$SRC/|" "$CORPUS/images.txt" >"$RUN/images.txt"

# raw's plan, from the corpus's layout (its structure only; every byte is
# then read from the source registry): every unique non-manifest blob once,
# to the first repository that needs it, largest first (BLOBS: source URL,
# target repository, digest, a line each); every manifest to fetch
# (FETCH, one curl -K file); the cross-repository mounts for every other
# repository that needs a blob, the manifests by digest (children before
# their index), then the tags (FINISH, one curl -K file, the target's URL
# left as @TGT@). Prints the count of requests in FINISH.
PLAN_PY=$(
    cat <<'PY'
import json, os, sys

top, src, mdir, blobs_out, fetch_out, finish_out = sys.argv[1:7]
def path(digest):
    return os.path.join(top, "blobs", *digest.split(":", 1))
def load(digest):
    with open(path(digest), "rb") as f:
        return json.load(f)
def repo_tag(ref):
    slash, colon = ref.rfind("/"), ref.rfind(":")
    return (ref[:colon], ref[colon + 1:]) if colon > slash else (ref, None)

first, linked, uploads, mounts, pushed, manifests, tags = {}, set(), [], [], set(), [], []
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
for d in index["manifests"]:
    repo, tag = repo_tag(d["annotations"]["org.opencontainers.image.ref.name"])
    manifest(repo, d)
    if tag:
        tags.append((repo, tag, d["digest"], d["mediaType"]))

def q(v):
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
def curl_config(sections):
    return "next\n".join("".join(f"{k} = {q(v)}\n" for k, v in sec) for sec in sections)
out = lambda: [("output", "/dev/null"), ("write-out", "%{http_code} %{url_effective}\\n")]

with open(blobs_out, "w") as f:
    for _, repo, digest in sorted(uploads, key=lambda u: -u[0]):
        f.write(f"http://{src}/v2/{repo}/blobs/{digest}\n{repo}\n{digest}\n")
seen, fetch = set(), []
for repo, digest, mtype in manifests:
    if digest not in seen:
        seen.add(digest)
        fetch.append([("url", f"http://{src}/v2/{repo}/manifests/{digest}"), ("header", f"Accept: {mtype}"),
                      ("output", os.path.join(mdir, digest.split(":", 1)[1]))])
with open(fetch_out, "w") as f:
    f.write(curl_config(fetch))
finish = []
for repo, digest, src_repo in mounts:
    finish.append([("url", f"@TGT@/v2/{repo}/blobs/uploads/?mount={digest}&from={src_repo}"),
                   ("request", "POST")] + out())
for repo, ref, digest, mtype in ([(r, d, d, m) for r, d, m in manifests] + tags):
    finish.append([("url", f"@TGT@/v2/{repo}/manifests/{ref}"), ("request", "PUT"),
                   ("header", f"Content-Type: {mtype}"),
                   ("data-binary", "@" + os.path.join(mdir, digest.split(":", 1)[1]))] + out())
with open(finish_out, "w") as f:
    f.write(curl_config(finish))
print(len(finish))
PY
)
mkdir -p "$RUN/raw"
RAW_WANT=$("$PYTHON" -c "$PLAN_PY" "$CORPUS" "$SRC" "$RUN/raw/m" "$RUN/raw/blobs.txt" "$RUN/raw/fetch.curl" \
    "$RUN/raw/finish.curl") || die "cannot plan the raw mirror"

# raw's one blob: POST an upload to the target, then GET from the source
# piped into a streamed PUT (chunked) that completes it.
cat >"$RUN/raw/blob.sh" <<'SH'
# blob.sh TARGET_BASE SOURCE_URL REPO DIGEST
set -eo pipefail
loc=$(curl -sSf --noproxy '*' -X POST -o /dev/null -w '%header{location}' "$1/v2/$3/blobs/uploads/")
case $loc in /*) loc=$1$loc ;; esac
case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
curl -sSf --noproxy '*' "$2" |
    curl -sSf --noproxy '*' -T - -X PUT -H 'Content-Type: application/octet-stream' -H 'Expect:' \
        -o /dev/null "$loc${sep}digest=$4"
SH

# Same starting point for every run: the source's blobs in the page cache.
find "$RUN/source/storage" -type f -name data -exec cat {} + >/dev/null

# ------------------------------------------------------------------ helpers

# measure NAME CMD...: CMD under /usr/bin/time, output in $LOGS/NAME.log;
# folds the round into BEST[NAME] (fastest wall seconds), BCPU[NAME] (its
# user + system CPU seconds, the whole process tree), PEAK[NAME] (highest
# peak RSS of one process, KiB) and SAMPLES[NAME]. Returns 1 on failure.
declare -A BEST=() BCPU=() PEAK=() SAMPLES=() DEAD=() SIDE=() NOTE=()
FAILED=0
LAST_SECS='' LAST_CPU='' LAST_KIB=''
measure() {
    local name=$1 rc=0 line
    shift
    sync # the previous run's dirty pages are not this run's work
    "$TIME_BIN" -f '%e %M %U %S' -o "$LOGS/$name.time" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
    line=$(tail -n 1 "$LOGS/$name.time" 2>/dev/null || true)
    if ((rc != 0)) || ! [[ $line =~ ^([0-9.]+)\ ([0-9]+)\ ([0-9.]+)\ ([0-9.]+)$ ]]; then
        fail "$name" "exit $rc"
        say "$name failed (exit $rc): $(tail -n 3 "$LOGS/$name.log" | tr '\n' ' ')"
        return 1
    fi
    LAST_SECS=${BASH_REMATCH[1]} LAST_KIB=${BASH_REMATCH[2]}
    LAST_CPU=$(awk -v u="${BASH_REMATCH[3]}" -v y="${BASH_REMATCH[4]}" 'BEGIN {printf "%.2f", u + y}')
}
fail() { DEAD[$1]=$2; FAILED=1; }
# keep NAME: this round counts (after its check).
keep() {
    local name=$1
    SAMPLES[$name]="${SAMPLES[$name]:-}${SAMPLES[$name]:+ }$LAST_SECS"
    if [[ -z ${BEST[$name]:-} ]] || awk -v a="$LAST_SECS" -v b="${BEST[$name]}" 'BEGIN {exit !(a < b)}'; then
        BEST[$name]=$LAST_SECS BCPU[$name]=$LAST_CPU
    fi
    if [[ -z ${PEAK[$name]:-} ]] || ((LAST_KIB > PEAK[$name])); then PEAK[$name]=$LAST_KIB; fi
}
best() { [[ -z ${DEAD[$1]:-} ]] && echo "${BEST[$1]:-}"; }
ratio() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.3f", a / b}'; }
mib() { [[ -n $1 ]] && awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
mbps() { [[ -n $1 ]] && awk -v n="$CORPUS_BYTES" -v s="$1" 'BEGIN {if (s > 0) printf "%.1f", n / 1e6 / s}'; }
verdict() { if [[ -z $1 ]]; then echo n/a; else awk -v v="$1" -v g="$2" 'BEGIN {print (v < g) ? "ok" : "MISSED"}'; fi; }

# check_tags NAME: does every tag of the corpus have, in the target, the
# source's manifest digest (skopeo inspect --raw | sha256sum)? Not timed.
check_tags() {
    local name=$1 ref want got ok=0 n=0
    : >"$LOGS/$name.check.log"
    while IFS=$'\t' read -r ref want; do
        n=$((n + 1))
        got=$(skopeo inspect --raw --tls-verify=false "docker://$TGT/$ref" 2>>"$LOGS/$name.check.log" |
            sha256sum | cut -d' ' -f1) || got=
        if [[ sha256:$got == "$want" ]]; then
            ok=$((ok + 1))
        else
            echo "$TGT/$ref: want $want, got sha256:$got" >>"$LOGS/$name.check.log"
        fi
    done < <(jq -r '.manifests[] | [.annotations["org.opencontainers.image.ref.name"], .digest] | @tsv' "$CORPUS/index.json")
    NOTE[$name]="$ok/$n tags ok"
    ((n > 0 && ok == n)) && return 0
    say "$name: only $ok of $n tags have the source digest in the target (see $LOGS/$name.check.log)"
    fail "$name" "$ok/$n tags with the source digest"
    return 1
}

# run NAME WHAT CMD...: a fresh empty target registry ($TGT), CMD timed
# (an argument @TGT@ replaced by the target's host), the tags checked,
# the target deleted (the last round's kept with --keep).
TGT=
run() {
    local name=$1 what=$2 a args=()
    shift 2
    [[ -z ${DEAD[$name]:-} ]] || return 0
    if ! start_registry "$RUN/target-$name" TGT_PID TGT; then
        fail "$name" "target registry did not start"
        return 0
    fi
    for a in "$@"; do
        [[ $a != @TGT@ ]] || a=$TGT
        args+=("$a")
    done
    rm -rf "${TMPDIR:?}"/* "$RUN/cache"
    mkdir -p "$RUN/cache" "$RUN/state"
    say "round $ROUND/$REPEAT: $what"
    if measure "$name" "${args[@]}" && check_tags "$name"; then
        keep "$name"
        [[ $name != ferry_* ]] || ferry_sides "$name"
    fi
    stop_server "$TGT_PID"
    TGT_PID=
    ((KEEP)) || rm -rf "$RUN/target-$name"
    rm -rf "$RUN/cache" "$RUN/state" "$RUN/raw/m"
}

# ferry_sides NAME: the peak RSS of the export and of the import process
# of the pipe (each under its own /usr/bin/time), highest over rounds.
ferry_sides() {
    local side k
    for side in export import; do
        k=$(tail -n 1 "$LOGS/$1.$side.mem" 2>/dev/null || true)
        [[ $k =~ ^[0-9]+$ ]] || continue
        if [[ -z ${SIDE[$1.$side]:-} ]] || ((k > SIDE[$1.$side])); then SIDE[$1.$side]=$k; fi
    done
}

# ------------------------------------------------------------------ runs

# The pipe, as a user would type it; each side's peak memory on its own.
# shellcheck disable=SC2016 # expanded by the bash -c that runs it
FERRY_PIPE='set -o pipefail
t=$1 name=$2 logs=$3 ferry=$4 comp=$5 src=$6 run=$7 tgt=$8
"$t" -f %M -o "$logs/$name.export.mem" "$ferry" export -f "$run/images.txt" -o - --key "$run/k.key" \
    --insecure-registry "$src" --compress "$comp" --cache "$run/cache" --progress none |
"$t" -f %M -o "$logs/$name.import.mem" "$ferry" import - --key "$run/k.pub" --to "$tgt" \
    --insecure-registry 127.0.0.1 --state-dir "$run/state" --progress none'
# skopeo copy of one image, registry to registry, as xargs calls it.
# shellcheck disable=SC2016
SKOPEO_ONE='exec skopeo --policy "$1" copy --all --preserve-digests --src-tls-verify=false \
    --dest-tls-verify=false "docker://$2/$4" "docker://$3/$4"'
# The raw limit: the blobs, 4 at a time, then the manifests, mounts and tags.
# shellcheck disable=SC2016
RAW='set -eo pipefail
run=$1 tgt=http://$2 jobs=$3
mkdir -p "$run/raw/m"
xargs -a "$run/raw/blobs.txt" -d "\n" -n 3 -P "$jobs" bash "$run/raw/blob.sh" "$tgt"
curl -sSf --noproxy "*" -K "$run/raw/fetch.curl"
sed "s|@TGT@|$tgt|" "$run/raw/finish.curl" | curl -sS --noproxy "*" -K - >"$run/raw/finish.codes"'

bench_raw() {
    run raw "raw: curl GET | curl PUT of $NBLOBS blobs, -P$JOBS, then $RAW_WANT requests" \
        bash -c "$RAW" _ "$RUN" @TGT@ "$JOBS" || true
    local got
    [[ -z ${DEAD[raw]:-} ]] || return 0
    got=$(grep -c '^201 ' "$RUN/raw/finish.codes" 2>/dev/null || true)
    if [[ $got != "$RAW_WANT" ]]; then
        say "raw: $got of $RAW_WANT mounts, manifests and tags answered 201"
        fail raw "$got/$RAW_WANT requests answered 201"
    fi
}

for ((ROUND = 1; ROUND <= REPEAT; ROUND++)); do
    for comp in zstd none; do
        run "ferry_$comp" "ferry export -o - --compress $comp | ferry import -" \
            bash -c "$FERRY_PIPE" _ "$TIME_BIN" "ferry_$comp" "$LOGS" "$FERRY_BIN" "$comp" "$SRC" "$RUN" @TGT@
    done
    # shellcheck disable=SC2016
    run skopeo "skopeo copy of ${#IMAGES[@]} images, one after another" \
        bash -c 'set -e; while read -r ref; do bash -c "$1" _ "$2" "$3" "$4" "$ref" </dev/null; done <"$5"' \
        _ "$SKOPEO_ONE" "$POLICY" "$SRC" @TGT@ "$CORPUS/images.txt"
    run skopeo_p4 "skopeo copy of ${#IMAGES[@]} images, $JOBS at a time (xargs -P$JOBS)" \
        xargs -a "$CORPUS/images.txt" -d '\n' -n 1 -P "$JOBS" bash -c "$SKOPEO_ONE" _ "$POLICY" "$SRC" @TGT@
    bench_raw
done

# ------------------------------------------------------------------ report

FZ=$(best ferry_zstd || true) FN=$(best ferry_none || true)
SK=$(best skopeo || true) SP=$(best skopeo_p4 || true) RW=$(best raw || true)
FB=$FZ
[[ -n $FB ]] || FB=$FN
R_ZS=$(ratio "$FZ" "$SK" || true) R_NS=$(ratio "$FN" "$SK" || true)
R_ZP=$(ratio "$FZ" "$SP" || true) R_NP=$(ratio "$FN" "$SP" || true)
R_ZR=$(ratio "$FZ" "$RW" || true) R_NR=$(ratio "$FN" "$RW" || true)
FPEAK=
for k in "${SIDE[@]}"; do [[ -n $FPEAK ]] && ((k <= FPEAK)) || FPEAK=$k; done

echo
printf 'ferry mirror bench: %d images, %d unique blobs, %s bytes (%.1f MB), %s CPUs, source pushed in %ss\n' \
    "${#IMAGES[@]}" "$NBLOBS" "$CORPUS_BYTES" "$(awk -v n="$CORPUS_BYTES" 'BEGIN {print n / 1e6}')" \
    "$(nproc)" "$PUSH_SECS"
((REPEAT == 1)) || printf 'each run %d times: fastest time, highest peak memory\n' "$REPEAT"
printf '\n%-34s %9s %7s %10s %8s   %s\n' run seconds "CPU s" "peak MiB" "MB/s" notes
row() {
    local name=$1 label=$2 s extra=
    s=$(best "$name" || true)
    if [[ -z $s ]]; then
        printf '%-34s %9s %7s %10s %8s   %s\n' "$label" failed - - - "${DEAD[$name]:-not run}"
        return 0
    fi
    [[ -z ${SIDE[$name.export]:-} ]] ||
        extra=", export $(mib "${SIDE[$name.export]}") MiB, import $(mib "${SIDE[$name.import]:-}") MiB"
    printf '%-34s %9.2f %7s %10s %8s   %s\n' "$label" "$s" "${BCPU[$name]}" "$(mib "${PEAK[$name]}")" \
        "$(mbps "$s")" "${NOTE[$name]:-}$extra; runs ${SAMPLES[$name]}"
}
row ferry_zstd "ferry pipe (zstd)"
row ferry_none "ferry pipe (--compress none)"
row skopeo "skopeo copy (sequential)"
row skopeo_p4 "skopeo copy (xargs -P$JOBS)"
row raw "raw (curl GET | curl PUT, -P$JOBS)"
printf '\n%-34s %9s %10s   %s\n' "ratio (time)" value goal verdict
printf '%-34s %9s %10s   %s\n' "ferry(zstd)/skopeo" "${R_ZS:-n/a}" "< $GOAL_SKOPEO" "$(verdict "$R_ZS" "$GOAL_SKOPEO")"
printf '%-34s %9s %10s   %s\n' "ferry(none)/skopeo" "${R_NS:-n/a}" "< $GOAL_SKOPEO" "$(verdict "$R_NS" "$GOAL_SKOPEO")"
printf '%-34s %9s %10s   %s\n' "ferry(zstd)/skopeo -P$JOBS" "${R_ZP:-n/a}" "-" "-"
printf '%-34s %9s %10s   %s\n' "ferry(none)/skopeo -P$JOBS" "${R_NP:-n/a}" "-" "-"
printf '%-34s %9s %10s   %s\n' "ferry(zstd)/raw" "${R_ZR:-n/a}" "-" "-"
printf '%-34s %9s %10s   %s\n' "ferry(none)/raw" "${R_NR:-n/a}" "-" "-"
printf '%-34s %9s %10s   %s\n' "ferry peak MiB (one process)" "$(mib "$FPEAK" || echo n/a)" "< $GOAL_MIB" \
    "$(verdict "$(mib "$FPEAK" || true)" "$GOAL_MIB")"

jrun() { # NAME -> JSON object
    local name=$1
    jq -cn --arg s "$(best "$name" || true)" --arg cpu "${BCPU[$name]:-}" --arg k "${PEAK[$name]:-}" \
        --arg ex "${SIDE[$name.export]:-}" --arg im "${SIDE[$name.import]:-}" --arg why "${DEAD[$name]:-}" \
        --arg samples "${SAMPLES[$name]:-}" --arg mbps "$(mbps "$(best "$name" || true)" || true)" '
        def num: if . == "" then null else tonumber end;
        def mib: if . == "" then null else (tonumber / 1024 * 10 | round / 10) end;
        {ok: ($s != ""), seconds: ($s | num), cpu_seconds: ($cpu | num), peak_mib: ($k | mib),
         mb_per_s: ($mbps | num), samples: ($samples | split(" ") | map(select(. != "") | tonumber))}
        + (if $ex == "" then {} else {export_peak_mib: ($ex | mib), import_peak_mib: ($im | mib)} end)
        + (if $why == "" then {} else {error: $why} end)'
}
echo
echo "BENCH_MIRROR $(jq -cn --argjson size_mb "$SIZE_MB" --argjson bytes "$CORPUS_BYTES" \
    --argjson images "${#IMAGES[@]}" --argjson blobs "$NBLOBS" --argjson cpus "$(nproc)" \
    --argjson repeat "$REPEAT" --argjson jobs "$JOBS" --argjson push "$PUSH_SECS" \
    --argjson fz "$(jrun ferry_zstd)" --argjson fn "$(jrun ferry_none)" --argjson sk "$(jrun skopeo)" \
    --argjson sp "$(jrun skopeo_p4)" --argjson raw "$(jrun raw)" \
    --arg zs "${R_ZS:-}" --arg ns "${R_NS:-}" --arg zp "${R_ZP:-}" --arg np "${R_NP:-}" \
    --arg zr "${R_ZR:-}" --arg nr "${R_NR:-}" --arg fp "$(mib "$FPEAK" || true)" \
    --argjson gs "$GOAL_SKOPEO" --argjson gm "$GOAL_MIB" '
    def num: if . == "" then null else tonumber end;
    {corpus: {size_mb: $size_mb, bytes: $bytes, images: $images, blobs: $blobs, push_seconds: $push},
     cpus: $cpus, repeat: $repeat, jobs: $jobs,
     ferry_zstd: $fz, ferry_none: $fn, skopeo: $sk, skopeo_parallel: $sp, raw: $raw,
     ratios: {ferry_zstd_over_skopeo: ($zs | num), ferry_none_over_skopeo: ($ns | num),
              ferry_zstd_over_skopeo_parallel: ($zp | num), ferry_none_over_skopeo_parallel: ($np | num),
              ferry_zstd_over_raw: ($zr | num), ferry_none_over_raw: ($nr | num)},
     ferry_peak_mib: ($fp | num),
     goals: {ferry_over_skopeo: $gs, ferry_peak_mib: $gm}}')"
exit "$FAILED"
