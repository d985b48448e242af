//! Real packets, each with its source:
//! - "traccar": github.com/traccar/traccar `Gt06ProtocolDecoderTest.java` (Apache-2.0).
//! - "doc": the examples of the GT06 protocol document (heartbeat, login answer), as quoted in
//!   several open-source decoders (e.g. comments and tests of GT06 parsers on GitHub).

use bytes::BytesMut;
use chrono::DateTime;
use tokio_util::codec::Decoder;

use super::*;

/// traccar: login of IMEI 864717003283581, serial 9.
const LOGIN: &str = "78780D01086471700328358100093F040D0A";
/// doc: heartbeat.
const HEARTBEAT: &str = "78780A134004040001000FDCEE0D0A";
/// traccar: GPS + LBS (0x12) in India, 3 km/h, course 51.
const GPS_LBS: &str = "787821121303120b2524c70138e363085b549003d43301940057d200cd52c000006aa1ca0d0a";
/// traccar: GPS + LBS (0x22) in Shenzhen.
const GPS_LBS_22: &str = "787822220F0C1D023305C9027AC8180C46586000140001CC00287D001F71000001000820860D0A";
/// traccar: 0x37 in Jakarta (south latitude).
const GPS_37: &str = "7878353714080d05000ac500a886eb0b7522f000100001fe0a05ea004f1b000001002e0400002328003b0217c0003c0401020001002c468a0d0a";
/// traccar: 0x11 in Ontario (west longitude).
const GPS_11: &str = "78782111150b0b022c30c804b7af7808810cb0003c00012e02d075df0084890c000679950d0a";
/// traccar: alarm (0x16).
const ALARM_16: &str = "7878251613020C12141AC5027951430C2A16F60014000900000000001A00007C550300020002F1E70D0A";
/// traccar: alarm (0x26) whose "GPS positioned" bit is clear.
const ALARM_26: &str = "7878252612030C063816C3026C10540C38C9700144030901CC002866000EEE0C06040302000DA2DB0D0A";
/// traccar: a `79 79` information packet (0x70).
const LONG_70: &str = "797900377000000001020035000103002c0004616219d00043000b013601048153931500001a0001000808652820400643521000000101004e46760d0a";

const ALL: [&str; 9] = [
    LOGIN, HEARTBEAT, GPS_LBS, GPS_LBS_22, GPS_37, GPS_11, ALARM_16, ALARM_26, LONG_70,
];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn decode_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Packet>, Gt06Error> {
    let mut codec = Gt06Codec;
    let mut buffer = BytesMut::new();
    let mut packets = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        while let Some(packet) = codec.decode(&mut buffer)? {
            packets.push(packet);
        }
    }
    assert!(buffer.is_empty(), "{} bytes left undecoded", buffer.len());
    Ok(packets)
}

fn message(text: &str) -> Message {
    let bytes = hex(text);
    let packets = decode_chunks([&bytes[..]]).expect("decodes");
    assert_eq!(packets.len(), 1);
    packets[0].message().expect("a message")
}

