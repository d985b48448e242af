//! The records of a Teltonika AVL data field, and what a record becomes as a fix.
//!
//! A record: time (ms since 1970, UTC), priority, longitude and latitude (signed, 1e-7 degree),
//! altitude (m), angle (degrees), satellites, speed (km/h), then the IO elements: the id of the
//! element that triggered the record, (Codec 16) the generation type, the element count, and
//! elements grouped by value size (1, 2, 4, 8 bytes; Codec 8 Extended adds a group of
//! variable-length values). Codec 8 has 1-byte ids and counts, Codec 8 Extended 2-byte ids and
//! counts, Codec 16 2-byte ids and 1-byte counts.
//!
//! As a fix ([`AvlRecord::raw_fix`]): the IMEI is the device, speed is converted to m/s, the
//! angle is the heading, and everything else goes into `attrs`: each IO element under its id
//! (`"239": 1`; variable-length values as hex text), plus `priority`, `satellites`, `event_io`
//! and, in Codec 16, `generation`. A record with no satellites at 0,0 is the device saying it has
//! no position yet: it is rejected as `no_gps_fix` rather than stored on "Null Island".

use chrono::DateTime;
use serde_json::{Map, Value};

use super::Codec;
use crate::fix::{RawFix, Rejection};

/// One AVL record as the device sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvlRecord {
    pub timestamp_ms: u64,
    pub priority: u8,
    /// Degrees × 10⁷.
    pub lon_e7: i32,
    /// Degrees × 10⁷.
    pub lat_e7: i32,
    pub altitude_m: i16,
    pub angle_deg: u16,
    pub satellites: u8,
    pub speed_kmh: u16,
    /// The IO element that triggered the record (0: a periodic record).
    pub event_io: u16,
    /// Codec 16 only: why the record was generated (0 on exit, 1 on entrance, 2 on both,
    /// 3 reserved, 4 hysteresis, 5 on change, 6 eventual, 7 periodical).
    pub generation: Option<u8>,
    pub io: Vec<IoElement>,
}

/// One IO element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoElement {
    pub id: u16,
    pub value: IoValue,
}

/// An IO element's value, as wide as the device sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoValue {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    /// Codec 8 Extended's variable-length values.
    Bytes(Vec<u8>),
}

impl IoValue {
    fn to_json(&self) -> Value {
        match self {
            Self::U8(v) => Value::from(*v),
            Self::U16(v) => Value::from(*v),
            Self::U32(v) => Value::from(*v),
            Self::U64(v) => Value::from(*v),
            Self::Bytes(bytes) => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                let hex: String = bytes
                    .iter()
                    .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]])
                    .map(char::from)
                    .collect();
                Value::from(hex)
            }
        }
    }
}

/// The widths of ids and counts, per codec.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub id: usize,
    pub count: usize,
    /// Width of the event IO id and the total element count.
    pub event: usize,
    pub total: usize,
}

pub(super) fn layout(codec: Codec) -> Layout {
    match codec {
        Codec::Codec8 => Layout {
            id: 1,
            count: 1,
            event: 1,
            total: 1,
        },
        Codec::Codec8Extended => Layout {
            id: 2,
            count: 2,
            event: 2,
            total: 2,
        },
        Codec::Codec16 => Layout {
            id: 2,
            count: 1,
            event: 2,
            total: 1,
        },
    }
}

/// A bounds-checked reader over the data field.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!("{n} bytes needed, {} left", self.bytes.len()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// A big-endian unsigned number of `n` bytes (1 to 8).
    fn uint(&mut self, n: usize) -> Result<u64, String> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

