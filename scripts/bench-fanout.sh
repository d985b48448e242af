#!/usr/bin/env bash
# WebSocket fan-out benchmark (not a test): starts a release server on a fresh database, as
# bench-alerts.sh does, and runs `geotrack bench-fanout` against it: 1,000 subscribers reading
# as fast as they can and one reading 32 KiB/s, 1,000 alerts/s for 20 s (defaults; flags pass
# through, e.g. `--slow-subscribers 0` for a run without the slow consumer).
set -euo pipefail
# The hub keeps its default 4,096 alerts, so a slow consumer falls that far behind within seconds.
BENCH_HUB_CAPACITY=${BENCH_HUB_CAPACITY:-4096} BENCH_COMMAND=bench-fanout exec bash "$(dirname "$0")/bench-alerts.sh" "$@"
