//! GT06 packets as a device sends them, for the simulator: a login, a heartbeat and a location
//! (0x22: GPS block and an LBS block). The inverse of the decoder.

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::crc_itu;

/// A `78 78` packet: length, protocol number, content, serial number, CRC, stop bytes.
pub fn packet(protocol: u8, content: &[u8], serial: u16) -> Vec<u8> {
    let len = u8::try_from(content.len() + 5).unwrap_or(u8::MAX);
    let mut out = vec![0x78, 0x78, len, protocol];
    out.extend_from_slice(content);
    out.extend_from_slice(&serial.to_be_bytes());
    let crc = crc_itu(&out[2..]);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&[0x0D, 0x0A]);
    out
}

/// The login of `imei` (up to 16 digits, in BCD, left-padded with zeros); `None` when it is not
/// digits.
pub fn login(imei: &str, serial: u16) -> Option<Vec<u8>> {
    if imei.len() > 16 || !imei.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: Vec<u8> = format!("{imei:0>16}").bytes().map(|b| b - b'0').collect();
    let bcd: Vec<u8> = digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect();
    Some(packet(super::protocol::LOGIN, &bcd, serial))
}

/// A heartbeat: terminal information (oil and electricity connected, GPS tracking on), voltage
/// level 4, GSM signal 4, English.
pub fn heartbeat(serial: u16) -> Vec<u8> {
    packet(
        super::protocol::HEARTBEAT,
        &[0x46, 0x04, 0x04, 0x00, 0x02],
        serial,
    )
}

/// A positioned GPS + LBS location (0x22) at `ts`, `lon`, `lat`, `speed_kmh` (saturated to
/// 255) and `course_deg`.
pub fn location(
    ts: DateTime<Utc>,
    lon: f64,
    lat: f64,
    speed_kmh: f64,
    course_deg: f64,
    serial: u16,
) -> Vec<u8> {
    let byte = |v: u32| u8::try_from(v).unwrap_or(0);
    let mut content = vec![
        byte(u32::try_from(ts.year() - 2000).unwrap_or(0)),
        byte(ts.month()),
        byte(ts.day()),
        byte(ts.hour()),
        byte(ts.minute()),
        byte(ts.second()),
        // 12 bytes of GPS data, 9 satellites.
        0xC9,
    ];
    let unit = |deg: f64| ((deg.abs() * 1_800_000.0).round() as u32).to_be_bytes();
    content.extend_from_slice(&unit(lat));
    content.extend_from_slice(&unit(lon));
    content.push(speed_kmh.round().clamp(0.0, 255.0) as u8);
    let course = (course_deg.round() as u16) % 360;
    let status = (1 << 12) | (u16::from(lon < 0.0) << 11) | (u16::from(lat >= 0.0) << 10) | course;
    content.extend_from_slice(&status.to_be_bytes());
    // LBS: MCC 460, MNC 0, LAC, cell id; ACC on, upload mode, real-time.
    content.extend_from_slice(&[0x01, 0xCC, 0x00, 0x28, 0x7D, 0x00, 0x1F, 0x71, 0x01, 0x00, 0x00]);
    packet(0x22, &content, serial)
}
