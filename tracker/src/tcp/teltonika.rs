//! Teltonika over TCP (FMB, FMC, FMM... trackers; Traccar's port 5027): the IMEI handshake, then
//! AVL data packets in Codec 8, 8 Extended or 16.
//!
//! - Handshake: a 2-byte big-endian length and the IMEI in ASCII digits. The server answers
//!   `0x01` (accepted) or `0x00` (refused).
//! - AVL packet: 4 zero bytes, a 4-byte big-endian data length, then the data (codec id, record
//!   count, records, record count again) and a 4-byte CRC-16/IBM of the data. The server
//!   answers with the record count as 4 bytes, big-endian; a device keeps and resends records
//!   that were not acknowledged.
//!
//! [`TeltonikaCodec`] frames exactly one message at a time out of any segmentation (a packet
//! split byte by byte, or several in one segment). It checks what it can before a frame is
//! complete (the IMEI length, the preamble, the data length), so garbage fails fast instead of
//! making the reader wait for bytes that will never come. After an error the stream cannot be
//! trusted to be in step: the caller closes the connection. Record bodies are parsed in [`avl`],
//! encoded (for simulators and tests) in [`encode`].

pub mod avl;
pub mod encode;

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

pub use avl::{AvlRecord, IoElement, IoValue};

/// Longest IMEI accepted in the handshake (an IMEI has 15 digits; some devices send 16).
pub const MAX_IMEI_LEN: usize = 20;
/// Largest AVL data field accepted. Teltonika devices send at most a few kilobytes; a larger
/// length is garbage, and would otherwise make the reader buffer it.
pub const MAX_DATA_LEN: usize = 64 * 1024;
/// Codec id, two record counts: the smallest data field.
const MIN_DATA_LEN: usize = 3;
/// Preamble and data length.
const HEADER_LEN: usize = 8;
const CRC_LEN: usize = 4;

/// The AVL codecs this decoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Codec 8: 1-byte IO ids and counts.
    Codec8,
    /// Codec 8 Extended: 2-byte IO ids and counts, and variable-length IO values.
    Codec8Extended,
    /// Codec 16: 2-byte IO ids, 1-byte counts, and the record's generation type.
    Codec16,
}

impl Codec {
    /// The codec of an id byte, if it is one of the AVL codecs read here.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            0x08 => Some(Self::Codec8),
            0x8E => Some(Self::Codec8Extended),
            0x10 => Some(Self::Codec16),
            _ => None,
        }
    }

    pub fn id(self) -> u8 {
        match self {
            Self::Codec8 => 0x08,
            Self::Codec8Extended => 0x8E,
            Self::Codec16 => 0x10,
        }
    }
}

/// One message from a device.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The handshake: the device's IMEI.
    Imei(String),
    /// An AVL data packet whose CRC and record counts check out.
    Packet(Packet),
}

/// The records of one AVL data packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub codec: Codec,
    pub records: Vec<AvlRecord>,
}

/// Why the stream cannot be read further. Each variant has a stable [`TeltonikaError::reason`]
/// for metrics.
#[derive(Debug, thiserror::Error)]
pub enum TeltonikaError {
    #[error("the handshake announces an IMEI of {0} bytes (1 to {MAX_IMEI_LEN} expected)")]
    ImeiLength(usize),
    #[error("the IMEI is not ASCII digits")]
    ImeiNotDigits,
    #[error("an AVL packet must start with 4 zero bytes")]
    Preamble,
    #[error("an AVL packet announces {0} bytes of data ({MIN_DATA_LEN} to {MAX_DATA_LEN} expected)")]
    DataLength(usize),
    #[error("CRC mismatch: the packet says {sent:#06x}, its data gives {computed:#06x}")]
    Crc { sent: u32, computed: u16 },
    #[error("unknown codec {0:#04x} (8, 8E and 16 are read)")]
    UnknownCodec(u8),
    #[error("malformed AVL data: {0}")]
    Malformed(String),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

impl super::FrameError for TeltonikaError {
    fn reason(&self) -> &'static str {
        match self {
            Self::ImeiLength(_) | Self::ImeiNotDigits => "bad_imei",
            Self::Preamble => "bad_preamble",
            Self::DataLength(_) => "bad_length",
            Self::Crc { .. } => "bad_crc",
            Self::UnknownCodec(_) => "unknown_codec",
            Self::Malformed(_) => "malformed",
            Self::Io(_) => "io",
        }
    }
}

/// The framing of one connection: the handshake first, then AVL packets.
#[derive(Debug, Default)]
pub struct TeltonikaCodec {
    handshake_done: bool,
}

impl TeltonikaCodec {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Decoder for TeltonikaCodec {
    type Item = Frame;
    type Error = TeltonikaError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, TeltonikaError> {
        if self.handshake_done {
            return decode_packet(src).map(|p| p.map(Frame::Packet));
        }
        let imei = decode_imei(src)?;
        self.handshake_done = imei.is_some();
        Ok(imei.map(Frame::Imei))
    }
}

fn decode_imei(src: &mut BytesMut) -> Result<Option<String>, TeltonikaError> {
    if src.len() < 2 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([src[0], src[1]]));
    if !(1..=MAX_IMEI_LEN).contains(&len) {
        return Err(TeltonikaError::ImeiLength(len));
    }
    if src.iter().skip(2).take(len).any(|b| !b.is_ascii_digit()) {
        return Err(TeltonikaError::ImeiNotDigits);
    }
    if src.len() < 2 + len {
        return Ok(None);
    }
    src.advance(2);
    let digits = src.split_to(len);
    // Checked above: ASCII digits only.
    Ok(Some(digits.iter().map(|&b| char::from(b)).collect()))
}

fn decode_packet(src: &mut BytesMut) -> Result<Option<Packet>, TeltonikaError> {
    if src.iter().take(4).any(|&b| b != 0) {
        return Err(TeltonikaError::Preamble);
    }
    if src.len() < HEADER_LEN {
        return Ok(None);
    }
    let data_len = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
    if !(MIN_DATA_LEN..=MAX_DATA_LEN).contains(&data_len) {
        return Err(TeltonikaError::DataLength(data_len));
    }
    let total = HEADER_LEN + data_len + CRC_LEN;
    if src.len() < total {
        src.reserve(total - src.len());
        return Ok(None);
    }
    let frame = src.split_to(total).freeze();
    let data = &frame[HEADER_LEN..HEADER_LEN + data_len];
    let crc = &frame[HEADER_LEN + data_len..];
    let sent = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc16_ibm(data);
    if sent != u32::from(computed) {
        return Err(TeltonikaError::Crc { sent, computed });
    }
    let codec = Codec::from_id(data[0]).ok_or(TeltonikaError::UnknownCodec(data[0]))?;
    let records = avl::parse_data(codec, &data[1..]).map_err(TeltonikaError::Malformed)?;
    Ok(Some(Packet { codec, records }))
}

/// CRC-16/IBM (also known as CRC-16/ARC): polynomial 0x8005 reflected (0xA001), initial value
/// 0, no final XOR. Teltonika's checksum of the AVL data field.
pub fn crc16_ibm(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests;
