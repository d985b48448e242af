//! XYZ tile coordinates (the slippy-map scheme: z 0–22, x from the antimeridian eastwards,
//! y from the north), parsed from URL segments with an optional `.mvt` / `.pbf` suffix.

use fences::Bbox;

use crate::Error;

/// Deepest zoom served.
pub const MAX_ZOOM: u8 = 22;

/// A valid tile address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileCoord {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl TileCoord {
    /// The tile's extent in degrees, `[west, south, east, north]`, widened on every side by
    /// `buffer` times its width (a feature within the MVT buffer of a tile appears in it too).
    pub fn bounds_lonlat(self, buffer: f64) -> [f64; 4] {
        let n = f64::from(1u32 << self.z);
        let lon = |x: f64| x / n * 360.0 - 180.0;
        let lat = |y: f64| {
            let y = y.clamp(0.0, n);
            (std::f64::consts::PI * (1.0 - 2.0 * y / n))
                .sinh()
                .atan()
                .to_degrees()
        };
        let (x, y) = (f64::from(self.x), f64::from(self.y));
        [
            lon(x - buffer),
            lat(y + 1.0 + buffer),
            lon(x + 1.0 + buffer),
            lat(y - buffer),
        ]
    }

    /// Whether the tile (widened by `buffer`) meets `bbox`.
    pub fn meets(self, bbox: &Bbox, buffer: f64) -> bool {
        let [tw, ts, te, tn] = self.bounds_lonlat(buffer);
        // Near the poles, Web Mercator tiles stop at ±85.05°: anything beyond meets the edge row.
        let (ts, tn) = (
            if ts <= -85.0 { -90.0 } else { ts },
            if tn >= 85.0 { 90.0 } else { tn },
        );
        bbox.halves()
            .any(|b| b.west() <= te && b.east() >= tw && b.south() <= tn && b.north() >= ts)
    }

    /// Parses `z`, `x` and `y` URL segments; `y` may end in `.mvt` or `.pbf`.
    pub fn parse(z: &str, x: &str, y: &str) -> Result<Self, Error> {
        // Digits only: `u32::from_str` also takes a leading `+`.
        let number = |text: &str| {
            text.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| text.parse::<u32>().ok())
                .flatten()
                .ok_or_else(|| Error::NotANumber(text.to_owned()))
        };
        let y = y
            .strip_suffix(".mvt")
            .or_else(|| y.strip_suffix(".pbf"))
            .unwrap_or(y);
        let (z, x, y) = (number(z)?, number(x)?, number(y)?);
        let z = u8::try_from(z)
            .ok()
            .filter(|z| *z <= MAX_ZOOM)
            .ok_or(Error::ZoomOutOfRange(z))?;
        let limit = 1u64 << z;
        if u64::from(x) >= limit || u64::from(y) >= limit {
            return Err(Error::OutOfRange { z, x, y, limit });
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
            assert_eq!(TileCoord::parse("3", "4", y).expect("tile"), tile);
        }
    }

    #[test]
    fn out_of_range_tiles_are_errors() {
        assert!(matches!(
            TileCoord::parse("23", "0", "0"),
            Err(Error::ZoomOutOfRange(23))
        ));
        assert!(matches!(
            TileCoord::parse("2", "4", "0"),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            TileCoord::parse("0", "0", "1"),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            TileCoord::parse("1", "-1", "0"),
            Err(Error::NotANumber(_))
        ));
        assert!(matches!(
            TileCoord::parse("1", "0", "0.png"),
            Err(Error::NotANumber(_))
        ));
        for (z, x, y) in [
            ("+1", "0", "0"),
            ("1", "+0", "0"),
            ("1", "0", "+0.mvt"),
            ("", "0", "0"),
        ] {
            assert!(
                matches!(TileCoord::parse(z, x, y), Err(Error::NotANumber(_))),
                "{z}/{x}/{y}"
            );
        }
        assert!(TileCoord::parse("22", "4194303", "4194303").is_ok());
    }

    #[test]
    fn bounds_and_meets() {
        let world = TileCoord { z: 0, x: 0, y: 0 }.bounds_lonlat(0.0);
        assert!((world[0] + 180.0).abs() < 1e-9 && (world[2] - 180.0).abs() < 1e-9);
        assert!((world[3] - 85.051_128_78).abs() < 1e-6);
        let paris = TileCoord {
            z: 10,
            x: 518,
            y: 352,
        };
        let [w, s, e, n] = paris.bounds_lonlat(0.0);
        assert!(
            w < 2.35 && 2.35 < e && s < 48.85 && 48.85 < n,
            "{:?}",
            [w, s, e, n]
        );
        let bbox = |w, s, e, n| Bbox::new(w, s, e, n).expect("bbox");
        assert!(paris.meets(&bbox(2.3, 48.8, 2.4, 48.9), 0.0));
        assert!(!paris.meets(&bbox(10.0, 10.0, 11.0, 11.0), 0.0));
        // Just east of the tile: only within the buffer.
        let beyond = bbox(e + 0.001, s, e + 0.002, n);
        assert!(!paris.meets(&beyond, 0.0) && paris.meets(&beyond, 64.0 / 4096.0));
        assert!(
            TileCoord { z: 3, x: 4, y: 0 }.meets(&bbox(0.0, 89.0, 1.0, 90.0), 0.0),
            "polar caps meet the top row"
        );
        let across = bbox(170.0, -10.0, -170.0, 10.0);
        assert!(
            TileCoord { z: 1, x: 0, y: 0 }.meets(&across, 0.0)
                && TileCoord { z: 1, x: 1, y: 1 }.meets(&across, 0.0)
        );
    }
}
