//! Fixed-header rules, refused as soon as the offending byte has arrived, and the rules on a
//! packet's overall length (trailing bytes, truncated fields, maximum packet size).

use bytes::BytesMut;

use super::{V3, V5, cat, err, frame, malformed, protocol_error, s};
use crate::{DecodeError, decode};

/// Decodes a buffer that may be incomplete (only the header matters).
fn decode_prefix(protocol: Option<crate::Protocol>, bytes: &[u8], max: usize) -> Result<(), DecodeError> {
    decode(&mut BytesMut::from(bytes), protocol, max).map(|_| ())
}

#[test]
fn remaining_length_longer_than_four_bytes() {
    let refused = Err(DecodeError::MalformedPacket("variable byte integer longer than 4 bytes"));
    assert_eq!(decode_prefix(V5, &[0x30, 0xff, 0xff, 0xff, 0xff], usize::MAX), refused);
    assert_eq!(decode_prefix(V3, &[0xC0, 0x80, 0x80, 0x80, 0x80, 0x01], usize::MAX), refused);
}

#[test]
fn remaining_length_not_in_shortest_form() {
    malformed(V5, &[0xC0, 0x80, 0x00]);
    malformed(V3, &[0x40, 0x82, 0x00, 0, 1]);
}

#[test]
fn packet_type_0() {
    for protocol in [None, V3, V5] {
        assert!(matches!(decode_prefix(protocol, &[0x00], usize::MAX), Err(DecodeError::MalformedPacket(_))));
    }
}

#[test]
fn reserved_fixed_header_flags() {
    let wrong = [0x11, 0x21, 0x48, 0x51, 0x60, 0x63, 0x71, 0x80, 0x8A, 0x91, 0xA0, 0xA3, 0xB2, 0xC1, 0xD4, 0xE8, 0xF1];
    for first in wrong {
        for protocol in [V3, V5] {
            let result = decode_prefix(protocol, &[first], usize::MAX);
            let expected = if first == 0xF1 && protocol == V3 {
                "AUTH is not an MQTT 3.1.1 packet"
            } else {
                "reserved fixed header flags"
            };
            assert_eq!(result, Err(DecodeError::MalformedPacket(expected)), "{first:#04x}");
        }
    }
    assert!(matches!(decode_prefix(None, &[0x12], 9), Err(DecodeError::MalformedPacket(_))));
}

#[test]
fn publish_with_qos_3() {
    for protocol in [V3, V5] {
        malformed(protocol, &frame(0x36, &cat![s("t"), [0, 1]]));
    }
}

#[test]
fn dup_on_qos_0_publish() {
    let bytes = frame(0x38, &cat![s("t"), [0]]);
    malformed(V3, &bytes);
    protocol_error(V5, &bytes);
}

#[test]
fn auth_under_v311() {
    malformed(V3, &[0xF0, 0]);
}

#[test]
fn first_packet_must_be_connect() {
    for bytes in [&[0xC0, 0][..], &[0x30], &[0xF0, 0], &[0x20, 2, 0, 0]] {
        assert!(matches!(
            decode_prefix(None, bytes, usize::MAX),
            Err(DecodeError::ProtocolError("the first packet must be CONNECT"))
        ));
    }
}

#[test]
fn packet_too_large_from_the_header_alone() {
    assert_eq!(decode_prefix(V5, &[0x30, 0x7f], 100), Err(DecodeError::PacketTooLarge { size: 129, max: 100 }));
    assert_eq!(
        decode_prefix(None, &[0x10, 0x80, 0x80, 0x01], 1024),
        Err(DecodeError::PacketTooLarge { size: 16_388, max: 1024 })
    );
    assert_eq!(DecodeError::PacketTooLarge { size: 2, max: 1 }.reason_code(), 0x95);
}

#[test]
fn trailing_bytes_after_the_content() {
    malformed(V3, &[0xC0, 1, 0]);
    malformed(V5, &[0xD0, 1, 0]);
    malformed(V3, &[0x40, 3, 0, 1, 0]);
    malformed(V3, &[0x20, 3, 0, 0, 0]);
    malformed(V3, &[0xB0, 3, 0, 1, 0]);
    malformed(V3, &[0xE0, 1, 0]);
    malformed(V5, &[0x40, 5, 0, 1, 0, 0, 0]);
    malformed(V5, &[0xE0, 3, 0, 0, 0]);
    malformed(V5, &[0x20, 4, 0, 0, 0, 0]);
    malformed(None, &frame(0x10, &cat![s("MQTT"), [4, 0x02, 0, 60], s("c"), [0]]));
}

#[test]
fn fields_running_past_the_end() {
    malformed(V3, &[0x40, 1, 0]);
    malformed(V5, &[0x20, 1, 0]);
    malformed(V5, &[0x20, 2, 0, 0]);
    malformed(V3, &frame(0x30, &[0, 5, b'a']));
    malformed(V3, &frame(0x32, &cat![s("t"), [0]]));
    malformed(V5, &frame(0x90, &[0, 1]));
}

#[test]
fn reason_codes_of_errors() {
    assert_eq!(err(V3, &[0xC0, 1, 0]).reason_code(), 0x81);
    assert_eq!(err(V5, &frame(0x38, &cat![s("t"), [0]])).reason_code(), 0x82);
    assert_eq!(err(V5, &frame(0x30, &cat![s("a/+"), [0]])).reason_code(), 0x90);
    assert_eq!(err(V3, &frame(0xA2, &cat![[0, 1], s("a/#/b")])).reason_code(), 0x8F);
    assert_eq!(err(None, &frame(0x10, &cat![s("MQTT"), [6]])).reason_code(), 0x84);
}
