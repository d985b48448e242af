#!/usr/bin/env bash
# Overload and database-restart check (not a test, not part of `make test`): starts a release
# server on a fresh database, runs `geotrack bench-overload` against it (calibration, then 10x
# the sustainable ingest rate for 60 s; pass other flags through) and, RESTART_POSTGRES_AT
# seconds after the overload starts (default 20; 0: no restart), restarts PostgreSQL for real
# with `pg_ctlcluster 15 main restart`. The tool exits non-zero if an acknowledged fix was lost,
# a 5xx other than 503 or a 503 without Retry-After was seen, or /health failed over 1%.
# The restart cuts every client of the cluster, not only this server.
set -euo pipefail
cd "$(dirname "$0")/.."
DB=geotrack_bench_overload
PORT=${BENCH_PORT:-18091}
RESTART_AT=${RESTART_POSTGRES_AT:-20}
URL="postgres://postgres@127.0.0.1:5432/$DB"
bash scripts/ensure-postgis.sh >/dev/null 2>&1
psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"
cargo build --release --quiet
# The overload holds thousands of connections: this client needs the file descriptors.
ulimit -n "$(ulimit -Hn)"
OUT=$(mktemp)
# The server's log (warnings and errors) goes to a file, summed up at the end: under overload
# it can hold a line per refused request.
SERVER_LOG=$(mktemp)
GEOTRACK_LOG=warn ./target/release/geotrack serve --bind "127.0.0.1:$PORT" --database-url "$URL" \
    >"$SERVER_LOG" 2>&1 &
SERVER=$!
WATCHER=
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true
      if [ -n "$WATCHER" ]; then kill $WATCHER 2>/dev/null || true; fi
      rm -f "$OUT" "$SERVER_LOG" "$SERVER_LOG.txt"' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.2; done

# Waits for the tool's "overload starts" line, then restarts PostgreSQL RESTART_AT s later.
restart_postgres() {
    until grep -q "^overload starts" "$OUT" 2>/dev/null; do sleep 0.1; done
    sleep "$RESTART_AT"
    echo "[bench-overload.sh] $(date +%T.%3N) pg_ctlcluster 15 main restart (t=${RESTART_AT} s)"
    if pg_ctlcluster 15 main restart; then
        echo "[bench-overload.sh] $(date +%T.%3N) PostgreSQL restarted"
    else
        echo "[bench-overload.sh] pg_ctlcluster failed" >&2
    fi
}
if [ "$RESTART_AT" != 0 ]; then
    restart_postgres &
    WATCHER=$!
fi
set +e
./target/release/geotrack bench-overload --url "http://127.0.0.1:$PORT" --database-url "$URL" \
    --server-pid "$SERVER" --health-from 127.0.0.2 "$@" | tee "$OUT"
STATUS=${PIPESTATUS[0]}
set -e
# The server's log without colours: lines by level, then its distinct messages (numbers elided).
sed 's/\x1b\[[0-9;]*m//g' "$SERVER_LOG" >"$SERVER_LOG.txt"
echo "server log: $(grep -c . "$SERVER_LOG.txt" || true) lines ($(grep -c ' ERROR ' "$SERVER_LOG.txt" || true)" \
    "ERROR, $(grep -c ' WARN ' "$SERVER_LOG.txt" || true) WARN); most frequent messages:"
sed -E 's/^[^ ]+ +//; s/[0-9.]+ ?(ms|s)\b/N\1/g; s/[0-9]{4,}/N/g' "$SERVER_LOG.txt" | sort | uniq -c | sort -rn | head -15
exit "$STATUS"
