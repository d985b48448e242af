#!/usr/bin/env bash
# Prints the path of a promtool binary (Prometheus' checker of metric expositions), fetching it
# first if needed: the binary from Debian's `prometheus` package, unpacked into target/tools/
# (the package is not installed, so no Prometheus server is set up or started).
#
#   bash scripts/promtool.sh            # → target/tools/promtool
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/tools
bin="$dir/promtool"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi
mkdir -p "$dir/prometheus-deb"
(
  cd "$dir/prometheus-deb"
  if ! apt-get download prometheus >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get download prometheus >/dev/null 2>&1
  fi
) || { echo "promtool.sh: cannot download Debian's prometheus package" >&2; exit 1; }
dpkg-deb -x "$dir"/prometheus-deb/prometheus_*.deb "$dir/prometheus-deb/root"
cp "$dir/prometheus-deb/root/usr/bin/promtool" "$bin"
rm -rf "$dir/prometheus-deb"
echo "promtool.sh: promtool $("$bin" --version 2>&1 | head -1 | awk '{print $3}') in $bin" >&2
echo "$bin"
