#!/usr/bin/env bash
# Alert latency benchmark (not a test): starts a release server on a fresh database and runs
# `geotrack bench-alerts` against it: 1,000 fences, 100 WebSocket subscribers, 10,000 devices
# driven open loop (defaults; pass other flags through, e.g. `--rate 25000 --duration-s 60`, or
# `--idle-subscribers 10000` to measure memory per idle socket). BENCH_COMMAND runs another
# client on the same server set-up (scripts/bench-fanout.sh: `bench-fanout`).
set -euo pipefail
cd "$(dirname "$0")/.."
DB=geotrack_bench_alerts
PORT=${BENCH_PORT:-18091}
URL="postgres://postgres@127.0.0.1:5432/$DB"
# Idle-socket runs hold tens of thousands of descriptors in both processes.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
bash scripts/ensure-postgis.sh >/dev/null 2>&1
psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"
cargo build --release --quiet
# Every bench socket comes from 127.0.0.1: lift the per-address connection cap (4,096).
# BENCH_SERVER_BIN: another build of the server to measure (an A/B run against this one).
# BENCH_HUB_CAPACITY: alerts the hub keeps for a subscriber behind (65,536 here; 4,096 by default).
GEOTRACK_LOG=warn GEOTRACK_ALERTS__HUB_CAPACITY=${BENCH_HUB_CAPACITY:-65536} GEOTRACK_HTTP__MAX_CONNECTIONS_PER_IP=0 "${BENCH_SERVER_BIN:-./target/release/geotrack}" serve --bind "127.0.0.1:$PORT" --database-url "$URL" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.2; done
./target/release/geotrack "${BENCH_COMMAND:-bench-alerts}" --url "http://127.0.0.1:$PORT" --database-url "$URL" --server-pid "$SERVER" "$@"
