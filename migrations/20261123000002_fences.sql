-- geotrack schema, part 2: geofences.
--
-- `definition` is the fence exactly as the engine reads it (the `fences::Fence` JSON: geometry
-- as written, options, free-form properties); it is the source of truth the in-memory index is
-- built from at start-up. `geom` is the fence's *area* normalised into [-180, 180] (circles and
-- corridors as polygons, antimeridian-crossing polygons split), for bbox queries and tiles.
CREATE SEQUENCE fence_id_seq AS bigint;

CREATE TABLE fences (
    id              text        PRIMARY KEY,
    name            text        NOT NULL DEFAULT '',
    kind            text        NOT NULL CHECK (kind IN ('polygon', 'multipolygon', 'circle', 'corridor')),
    definition      jsonb       NOT NULL,
    geom            geometry(MultiPolygon, 4326) NOT NULL,
    radius_m        double precision,
    buffer_m        double precision,
    hysteresis_m    double precision NOT NULL DEFAULT 0,
    dwell_s         integer,
    speed_limit_mps double precision,
    properties      jsonb       NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fences_geom_gist ON fences USING gist (geom);
