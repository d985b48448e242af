//! GT06 (Concox and its many clones; Traccar's port 5023): `78 78` packets with a 1-byte length
//! or `79 79` packets with a 2-byte length, each `start, length, protocol number, content,
//! serial number, CRC-ITU, 0D 0A`, the length counting from the protocol number to the CRC and
//! the CRC (CRC-16/X-25) covering the length to the serial number.
//!
//! [`Gt06Codec`] frames one packet at a time whatever the TCP segmentation and checks its start,
//! stop bytes and CRC; [`Packet::message`] says what it is: a login (the IMEI in BCD), a
//! heartbeat, a position (GPS location packets 0x10, 0x11, 0x12, 0x22, 0x37 and the alarm
//! packets 0x16, 0x26, all starting with the same GPS block) or something else. [`reply`] builds
//! the server's answer, `78 78 05 protocol serial CRC 0D 0A`. After a framing error the stream
//! cannot be trusted to be in step: the caller closes the connection.
//!
//! GPS block: date and time (UTC: year − 2000, month, day, hour, minute, second), GPS info
//! (high nibble: length, low nibble: satellites), latitude and longitude (unsigned, 1/1,800,000
//! degree), speed (km/h), then the course and status word: bit 12 set = "GPS positioned",
//! bit 11 set = west longitude, bit 10 set = north latitude, bits 0-9 the course in degrees.

pub mod encode;

use bytes::{Buf, Bytes, BytesMut};
use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{Map, Value};
use tokio_util::codec::Decoder;

use crate::fix::{RawFix, Rejection};

/// The largest packet accepted (a `79 79` length can announce 64 KiB; real packets are small).
pub const MAX_PACKET_LEN: usize = 2048;
/// Protocol number, serial number and CRC: the smallest length.
const MIN_LEN: usize = 5;

/// Protocol numbers read here.
pub mod protocol {
    pub const LOGIN: u8 = 0x01;
    pub const HEARTBEAT: u8 = 0x13;
    /// GPS location packets: stored, not answered.
    pub const LOCATIONS: [u8; 5] = [0x10, 0x11, 0x12, 0x22, 0x37];
    /// Alarm packets: stored and answered.
    pub const ALARMS: [u8; 2] = [0x16, 0x26];
}

/// One framed packet whose CRC checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub protocol: u8,
    /// Between the protocol number and the serial number.
    pub content: Bytes,
    pub serial: u16,
}

/// Why the stream cannot be read further; [`Gt06Error::reason`] is a metrics label.
#[derive(Debug, thiserror::Error)]
pub enum Gt06Error {
    #[error("a packet must start with 78 78 or 79 79")]
    Start,
    #[error("a packet announces a length of {0} (between {MIN_LEN} and {MAX_PACKET_LEN})")]
    Length(usize),
    #[error("a packet must end with 0D 0A")]
    Stop,
    #[error("CRC mismatch: the packet says {sent:#06x}, its bytes give {computed:#06x}")]
    Crc { sent: u16, computed: u16 },
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

impl super::FrameError for Gt06Error {
    fn reason(&self) -> &'static str {
        match self {
            Self::Start => "bad_start",
            Self::Length(_) => "bad_length",
            Self::Stop => "bad_stop",
            Self::Crc { .. } => "bad_crc",
            Self::Io(_) => "io",
        }
    }
}

/// The framing of a GT06 connection.
#[derive(Debug, Default)]
pub struct Gt06Codec;

impl Decoder for Gt06Codec {
    type Item = Packet;
    type Error = Gt06Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, Gt06Error> {
        let start = match src.first() {
            None => return Ok(None),
            Some(&b) if b == 0x78 || b == 0x79 => b,
            Some(_) => return Err(Gt06Error::Start),
        };
        if src.get(1).is_some_and(|&b| b != start) {
            return Err(Gt06Error::Start);
        }
        let header = if start == 0x78 { 3 } else { 4 };
        if src.len() < header {
            return Ok(None);
        }
        let len = if start == 0x78 {
            usize::from(src[2])
        } else {
            usize::from(u16::from_be_bytes([src[2], src[3]]))
        };
        if !(MIN_LEN..=MAX_PACKET_LEN).contains(&len) {
            return Err(Gt06Error::Length(len));
        }
        let total = header + len + 2;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let frame = src.split_to(total).freeze();
        if frame[total - 2..] != [0x0D, 0x0A] {
            return Err(Gt06Error::Stop);
        }
        let crc_at = header + len - 2;
        let sent = u16::from_be_bytes([frame[crc_at], frame[crc_at + 1]]);
        let computed = crc_itu(&frame[2..crc_at]);
        if sent != computed {
            return Err(Gt06Error::Crc { sent, computed });
        }
        let mut body = frame.slice(header..crc_at);
        let protocol = body.get_u8();
        let content = body.split_to(body.len() - 2);
        Ok(Some(Packet {
            protocol,
            content,
            serial: body.get_u16(),
        }))
    }
}

