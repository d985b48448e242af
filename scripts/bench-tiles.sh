#!/usr/bin/env bash
# Tile benchmark (not a test). On a fresh database: Natural Earth 1:10m countries (the npm
# package world-atlas, ~545k vertices) imported as the `countries` layer, and 1,000,000 points
# inside them as an operator table layer `points`. A release server serves them; wrk (the
# Debian package, installed when missing) measures, in the same run and with the same client
# settings:
#   - /health requests/s: the ceiling of this server on this machine;
#   - warm tiles/s: 2,002 random tiles z4-z14 (182 per zoom, centred on land), all cached first;
#   - cold tiles/s: tiles never requested before (every request builds a tile in PostGIS).
# and prints warm tiles / health per layer (the target is >= 0.8). Warm and /health runs
# alternate (health, warm, health, ... health: $ROUNDS warm runs), as a shared machine drifts.
# Requests send what browsers send, `Accept-Encoding: gzip, deflate, br, zstd` (so tiles come
# brotli-compressed); BENCH_ACCEPT=gzip measures gzip-only clients.
# Also prints the server's own CPU time per request for both (unlike requests/s, it leaves out
# the client, which shares the 2 cores). BENCH_REUSE=1 keeps the database of an earlier run.
# Usage: bash scripts/bench-tiles.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
DB=geotrack_bench_tiles
PORT=${BENCH_PORT:-18093}
URL="postgres://postgres@127.0.0.1:5432/$DB"
THREADS=2
CONNECTIONS=64
ROUNDS=${BENCH_ROUNDS:-3}
export BENCH_ACCEPT=${BENCH_ACCEPT:-gzip, deflate, br, zstd}
WORK=$(mktemp -d)
psql() { command psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }

bash scripts/ensure-postgis.sh >/dev/null 2>&1
if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet

if [ "${BENCH_REUSE:-}" = 1 ] && psql -d "$DB" -Atc "SELECT 1 FROM bench_tiles LIMIT 1" >/dev/null 2>&1; then
  echo "== data: reusing database $DB (BENCH_REUSE=1)"
else
echo "== data: Natural Earth 1:10m countries (npm world-atlas) and 1,000,000 points"
(cd "$WORK" && npm pack world-atlas@2.0.2 --silent >/dev/null && tar xzf world-atlas-2.0.2.tgz)
python3 scripts/prepare-basemap.py "$WORK/package/countries-10m.json" "$WORK/countries-10m.geojson"
psql -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"
./target/release/geotrack migrate --database-url "$URL" >/dev/null
./target/release/geotrack import basemap "$WORK/countries-10m.geojson" --database-url "$URL"
psql -d "$DB" <<'SQL'
SELECT setseed(0.42);
CREATE TABLE bench_points (id serial PRIMARY KEY, weight integer NOT NULL, geom geometry(Point, 4326) NOT NULL);
-- Points inside the countries, as many per country as its share of the total area.
INSERT INTO bench_points (weight, geom)
SELECT (random() * 100)::int, (ST_Dump(ST_GeneratePoints(c.geom, greatest(1, round(1000000 * ST_Area(c.geom) / t.total))::int, 42))).geom
FROM basemap_countries c, (SELECT sum(ST_Area(geom)) AS total FROM basemap_countries) t;
CREATE INDEX bench_points_geom ON bench_points USING gist (geom);
ANALYZE bench_points;
SELECT (SELECT count(*) FROM bench_points) AS points,
       (SELECT sum(ST_NPoints(geom)) FROM basemap_countries) AS country_vertices;
-- Tiles z4-z14 centred on random points (so on land), as paths for both layers. The zoom is
-- drawn outside the sample: drawn in the same SELECT as ORDER BY random() LIMIT, it came out
-- tied to the sort key, and only z4-z9 were ever drawn.
CREATE TABLE bench_tiles AS
SELECT DISTINCT z, floor((ST_X(geom) + 180) / 360 * 2 ^ z)::int AS x,
       floor((1 - ln(tan(radians(lat)) + 1 / cos(radians(lat))) / pi()) / 2 * 2 ^ z)::int AS y
FROM (SELECT geom, greatest(-85, least(85, ST_Y(geom))) AS lat, 4 + floor(random() * 11)::int AS z
      FROM (SELECT geom FROM bench_points ORDER BY random() LIMIT 500000) sample) s;
