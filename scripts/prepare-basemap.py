#!/usr/bin/env python3
"""Turns the Natural Earth countries of the npm package world-atlas (its TopoJSON files such as
countries-10m.json, or GeoJSON converted from them), whose rings follow d3's spherical
convention (a ring crossing the antimeridian jumps from +180 to -180), into planar GeoJSON a web
map draws correctly and `geotrack import basemap` loads: longitudes are unrolled to be
continuous (beyond ±180 where a ring crosses), and a ring that goes all the way round a pole is
closed along the edge of the Web Mercator world on that side. Usage:

    python3 scripts/prepare-basemap.py countries-110m.json web/data/countries.geojson
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


def topojson_features(topology, name="countries"):
    """The features of one object of a TopoJSON topology (quantized arcs decoded)."""
    transform = topology.get("transform")
    arcs = []
    for arc in topology["arcs"]:
        if transform:
            (sx, sy), (tx, ty) = transform["scale"], transform["translate"]
            x = y = 0
            points = []
            for dx, dy in arc:
                x, y = x + dx, y + dy
                points.append([x * sx + tx, y * sy + ty])
            arcs.append(points)
        else:
            arcs.append(arc)

    def ring(indexes):
        points = []
        for i in indexes:
            arc = arcs[i] if i >= 0 else arcs[~i][::-1]
            points.extend(arc if not points else arc[1:])
        return points

    features = []
    for geometry in topology["objects"][name]["geometries"]:
        kind = geometry.get("type")
        if kind == "Polygon":
            coordinates = [ring(r) for r in geometry["arcs"]]
        elif kind == "MultiPolygon":
            coordinates = [[ring(r) for r in polygon] for polygon in geometry["arcs"]]
        else:
            continue  # a country without geometry
        feature = {"type": "Feature", "properties": geometry.get("properties", {}),
                   "geometry": {"type": kind, "coordinates": coordinates}}
        if "id" in geometry:
            feature["id"] = geometry["id"]
        features.append(feature)
    return {"type": "FeatureCollection", "features": features}


def main(source, target):
    with open(source) as f:
        collection = json.load(f)
    if collection.get("type") == "Topology":
        collection = topojson_features(collection)
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
