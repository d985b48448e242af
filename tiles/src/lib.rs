//! Vector tiles for geotrack: tile math, layers, `ST_AsMVT` SQL and a byte-bounded cache with
//! per-tile invalidation. Empty until the tiles milestone; the crate exists so the workspace
//! layout is fixed from the start.
