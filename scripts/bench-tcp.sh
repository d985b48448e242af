#!/usr/bin/env bash
# Teltonika TCP against HTTP ingest (not a test): starts a release server with the Teltonika
# listener on a fresh database and runs `geotrack bench-tcp` against it: 1,000 devices, each on
# its own connection, 50 packets of 10 records over TCP, then the same through
# `POST /api/v1/positions` (defaults; pass other flags through, e.g. `--packets 100`). Prints
# fixes/s of both, the ratio TCP / HTTP, CPU per million fixes and stored == acknowledged.
set -euo pipefail
cd "$(dirname "$0")/.."
DB=geotrack_bench_tcp
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=${BENCH_PORT:-$(free_port)}
TCP_PORT=${BENCH_TCP_PORT:-$(free_port)}
URL="postgres://postgres@127.0.0.1:5432/$DB"
# 1,000 tracker connections and 1,000 HTTP connections, in the client and in the server.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
bash scripts/ensure-postgis.sh >/dev/null 2>&1
psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"
cargo build --release --quiet
GEOTRACK_LOG=warn GEOTRACK_TCP__TELTONIKA="127.0.0.1:$TCP_PORT" \
  ./target/release/geotrack serve --bind "127.0.0.1:$PORT" --database-url "$URL" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.2; done
./target/release/geotrack bench-tcp --url "http://127.0.0.1:$PORT" --tcp "127.0.0.1:$TCP_PORT" \
  --database-url "$URL" --server-pid "$SERVER" "$@"
