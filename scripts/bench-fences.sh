#!/usr/bin/env bash
# Fences at real-world scale (a benchmark, not a test). Prints, on this machine:
#   - import of the Natural Earth 1:10m countries (npm world-atlas, made valid by PostGIS, no
#     ids: --id-property name) by the CLI (wall time, peak memory) and over HTTP (wall time);
#   - import of 100,000 circles and 10,000 corridors over HTTP as a job (202, then its status);
#   - start-up with all of them (the time to /ready: index loaded) and the server's memory
#     against an empty server's, per fence;
#   - PUT /api/v1/fences/{id} latency (p50, p99; the reply comes after the index holds the
#     fence, so this is the time until evaluation sees it) of a circle and of a country while
#     all of them are loaded;
#   - then (BENCH_LOOKUP=1) the criterion lookup bench on the same countries, 100,000 circles
#     and 10,000 corridors.
# Usage: bash scripts/bench-fences.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DB=geotrack_bench_fences
PORT=${BENCH_PORT:-18094}
URL="postgres://postgres@127.0.0.1:5432/$DB"
BASE="http://127.0.0.1:$PORT"
WORK=$(mktemp -d)
SERVER=
psql() { command psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

bash scripts/ensure-postgis.sh >/dev/null 2>&1
cargo build --release --quiet
BIN=./target/release/geotrack

echo "== data: Natural Earth 1:10m countries (npm world-atlas), made valid by PostGIS"
(cd "$WORK" && npm pack world-atlas@2.0.2 --silent >/dev/null && tar xzf world-atlas-2.0.2.tgz)
python3 scripts/prepare-basemap.py "$WORK/package/countries-10m.json" "$WORK/raw-10m.geojson"
psql -d postgres -c "drop database if exists $DB with (force)" -c "create database $DB"
$BIN migrate --database-url "$URL" >/dev/null
# The TopoJSON's quantised rings touch and cross themselves in places (52 of 255 features are
# invalid as they are); the basemap import repairs them (ST_MakeValid). Vatican City vanishes.
$BIN import basemap "$WORK/raw-10m.geojson" --database-url "$URL" >/dev/null
psql -d "$DB" -Atc "SELECT json_build_object('type', 'FeatureCollection', 'features', json_agg(
    json_build_object('type', 'Feature', 'properties', json_build_object('name', name),
                      'geometry', ST_AsGeoJSON(geom, 7)::json) ORDER BY fid))
  FROM basemap_countries WHERE NOT ST_IsEmpty(geom)" > "$WORK/countries-10m.geojson"
psql -d "$DB" -c "TRUNCATE basemap_countries"
python3 - "$WORK" <<'PY'
import json, math, random, sys
work = sys.argv[1]
countries = json.load(open(f"{work}/countries-10m.geojson"))
vertices = sum(len(ring) for f in countries["features"] for poly in f["geometry"]["coordinates"] for ring in poly)
print(f"{len(countries['features'])} countries, {vertices} vertices")
rng = random.Random(42)
features = []
for i in range(100_000):
    lon, lat = rng.uniform(-180, 180), math.degrees(math.asin(rng.uniform(-0.85, 0.85)))
    features.append({"type": "Feature", "id": f"c{i}", "geometry": {"type": "Point", "coordinates": [round(lon, 6), round(lat, 6)]},
                     "properties": {"radius_m": round(10 ** rng.uniform(1.7, 3.7), 1)}})
for i in range(10_000):
    lon, lat = rng.uniform(-179, 179), rng.uniform(-60, 70)
    line = [[lon, lat]]
    for _ in range(rng.randint(1, 4)):
        line.append([round(line[-1][0] + rng.uniform(-0.1, 0.1), 6), round(line[-1][1] + rng.uniform(-0.1, 0.1), 6)])
    features.append({"type": "Feature", "id": f"r{i}", "geometry": {"type": "LineString", "coordinates": line},
                     "properties": {"buffer_m": round(rng.uniform(20, 200), 1)}})
json.dump({"type": "FeatureCollection", "features": features}, open(f"{work}/small.geojson", "w"))
PY

echo "== CLI import of the 1:10m countries (--id-property name)"
/usr/bin/time -f "wall %e s, user %U s, system %S s, peak memory %M KiB" \
  $BIN import fences "$WORK/countries-10m.geojson" --id-property name --database-url "$URL" 2>&1 | grep -v "^generated"

