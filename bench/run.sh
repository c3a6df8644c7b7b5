#!/usr/bin/env bash
# Benchmarks herald against reference-server and Bun on this machine.
#
#   bash bench/run.sh           # standard scenarios (~6-12 min), writes bench/results/<ts>.json,
#                               # regenerates the table in BENCHMARKS.md and bench/comparison.svg
#   bash bench/run.sh --quick   # scaled-down smoke test (~1-2 min), writes <ts>-quick.json and
#                               # <ts>-quick.svg only
#
# Bun (bench/bun/server.js) is installed from npm the first time, pinned by
# bench/bun/package-lock.json (`npm ci`; needs node and npm). BENCH_TARGETS="herald
# reference" leaves it out.
#
# Each server runs alone, pinned to CPU 0 and restarted for every scenario (fresh RSS,
# fresh groups); herald-bench runs pinned to CPU 1. Everything is loopback. Only the PIDs
# this script started are ever killed.
#
# Environment: BENCH_REPEAT (repetitions per server and scenario, alternating herald and
# reference; default 3 in full mode, 1 in quick mode; the table shows medians),
# BENCH_QUIET_WAIT (seconds to wait for an idle machine before each run,
# default 60 in full mode, 0 in quick mode), BENCH_QUIET_BUDGET (total such waiting,
# default 240), BENCH_OTHERS_MAX / BENCH_RETRIES (a run during which other processes used,
# or the VM's host stole (/proc/stat steal), more than 15% of a core in all is measured
# again, up to 2 times; not in quick mode), BENCH_ONLY (a regex of
# scenario names to run), BENCH_TARGETS (servers to measure, default "herald reference bun").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=full
case "${1:-}" in
    --quick) MODE=quick ;;
    "") ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "usage: bash bench/run.sh [--quick]" >&2; exit 64 ;;
esac

for tool in cargo jq; do
    command -v "$tool" >/dev/null || { echo "run.sh needs $tool" >&2; exit 1; }
done

log() { printf '\n== %s (%s)\n' "$*" "$(date +%T)" >&2; }

# CPU pinning: servers on CPU 0, the load tool on CPU 1.
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c 0)
    PIN_CLIENT=(taskset -c 1)
else
    echo "warning: fewer than 2 CPUs or no taskset; running unpinned" >&2
    PIN_SERVER=()
    PIN_CLIENT=()
fi

read -r -a TARGETS <<<"${BENCH_TARGETS:-herald reference bun}"
for target in "${TARGETS[@]}"; do
    case "$target" in
        herald | reference | bun) ;;
        *) echo "BENCH_TARGETS: unknown server $target (herald, reference, bun)" >&2; exit 64 ;;
    esac
done

# Bun from npm, at the version bench/bun/package-lock.json pins.
BUN_DIR="$ROOT/bench/bun"
BUN="$BUN_DIR/node_modules/.bin/bun"
if [[ " ${TARGETS[*]} " == *" bun "* ]]; then
    want=$(jq -r '.packages["node_modules/bun"].version' "$BUN_DIR/package-lock.json")
    if ! [ -x "$BUN" ] || [ "$("$BUN" --version 2>/dev/null)" != "$want" ]; then
        command -v npm >/dev/null || {
            echo "run.sh needs npm to install Bun $want (or set BENCH_TARGETS=\"herald reference\")" >&2
            exit 1
        }
        log "installing Bun $want from npm (npm ci in bench/bun)"
        (cd "$BUN_DIR" && npm ci --no-audit --no-fund >&2)
    fi
    echo "Bun $("$BUN" --version)" >&2
fi

log "building (release)"
cargo build --release -p herald -p herald-bench --bins >&2
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BIN="$TARGET_DIR/release"

WORK=$(mktemp -d -t herald-bench.XXXXXX)
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the machine -----------------------------------------------------------------------

# Busy percent of cpu0 and cpu1 over $1 seconds, from /proc/stat ("12.3 4.5").
cores_busy() {
    local a b
    a=$(grep -E '^cpu[01] ' /proc/stat)
    sleep "$1"
    b=$(grep -E '^cpu[01] ' /proc/stat)
    paste <(echo "$a") <(echo "$b") | awk '{
        n = (NF - 2) / 2; t0 = 0; t1 = 0
        for (i = 2; i <= 9; i++) { t0 += $i; t1 += $(i + n + 1) }
        idle0 = $5 + $6; idle1 = $(5 + n + 1) + $(6 + n + 1)
        dt = t1 - t0; printf "%.1f ", (dt > 0 ? 100 * (dt - (idle1 - idle0)) / dt : 0)
    }'
}

if [ "$MODE" = full ]; then
    REPEAT=${BENCH_REPEAT:-3}
    QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
    QUIET_SAMPLE=1
else
    REPEAT=${BENCH_REPEAT:-1}
    QUIET_WAIT=${BENCH_QUIET_WAIT:-0}
    QUIET_SAMPLE=0.3
