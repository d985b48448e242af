//! The geofence engine (pure Rust: fence geometry, H3 cell index, exact tests, crossing state
//! machine). Being built; the crate exists so the workspace layout is fixed from the start.
