#!/usr/bin/env bash
# End-to-end ingest benchmark (not a test): starts a release server on a fresh database, runs
# `geotrack bench-ingest` against it (1,000,000 fixes by default; pass other flags through),
# and prints throughput, the ratio to a raw COPY of the same rows, CPU per million and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
DB=geotrack_bench
PORT=${BENCH_PORT:-18090}
URL="postgres://postgres@127.0.0.1:5432/$DB"
bash scripts/ensure-postgis.sh >/dev/null 2>&1
psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"
cargo build --release --quiet
# BENCH_SERVER_BIN: another build of the server to measure (an A/B run against this one).
GEOTRACK_LOG=warn "${BENCH_SERVER_BIN:-./target/release/geotrack}" serve --bind "127.0.0.1:$PORT" --database-url "$URL" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.2; done
./target/release/geotrack bench-ingest --url "http://127.0.0.1:$PORT" --database-url "$URL" --server-pid "$SERVER" "$@"