fi
# A measurement during which other processes used more than OTHERS_MAX % of a core is
# repeated, up to RETRIES times.
OTHERS_MAX=${BENCH_OTHERS_MAX:-15}
if [ "$MODE" = full ]; then RETRIES=${BENCH_RETRIES:-2}; else RETRIES=${BENCH_RETRIES:-0}; fi
# All waiting for quiet and all measuring again, over the whole run, stop once they
# have taken this many seconds, so a busy machine cannot stretch the run much.
QUIET_BUDGET=${BENCH_QUIET_BUDGET:-240}
QUIET_SPENT=0
# Waits (up to QUIET_WAIT s, within QUIET_BUDGET) until both cores are under 10% busy:
# other work on the machine (builds, tests) skews every number. Sets BUSY to the last
# reading, which goes into the results next to each run.
BUSY=""
wait_quiet() {
    local waited=0
    while :; do
        BUSY=$(cores_busy "$QUIET_SAMPLE")
        if awk -v b="$BUSY" 'BEGIN { split(b, v, " "); exit !(v[1] < 10 && v[2] < 10) }'; then
            break
        fi
        if [ "$waited" -ge "$QUIET_WAIT" ] || [ "$QUIET_SPENT" -ge "$QUIET_BUDGET" ]; then
            [ "$QUIET_WAIT" -gt 0 ] && echo "warning: machine still busy ($BUSY%); measuring anyway" >&2
            break
        fi
        echo "machine busy (cpu0/cpu1: $BUSY%), waiting for it to settle" >&2
        sleep 4
        waited=$((waited + 5))
        QUIET_SPENT=$((QUIET_SPENT + 5))
    done
}

# --- servers ---------------------------------------------------------------------------