/// CRC-ITU as GT06 uses it: CRC-16/X-25 (polynomial 0x1021 reflected, initial value 0xFFFF,
/// final XOR 0xFFFF).
pub fn crc_itu(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The server's answer to a packet: `78 78 05 protocol serial CRC 0D 0A`.
pub fn reply(protocol: u8, serial: u16) -> [u8; 10] {
    let [s0, s1] = serial.to_be_bytes();
    let [c0, c1] = crc_itu(&[0x05, protocol, s0, s1]).to_be_bytes();
    [0x78, 0x78, 0x05, protocol, s0, s1, c0, c1, 0x0D, 0x0A]
}

/// What a packet says.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The device's IMEI (its BCD digits, without the leading zero of 16 digits).
    Login {
        imei: String,
    },
    Heartbeat,
    /// A position: stored when positioned; `alarm` packets are answered.
    Position {
        fix: Gt06Fix,
        alarm: bool,
    },
    /// Anything else (LBS-only, status, information packets): neither stored nor answered.
    Other,
}

/// The GPS block of a location or alarm packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Gt06Fix {
    pub ts: Option<chrono::DateTime<Utc>>,
    pub satellites: u8,
    pub lat: f64,
    pub lon: f64,
    pub speed_kmh: u8,
    pub course_deg: u16,
    /// The "GPS positioned" bit: without it the coordinates are not a fix.
    pub positioned: bool,
}

impl Packet {
    /// What the packet is; `Err` when its content is too short for its protocol number.
    pub fn message(&self) -> Result<Message, String> {
        match self.protocol {
            protocol::LOGIN => login(&self.content),
            protocol::HEARTBEAT => Ok(Message::Heartbeat),
            p if protocol::LOCATIONS.contains(&p) || protocol::ALARMS.contains(&p) => Ok(Message::Position {
                fix: gps(&self.content)?,
                alarm: protocol::ALARMS.contains(&p),
            }),
            _ => Ok(Message::Other),
        }
    }
}

fn login(content: &[u8]) -> Result<Message, String> {
    let bcd = content.get(..8).ok_or("a login needs 8 bytes of IMEI")?;
    let mut digits = String::with_capacity(16);
    for nibble in bcd.iter().flat_map(|b| [b >> 4, b & 0x0F]) {
        if nibble > 9 {
            return Err("the IMEI is not BCD digits".into());
        }
        digits.push(char::from(b'0' + nibble));
    }
    let imei = digits.strip_prefix('0').unwrap_or(&digits).to_owned();
    Ok(Message::Login { imei })
}

fn gps(content: &[u8]) -> Result<Gt06Fix, String> {
    let block = content.get(..18).ok_or("a position needs an 18-byte GPS block")?;
    let ts = NaiveDate::from_ymd_opt(
        2000 + i32::from(block[0]),
        u32::from(block[1]),
        u32::from(block[2]),
    )
    .and_then(|d| d.and_hms_opt(u32::from(block[3]), u32::from(block[4]), u32::from(block[5])))
    .map(|t| Utc.from_utc_datetime(&t));
    let unit = |b: &[u8]| f64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])) / 1_800_000.0;
    let status = u16::from_be_bytes([block[16], block[17]]);
    let north = status & (1 << 10) != 0;
    let west = status & (1 << 11) != 0;
    Ok(Gt06Fix {
        ts,
        satellites: block[6] & 0x0F,
        lat: if north {
            unit(&block[7..11])
        } else {
            -unit(&block[7..11])
        },
        lon: if west {
            -unit(&block[11..15])
        } else {
            unit(&block[11..15])
        },
        speed_kmh: block[15],
        course_deg: status & 0x03FF,
        positioned: status & (1 << 12) != 0,
    })
}

impl Gt06Fix {
    /// The fix of device `imei`, or why it is not stored: `not_positioned` when the device says
    /// its GPS has no position, `invalid_ts` for an impossible date.
    pub fn raw_fix(&self, imei: &str, protocol: u8) -> Result<RawFix, Rejection> {
        if !self.positioned {
            return Err(Rejection::new(
                "not_positioned",
                "the packet's \"GPS positioned\" bit is clear",
            ));
        }
        let ts = self
            .ts
            .ok_or_else(|| Rejection::new("invalid_ts", "the packet's date and time do not exist"))?;
        let mut attrs = Map::new();
        attrs.insert("satellites".into(), Value::from(self.satellites));
        attrs.insert("gt06_protocol".into(), Value::from(protocol));
        Ok(RawFix {
            device: Some(imei.to_owned()),
            ts: Some(ts),
            lon: Some(self.lon),
            lat: Some(self.lat),
            speed_mps: Some(f64::from(self.speed_kmh) / 3.6),
            heading_deg: Some(f64::from(self.course_deg)),
            attrs: Some(attrs),
            ..RawFix::default()
        })
    }
}

#[cfg(test)]
mod tests;
