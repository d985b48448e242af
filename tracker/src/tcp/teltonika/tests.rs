//! Real frames, each with its source:
//! - "wiki": the examples of Teltonika's "Codec" page (wiki.teltonika-gps.com/view/Codec), as
//!   reproduced in the test suite of github.com/alim-zanibekov/teltonika (`teltonika_test.go`,
//!   MIT), which checks them against its own encoder.
//! - "traccar": github.com/traccar/traccar `TeltonikaProtocolDecoderTest.java` (Apache-2.0),
//!   captured from devices.

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::codec::Decoder;

use crate::tcp::FrameError;

use super::*;

/// traccar: the handshake of IMEI 123456789012345.
const IMEI: &str = "000F313233343536373839303132333435";
/// traccar: Codec 8, one record in Vienna, 83 km/h.
const CODEC8_VIENNA: &str = "000000000000004c08010000016818d500580009c28d9f1cb3757a00be00c60f0053000f06f0011503c80001011d00fc0007423799180053cdf80dce426f430f88190bb8560bb802f100005aa110002887e000010000ee8d";
/// wiki: Codec 8, first example (one record, no GPS fix).
const CODEC8_WIKI: &str = "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CF";
/// wiki: Codec 8, third example (two records).
const CODEC8_WIKI_TWO: &str = "000000000000004308020000016B40D57B480100000000000000000000000000000001010101000000000000016B40D5C198010000000000000000000000000000000101010101000000020000252C";
/// traccar: Codec 8, three records.
const CODEC8_THREE: &str = "00000000000000da08030000017fcedf499600280431be0eded45d0038012d100000fa100901000200b300b4004501500415034702fa00054232a1180000cd3b2fce281d43001f02c700000006f10000a029000000017fcedea99600280432070eded3dd00380046130009000f0801010200b300b400450150051502470205423276180009cd3b2fce281d43001f02c700000027f10000a0290000000179d50853180027f65d3f0ed67212001500f1110061000f0801010200b300b4004501500515034702054234f4180061cd53d1ce28c043003e02c700000147f1000000290003000052cb";
/// wiki: Codec 8 Extended example.
const CODEC8E_WIKI: &str = "000000000000004A8E010000016B412CEE000100000000000000000000000000000000010005000100010100010011001D00010010015E2C880002000B000000003544C87A000E000000001DD7E06A00000100002994";
/// alim-zanibekov/teltonika test suite: Codec 8 Extended, two records in Vilnius, the second
/// with variable-length (NX) values.
const CODEC8E_NX: &str = "00000000000000A98E020000017357633410000F0DC39B2095964A00AC00F80B00000000000B000500F00100150400C800004501007156000500B5000500B600040018000000430FE00044011B000100F10000601B000000000000017357633BE1000F0DC39B2095964A00AC00F80B000001810001000000000000000000010181002D11213102030405060708090A0B0C0D0E0F104545010ABC212102030405060708090A0B0C0D0E0F10020B010AAD020000BF30";
/// wiki: Codec 16 example (two records).
const CODEC16_WIKI: &str = "000000000000005F10020000016BDBC7833000000000000000000000000000000000000B05040200010000030002000B00270042563A00000000016BDBC7871800000000000000000000000000000000000B05040200010000030002000B00260042563A00000200005FB3";
/// traccar: Codec 16, one record in Santiago de Chile (negative coordinates).
const CODEC16_SANTIAGO: &str = "000000000000009F100100000164D855401800D5E3B744EC11C762023B011A060000000007200A010000010500010600010D00010E00010F00011600011700011800011F001301010000010700000108000001090000010A0000010B0000010C000001100000011100000112000001130000011400000115000001190000011A0000011B0000011C0000011D0000011E000003010200000000010300000000010400000000000100000D3B";
/// traccar: Codec 16, two records in Vilnius, whose CRC does not match its data (Traccar does
/// not check CRCs).
const CODEC16_BAD_CRC: &str = "000000000000009D10020000013feb55ff74000f0ea850209a690000AE00B90B00000000070A050001000002000003000004000120000200180000004601290200C700000000004C0000000001003E00000000000000000000015B198C7498000F0DBC502095872F00AE00B90B00000000070A050001000002000003000004000120000200180000004601290200C700000000004C0000000001003E000000000000000002000009A5";
/// traccar: a Codec 12 (GPRS command) message, with a valid CRC: not an AVL codec.
const CODEC12: &str = "00000000000000100C010600000008010300010015D5C5010000D988";

