-- The basemap: Natural Earth countries (public domain), loaded by `geotrack import basemap` and
-- served as the `countries` tile layer. Geometry lies within [-180, 180]: countries crossing the
-- antimeridian (Russia, Fiji) are split there on import.
CREATE TABLE basemap_countries (
    fid    integer PRIMARY KEY,
    name   text NOT NULL,
    -- ISO 3166-1 numeric code, where Natural Earth has one.
    iso_n3 text,
    geom   geometry(MultiPolygon, 4326) NOT NULL
);
CREATE INDEX basemap_countries_geom ON basemap_countries USING gist (geom);
