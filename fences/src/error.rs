//! The crate's single error type: every way a fence definition, a query point
//! or an index operation can be rejected, with messages meant for API users.

/// Errors produced by fence validation, normalisation and indexing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FenceError {
    /// The fence id is empty.
    #[error("fence id must not be empty")]
    EmptyId,
    /// A fence id that is too long or holds control or invisible characters.
    #[error("fence id {0}")]
    BadId(crate::IdError),
    /// A fence name with control or invisible characters.
    #[error("fence name {0}")]
    BadName(crate::IdError),
    /// A fence name longer than [`crate::fence::MAX_NAME_BYTES`].
    #[error("fence name is {0} bytes long; the limit is {max}", max = crate::fence::MAX_NAME_BYTES)]
    NameTooLong(usize),
    /// Text in `properties` that PostgreSQL cannot store.
    #[error("`properties` must not contain NUL characters (\\u0000)")]
    NulInProperties,
    /// A polygon ring does not end where it starts.
    #[error("{ring}: ring is not closed (first position {first:?}, last position {last:?})")]
    UnclosedRing {
        /// Which ring, e.g. `polygon 0 ring 1`.
        ring: String,
        /// First position.
        first: [f64; 2],
        /// Last position.
        last: [f64; 2],
    },
    /// A polygon ring has fewer than 4 positions (a closed triangle).
    #[error("{ring}: ring has {count} positions, a closed ring needs at least 4")]
    TooFewPositions {
        /// Which ring.
        ring: String,
        /// Number of positions found.
        count: usize,
    },
    /// A corridor line has fewer than 2 positions.
    #[error("corridor line has {0} positions, at least 2 are required")]
    LineTooShort(usize),
    /// A geometry without any polygon.
    #[error("polygon fence has no polygon")]
    EmptyGeometry,
    /// A coordinate is NaN or infinite.
    #[error("{at}: coordinate ({lon}, {lat}) is not finite")]
    NonFinite {
        /// Where the coordinate was found.
        at: String,
        /// Longitude.
        lon: f64,
        /// Latitude.
        lat: f64,
    },
    /// A latitude outside [-90, 90].
    #[error("{at}: latitude {lat} is outside [-90, 90]")]
    LatitudeOutOfRange {
        /// Where the coordinate was found.
        at: String,
        /// The offending latitude.
        lat: f64,
    },
    /// A longitude outside [-540, 540] (GeoJSON may exceed ±180 across the antimeridian, not by more than a turn).
    #[error("{at}: longitude {lon} is outside [-540, 540]")]
    LongitudeOutOfRange {
        /// Where the coordinate was found.
        at: String,
        /// The offending longitude.
        lon: f64,
    },
    /// A radius that is not a positive finite number of metres, or above the limit.
    #[error("circle radius must be > 0 and <= {max} m, got {value}")]
    InvalidRadius {
        /// The radius given.
        value: f64,
        /// The configured maximum.
        max: f64,
    },
    /// Two consecutive corridor positions are antipodal (within a metre): no shorter
    /// great-circle arc joins them, so the corridor between them is undefined.
    #[error("corridor positions {0} and {next} are antipodal; add a position between them", next = .0 + 1)]
    AntipodalSegment(usize),
    /// A corridor buffer that is not a positive finite number of metres, or above the limit.
    #[error("corridor buffer must be > 0 and <= {max} m, got {value}")]
    InvalidBuffer {
        /// The buffer given.
        value: f64,
        /// The configured maximum.
        max: f64,
    },
    /// A numeric fence parameter (hysteresis, speed limit) out of range.
    #[error("{field} must be finite and >= 0, got {value}")]
    InvalidParameter {
        /// Field name.
        field: &'static str,
        /// Value given.
        value: f64,
    },
    /// More vertices than the caller allows.
    #[error("fence has {count} vertices, the limit is {limit}")]
    TooManyVertices {
        /// Vertices found.
        count: usize,
        /// The caller's limit.
        limit: usize,
    },
    /// Self-intersecting rings, overlapping parts, holes outside their shell...
    #[error("invalid polygon: {0}")]
    InvalidGeometry(String),
    /// A ring wraps around a pole in a way that cannot be closed unambiguously.
    #[error("{0}")]
    PoleRing(String),
    /// A query point that is not a valid position.
    #[error("invalid query point ({lon}, {lat})")]
    InvalidPoint {
        /// Longitude.
        lon: f64,
        /// Latitude.
        lat: f64,
    },
    /// An index insert with an id that is already present.
    #[error("fence {0:?} is already indexed")]
    DuplicateId(String),
    /// An H3 resolution outside 0..=15 in the configuration.
    #[error("invalid H3 resolution {0}")]
    InvalidResolution(u8),
    /// h3o rejected a geometry while tiling.
    #[error("H3 tiling failed: {0}")]
    Tiling(String),
    /// A GeoJSON fence that cannot be read, said in a sentence.
    #[error("{0}")]
    Feature(&'static str),
    /// `properties.applies_to` that cannot be read.
    #[error("`properties.applies_to` {0}")]
    AppliesTo(&'static str),
    /// A Feature whose geometry is of a kind that is not a fence.
    #[error("a fence geometry must be Polygon, MultiPolygon, Point or LineString, not {0}")]
    UnsupportedGeometry(String),
    /// Coordinates that do not have the shape their geometry type needs.
    #[error("the {kind} coordinates are not valid: {reason}")]
    BadCoordinates {
        /// The geometry type.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A numeric fence option in `properties` that is not a number.
    #[error("`properties.{0}` must be a number")]
    NotANumber(&'static str),
    /// `dwell_s` that is not a whole number of seconds.
    #[error("`properties.dwell_s` must be a whole number of seconds, not {0}")]
    BadDwell(f64),
}
