#!/usr/bin/env bash
# Prints the path of GDAL's ogrinfo, installing Debian's gdal-bin first when it is missing
# (the OGC API – Features test reads /ogc with GDAL's OAPIF driver, as QGIS does).
#
#   bash scripts/gdal.sh            # → /usr/bin/ogrinfo
set -euo pipefail
if ! command -v ogrinfo >/dev/null 2>&1; then
  # Tests may ask at the same time: one installs, the others wait for it.
  exec 9>/tmp/geotrack-gdal-install.lock
  flock 9
  if ! command -v ogrinfo >/dev/null 2>&1; then
    echo "gdal.sh: installing gdal-bin" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends gdal-bin >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends gdal-bin >/dev/null; }
  fi
fi
command -v ogrinfo
