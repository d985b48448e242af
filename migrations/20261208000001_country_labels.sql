-- Where a country's name goes on the map (the `country_labels` tile layer): one point per
-- country, the centre of the largest circle inside it, so a label lands on the mainland rather
-- than on an island, and once (labels drawn from the polygons repeat in every tile and on every
-- island). Kept by PostgreSQL whenever a country is written.
ALTER TABLE basemap_countries
    ADD COLUMN label geometry(Point, 4326) GENERATED ALWAYS AS ((ST_MaximumInscribedCircle(geom)).center) STORED;
CREATE INDEX basemap_countries_label ON basemap_countries USING gist (label);