const PACKETS: [&str; 8] = [
    CODEC8_VIENNA,
    CODEC8_WIKI,
    CODEC8_WIKI_TWO,
    CODEC8_THREE,
    CODEC8E_WIKI,
    CODEC8E_NX,
    CODEC16_WIKI,
    CODEC16_SANTIAGO,
];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Feeds `chunks` one after another into a fresh codec, decoding after each; the whole input
/// must be consumed.
fn decode_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Frame>, TeltonikaError> {
    let mut codec = TeltonikaCodec::new();
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buffer)? {
            frames.push(frame);
        }
    }
    assert!(buffer.is_empty(), "{} bytes left undecoded", buffer.len());
    Ok(frames)
}

/// The handshake followed by `packet`, decoded in one piece: the packet.
fn packet(packet: &str) -> Result<Packet, TeltonikaError> {
    let bytes = [hex(IMEI), hex(packet)].concat();
    let mut frames = decode_chunks([&bytes[..]])?;
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0], Frame::Imei("123456789012345".into()));
    match frames.remove(1) {
        Frame::Packet(packet) => Ok(packet),
        Frame::Imei(imei) => panic!("a second handshake {imei}"),
    }
}

fn io(record: &AvlRecord, id: u16) -> Option<&IoValue> {
    record.io.iter().find(|e| e.id == id).map(|e| &e.value)
}

fn time(record: &AvlRecord) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(record.timestamp_ms).expect("ms")).expect("time")
}

#[test]
fn crc16_ibm_matches_the_standard_check_value() {
    // The catalogue check value of CRC-16/ARC: the CRC of "123456789".
    assert_eq!(crc16_ibm(b"123456789"), 0xBB3D);
}

#[test]
fn codec8_record_from_a_device_in_vienna() {
    let packet = packet(CODEC8_VIENNA).expect("decodes");
    assert_eq!(packet.codec, Codec::Codec8);
    let [record] = &packet.records[..] else {
        panic!("one record")
    };
    assert_eq!(time(record).to_rfc3339(), "2019-01-04T12:27:19+00:00");
    assert_eq!((record.lon(), record.lat()), (16.374_518_3, 48.152_306_6));
    assert_eq!((record.altitude_m, record.angle_deg), (190, 198));
    assert_eq!(
        (record.satellites, record.speed_kmh, record.priority),
        (15, 83, 0)
    );
    assert_eq!(record.io.len(), 15);
    assert_eq!(io(record, 240), Some(&IoValue::U8(1)));
    assert_eq!(io(record, 21), Some(&IoValue::U8(3)));
    assert_eq!(io(record, 66), Some(&IoValue::U16(0x3799)));
    assert_eq!(io(record, 241), Some(&IoValue::U32(0x5aa1)));
    assert_eq!(io(record, 16), Some(&IoValue::U32(0x0028_87e0)));
    assert_eq!(record.generation, None);
}

#[test]
fn codec8_wiki_examples() {
    let packet1 = packet(CODEC8_WIKI).expect("decodes");
    let [record] = &packet1.records[..] else {
        panic!("one record")
    };
    assert_eq!(record.timestamp_ms, 1_560_161_086_000);
    assert_eq!((record.priority, record.event_io, record.satellites), (1, 1, 0));
    assert_eq!(io(record, 21), Some(&IoValue::U8(3)));
    assert_eq!(io(record, 66), Some(&IoValue::U16(0x5E0F)));
    assert_eq!(io(record, 241), Some(&IoValue::U32(0x601A)));
    assert_eq!(io(record, 78), Some(&IoValue::U64(0)));
    let two = packet(CODEC8_WIKI_TWO).expect("decodes");
    let times: Vec<u64> = two.records.iter().map(|r| r.timestamp_ms).collect();
    assert_eq!(times, [1_560_160_861_000, 1_560_160_879_000]);
    assert_eq!(packet(CODEC8_THREE).expect("decodes").records.len(), 3);
}

#[test]
fn codec8_extended_with_two_byte_ids_and_variable_length_values() {
    let wiki = packet(CODEC8E_WIKI).expect("decodes");
    assert_eq!(wiki.codec, Codec::Codec8Extended);
    let [record] = &wiki.records[..] else {
        panic!("one record")
    };
    assert_eq!((record.timestamp_ms, record.event_io), (1_560_166_592_000, 1));
    assert_eq!(io(record, 17), Some(&IoValue::U16(0x1D)));
    assert_eq!(io(record, 16), Some(&IoValue::U32(0x015E_2C88)));
    assert_eq!(io(record, 11), Some(&IoValue::U64(0x3544_C87A)));
    assert_eq!(io(record, 14), Some(&IoValue::U64(0x1DD7_E06A)));

    let nx = packet(CODEC8E_NX).expect("decodes");
    assert_eq!(nx.records.len(), 2);
    let first = &nx.records[0];
    assert_eq!(time(first).to_rfc3339(), "2020-07-16T11:29:46+00:00");
    assert_eq!((first.lon(), first.lat()), (25.256_028_3, 54.667_425));
    assert_eq!(
        (first.altitude_m, first.angle_deg, first.satellites),
        (172, 248, 11)
    );
    let second = &nx.records[1];
    assert_eq!(second.event_io, 0x0181);
    let Some(IoValue::Bytes(bytes)) = io(second, 0x0181) else {
        panic!("an NX value: {second:?}")
    };
    assert_eq!(bytes.len(), 0x2D);
    assert_eq!(&bytes[..4], &[0x11, 0x21, 0x31, 0x02]);
}

