#!/usr/bin/env bash
# Dispatch benchmark (not a test). A fresh database holds 100,000 live devices spread over
# metropolitan France (written straight into devices_latest: the server loads its live index
# from there at start-up). A release server answers; wrk (the Debian package, installed when
# missing) measures in the same run, with the same client settings:
#   - /health requests/s: the ceiling of this server on this machine;
#   - nearby: GET /api/v1/devices/nearby?lon=&lat=&limit=10 at 2,000 random points of France;
#   - within: GET /api/v1/devices/within?bbox= of 2,000 random 10 km boxes (about 20 devices);
# and prints each as a ratio to /health, with wrk's latency percentiles (client included: client
# and server share the 2 cores). Runs alternate (health, nearby, within, health...) since a shared
# machine drifts. The index alone: `cargo bench -p dispatch --bench nearby`.
# Usage: bash scripts/bench-dispatch.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
DB=geotrack_bench_dispatch
PORT=${BENCH_PORT:-18094}
URL="postgres://postgres@127.0.0.1:5432/$DB"
THREADS=2
CONNECTIONS=32
ROUNDS=${BENCH_ROUNDS:-3}
WORK=$(mktemp -d)
psql() { command psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }

bash scripts/ensure-postgis.sh >/dev/null 2>&1
if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet

echo "== data: 100,000 devices over metropolitan France"
psql -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"
./target/release/geotrack migrate --database-url "$URL" >/dev/null
psql -d "$DB" <<'SQL'
SELECT setseed(0.7);
INSERT INTO devices_latest (device, ts, geom, speed_mps, heading_deg, received_at)
SELECT 'veh-' || lpad(i::text, 6, '0'), now() - random() * interval '10 minutes',
       ST_SetSRID(ST_MakePoint(-4.5 + random() * 12.5, 42.5 + random() * 8.5), 4326), 10, 90, now()
FROM generate_series(0, 99999) i;
SQL
python3 - "$WORK" <<'PY'
import random, sys
work = sys.argv[1]
random.seed(11)
points = [(random.uniform(-4.5, 8.0), random.uniform(42.5, 51.0)) for _ in range(2000)]
with open(f"{work}/nearby.txt", "w") as out:
    for lon, lat in points:
        out.write(f"/api/v1/devices/nearby?lon={lon:.5f}&lat={lat:.5f}&limit=10\n")
with open(f"{work}/within.txt", "w") as out:
    for lon, lat in points:
        out.write(f"/api/v1/devices/within?bbox={lon:.5f},{lat:.5f},{lon + 0.13:.5f},{lat + 0.09:.5f}\n")
with open(f"{work}/health.txt", "w") as out:
    out.write("/health\n")
PY

GEOTRACK_LOG=error ./target/release/geotrack serve --bind "127.0.0.1:$PORT" --database-url "$URL" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/api/v1/devices/nearby?lon=2&lat=47" >/dev/null && break
  sleep 0.2
done
found=$(curl -sf "http://127.0.0.1:$PORT/api/v1/devices/within?bbox=-5,42,9,52&limit=1" | python3 -c \
  'import json, sys; print(len(json.load(sys.stdin)["features"]))')
[ "$found" = 1 ] || { echo "the live index did not load" >&2; exit 1; }

# Requests/s of one wrk run over the paths of a file (latency percentiles to $WORK/latency-NAME).
rate() {
  local out
  out=$(BENCH_MODE=random BENCH_PATHS="$WORK/$1.txt" BENCH_THREADS=$THREADS BENCH_ACCEPT=identity \
    wrk --latency -t$THREADS -c$CONNECTIONS -d"${SECONDS_PER_RUN}s" -s scripts/bench-tiles/paths.lua "http://127.0.0.1:$PORT")
  echo "$out" | grep -E 'Non-2xx|Socket errors' >&2 || true
  echo "$out" | awk '/^ +(50|99)%/ {printf "%s %s  ", $1, $2}' >> "$WORK/latency-$1"
  echo >> "$WORK/latency-$1"
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}
mean() { echo "$@" | awk '{for (i = 1; i <= NF; i++) s += $i; printf "%.0f", s / NF}'; }

echo "== runs of ${SECONDS_PER_RUN}s, wrk -t$THREADS -c$CONNECTIONS, client and server on the same machine"
healths="$(rate health)"; nearbys=""; withins=""
for _ in $(seq 1 "$ROUNDS"); do
  nearbys="$nearbys $(rate nearby)"
  withins="$withins $(rate within)"
  healths="$healths $(rate health)"
done
health=$(mean $healths); nearby=$(mean $nearbys); within=$(mean $withins)
echo "/health:$healths requests/s (mean $health)"
echo "nearby k=10:$nearbys requests/s (mean $nearby); latency per run: $(tr '\n' ';' < "$WORK/latency-nearby")"
echo "within 10 km box:$withins requests/s (mean $within); latency per run: $(tr '\n' ';' < "$WORK/latency-within")"
awk -v n="$nearby" -v w="$within" -v h="$health" \
  'BEGIN {printf "nearby / health = %.2f, within / health = %.2f\n", n / h, w / h}'
