#!/usr/bin/env bash
# Instructions the server executes per request, counted by valgrind's callgrind (a count, not a
# time: the same on a busy or an idle machine, so a change to the request path shows as a
# repeatable number). Starts the release server under callgrind twice on a fresh database, sends
# FEW and then MANY identical keep-alive requests of each PATH, and prints
# (instructions of the MANY run - of the FEW run) / (MANY - FEW): start-up and shutdown cancel
# out. Tokens are on (as on an exposed server: CORS and auth on every request), unless OPEN=1
# (no tokens, as in `bench-vs-martin.sh`: the local-only guard instead of CORS and auth).
# callgrind runs no SHA extensions, so a token's SHA-256 digest counts about 3,500 instructions
# here, several times what it takes on a CPU with them.
#
#   bash scripts/callgrind-requests.sh [PATH...]     # default: /health /tiles/countries/0/0/0
#
# Environment: FEW (default 200), MANY (default 1200), OPEN=1 (no tokens), KEEP=1 keeps the callgrind files in
# target/callgrind/ for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(/health /tiles/countries/0/0/0)
few=${FEW:-200}
many=${MANY:-1200}
db=geotrack_callgrind
url="postgres://postgres@127.0.0.1:5432/$db"
token=callgrind-admin-0123456789
out=target/callgrind
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
bash scripts/ensure-postgis.sh "$db" >/dev/null
cargo build --release --quiet --bin geotrack
./target/release/geotrack migrate --database-url "$url" >/dev/null 2>&1
./target/release/geotrack import basemap --database-url "$url" >/dev/null 2>&1
mkdir -p "$out"

# Instructions of one server run that answers `count` requests of `path`.
run() {
  local path=$1 count=$2 port file
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  file="$out/$(echo "$path" | tr -c 'a-z0-9' '_')-$count.out"
  local tokens="$token=admin"
  [ "${OPEN:-0}" = 1 ] && tokens=""
  GEOTRACK_LOG=warn GEOTRACK_TOKENS="$tokens" GEOTRACK_LIMITS__TOKEN_REQUESTS_PER_S=0 \
    GEOTRACK_INGEST__SHARDS=1 \
    valgrind --tool=callgrind --callgrind-out-file="$file" \
    ./target/release/geotrack serve --bind "127.0.0.1:$port" --database-url "$url" 2>/dev/null &
  local server=$!
  python3 - "$port" "$path" "$count" "$token" <<'PY'
import http.client, sys, time
port, path, count, token = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip, deflate, br, zstd"}
deadline = time.time() + 120
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/ready", headers=headers)
        r = c.getresponse()
        r.read()
        if r.status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("callgrind-requests: the server never got ready")
    time.sleep(0.5)
for _ in range(count):
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    r.read()
    assert r.status == 200, (path, r.status)
PY
  kill -TERM "$server"
  wait "$server" || true
  awk '/^(summary|totals):/ { print $2; exit }' "$file"
}

for path in "${paths[@]}"; do
  # One warm-up request is part of both runs, so the first build of a tile cancels out too.
  a=$(run "$path" "$few")
  b=$(run "$path" "$many")
  echo "$path: $(( (b - a) / (many - few) )) instructions per request (callgrind, $few vs $many requests)"
done
[ "${KEEP:-0}" = 1 ] || rm -f "$out"/*.out
psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $db with (force)" >/dev/null
