//! XYZ tile coordinates (the slippy-map scheme: z 0–22, x from the antimeridian eastwards,
//! y from the north), parsed from URL segments with an optional `.mvt` / `.pbf` suffix.

/// Deepest zoom served.
pub const MAX_ZOOM: u8 = 22;

/// A valid tile address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileCoord {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

/// Why a tile address is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    #[error("{0:?} is not a tile coordinate (expected a non-negative integer)")]
    NotANumber(String),
    #[error("zoom {0} is outside 0..={MAX_ZOOM}")]
    ZoomOutOfRange(u32),
    #[error("tile {x}/{y} does not exist at zoom {z} (x and y must be below {limit})")]
    OutOfRange { z: u8, x: u32, y: u32, limit: u64 },
}

impl TileCoord {
    /// Parses `z`, `x` and `y` URL segments; `y` may end in `.mvt` or `.pbf`.
    pub fn parse(z: &str, x: &str, y: &str) -> Result<Self, TileError> {
        let number = |text: &str| {
            text.parse::<u32>()
                .map_err(|_| TileError::NotANumber(text.to_owned()))
        };
        let y = y
            .strip_suffix(".mvt")
            .or_else(|| y.strip_suffix(".pbf"))
            .unwrap_or(y);
        let (z, x, y) = (number(z)?, number(x)?, number(y)?);
        let z = u8::try_from(z)
            .ok()
            .filter(|z| *z <= MAX_ZOOM)
            .ok_or(TileError::ZoomOutOfRange(z))?;
        let limit = 1u64 << z;
        if u64::from(x) >= limit || u64::from(y) >= limit {
            return Err(TileError::OutOfRange { z, x, y, limit });
        }
        Ok(Self { z, x, y })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_or_without_suffix() {
        let tile = TileCoord { z: 3, x: 4, y: 2 };
        for y in ["2", "2.mvt", "2.pbf"] {
            assert_eq!(TileCoord::parse("3", "4", y), Ok(tile));
        }
    }

    #[test]
    fn out_of_range_tiles_are_errors() {
        assert_eq!(
            TileCoord::parse("23", "0", "0"),
            Err(TileError::ZoomOutOfRange(23))
        );
        assert!(matches!(
            TileCoord::parse("2", "4", "0"),
            Err(TileError::OutOfRange { .. })
        ));
        assert!(matches!(
            TileCoord::parse("0", "0", "1"),
            Err(TileError::OutOfRange { .. })
        ));
        assert!(matches!(
            TileCoord::parse("1", "-1", "0"),
            Err(TileError::NotANumber(_))
        ));
        assert!(matches!(
            TileCoord::parse("1", "0", "0.png"),
            Err(TileError::NotANumber(_))
        ));
        assert!(TileCoord::parse("22", "4194303", "4194303").is_ok());
    }
}