#[test]
fn codec16_carries_the_generation_type() {
    let wiki = packet(CODEC16_WIKI).expect("decodes");
    assert_eq!(wiki.codec, Codec::Codec16);
    let ids: Vec<(u16, Option<u8>, Option<&IoValue>)> = wiki
        .records
        .iter()
        .map(|r| (r.event_io, r.generation, io(r, 11)))
        .collect();
    assert_eq!(
        ids,
        [
            (11, Some(5), Some(&IoValue::U16(0x27))),
            (11, Some(5), Some(&IoValue::U16(0x26)))
        ]
    );
    assert_eq!(io(&wiki.records[0], 66), Some(&IoValue::U16(0x563A)));

    let santiago = packet(CODEC16_SANTIAGO).expect("decodes");
    let [record] = &santiago.records[..] else {
        panic!("one record")
    };
    assert_eq!(time(record).to_rfc3339(), "2018-07-26T20:43:43+00:00");
    assert_eq!((record.lon(), record.lat()), (-70.649_67, -33.437_916_6));
    assert_eq!(
        (record.altitude_m, record.angle_deg, record.satellites),
        (571, 282, 6)
    );
    assert_eq!(
        (record.event_io, record.generation, record.io.len()),
        (0, Some(7), 32)
    );
    assert_eq!(io(record, 0x0102), Some(&IoValue::U32(0)));
}

#[test]
fn every_frame_decodes_the_same_whatever_the_segmentation() {
    for text in PACKETS {
        let stream = [hex(IMEI), hex(text)].concat();
        let whole = decode_chunks([&stream[..]]).expect("whole");
        assert_eq!(whole.len(), 2);
        for split in 1..stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(decode_chunks([a, b]).expect("split"), whole, "split at {split}");
        }
        let bytes = decode_chunks(stream.chunks(1)).expect("byte by byte");
        assert_eq!(bytes, whole, "one byte at a time");
    }
}

#[test]
fn several_packets_in_one_segment_are_all_framed() {
    let mut stream = hex(IMEI);
    for text in PACKETS {
        stream.extend(hex(text));
    }
    let frames = decode_chunks([&stream[..]]).expect("decodes");
    assert_eq!(frames.len(), 1 + PACKETS.len());
    let records: usize = frames
        .iter()
        .map(|f| match f {
            Frame::Packet(p) => p.records.len(),
            Frame::Imei(_) => 0,
        })
        .sum();
    assert_eq!(records, 1 + 1 + 2 + 3 + 1 + 2 + 2 + 1);
}

#[test]
fn encoding_the_decoded_records_gives_the_device_bytes_back() {
    for text in PACKETS {
        let packet = packet(text).expect("decodes");
        let again = encode::packet(packet.codec, &packet.records).expect("encodes");
        assert_eq!(again, hex(text), "{text}");
    }
    assert_eq!(encode::imei("123456789012345"), hex(IMEI));
}

#[test]
fn a_bad_crc_is_an_error() {
    // alim-zanibekov/teltonika's failing cases: the wiki frame with its CRC changed.
    let bad = CODEC8_WIKI.replace("0000C7CF", "0000C7C1");
    let err = packet(&bad).expect_err("bad crc");
    assert!(
        matches!(
            err,
            TeltonikaError::Crc {
                sent: 0xC7C1,
                computed: 0xC7CF
            }
        ),
        "{err}"
    );
    assert_eq!(err.reason(), "bad_crc");
    // One flipped bit in a record is caught too.
    let mut bytes = hex(CODEC8_VIENNA);
    bytes[30] ^= 0x01;
    let stream = [hex(IMEI), bytes].concat();
    assert!(matches!(
        decode_chunks([&stream[..]]),
        Err(TeltonikaError::Crc { .. })
    ));
    assert!(matches!(
        packet(CODEC16_BAD_CRC),
        Err(TeltonikaError::Crc {
            sent: 0x09A5,
            computed: 0xA6DE
        })
    ));
}