fn position(text: &str) -> (Gt06Fix, bool) {
    match message(text) {
        Message::Position { fix, alarm } => (fix, alarm),
        other => panic!("not a position: {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn the_login_carries_the_imei_and_its_answer_matches_the_document() {
    assert_eq!(
        message(LOGIN),
        Message::Login {
            imei: "864717003283581".into()
        }
    );
    let packets = decode_chunks([&hex(LOGIN)[..]]).expect("decodes");
    assert_eq!(packets[0].serial, 9);
    // doc: the answer to a login with serial 5, and to a heartbeat with serial 0x0F.
    assert_eq!(reply(0x01, 5).to_vec(), hex("7878050100059FF80D0A"));
    assert_eq!(reply(0x13, 0x0F).to_vec(), hex("78780513000F008F0D0A"));
    assert_eq!(message(HEARTBEAT), Message::Heartbeat);
}

#[test]
fn positions_with_their_hemispheres() {
    let (fix, alarm) = position(GPS_LBS);
    assert!(!alarm && fix.positioned);
    assert_eq!(
        fix.ts.map(|t| t.to_rfc3339()).as_deref(),
        Some("2019-03-18T11:37:36+00:00")
    );
    assert!(
        close(fix.lat, 11.391_912_777) && close(fix.lon, 77.890_64),
        "{fix:?}"
    );
    assert_eq!((fix.satellites, fix.speed_kmh, fix.course_deg), (7, 3, 51));

    let (shenzhen, _) = position(GPS_LBS_22);
    assert_eq!(
        shenzhen.ts.map(|t| t.to_rfc3339()).as_deref(),
        Some("2015-12-29T02:51:05+00:00")
    );
    assert!(close(shenzhen.lat, 23.111_693_333) && close(shenzhen.lon, 114.409_297_777));

    let (jakarta, _) = position(GPS_37);
    assert!(
        close(jakarta.lat, -6.135_881_666) && close(jakarta.lon, 106.792_24),
        "{jakarta:?}"
    );

    let (ontario, _) = position(GPS_11);
    assert!(
        close(ontario.lat, 43.970_484_444) && close(ontario.lon, -79.263_955_555),
        "{ontario:?}"
    );
}

#[test]
fn alarms_are_positions_to_answer_and_unpositioned_ones_are_not_stored() {
    let (fix, alarm) = position(ALARM_16);
    assert!(alarm && fix.positioned);
    assert_eq!(
        fix.ts.map(|t| t.to_rfc3339()).as_deref(),
        Some("2019-02-12T18:20:26+00:00")
    );
    let raw = fix.raw_fix("1", 0x16).expect("stored");
    assert_eq!(raw.device.as_deref(), Some("1"));

    let (unpositioned, alarm) = position(ALARM_26);
    assert!(alarm && !unpositioned.positioned);
    assert_eq!(
        unpositioned.raw_fix("1", 0x26).expect_err("not stored").code,
        "not_positioned"
    );
}

#[test]
fn a_position_becomes_a_fix_in_metres_per_second() {
    let (fix, _) = position(GPS_LBS);
    let raw = fix.raw_fix("864717003283581", 0x12).expect("a fix");
    assert_eq!(raw.device.as_deref(), Some("864717003283581"));
    assert!(raw.speed_mps.is_some_and(|s| close(s, 3.0 / 3.6)));
    assert_eq!(raw.heading_deg, Some(51.0));
    assert_eq!(raw.attrs.expect("attrs")["satellites"], Value::from(7));
}

#[test]
fn other_packets_are_framed_but_not_positions() {
    assert_eq!(message(LONG_70), Message::Other);
}

#[test]
fn every_packet_decodes_the_same_whatever_the_segmentation() {
    for text in ALL {
        let bytes = hex(text);
        let whole = decode_chunks([&bytes[..]]).expect("whole");
        for split in 1..bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(
                decode_chunks([a, b]).expect("split"),
                whole,
                "{text} split at {split}"
            );
        }
        assert_eq!(decode_chunks(bytes.chunks(1)).expect("bytes"), whole);
    }
    let stream: Vec<u8> = ALL.iter().flat_map(|t| hex(t)).collect();
    assert_eq!(decode_chunks([&stream[..]]).expect("all").len(), ALL.len());
}

#[test]
fn broken_packets_are_errors() {
    let mut bad_crc = hex(GPS_LBS);
    bad_crc[10] ^= 0x01;
    assert!(matches!(
        decode_chunks([&bad_crc[..]]),
        Err(Gt06Error::Crc { .. })
    ));
    let mut bad_stop = hex(HEARTBEAT);
    let last = bad_stop.len() - 1;
    bad_stop[last] = 0x0B;
    assert!(matches!(decode_chunks([&bad_stop[..]]), Err(Gt06Error::Stop)));
    assert!(matches!(decode_chunks([&b"GET /"[..]]), Err(Gt06Error::Start)));
    assert!(matches!(decode_chunks([&b"\x78\x79"[..]]), Err(Gt06Error::Start)));
    assert!(matches!(
        decode_chunks([&b"\x78\x78\x02"[..]]),
        Err(Gt06Error::Length(2))
    ));
    assert!(matches!(
        decode_chunks([&b"\x79\x79\xff\xff"[..]]),
        Err(Gt06Error::Length(0xFFFF))
    ));
    // A login whose IMEI is not BCD frames, but is no login.
    let mut content = vec![0x0D, 0x01, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let crc = crc_itu(&content);
    content.extend_from_slice(&crc.to_be_bytes());
    let frame = [&[0x78, 0x78][..], &content, &[0x0D, 0x0A]].concat();
    let packets = decode_chunks([&frame[..]]).expect("frames");
    assert!(packets[0].message().is_err());
}

#[test]
fn encoded_packets_decode_to_what_was_encoded() {
    let ts = DateTime::parse_from_rfc3339("2026-12-07T05:04:03Z")
        .expect("time")
        .to_utc();
    let stream = [
        encode::login("864717003283581", 1).expect("digits"),
        encode::heartbeat(2),
        encode::location(ts, -79.25, 43.97, 36.4, 271.0, 3),
        encode::location(ts, 106.79, -6.13, 0.0, 0.0, 4),
    ]
    .concat();
    // traccar's login packet, byte for byte.
    assert_eq!(encode::login("864717003283581", 9), Some(hex(LOGIN)));
    let packets = decode_chunks([&stream[..]]).expect("decodes");
    let messages: Vec<Message> = packets.iter().map(|p| p.message().expect("message")).collect();
    assert_eq!(
        messages[0],
        Message::Login {
            imei: "864717003283581".into()
        }
    );
    assert_eq!(messages[1], Message::Heartbeat);
    let Message::Position { fix, alarm: false } = &messages[2] else {
        panic!("{:?}", messages[2])
    };
    assert_eq!(fix.ts, Some(ts));
    assert!(close(fix.lon, -79.25) && close(fix.lat, 43.97) && fix.positioned);
    assert_eq!((fix.speed_kmh, fix.course_deg, fix.satellites), (36, 271, 9));
    let Message::Position { fix, .. } = &messages[3] else {
        panic!("{:?}", messages[3])
    };
    assert!(close(fix.lon, 106.79) && close(fix.lat, -6.13));
    assert!(encode::login("86471700328358x", 1).is_none());
}
