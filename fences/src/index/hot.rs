//! The index's dense array entry of a fence ([`Hot`]): what a lookup reads of
//! a candidate before its record, in one cache line.

use super::Slot;
use super::grid::Grid;
use crate::exact::Shape;
use geo::Coord;

/// What a lookup reads of a fence before its record, in a dense array indexed
/// like the slots, one cache line a fence: its id and what settles most tests.
/// A record (`Slot`) spans about ten cache lines, and reading a candidate's
/// cover, bands and shape from it cost three or four misses: 47% of a lookup
/// among 110,000 fences. A circle is tested, a point in a settled cell of a
/// polygon's grid answered, and any fence named, from this array alone.
#[derive(Debug)]
#[repr(align(64))]
pub(super) struct Hot {
    pub id: Box<str>,
    pub test: HotTest,
}

// One cache line per fence, as the dense array is meant to be.
const _: () = assert!(size_of::<Option<Hot>>() == 64);

#[derive(Debug)]
pub(super) enum HotTest {
    /// The fence has an H3 cover, in its record.
    Covered,
    /// A circle's centre and radius, for `circle_contains` (what `PreparedFence::contains` runs).
    Circle(Coord, f64),
    /// A many-edged polygon: its grid, then its bands for boundary cells.
    Grid(Grid),
    /// The record's exact test.
    Exact,
}

impl Hot {
    /// The entry of a slot about to be attached (its grid moves here).
    pub fn of(slot: &mut Slot) -> Self {
        let test = match (&slot.fence.shape, &slot.cover, slot.grid.take()) {
            (_, Some(_), _) => HotTest::Covered,
            (Shape::Circle { centre, radius_m }, ..) => HotTest::Circle(*centre, *radius_m),
            (_, None, Some(grid)) => HotTest::Grid(*grid),
            _ => HotTest::Exact,
        };
        Self {
            id: slot.fence.id().into(),
            test,
        }
    }
}
