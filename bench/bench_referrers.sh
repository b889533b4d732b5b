#!/usr/bin/env bash
# ferry benchmark: what discovering attachments (SPEC section 6) costs a
# plain export. Run through bench/bench.sh --referrers (see bench/README.md).
#
#   bench/bench_referrers.sh [--images N] [--rtt-ms MS] [--repeat R] [--api] [--signed] [--keep]
#
#   --images N   corpus of N small multi-arch images, no signatures
#                (tests/fixtures/gen_scale.py; default 300)
#   --rtt-ms MS  also measure through the latency proxy at MS ms round trip
#                (default 25; 0: loopback only)
#   --repeat R   runs of each mode, alternating none/all, fastest kept
#                (default 3)
#   --api        export through a registry that answers the referrers API
#                (tests/fixtures/harbor.py --referrers in front of the
#                source): one referrers request per manifest, no tag list
#                rules them out
#   --signed     every image's index signed with a cosign key first
#                (tests/fixtures/cosign.py), and "all" exports with
#                --verify-cosign-key: what carrying and checking
#                signatures costs (no goal: the 1.10 is for unsigned)
#   --keep       keep bench/.work/referrers (registry storage, logs)
#
# Each run: ferry export -f images.txt --compress none with an empty cache,
# --referrers none and --referrers all in turn, after one warm-up export
# that counts for neither. Prints per condition the fastest seconds of
# each, the ratio all/none of the fastest and of the medians (the goal,
# <= 1.10, is judged on the medians: one lucky run decides a fastest) and the
# registry requests of each run (from its access log), and one line
#   BENCH_REFERRERS {json}
# Environment as bench.sh: FERRY, PYTHON, FERRY_REGISTRY_BIN,
# FERRY_BENCH_WORK. Exit status: 0 when every run succeeded, 1 otherwise,
# 2 usage.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
FIXTURES=$ROOT/tests/fixtures
WORK=${FERRY_BENCH_WORK:-$HERE/.work}
PYTHON=${PYTHON:-python3}
REGISTRY_BIN=${FERRY_REGISTRY_BIN:-docker-registry}
N=300 RTT_MS=25 REPEAT=3 KEEP=0 API=0 SIGNED=0
GOAL=1.10

say() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }
usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
    case $1 in
    --images) (($# >= 2)) || usage; N=$2; shift 2 ;;
    --rtt-ms) (($# >= 2)) || usage; RTT_MS=$2; shift 2 ;;
    --repeat) (($# >= 2)) || usage; REPEAT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --api) API=1; shift ;;
    --signed) SIGNED=1; shift ;;
    -h | --help) usage ;;
    *) echo "bench: unknown argument '$1'" >&2; usage ;;
    esac
done
[[ $N =~ ^[1-9][0-9]*$ ]] || { echo "bench: --images needs a positive integer" >&2; exit 2; }
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || { echo "bench: --repeat needs a positive integer" >&2; exit 2; }
[[ $RTT_MS =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "bench: --rtt-ms needs a number" >&2; exit 2; }

for t in "$REGISTRY_BIN" curl "$PYTHON" jq flock setsid awk; do
    command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
done
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
exec 9>"$WORK/.lock"
flock -n 9 || die "another bench run is using $WORK"
RUN=$WORK/referrers
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
mkdir -p "$RUN/logs"

if [[ -n ${FERRY:-} ]]; then
    FERRY_BIN=$(command -v "$FERRY" 2>/dev/null || true)
    [[ -n $FERRY_BIN && -x $FERRY_BIN ]] || die "FERRY=$FERRY is not an executable"
else
    say "building ferry (Release) in $ROOT/build-bench"
    cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release >"$RUN/logs/build.log" 2>&1 &&
        make -C "$ROOT/build-bench" -j"$(nproc)" ferry >>"$RUN/logs/build.log" 2>&1 ||
        die "building ferry failed (log: $RUN/logs/build.log)"
    FERRY_BIN=$ROOT/build-bench/cli/ferry
fi
"$FERRY_BIN" keygen -o "$RUN/k" -q >/dev/null || die "ferry keygen failed"

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# the source registry, with its access log on: the request counts
SRC=127.0.0.1:$(free_port)
REGLOG=$RUN/registry.log
cat >"$RUN/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $RUN/storage
http:
  addr: $SRC
EOF
(
    while read -r v; do unset "$v"; done < <(compgen -e | grep '^REGISTRY_' || true)
    exec setsid "$REGISTRY_BIN" serve "$RUN/config.yml" </dev/null >"$REGLOG" 2>&1
) &
PIDS+=($!)
for _ in $(seq 300); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' "http://$SRC/v2/" || true) == 200 ]] && break
    sleep 0.1
done
say "pushing $N images into the source registry $SRC"
"$PYTHON" "$FIXTURES/gen_scale.py" "$SRC" "$RUN/corpus" --images "$N" --prefix ref >"$RUN/logs/gen.log" 2>&1 ||
    die "gen_scale.py failed: $(tail -n 3 "$RUN/logs/gen.log")"

# --signed: a cosign signature on every index, made in one process
GATE=()
if ((SIGNED)); then
    say "signing the $N images (cosign format)"
    if ! openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt >"$RUN/c.pem" ||
        ! openssl pkey -in "$RUN/c.pem" -pubout -out "$RUN/c.pub"; then
        die "cosign key"
    fi
    "$PYTHON" - "$FIXTURES" "$SRC" "$RUN/c.pem" "$RUN/corpus/images.tsv" >"$RUN/logs/sign.log" 2>&1 <<'PY' ||
import argparse, sys
sys.path.insert(0, sys.argv[1])
import cosign
reg = cosign.Registry(sys.argv[2])
for line in open(sys.argv[4]):
    ref, digest = line.rstrip("\n").split("\t")
    repo = ref.rsplit(":", 1)[0]
    cosign.cmd_sign(reg, argparse.Namespace(host=sys.argv[2], repo=repo, digest=digest, key=sys.argv[3],
                                            identity=None, payload_digest=None))
PY
        die "signing failed: $(tail -n 3 "$RUN/logs/sign.log")"
    GATE=(--verify-cosign-key "$RUN/c.pub")
fi

# --api: a registry with the referrers API (the Harbor double) in front;
# its log of /v2/ calls is what is counted then
FRONT=$SRC
COUNTLOG=$REGLOG
if ((API)); then
    pf=$RUN/harbor.port
    COUNTLOG=$RUN/harbor.log
    : >"$COUNTLOG"
    "$PYTHON" "$FIXTURES/harbor.py" --referrers "$pf" "$SRC" "$COUNTLOG" "bench:bench" ref &
    PIDS+=($!)
    for _ in $(seq 100); do [[ -s $pf ]] && break; sleep 0.1; done
    [[ -s $pf ]] || die "the registry double did not start"
    FRONT=127.0.0.1:$(cat "$pf")
fi

PROXY_HOST=
start_proxy() {
    local pf=$RUN/proxy.port
    rm -f "$pf"
    "$PYTHON" "$FIXTURES/latency_proxy.py" "$pf" "$FRONT" --delay-ms "$(awk -v r="$RTT_MS" 'BEGIN {print r / 2}')" \
        --lifetime 3600 &
    PIDS+=($!)
    for _ in $(seq 100); do [[ -s $pf ]] && break; sleep 0.1; done
    [[ -s $pf ]] || die "the latency proxy did not start"
    PROXY_HOST=127.0.0.1:$(cat "$pf")
}

# requests in the access log since line $1, matching $2
count() {
    if ((API)); then
        tail -n +"$(($1 + 1))" "$COUNTLOG" | grep -cE "\"method\": \"(GET|HEAD)\", \"path\": \"/v2/[^\"]*$2" || true
    else
        tail -n +"$(($1 + 1))" "$REGLOG" | grep -cE "\"(GET|HEAD) /v2/[^ ]*$2" || true
    fi
}

FAILED=0
# median of the numbers given
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR) printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
declare -A BEST=() ALL=() REQ=() TAGL=() REFS=() ATT=()
# run COND MODE HOST: one export; keeps the fastest time and the counts
run() {
    local cond=$1 mode=$2 host=$3 before t0 t1 s k=$1.$2 extra=()
    if [[ $mode == all ]]; then extra=("${GATE[@]}"); fi
    sed "s|^|$host/|" "$RUN/corpus/images.txt" >"$RUN/images.txt"
    rm -rf "$RUN/cache" "$RUN/out.tar"
    sync
    before=$(wc -l <"$COUNTLOG")
    t0=$(date +%s%N)
    if ! "$FERRY_BIN" export -q -f "$RUN/images.txt" -o "$RUN/out.tar" --compress none --key "$RUN/k.key" \
        --insecure-registry 127.0.0.1 --cache "$RUN/cache" --progress none \
        --referrers "$([[ $mode == warmup ]] && echo none || echo "$mode")" \
        "${extra[@]}" \
        >"$RUN/logs/$k.log" 2>&1; then
        say "$k failed: $(tail -n 2 "$RUN/logs/$k.log" | tr '\n' ' ')"
        FAILED=1
        return 0
    fi
    t1=$(date +%s%N)
    sleep 0.3 # the access log is written after the answer
    s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
    say "$k: $s s"
    [[ $mode == warmup ]] && return 0
    if [[ -z ${BEST[$k]:-} ]] || awk -v a="$s" -v b="${BEST[$k]}" 'BEGIN {exit !(a < b)}'; then BEST[$k]=$s; fi
    ALL[$k]="${ALL[$k]:-} $s"
    REQ[$k]=$(count "$before" "/")
    TAGL[$k]=$(count "$before" "/tags/list")
    REFS[$k]=$(count "$before" "/referrers/")
    ATT[$k]=$(count "$before" "/manifests/sha256-")
}

CONDS=(loopback)
[[ $RTT_MS == 0 ]] || CONDS+=("rtt${RTT_MS}ms")
JSON='[]'
for cond in "${CONDS[@]}"; do
    host=$FRONT
    if [[ $cond != loopback ]]; then
        start_proxy
        host=$PROXY_HOST
    fi
    # the first export after the corpus is pushed runs on a warmer
    # registry than the rest: one that counts for neither
    run "$cond" warmup "$host"
    for ((r = 0; r < REPEAT; r++)); do
        # alternate which goes first, so neither always runs warmer
        if ((r % 2)); then run "$cond" all "$host"; run "$cond" none "$host"; else
            run "$cond" none "$host"; run "$cond" all "$host"; fi
    done
    ratio=$(awk -v a="${BEST[$cond.all]:-}" -v b="${BEST[$cond.none]:-}" 'BEGIN {if (a != "" && b > 0) printf "%.3f", a / b}')
    med_all=$(median ${ALL[$cond.all]:-})
    med_none=$(median ${ALL[$cond.none]:-})
    mratio=$(awk -v a="$med_all" -v b="$med_none" 'BEGIN {if (a != "" && b > 0) printf "%.3f", a / b}')
    echo
    printf '%s%s: %d images (2-platform indexes, %d repositories, %s), fastest of %d\n' \
        "$cond" "$( ((API)) && echo ", referrers API")" "$N" "$(cut -d: -f1 "$RUN/corpus/images.txt" | sort -u | wc -l)" \
        "$( ((SIGNED)) && echo "each signed; all = --verify-cosign-key" || echo "no signatures")" "$REPEAT"
    printf '%-18s %9s %9s %10s %10s %12s\n' "--referrers" seconds requests "tags/list" referrers "sha256-tags"
    for m in none all; do
        printf '%-18s %9s %9s %10s %10s %12s\n' "$m" "${BEST[$cond.$m]:-failed}" "${REQ[$cond.$m]:-}" \
            "${TAGL[$cond.$m]:-}" "${REFS[$cond.$m]:-}" "${ATT[$cond.$m]:-}"
    done
    verdict=$(awk -v v="$mratio" -v g="$GOAL" 'BEGIN {print v == "" ? "n/a" : (v <= g ? "ok" : "MISSED")}')
    ((SIGNED)) && verdict="(no goal for signed images)"
    printf '%-18s %9s   (fastest of each)\n' "all/none" "${ratio:-n/a}"
    printf '%-18s %9s   (medians %s / %s)  goal <= %s  %s\n' "all/none median" "${mratio:-n/a}" \
        "${med_all:-}" "${med_none:-}" "$GOAL" "$verdict"
    JSON=$(jq -c --arg c "$cond" --argjson n "$N" --arg a "${BEST[$cond.all]:-}" --arg z "${BEST[$cond.none]:-}" \
        --arg r "${ratio:-}" --arg mr "${mratio:-}" --arg ra "${REQ[$cond.all]:-}" --arg rz "${REQ[$cond.none]:-}" \
        '. + [{condition: $c, images: $n, seconds: {all: ($a | tonumber? // null), none: ($z | tonumber? // null)},
               requests: {all: ($ra | tonumber? // null), none: ($rz | tonumber? // null)},
               ratio: ($r | tonumber? // null), medianRatio: ($mr | tonumber? // null)}]' <<<"$JSON")
done
echo "BENCH_REFERRERS $(jq -c --argjson g "$GOAL" '{runs: ., goal: $g}' <<<"$JSON")"
exit "$FAILED"