start_server() {
  $BIN serve --bind "127.0.0.1:$PORT" --database-url "$URL" >"$WORK/server.log" 2>&1 &
  SERVER=$!
  local t0=$EPOCHREALTIME
  until curl -sf "$BASE/ready" >/dev/null 2>&1; do sleep 0.02; done
  awk -v t0="$t0" -v t1="$EPOCHREALTIME" 'BEGIN { printf "ready after %.2f s (started to /ready 200)\n", t1 - t0 }'
}
stop_server() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$SERVER/status"; }

echo "== HTTP import of the same file (replaces the 254 fences)"
start_server
EMPTY_RSS=$(rss_kib)
curl -s -o "$WORK/reply.json" -w "status %{http_code}, %{time_total} s\n" -H 'content-type: application/json' \
  --data-binary @"$WORK/countries-10m.geojson" "$BASE/api/v1/fences/import?id_property=name"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('imported', r.get('imported'))" "$WORK/reply.json"

echo "== HTTP import of 100,000 circles and 10,000 corridors, as a job"
python3 - "$BASE" "$WORK/small.geojson" <<'PY'
import json, sys, time, urllib.request
base, path = sys.argv[1], sys.argv[2]
body = open(path, "rb").read()
t0 = time.monotonic()
req = urllib.request.Request(f"{base}/api/v1/fences/import", data=body, method="POST",
                             headers={"content-type": "application/json", "prefer": "respond-async"})
with urllib.request.urlopen(req) as reply:
    location = reply.headers["location"]
    print("status", reply.status, "->", location)
while True:
    status = json.load(urllib.request.urlopen(base + location))
    if status["state"] != "running":
        break
    time.sleep(0.1)
print(f"{status['state']}: {len(status.get('ids') or [])} fences in {time.monotonic() - t0:.2f} s (job {status['elapsed_s']:.2f} s)")
PY
stop_server

echo "== start-up with $(psql -d "$DB" -Atc 'SELECT count(*) FROM fences') fences"
start_server
grep -o 'fence index loaded.*' "$WORK/server.log" | sed 's/\x1b\[[0-9;]*m//g' | head -1
LOADED_RSS=$(rss_kib)
FENCES=$(psql -d "$DB" -Atc 'SELECT count(*) FROM fences')
echo "memory: empty server ${EMPTY_RSS} KiB, loaded ${LOADED_RSS} KiB: $(( (LOADED_RSS - EMPTY_RSS) * 1024 / FENCES )) bytes per fence"

echo "== PUT /api/v1/fences/{id} with all of them loaded"
python3 - "$BASE" "$WORK/countries-10m.geojson" <<'PY'
import http.client, json, sys, time
base, path = sys.argv[1], sys.argv[2]
host = base.split("//")[1]
countries = json.load(open(path))["features"]
france = next(f for f in countries if f["properties"]["name"] == "France")
conn = http.client.HTTPConnection(host)
def put(fid, feature):
    body = json.dumps(feature)
    t0 = time.perf_counter()
    conn.request("PUT", f"/api/v1/fences/{fid}", body, {"content-type": "application/json"})
    reply = conn.getresponse(); reply.read()
    assert reply.status in (200, 201), reply.status
    return (time.perf_counter() - t0) * 1000
def report(what, ms):
    ms.sort()
    print(f"{what}: {len(ms)} PUTs, p50 {ms[len(ms) // 2]:.1f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.1f} ms, max {ms[-1]:.1f} ms")
report("circle", [put(f"bench-circle-{i % 20}", {"type": "Feature", "geometry": {"type": "Point", "coordinates": [2 + i * 0.001, 48]},
                                                 "properties": {"radius_m": 200}}) for i in range(300)])
report("France (1:10m)", [put("France", france) for _ in range(30)])
PY
stop_server

if [ "${BENCH_LOOKUP:-}" = 1 ]; then
  echo "== lookup bench: 1:10m countries, 100,000 circles, 10,000 corridors"
  GEOTRACK_BENCH_COUNTRIES="$WORK/countries-10m.geojson" cargo bench -p fences --bench lookup 2>&1 \
    | grep -E "^(index|baseline|[a-z_]+: [0-9]+ hits)|^lookup/|thrpt:" || true
fi
psql -d postgres -c "drop database if exists $DB with (force)"