SELECT string_agg(z || ': ' || n, ', ' ORDER BY z) AS tiles_per_zoom
FROM (SELECT z, count(*) AS n FROM bench_tiles GROUP BY z) t;
SELECT count(*) AS distinct_tiles FROM bench_tiles;
SQL
# Warm: 2,002 tiles, as many at each zoom (182); cold: all the others, shuffled (mostly deep
# zooms, where the tiles are).
psql -d "$DB" <<'SQL'
ALTER TABLE bench_tiles ADD COLUMN warm boolean;
UPDATE bench_tiles b SET warm = r.n <= 182
FROM (SELECT z, x, y, row_number() OVER (PARTITION BY z ORDER BY md5(z || '/' || x || '/' || y)) AS n FROM bench_tiles) r
WHERE (b.z, b.x, b.y) = (r.z, r.x, r.y);
SQL
fi
for layer in countries points; do
  for set in warm cold; do
    psql -d "$DB" -At -c "SELECT '/tiles/$layer/' || z || '/' || x || '/' || y FROM bench_tiles
      WHERE warm = ('$set' = 'warm') ORDER BY md5(z || '/' || x || '/' || y)" > "$WORK/$layer-$set.txt"
  done
done
echo /health > "$WORK/health.txt"
cat > "$WORK/config.toml" <<TOML
[tiles]
cache_mb = 1024
[[tiles.tables]]
name = "points"
table = "bench_points"
id = "id"
ttl_s = 0
TOML

GEOTRACK_LOG=error ./target/release/geotrack serve --config "$WORK/config.toml" --bind "127.0.0.1:$PORT" --database-url "$URL" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.2; done

# The server's CPU time so far, in clock ticks (user + system).
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
TICK=$(getconf CLK_TCK)
# Requests/s of one wrk run over the paths in a file: rate MODE FILE [CPU_LOG]. With CPU_LOG,
# also appends the server's CPU time per request (µs) to that file: unlike requests/s, it leaves
# out the client's share of the machine.
rate() {
  local out before rps
  before=$(server_ticks)
  out=$(BENCH_MODE=$1 BENCH_PATHS=$2 BENCH_THREADS=$THREADS wrk -t$THREADS -c$CONNECTIONS -d"${SECONDS_PER_RUN}s" \
    -s scripts/bench-tiles/paths.lua "http://127.0.0.1:$PORT")
  echo "$out" | grep -E 'WARNING|Non-2xx|Socket errors' >&2 || true
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  if [ -n "${3:-}" ]; then
    awk -v t=$(( $(server_ticks) - before )) -v hz="$TICK" -v r="$rps" -v s="$SECONDS_PER_RUN" \
      'BEGIN {printf "%.1f\n", t / hz * 1e6 / (r * s)}' >> "$3"
  fi
  echo "$rps"
}

echo "== runs of ${SECONDS_PER_RUN}s, wrk -t$THREADS -c$CONNECTIONS, client and server on the same machine"
for layer in countries points; do
  # Prime the warm set: every tile built once (and its size noted).
  xargs -P 8 -I{} curl -s -o /dev/null -H "Accept-Encoding: $BENCH_ACCEPT" -w '%{size_download}\n' "http://127.0.0.1:$PORT{}" \
    < "$WORK/$layer-warm.txt" > "$WORK/$layer-sizes.txt"
  # The ceiling is measured between the warm runs (a shared machine drifts), through the same
  # wrk script: its per-request Lua costs the client CPU the server shares.
  healths=$(rate random "$WORK/health.txt" "$WORK/$layer-health-cpu.txt")
  warms=""
  for _ in $(seq 1 "$ROUNDS"); do
    warms="$warms $(rate random "$WORK/$layer-warm.txt" "$WORK/$layer-warm-cpu.txt")"
    healths="$healths $(rate random "$WORK/health.txt" "$WORK/$layer-health-cpu.txt")"
  done
  mean() { echo "$@" | awk '{for (i = 1; i <= NF; i++) s += $i; printf "%.1f", s / NF}'; }
  warm=$(mean $warms)
  health=$(mean $healths)
  echo "/health:$healths requests/s (mean $health); warm:$warms tiles/s (mean $warm)"
  health_cpu=$(mean $(cat "$WORK/$layer-health-cpu.txt"))
  warm_cpu=$(mean $(cat "$WORK/$layer-warm-cpu.txt"))
  awk -v h="$health_cpu" -v w="$warm_cpu" -v l="$layer" \
    'BEGIN {printf "%s: server CPU per request: /health %.1f us, warm tile %.1f us (health / tile = %.2f)\n", l, h, w, h / w}'
  cold=$(rate sequential "$WORK/$layer-cold.txt")
  sizes=$(sort -n "$WORK/$layer-sizes.txt" | awk '{a[NR]=$1; s+=$1} END {printf "mean %.1f KiB, max %.1f KiB", s/NR/1024, a[NR]/1024}')
  echo "$layer: warm $warm tiles/s, cold $cold tiles/s; tile size $sizes (Accept-Encoding: $BENCH_ACCEPT)"
  awk -v w="$warm" -v h="$health" -v l="$layer" 'BEGIN {printf "%s: warm tiles / health = %.2f (target >= 0.8)\n", l, w / h}'
done