#[test]
fn an_unknown_codec_is_an_error() {
    let err = packet(CODEC12).expect_err("codec 12");
    assert!(matches!(err, TeltonikaError::UnknownCodec(0x0C)), "{err}");
    assert_eq!(err.reason(), "unknown_codec");
}

#[test]
fn garbage_fails_as_soon_as_it_can_be_told() {
    let http = decode_chunks([&b"GET / HTTP/1.1\r\n"[..]]).expect_err("http");
    assert!(matches!(http, TeltonikaError::ImeiLength(0x4745)), "{http}");
    let letters = decode_chunks([&b"\x00\x0f12345678901234x"[..]]).expect_err("letters");
    assert!(matches!(letters, TeltonikaError::ImeiNotDigits));
    // Before the IMEI is complete: the first bad byte is enough.
    let early = decode_chunks([&b"\x00\x0f12x"[..]]).expect_err("early");
    assert!(matches!(early, TeltonikaError::ImeiNotDigits));
    let empty = decode_chunks([&b"\x00\x00"[..]]).expect_err("empty imei");
    assert!(matches!(empty, TeltonikaError::ImeiLength(0)));

    let after_handshake = |tail: &[u8]| {
        let stream = [hex(IMEI), tail.to_vec()].concat();
        decode_chunks([&stream[..]]).expect_err("garbage")
    };
    assert!(matches!(after_handshake(b"\x00\x01"), TeltonikaError::Preamble));
    // traccar: a packet announcing no data at all ("invalid length and checksum").
    let zero = hex(
        "0000000000000000080100000113fc208dff00209cca800f14f650006f00d60400040004030101150316030001460000015d000100000000",
    );
    assert!(matches!(after_handshake(&zero), TeltonikaError::DataLength(0)));
    assert!(matches!(
        after_handshake(&hex("0000000000100000")),
        TeltonikaError::DataLength(0x0010_0000)
    ));
}

#[test]
fn inconsistent_record_counts_are_malformed() {
    let mut data = hex(CODEC8_VIENNA)[8..hex(CODEC8_VIENNA).len() - 4].to_vec();
    let last = data.len() - 1;
    data[last] = 2;
    let mut frame = vec![0, 0, 0, 0];
    frame.extend_from_slice(&u32::try_from(data.len()).expect("len").to_be_bytes());
    frame.extend_from_slice(&data);
    frame.extend_from_slice(&u32::from(crc16_ibm(&data)).to_be_bytes());
    let stream = [hex(IMEI), frame].concat();
    let err = decode_chunks([&stream[..]]).expect_err("count mismatch");
    assert!(
        matches!(&err, TeltonikaError::Malformed(m) if m.contains("1 records, then 2")),
        "{err}"
    );
}

#[test]
fn a_record_becomes_a_fix_of_the_imei_with_its_io_in_attrs() {
    let packet = packet(CODEC8_VIENNA).expect("decodes");
    let fix = packet.records[0].raw_fix("123456789012345").expect("a position");
    assert_eq!(fix.device.as_deref(), Some("123456789012345"));
    assert_eq!(fix.ts.map(|t| t.timestamp_millis()), Some(1_546_604_839_000));
    assert_eq!((fix.lon, fix.lat), (Some(16.374_518_3), Some(48.152_306_6)));
    let speed = fix.speed_mps.expect("speed");
    assert!((speed - 23.055_555).abs() < 1e-5, "{speed}");
    assert_eq!((fix.heading_deg, fix.altitude_m), (Some(198.0), Some(190.0)));
    let attrs = fix.attrs.expect("attrs");
    assert_eq!(attrs["66"], Value::from(0x3799));
    assert_eq!(attrs["16"], Value::from(0x0028_87e0));
    assert_eq!(
        (&attrs["satellites"], &attrs["priority"]),
        (&Value::from(15), &Value::from(0))
    );

    let nx = packet_nx_attrs();
    assert_eq!(nx["385"].as_str().map(str::len), Some(0x2D * 2));
}

fn packet_nx_attrs() -> serde_json::Map<String, Value> {
    let packet = packet(CODEC8E_NX).expect("decodes");
    packet.records[1].raw_fix("1").expect("fix").attrs.expect("attrs")
}

#[test]
fn a_record_without_a_gps_fix_is_rejected() {
    // The wiki frame: 0 satellites at 0,0.
    let packet = packet(CODEC8_WIKI).expect("decodes");
    let rejection = packet.records[0].raw_fix("1").expect_err("no fix");
    assert_eq!(rejection.code, "no_gps_fix");
}
