#!/usr/bin/env bash
# Browser test of the web map (part of CI): installs Debian's Chromium and the pinned
# playwright-core when missing, starts the server with its demo fleet on a fresh database, and
# drives the web map (tests/browser/map.test.mjs) headless; then the Leaflet and OpenLayers
# examples (tests/browser/examples.test.mjs) against a second server with tokens, on a database
# of its own with the built-in countries. Screenshots land in target/browser/. The port
# (BROWSER_TEST_PORT, and the next one) also names the databases, so runs from two checkouts do
# not collide.
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
TOKENS_PORT=$((PORT + 1))
TOKENS_DB=geotrack_browser_test_$TOKENS_PORT
TOKEN=browser-test-admin-0123456789
for db in "$DB" "$TOKENS_DB"; do
  psql -X -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists $db with (force)"
done
cargo build --quiet
mkdir -p target/browser
# The examples draw the server's style: give their server the built-in countries too (`--demo`
# loads them for the other one).
GEOTRACK="${CARGO_TARGET_DIR:-target}/debug/geotrack"
TOKENS_URL="postgres://postgres@127.0.0.1:5432/$TOKENS_DB"
"$GEOTRACK" --database-url "$TOKENS_URL" migrate > target/browser/server-tokens.log 2>&1
"$GEOTRACK" --database-url "$TOKENS_URL" import basemap >> target/browser/server-tokens.log 2>&1
GEOTRACK_LOG=warn "$GEOTRACK" serve --demo --bind "127.0.0.1:$PORT" --database-url "$URL" \
  > target/browser/server.log 2>&1 &
SERVER=$!
GEOTRACK_LOG=warn GEOTRACK_TOKENS="$TOKEN=admin" "$GEOTRACK" serve --bind "127.0.0.1:$TOKENS_PORT" --database-url "$TOKENS_URL" \
  >> target/browser/server-tokens.log 2>&1 &
TOKENS_SERVER=$!
trap 'kill -TERM $SERVER $TOKENS_SERVER 2>/dev/null; wait $SERVER $TOKENS_SERVER 2>/dev/null || true' EXIT
status=0
node tests/browser/map.test.mjs "http://127.0.0.1:$PORT/" target/browser || status=1
BROWSER_TEST_TOKEN=$TOKEN node tests/browser/examples.test.mjs "http://127.0.0.1:$TOKENS_PORT/" target/browser || status=1
exit $status
