#!/usr/bin/env bash
# geotrack against Martin, side by side (a benchmark, not a test). One PostgreSQL table, the
# Natural Earth 1:10m countries (npm world-atlas, ~545k vertices, as `geotrack import basemap`
# stores them), served by Martin as its `countries` source and by geotrack as a
# `[[tiles.tables]]` layer `countries_t`, with the same columns. wrk (-t2 -c32, the Debian
# package, installed when missing) measures both servers in turn, round after round, so the
# drift of a shared machine falls on both alike:
#   - /health requests/s;
#   - warm tiles/s without Accept-Encoding (raw MVT): about 2,000 random tiles z4-z14 centred on
#     land (200 drawn per zoom, fewer distinct at low zooms), every one requested from both
#     servers before the clock;
#   - warm tiles/s with a browser's Accept-Encoding (gzip, deflate, br, zstd).
# and prints geotrack / Martin for each (targets: /health >= 1.0, raw tiles >= 1.3, browser
# tiles >= 2.5). Martin is built from crates.io into target/martin the first time
# (`cargo install martin --version 1.14.0 --no-default-features --features postgres`: the
# newest release this machine's Rust builds; about 10 minutes on 2 cores) and never committed.
# Usage: bash scripts/bench-vs-martin.sh [seconds per run, default 10]   (BENCH_ROUNDS=3)
# BENCH_SERVER_BIN: another build of the server to measure (for an A/B of two builds, each
# against Martin in its own run).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
ROUNDS=${BENCH_ROUNDS:-3}
DB=geotrack_bench_martin
URL="postgres://postgres@127.0.0.1:5432/$DB"
GT_PORT=${BENCH_PORT:-18095}
MARTIN_PORT=${BENCH_MARTIN_PORT:-18096}
MARTIN_VERSION=1.14.0
MARTIN=target/martin/bin/martin
BROWSER="gzip, deflate, br, zstd"
WORK=$(mktemp -d)
PIDS=()
psql() { command psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

bash scripts/ensure-postgis.sh >/dev/null 2>&1
if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if [ ! -x "$MARTIN" ]; then
  echo "== building Martin $MARTIN_VERSION from crates.io into target/martin (once)"
  cargo install martin --version "$MARTIN_VERSION" --locked --quiet \
    --no-default-features --features postgres --root target/martin
fi
cargo build --release --quiet --bin geotrack

echo "== data: Natural Earth 1:10m countries (npm world-atlas) and about 2,000 tiles z4-z14 on land"
(cd "$WORK" && npm pack world-atlas@2.0.2 --silent >/dev/null && tar xzf world-atlas-2.0.2.tgz)
python3 scripts/prepare-basemap.py "$WORK/package/countries-10m.json" "$WORK/countries-10m.geojson"
psql -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"
./target/release/geotrack migrate --database-url "$URL" >/dev/null 2>&1
GEOTRACK_LOG=error ./target/release/geotrack import basemap "$WORK/countries-10m.geojson" --database-url "$URL" >/dev/null
psql -d "$DB" -At > "$WORK/tiles.txt" <<'SQL'
SELECT setseed(0.42);
-- 200 tiles a zoom, each centred on a point drawn inside a country (so tiles hold borders).
WITH points AS (
  SELECT (ST_Dump(ST_GeneratePoints(c.geom, greatest(1, round(20000 * ST_Area(c.geom) / t.total))::int, 42))).geom
  FROM basemap_countries c, (SELECT sum(ST_Area(geom)) AS total FROM basemap_countries) t
  WHERE NOT ST_IsEmpty(c.geom)
), drawn AS (
  SELECT z, geom, greatest(-85, least(85, ST_Y(geom))) AS lat,
         row_number() OVER (PARTITION BY z ORDER BY md5(z || ST_AsText(geom))) AS n
  FROM points, generate_series(4, 14) AS z
)
SELECT DISTINCT '/' || z || '/' || floor((ST_X(geom) + 180) / 360 * 2 ^ z)::int || '/'
       || floor((1 - ln(tan(radians(lat)) + 1 / cos(radians(lat))) / pi()) / 2 * 2 ^ z)::int
FROM drawn WHERE n <= 200;
SQL
sed 's|^|/tiles/countries_t|' "$WORK/tiles.txt" > "$WORK/geotrack-tiles.txt"
sed 's|^|/countries|' "$WORK/tiles.txt" > "$WORK/martin-tiles.txt"
echo /health > "$WORK/health.txt"
echo "$(wc -l < "$WORK/tiles.txt") distinct tiles"

cat > "$WORK/geotrack.toml" <<TOML
[tiles]
cache_mb = 512
[[tiles.tables]]
name = "countries_t"
table = "basemap_countries"
geometry = "geom"
columns = ["name", "iso_n3"]
id = "fid"
ttl_s = 0
TOML
cat > "$WORK/martin.yaml" <<YAML
listen_addresses: "127.0.0.1:$MARTIN_PORT"
cache_size_mb: 512
postgres:
  connection_string: "$URL"
  auto_publish: false
  tables:
    countries:
      schema: public
      table: basemap_countries
      srid: 4326
      geometry_column: geom
      geometry_type: MULTIPOLYGON
      id_column: fid
      properties:
        name: text
        iso_n3: text
YAML
GEOTRACK_LOG=error "${BENCH_SERVER_BIN:-./target/release/geotrack}" serve --config "$WORK/geotrack.toml" \
  --bind "127.0.0.1:$GT_PORT" --database-url "$URL" &
PIDS+=($!)
RUST_LOG=error "$MARTIN" --config "$WORK/martin.yaml" > "$WORK/martin.log" 2>&1 &
PIDS+=($!)
for port in "$GT_PORT" "$MARTIN_PORT"; do
  for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
  curl -sf "http://127.0.0.1:$port/health" >/dev/null || { cat "$WORK/martin.log"; echo "no server on $port" >&2; exit 1; }
done

# Every tile built (and cached) by both servers in both codings before any run; sizes noted.
for server in "geotrack $GT_PORT" "martin $MARTIN_PORT"; do
  set -- $server
  for coding in raw browser; do
    accept=""; [ "$coding" = browser ] && accept=$BROWSER
    xargs -P 8 -I{} curl -s -o /dev/null -H "Accept-Encoding: $accept" -w '%{http_code} %{size_download}\n' \
      "http://127.0.0.1:$2{}" < "$WORK/$1-tiles.txt" > "$WORK/$1-sizes-$coding.txt"
  done
  awk -v s="$1" '$1 != 200 && $1 != 204 {bad++} {n++; b += $2}
    END {printf "%s: %d tiles primed, %d not 200/204, mean %.1f KiB raw\n", s, n, bad, b / n / 1024}' \
    "$WORK/$1-sizes-raw.txt"
done

# Requests/s of one wrk run: rate PORT PATHS ACCEPT ("" sends no Accept-Encoding).
rate() {
  local out
  out=$(BENCH_MODE=random BENCH_PATHS=$2 BENCH_THREADS=2 BENCH_ACCEPT=$3 wrk -t2 -c32 \
    -d"${SECONDS_PER_RUN}s" -s scripts/bench-tiles/paths.lua "http://127.0.0.1:$1")
  echo "$out" | grep -E 'Non-2xx|Socket errors' >&2 || true
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}
mean() { echo "$@" | awk '{for (i = 1; i <= NF; i++) s += $i; printf "%.0f", s / NF}'; }

echo "== $ROUNDS rounds of ${SECONDS_PER_RUN}s runs, wrk -t2 -c32, clients and servers on the same machine"
declare -A runs
for round in $(seq 1 "$ROUNDS"); do
  for what in health raw browser; do
    case $what in
      health) accept=""; gt_paths=$WORK/health.txt; m_paths=$WORK/health.txt ;;
      raw) accept=""; gt_paths=$WORK/geotrack-tiles.txt; m_paths=$WORK/martin-tiles.txt ;;
      browser) accept=$BROWSER; gt_paths=$WORK/geotrack-tiles.txt; m_paths=$WORK/martin-tiles.txt ;;
    esac
    runs[martin-$what]="${runs[martin-$what]:-} $(rate "$MARTIN_PORT" "$m_paths" "$accept")"
    runs[geotrack-$what]="${runs[geotrack-$what]:-} $(rate "$GT_PORT" "$gt_paths" "$accept")"
  done
  echo "round $round done"
done
printf '%-28s %14s %14s %10s %8s\n' "" "Martin" "geotrack" "ratio" "target"
for what in "health:/health requests/s:1.0" "raw:warm tiles/s, raw:1.3" "browser:warm tiles/s, browser:2.5"; do
  IFS=: read -r key label target <<< "$what"
  m=$(mean ${runs[martin-$key]})
  g=$(mean ${runs[geotrack-$key]})
  awk -v l="$label" -v m="$m" -v g="$g" -v t="$target" \
    'BEGIN {printf "%-28s %14d %14d %9.2fx %7.1fx\n", l, m, g, g / m, t}'
  echo "  runs: Martin${runs[martin-$key]}; geotrack${runs[geotrack-$key]}"
done
