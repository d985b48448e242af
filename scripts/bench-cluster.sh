#!/usr/bin/env bash
# Cluster benchmarks (not tests), on this machine's PostgreSQL and NATS with JetStream, each run
# on a fresh database and a NATS prefix of its own (deleted afterwards):
#
#   bash scripts/bench-cluster.sh scale [RATE]   one node without cluster mode, then clusters of
#                                                1, 2 and 3 nodes, each driven at RATE fixes/s
#                                                (default 4000; BATCH fixes per request, default
#                                                50) for 30 s: acknowledged and end-to-end stored
#                                                rates, alerts and their latency, side by side;
#                                                a RATE above what a setup sustains measures its
#                                                throughput
#   bash scripts/bench-cluster.sh roll [RATE]    3 nodes at RATE (default 2000) fixes/s for 100 s
#                                                while each node in turn is stopped (SIGTERM) and
#                                                started again: acknowledged vs stored fixes,
#                                                alerts lost or doubled per subscriber, requests
#                                                refused, alert latency per 10 s window
#
# Load and checks: `geotrack bench-cluster` (tools/src/bench_cluster.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-scale}
DB=geotrack_bench_cluster
URL="postgres://postgres@127.0.0.1:5432/$DB"
BASE_PORT=${BENCH_PORT:-18300}
PREFIX="bench-$$"
bash scripts/ensure-postgis.sh >/dev/null 2>&1
bash scripts/check-nats.sh
cargo build --release --quiet
BIN=./target/release/geotrack
declare -A PIDS=()

fresh_db() {
    psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"
    "$BIN" migrate --database-url "$URL" >/dev/null
}

# start_node N CLUSTER(yes|no): a release node on port BASE_PORT+N, waits until ready.
start_node() {
    local n=$1 port=$((BASE_PORT + $1))
    local cluster_env=()
    if [[ $2 == yes ]]; then
        cluster_env=(GEOTRACK_CLUSTER__NATS_URL=nats://127.0.0.1:4222 GEOTRACK_CLUSTER__NODE="n$n"
            GEOTRACK_CLUSTER__PREFIX="$PREFIX" GEOTRACK_CLUSTER__PARTITIONS=16)
    fi
    env GEOTRACK_LOG=warn GEOTRACK_ALERTS__HUB_CAPACITY=65536 GEOTRACK_SHUTDOWN_TIMEOUT_S=10 \
        GEOTRACK_DB_MAX_CONNECTIONS=24 "${cluster_env[@]}" \
        "$BIN" serve --bind "127.0.0.1:$port" --database-url "$URL" &
    PIDS[$n]=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && return; sleep 0.1; done
    echo "node $n never got ready" >&2
    exit 1
}

stop_all() {
    for n in "${!PIDS[@]}"; do kill -TERM "${PIDS[$n]}" 2>/dev/null || true; done
    for n in "${!PIDS[@]}"; do wait "${PIDS[$n]}" 2>/dev/null || true; done
    PIDS=()
}
trap 'stop_all' EXIT

urls() {
    local list=()
    for n in $(seq 0 $(($1 - 1))); do list+=("http://127.0.0.1:$((BASE_PORT + n))"); done
    (IFS=,; echo "${list[*]}")
}

bench() { "$BIN" bench-cluster --database-url "$URL" "$@"; }

# Deletes the NATS stream and buckets of cluster $1.
destroy() { GEOTRACK_CLUSTER__NATS_URL=nats://127.0.0.1:4222 GEOTRACK_CLUSTER__PREFIX="$1" "$BIN" cluster destroy; }

case "$MODE" in
scale)
    RATE=${2:-4000}
    BATCH=${BATCH:-50}
    echo "== one node, no cluster mode"
    fresh_db; start_node 0 no
    bench --urls "$(urls 1)" --rate "$RATE" --batch "$BATCH" --duration-s 30 --window-s 30
    stop_all
    for nodes in 1 2 3; do
        echo "== cluster of $nodes node(s)"
        PREFIX="bench-$$-$nodes"
        fresh_db
        for n in $(seq 0 $((nodes - 1))); do start_node "$n" yes; done
        sleep 4 # leases settle
        bench --urls "$(urls "$nodes")" --rate "$RATE" --batch "$BATCH" --duration-s 30 --window-s 30
        stop_all
        destroy "$PREFIX"
    done
    ;;
roll)
    RATE=${2:-2000}
    fresh_db
    for n in 0 1 2; do start_node "$n" yes; done
    sleep 4
    bench --urls "$(urls 3)" --rate "$RATE" --duration-s 100 --window-s 10 &
    BENCH=$!
    sleep 20
    for n in 0 1 2; do
        echo "== unix $(date +%s.%N | cut -c1-12): restarting node $n (SIGTERM, then start)"
        kill -TERM "${PIDS[$n]}"; wait "${PIDS[$n]}" || true
        start_node "$n" yes
        echo "== unix $(date +%s.%N | cut -c1-12): node $n ready again"
        sleep 20
    done
    wait "$BENCH"
    stop_all
    destroy "$PREFIX"
    ;;
*)
    echo "usage: $0 scale|roll [RATE]" >&2
    exit 2
    ;;
esac
