//! Teltonika messages as a device sends them: the IMEI handshake and AVL data packets, for the
//! simulator and for tests that play a device. The inverse of the decoder.

use super::avl::{AvlRecord, IoValue, layout};
use super::{Codec, crc16_ibm};

/// Why a record cannot be written in the asked codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{0} does not fit the codec's field")]
    TooLarge(&'static str),
    #[error("variable-length IO values exist in Codec 8 Extended only")]
    VariableLength,
}

/// The handshake: 2-byte length and the IMEI's ASCII digits.
pub fn imei(imei: &str) -> Vec<u8> {
    let len = u16::try_from(imei.len()).unwrap_or(u16::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(imei.as_bytes());
    out
}

/// A whole AVL data packet: preamble, length, data, CRC.
pub fn packet(codec: Codec, records: &[AvlRecord]) -> Result<Vec<u8>, EncodeError> {
    let count = u8::try_from(records.len()).map_err(|_| EncodeError::TooLarge("the record count"))?;
    let mut data = vec![codec.id(), count];
    for record in records {
        write_record(codec, record, &mut data)?;
    }
    data.push(count);
    let len = u32::try_from(data.len()).map_err(|_| EncodeError::TooLarge("the data length"))?;
    let mut out = vec![0; 4];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(&u32::from(crc16_ibm(&data)).to_be_bytes());
    Ok(out)
}

/// Appends the low `width` bytes of `value`, big-endian, if it fits.
fn put(out: &mut Vec<u8>, value: u64, width: usize, what: &'static str) -> Result<(), EncodeError> {
    if width < 8 && value >> (8 * width) != 0 {
        return Err(EncodeError::TooLarge(what));
    }
    out.extend_from_slice(&value.to_be_bytes()[8 - width..]);
    Ok(())
}

fn write_record(codec: Codec, record: &AvlRecord, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let layout = layout(codec);
    out.extend_from_slice(&record.timestamp_ms.to_be_bytes());
    out.push(record.priority);
    out.extend_from_slice(&record.lon_e7.to_be_bytes());
    out.extend_from_slice(&record.lat_e7.to_be_bytes());
    out.extend_from_slice(&record.altitude_m.to_be_bytes());
    out.extend_from_slice(&record.angle_deg.to_be_bytes());
    out.push(record.satellites);
    out.extend_from_slice(&record.speed_kmh.to_be_bytes());
    put(out, u64::from(record.event_io), layout.event, "the event IO id")?;
    if codec == Codec::Codec16 {
        out.push(record.generation.unwrap_or(0));
    }
    put(out, record.io.len() as u64, layout.total, "the IO element count")?;
    for width in [1, 2, 4, 8] {
        let group: Vec<_> = record
            .io
            .iter()
            .filter_map(|e| {
                fixed(&e.value)
                    .filter(|(w, _)| *w == width)
                    .map(|(_, v)| (e.id, v))
            })
            .collect();
        put(out, group.len() as u64, layout.count, "an IO group's count")?;
        for (id, value) in group {
            put(out, u64::from(id), layout.id, "an IO id")?;
            put(out, value, width, "an IO value")?;
        }
    }
    let variable: Vec<_> = record
        .io
        .iter()
        .filter_map(|e| match &e.value {
            IoValue::Bytes(bytes) => Some((e.id, bytes)),
            _ => None,
        })
        .collect();
    if codec == Codec::Codec8Extended {
        put(out, variable.len() as u64, 2, "the variable-length IO count")?;
        for (id, bytes) in variable {
            out.extend_from_slice(&id.to_be_bytes());
            put(out, bytes.len() as u64, 2, "a variable-length IO value")?;
            out.extend_from_slice(bytes);
        }
    } else if !variable.is_empty() {
        return Err(EncodeError::VariableLength);
    }
    Ok(())
}

/// The width and value of a fixed-size IO value.
fn fixed(value: &IoValue) -> Option<(usize, u64)> {
    match value {
        IoValue::U8(v) => Some((1, u64::from(*v))),
        IoValue::U16(v) => Some((2, u64::from(*v))),
        IoValue::U32(v) => Some((4, u64::from(*v))),
        IoValue::U64(v) => Some((8, *v)),
        IoValue::Bytes(_) => None,
    }
}
