#!/usr/bin/env bash
# Browser test of the web map (part of CI): installs Debian's Chromium and the pinned
# playwright-core when missing, starts the server with its demo fleet on a fresh database, and
# drives the web map (tests/browser/map.test.mjs) and the Leaflet and OpenLayers examples
# (tests/browser/examples.test.mjs) headless. Screenshots land in target/browser/. The port
# (BROWSER_TEST_PORT) also names the database, so runs from two checkouts do not collide.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  echo "test-browser: installing chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --silent)
PORT=${BROWSER_TEST_PORT:-18097}
DB=geotrack_browser_test_$PORT
URL="postgres://postgres@127.0.0.1:5432/$DB"
psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $DB with (force)"
cargo build --quiet
mkdir -p target/browser
GEOTRACK_LOG=warn "${CARGO_TARGET_DIR:-target}/debug/geotrack" serve --demo --bind "127.0.0.1:$PORT" --database-url "$URL" \
  > target/browser/server.log 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
status=0
node tests/browser/map.test.mjs "http://127.0.0.1:$PORT/" target/browser || status=1
node tests/browser/examples.test.mjs "http://127.0.0.1:$PORT/" target/browser || status=1
exit $status