SERVER_ADDR=""
SERVE_COUNT=0
# start_server herald|reference|bun: sets SERVER_PID and SERVER_ADDR.
start_server() {
    SERVE_COUNT=$((SERVE_COUNT + 1))
    local logf="$WORK/$1-$SERVE_COUNT.log"
    case "$1" in
        herald) "${PIN_SERVER[@]}" "$BIN/herald" --listen 127.0.0.1:0 >"$logf" 2>&1 & ;;
        reference) "${PIN_SERVER[@]}" "$BIN/reference-server" --listen 127.0.0.1:0 >"$logf" 2>&1 & ;;
        bun) "${PIN_SERVER[@]}" "$BUN" "$BUN_DIR/server.js" --listen 127.0.0.1:0 >"$logf" 2>&1 & ;;
    esac
    SERVER_PID=$!
    SERVER_ADDR=""
    for _ in $(seq 100); do
        SERVER_ADDR=$(grep -o 'listening addr=[0-9.:]*' "$logf" | head -1 | cut -d= -f2 || true)
        [ -n "$SERVER_ADDR" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$SERVER_ADDR" ]; then
        echo "$1 did not start; its log:" >&2
        cat "$logf" >&2
        exit 1
    fi
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# --- scenarios -------------------------------------------------------------------------

# name|title|herald-bench arguments[|servers, when not every one speaks what it needs]
if [ "$MODE" = full ]; then
    SCENARIOS=(
        "fanout-1x10000|fanout 1 group x 10,000 subs x 200 notifies|fanout --subscribers 10000 --groups 1 --notifies 200"
        "fanout-1x1000|burst: fanout 1 group x 1,000 subs x 200 notifies|fanout --subscribers 1000 --groups 1 --notifies 200"
        "fanout-1000x10|fanout 1,000 groups x 10 subs x 2,000 notifies|fanout --subscribers 10000 --groups 1000 --notifies 2000 --publishers 32"
        "latency-1x1000|steady: 1 group x 1,000 subs, 500 notifies at 50/s|fanout --subscribers 1000 --groups 1 --notifies 500 --rate 50"
        "conns-15000|conns 15,000 idle + burst of 20|conns --connections 15000 --groups 100 --burst 20 --timeout 180"
        "ingest-100000|ingest 100,000 requests at concurrency 64 after 5,000 warm-up|ingest --requests 100000 --warmup 5000 --concurrency 64"
        "ingest-batch-100|ingest 5,000 batches of 100 at concurrency 16|ingest --requests 5000 --batch 100 --concurrency 16|herald bun"
        "ingest-batch-1000|ingest 500 batches of 1,000 at concurrency 4|ingest --requests 500 --batch 1000 --concurrency 4|herald bun"
        "fanout-batch-100x100|fanout 100 groups x 100 subs x 20,000 notifies in batches of 100|fanout --subscribers 10000 --groups 100 --notifies 20000 --batch 100|herald bun"
    )
else
    SCENARIOS=(
        "fanout-1x2000|fanout 1 group x 2,000 subs x 50 notifies|fanout --subscribers 2000 --groups 1 --notifies 50"
        "fanout-1x500|fanout 1 group x 500 subs x 50 notifies|fanout --subscribers 500 --groups 1 --notifies 50"
        "fanout-100x10|fanout 100 groups x 10 subs x 200 notifies|fanout --subscribers 1000 --groups 100 --notifies 200 --publishers 16"
        "latency-1x200|latency 1 group x 200 subs, 50 notifies at 50/s|fanout --subscribers 200 --groups 1 --notifies 50 --rate 50"
        "conns-2000|conns 2,000 idle + burst of 5|conns --connections 2000 --groups 20 --burst 5 --settle 0.5"
        "ingest-5000|ingest 5,000 requests at concurrency 16 after 1,000 warm-up|ingest --requests 5000 --warmup 1000 --concurrency 16"
        "ingest-batch-100|ingest 200 batches of 100 at concurrency 4|ingest --requests 200 --batch 100 --concurrency 4|herald bun"
        "fanout-batch-10x100|fanout 10 groups x 100 subs x 2,000 notifies in batches of 100|fanout --subscribers 1000 --groups 10 --notifies 2000 --batch 100|herald bun"
    )
fi

RUNS="$WORK/runs.jsonl"
: >"$RUNS"
FAILED=0
for entry in "${SCENARIOS[@]}"; do
    IFS='|' read -r name title args only <<<"$entry"
    if [ -n "${BENCH_ONLY:-}" ] && ! [[ $name =~ $BENCH_ONLY ]]; then
        continue
    fi
    for rep in $(seq "$REPEAT"); do
        for target in "${TARGETS[@]}"; do
            if [ -n "$only" ] && [[ " $only " != *" $target "* ]]; then
                continue # reference-server has no POST /notify/batch
            fi
            log "$title: $target (#$rep of $REPEAT)"
            attempt=0
            while :; do
                attempt=$((attempt + 1))
                wait_quiet
                attempt_start=$SECONDS
                start_server "$target"
                out="$WORK/$name-$target-$rep.out"
                rc=0
                # shellcheck disable=SC2086 # $args is a list of words on purpose
                timeout 600 "${PIN_CLIENT[@]}" "$BIN/herald-bench" $args \
                    --url "http://$SERVER_ADDR" --hub-pid "$SERVER_PID" >"$out" || rc=$?
                stop_server
                head -n -1 "$out" >&2 || true
                result=$(tail -n 1 "$out" | jq -c . 2>/dev/null || echo null)
                result=${result:-null}
                # Other processes' CPU during the measurement (percent of one core).
                # Plus time the VM's host stole from the cores (steal): the same harm.
                others=$(jq -r '(.results.other_cpu_pct // .results.burst_other_cpu_pct // 0)
                    + (.results.steal_pct // .results.burst_steal_pct // 0)' \
                    <<<"$result" 2>/dev/null || echo 0)
                if [ "$attempt" -le "$RETRIES" ] && [ "$QUIET_SPENT" -lt "$QUIET_BUDGET" ] &&
                    awk -v o="$others" -v m="$OTHERS_MAX" 'BEGIN { exit !(o > m) }'; then
                    echo "disturbed: other processes and steal took $others% of a core; measuring again" >&2
                    QUIET_SPENT=$((QUIET_SPENT + SECONDS - attempt_start))
                    continue
                fi
                break
            done
            [ "$rc" -eq 0 ] || FAILED=$((FAILED + 1))
            jq -nc --arg name "$name" --arg title "$title" --arg target "$target" \
                --argjson rep "$rep" --argjson rc "$rc" --arg busy "$BUSY" \
                --argjson attempts "$attempt" --argjson result "$result" \
                '{name: $name, title: $title, target: $target, rep: $rep, exit_code: $rc,
                  attempts: $attempts,
                  background_busy_pct: ($busy | split(" ") | map(select(. != "") | tonumber)),
                  result: $result}' >>"$RUNS"
        done
    done
done

# --- results ---------------------------------------------------------------------------

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
if [ "$MODE" = quick ]; then
    OUT="bench/results/$STAMP-quick.json"
else
    OUT="bench/results/$STAMP.json"
fi
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- src Cargo.toml 2>/dev/null)" ]; then
    COMMIT="$COMMIT+dirty"
fi
jq -s --arg ts "$STAMP" --arg mode "$MODE" --arg commit "$COMMIT" \
    --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    --argjson nproc "$(nproc)" --arg kernel "$(uname -r)" \
    --argjson mem "$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)" \
    --arg rustc "$(rustc --version)" \
    '{timestamp: $ts, mode: $mode, herald_commit: $commit,
      machine: {cpu: $cpu, nproc: $nproc, kernel: $kernel, memory_gib: $mem, rustc: $rustc,
                pinning: "servers on CPU 0, herald-bench on CPU 1"},
      runs: .}' "$RUNS" >"$OUT"
log "wrote $OUT"

if [ "$MODE" = full ]; then
    "$BIN/herald-bench" summary --results "$OUT" --out BENCHMARKS.md --chart bench/comparison.svg
    sed -n '/bench:begin/,/bench:end/p' BENCHMARKS.md | sed '1d;$d'
else
    "$BIN/herald-bench" summary --results "$OUT" --out "$WORK/summary.md" --chart chart.svg
    cp "$WORK/chart.svg" "${OUT%.json}.svg"
    log "wrote ${OUT%.json}.svg"
    sed -n '/bench:begin/,/bench:end/p' "$WORK/summary.md" | sed '1d;$d'
fi

if [ "$FAILED" -gt 0 ]; then
    echo "$FAILED run(s) were not clean (loss, timeout or errors): see $OUT" >&2
    exit 2
fi
