#!/usr/bin/env bash
# Measurements beside bench/run.sh's standard table, each an A/B in one run:
#
#   bash bench/compare.sh history [REPEAT]   fan-out 1 x 10,000 x 200 and conns 15,000 with
#                                            history on (the default) and off (--history-size 0)
#   bash bench/compare.sh cluster [REPEAT] [NOTIFIES]
#                                            single node (memory broker), single node on Redis,
#                                            and two nodes on one Redis (herald-bench cluster,
#                                            2 x 5,000 subscribers, published through the first)
#   bash bench/compare.sh ingest [REPEAT] [REQUESTS]
#                                            POST /notify ingest, herald against reference-server
#                                            (and against the herald binary in $HERALD_B, another
#                                            build, when set), interleaved round by round; each a
#                                            fresh server, 3,000 warm-up requests on their own
#                                            connections, then REQUESTS (default 40,000) at
#                                            concurrency 64 (after herald-bench's own warm-up
#                                            on the same connections)
#
# Every process of the hub side (herald nodes and redis-server) is pinned to CPU 0 and
# herald-bench to CPU 1, as in run.sh. Raw results, one JSON line per measurement
# ({"label","rep","result"}): bench/results/<timestamp>-<what>.jsonl. Needs redis-server for
# `cluster`. Only the PIDs this script starts are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 20000

what=${1:?usage: bench/compare.sh history|cluster|ingest [REPEAT] [NOTIFIES or REQUESTS]}
repeat=${2:-3}
notifies=${3:-20}
cargo build --release -p herald -p herald-bench --bins >&2
BIN=target/release
OUT="bench/results/$(date -u +%Y%m%dT%H%M%SZ)-$what.jsonl"
WORK=$(mktemp -d -t herald-compare.XXXXXX)
PIDS=()
# Stops every server this script started (by PID) and removes its scratch directory.
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap stop_all EXIT

# start_herald ARGS...: sets HPID and HADDR. $SERVER (default: this build's herald) is the
# binary started; reference-server logs its address the same way.
start_herald() {
    local log="$WORK/herald-${#PIDS[@]}.log"
    taskset -c 0 "${SERVER:-$BIN/herald}" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
    HPID=$!
    PIDS+=("$HPID")
    HADDR=""
    for _ in $(seq 100); do
        HADDR=$(grep -o 'listening addr=[0-9.:]*' "$log" | head -1 | cut -d= -f2 || true)
        [ -n "$HADDR" ] && return 0
        sleep 0.1
    done
    echo "herald did not start:" >&2
    cat "$log" >&2
    exit 1
}

stop() {
    kill -TERM "$@" 2>/dev/null || true
    wait "$@" 2>/dev/null || true
}

# measure LABEL REP herald-bench-args...: runs herald-bench on CPU 1, appends its JSON.
measure() {
    local label=$1 rep=$2
    shift 2
    local result
    result=$(timeout 600 taskset -c 1 "$BIN/herald-bench" "$@" | tail -n 1 || true)
    jq -c . <<<"$result" >/dev/null 2>&1 || result=null
    printf '{"label":"%s","rep":%s,"result":%s}\n' "$label" "$rep" "$result" >>"$OUT"
    echo "$label #$rep: $(jq -c '.results | [.deliveries_per_s // .requests_per_s, .rss_per_conn_idle_kib // .hub_cpu_pct, .loss, .duplicates]' <<<"$result" 2>/dev/null)" >&2
}

history_ab() {
    for rep in $(seq "$repeat"); do
        for variant in "history-on|" "history-off|--history-size 0"; do
            local label=${variant%%|*} args=${variant#*|}
            # shellcheck disable=SC2086 # $args is empty or two words on purpose
            start_herald $args
            measure "$label fanout-1x10000" "$rep" fanout --subscribers 10000 --groups 1 \
                --notifies 200 --url "http://$HADDR" --hub-pid "$HPID"
            stop "$HPID"
            # shellcheck disable=SC2086
            start_herald $args
            measure "$label conns-15000" "$rep" conns --connections 15000 --groups 100 \
                --burst 20 --timeout 180 --url "http://$HADDR" --hub-pid "$HPID"
            stop "$HPID"
        done
    done
}

cluster_ab() {
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    for rep in $(seq "$repeat"); do
        start_herald
        measure single-memory "$rep" fanout --subscribers 10000 --groups 1 \
            --notifies "$notifies" --url "http://$HADDR" --hub-pid "$HPID"
        stop "$HPID"

        taskset -c 0 redis-server --port "$port" --save '' --appendonly no >/dev/null 2>&1 &
        local rpid=$!
        PIDS+=("$rpid")
        for _ in $(seq 50); do
            redis-cli -p "$port" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
        start_herald --redis-url "redis://127.0.0.1:$port"
        measure single-redis "$rep" fanout --subscribers 10000 --groups 1 \
            --notifies "$notifies" --url "http://$HADDR" --hub-pid "$HPID"
        stop "$HPID"

        start_herald --redis-url "redis://127.0.0.1:$port"
        local a=$HADDR apid=$HPID
        start_herald --redis-url "redis://127.0.0.1:$port"
        measure cluster-2x5000 "$rep" cluster --subscribers 5000 --notifies "$notifies" \
            --url "http://$a" --peer-url "http://$HADDR" --hub-pid "$apid"
        stop "$apid" "$HPID"
        stop "$rpid"
    done
}

ingest_ab() {
    local servers=("herald|$BIN/herald" "reference|$BIN/reference-server")
    [ -n "${HERALD_B:-}" ] && servers+=("herald-b|$HERALD_B")
    for rep in $(seq "$repeat"); do
        for server in "${servers[@]}"; do
            SERVER=${server#*|} start_herald
            taskset -c 1 "$BIN/herald-bench" ingest --requests 3000 --concurrency 64 \
                --url "http://$HADDR" >/dev/null 2>&1 || true
            measure "${server%%|*} ingest-$notifies" "$rep" ingest --requests "$notifies" \
                --concurrency 64 --url "http://$HADDR" --hub-pid "$HPID"
            stop "$HPID"
        done
    done
}

case "$what" in
    history) history_ab ;;
    cluster) cluster_ab ;;
    ingest)
        [ -n "${3:-}" ] || notifies=40000
        ingest_ab
        ;;
    *) echo "unknown comparison $what (history, cluster, ingest)" >&2; exit 64 ;;
esac
echo "results: $OUT" >&2
