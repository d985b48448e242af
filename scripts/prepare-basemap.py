#!/usr/bin/env python3
"""Turns the Natural Earth countries GeoJSON (as converted from the npm package world-atlas,
whose rings follow d3's spherical convention: a ring crossing the antimeridian jumps from +180
to -180) into planar GeoJSON a web map draws correctly: longitudes are unrolled to be continuous
(beyond ±180 where a ring crosses), and a ring that goes all the way round a pole is closed
along the edge of the Web Mercator world on that side. Usage:

    python3 scripts/prepare-basemap.py ne_110m_countries.geojson web/data/countries.geojson
"""
import json
import sys

MERCATOR_LAT = 85.0511287798


def unroll(ring):
    out = [list(ring[0])]
    for lon, lat in ring[1:]:
        prev = out[-1][0]
        while lon - prev > 180:
            lon -= 360
        while lon - prev < -180:
            lon += 360
        out.append([lon, lat])
    span = out[-1][0] - out[0][0]
    if abs(span) > 180:  # the ring went round a pole: close it along that pole
        edge = -MERCATOR_LAT if sum(p[1] for p in out) < 0 else MERCATOR_LAT
        out += [[out[-1][0], edge], [out[0][0], edge], list(out[0])]
    return [[round(x, 6), round(max(-MERCATOR_LAT, min(MERCATOR_LAT, y)), 6)] for x, y in out]


def main(source, target):
    with open(source) as f:
        collection = json.load(f)
    for feature in collection["features"]:
        geometry = feature["geometry"]
        if geometry["type"] == "Polygon":
            geometry["coordinates"] = [unroll(r) for r in geometry["coordinates"]]
        elif geometry["type"] == "MultiPolygon":
            geometry["coordinates"] = [[unroll(r) for r in p] for p in geometry["coordinates"]]
    with open(target, "w") as f:
        json.dump(collection, f, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
