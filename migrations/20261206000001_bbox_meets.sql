-- One antimeridian-aware bbox filter for every query that takes a `bbox=` (live positions,
-- fences): whether `g`'s box meets the box west,south,east,north, where west > east crosses the
-- antimeridian. Written as two `&&` tests, so the planner inlines it and uses a GiST index on
-- `g` even in a generic plan (a CASE around the tests would hide them from the index); for a box
-- that does not cross, both envelopes are the same and a constant box folds them into one.
CREATE FUNCTION geotrack_bbox_meets(g geometry, w float8, s float8, e float8, n float8)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT g && ST_MakeEnvelope(w, s, CASE WHEN w <= e THEN e ELSE 180 END, n, 4326)
        OR g && ST_MakeEnvelope(CASE WHEN w <= e THEN w ELSE -180 END, s, e, n, 4326)
$$;