/// The records of a data field after its codec id: count, records, count again, nothing more.
pub(super) fn parse_data(codec: Codec, data: &[u8]) -> Result<Vec<AvlRecord>, String> {
    let mut reader = Reader { bytes: data };
    let count = reader.u8()?;
    let records = (0..count)
        .map(|n| record(codec, &mut reader).map_err(|e| format!("record {}: {e}", u32::from(n) + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let again = reader.u8().map_err(|e| format!("second record count: {e}"))?;
    if again != count {
        return Err(format!("the packet announces {count} records, then {again}"));
    }
    if !reader.bytes.is_empty() {
        return Err(format!("{} bytes after the records", reader.bytes.len()));
    }
    Ok(records)
}

fn record(codec: Codec, reader: &mut Reader<'_>) -> Result<AvlRecord, String> {
    let layout = layout(codec);
    let timestamp_ms = reader.uint(8)?;
    let priority = reader.u8()?;
    let lon_e7 = reader.uint(4)? as u32 as i32;
    let lat_e7 = reader.uint(4)? as u32 as i32;
    let altitude_m = reader.u16()? as i16;
    let angle_deg = reader.u16()?;
    let satellites = reader.u8()?;
    let speed_kmh = reader.u16()?;
    let event_io = reader.uint(layout.event)? as u16;
    let generation = match codec {
        Codec::Codec16 => Some(reader.u8()?),
        Codec::Codec8 | Codec::Codec8Extended => None,
    };
    let _total = reader.uint(layout.total)?;
    let mut io = Vec::new();
    for width in [1, 2, 4, 8] {
        let count = reader.uint(layout.count)?;
        for _ in 0..count {
            let id = reader.uint(layout.id)? as u16;
            let raw = reader.uint(width)?;
            let value = match width {
                1 => IoValue::U8(raw as u8),
                2 => IoValue::U16(raw as u16),
                4 => IoValue::U32(raw as u32),
                _ => IoValue::U64(raw),
            };
            io.push(IoElement { id, value });
        }
    }
    if codec == Codec::Codec8Extended {
        for _ in 0..reader.u16()? {
            let id = reader.u16()?;
            let len = usize::from(reader.u16()?);
            io.push(IoElement {
                id,
                value: IoValue::Bytes(reader.take(len)?.to_vec()),
            });
        }
    }
    Ok(AvlRecord {
        timestamp_ms,
        priority,
        lon_e7,
        lat_e7,
        altitude_m,
        angle_deg,
        satellites,
        speed_kmh,
        event_io,
        generation,
        io,
    })
}

impl AvlRecord {
    pub fn lon(&self) -> f64 {
        f64::from(self.lon_e7) / 1e7
    }

    pub fn lat(&self) -> f64 {
        f64::from(self.lat_e7) / 1e7
    }

    /// The record as an unchecked fix of device `imei` (validated by the caller like every
    /// other fix), or why it is not a position.
    pub fn raw_fix(&self, imei: &str) -> Result<RawFix, Rejection> {
        if self.satellites == 0 && self.lon_e7 == 0 && self.lat_e7 == 0 {
            return Err(Rejection::new(
                "no_gps_fix",
                "the record has no position (0 satellites, coordinates 0,0)",
            ));
        }
        let ts = i64::try_from(self.timestamp_ms)
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| {
                Rejection::new(
                    "invalid_ts",
                    format!("time {} ms is out of range", self.timestamp_ms),
                )
            })?;
        Ok(RawFix {
            device: Some(imei.to_owned()),
            ts: Some(ts),
            lon: Some(self.lon()),
            lat: Some(self.lat()),
            speed_mps: Some(f64::from(self.speed_kmh) / 3.6),
            heading_deg: Some(f64::from(self.angle_deg)),
            accuracy_m: None,
            altitude_m: Some(f64::from(self.altitude_m)),
            battery: None,
            attrs: Some(self.attrs()),
        })
    }

    fn attrs(&self) -> Map<String, Value> {
        let mut attrs = Map::new();
        attrs.insert("priority".into(), Value::from(self.priority));
        attrs.insert("satellites".into(), Value::from(self.satellites));
        attrs.insert("event_io".into(), Value::from(self.event_io));
        if let Some(generation) = self.generation {
            attrs.insert("generation".into(), Value::from(generation));
        }
        for element in &self.io {
            attrs.insert(element.id.to_string(), element.value.to_json());
        }
        attrs
    }
}
