//! Property tests over generated packets of every type under both protocols: decoding what was
//! encoded gives the packet back, `encoded_len` is exact, `encode_publish` matches `encode`,
//! every strict prefix is incomplete, and arbitrary bytes never panic the decoder.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;

use super::strategy;
use crate::{DecodeError, Packet, Protocol, decode, encode, encode_publish, encoded_len};

fn encoded(packet: &Packet, protocol: Protocol) -> Result<BytesMut, TestCaseError> {
    let mut out = BytesMut::from(&b"prefix"[..]);
    encode(packet, protocol, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(out.len() - 6, encoded_len(packet, protocol));
    Ok(out.split_off(6))
}

fn round_trip(packet: &Packet, protocol: Protocol) -> Result<(), TestCaseError> {
    let bytes = encoded(packet, protocol)?;
    if let Packet::Publish(p) = packet {
        // The borrowed form writes exactly the same bytes.
        let mut direct = BytesMut::new();
        encode_publish(p.into(), protocol, &mut direct).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&direct[..], &bytes[..]);
    }
    let mut buf = bytes.clone();
    prop_assert_eq!(decode(&mut buf, Some(protocol), bytes.len()), Ok(Some(packet.clone())));
    prop_assert!(buf.is_empty());
    if matches!(packet, Packet::Connect(_)) {
        let mut buf = bytes.clone();
        prop_assert_eq!(decode(&mut buf, None, usize::MAX), Ok(Some(packet.clone())));
    }
    let mut buf = bytes.clone();
    prop_assert_eq!(
        decode(&mut buf, Some(protocol), bytes.len() - 1),
        Err(DecodeError::PacketTooLarge { size: bytes.len(), max: bytes.len() - 1 })
    );
    Ok(())
}

fn prefixes_are_incomplete(packet: &Packet, protocol: Protocol) -> Result<(), TestCaseError> {
    let bytes = encoded(packet, protocol)?;
    for len in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..len]);
        prop_assert_eq!(decode(&mut buf, Some(protocol), usize::MAX), Ok(None));
        prop_assert_eq!(&buf[..], &bytes[..len]);
    }
    let mut buf = BytesMut::from(&bytes[..]);
    buf.extend_from_slice(&[0xC0, 0x00, 0x30]);
    prop_assert_eq!(decode(&mut buf, Some(protocol), usize::MAX), Ok(Some(packet.clone())));
    prop_assert_eq!(&buf[..], &[0xC0, 0x00, 0x30]);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn round_trip_v311(packet in strategy::packet(Protocol::V311)) {
        round_trip(&packet, Protocol::V311)?;
    }

    #[test]
    fn round_trip_v5(packet in strategy::packet(Protocol::V5)) {
        round_trip(&packet, Protocol::V5)?;
    }

    #[test]
    fn prefixes_are_incomplete_v311(packet in strategy::packet(Protocol::V311)) {
        prefixes_are_incomplete(&packet, Protocol::V311)?;
    }

    #[test]
    fn prefixes_are_incomplete_v5(packet in strategy::packet(Protocol::V5)) {
        prefixes_are_incomplete(&packet, Protocol::V5)?;
    }

    #[test]
    fn arbitrary_bytes_decode_or_fail_cleanly(bytes in vec(any::<u8>(), 0..64)) {
        for protocol in [None, Some(Protocol::V311), Some(Protocol::V5)] {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(packet)) = decode(&mut buf, protocol, usize::MAX) {
                let level = match (&packet, protocol) {
                    (Packet::Connect(c), _) => c.protocol,
                    (_, Some(level)) => level,
                    (_, None) => return Err(TestCaseError::fail("only CONNECT decodes first")),
                };
                let again = encoded(&packet, level)?;
                prop_assert_eq!(decode(&mut again.clone(), protocol, usize::MAX), Ok(Some(packet)));
            }
        }
    }
}
