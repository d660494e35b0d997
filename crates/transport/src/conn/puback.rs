//! The one packet read without the general decoder: a bare PUBACK, most of what a subscriber
//! sends. The decoder returns every packet by value, sized for a PUBLISH with every property,
//! and copying that value was the largest cost of reading a PUBACK.

/// Bytes of a PUBACK that carries only its packet id.
pub(super) const BARE_PUBACK_LEN: usize = 4;

/// The packet id of the bare PUBACK at the start of `buf`: fixed header 0x40 (no flags, which
/// both versions require), remaining length 2, a non-zero packet id, exactly what 3.1.1 always
/// and 5.0 on success send. Anything else, a PUBACK with id 0 included, is left to the decoder
/// and its errors.
pub(super) fn bare_puback(buf: &[u8]) -> Option<u16> {
    match buf {
        [0x40, 0x02, hi, lo, ..] if (*hi, *lo) != (0, 0) => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use switchyard_codec::{Packet, Protocol, PubResp};

    use bytes::BytesMut;

    use super::*;

    fn encoded(packet: &Packet, protocol: Protocol) -> BytesMut {
        let mut out = BytesMut::new();
        switchyard_codec::encode(packet, protocol, &mut out).expect("encodes");
        out
    }

    #[test]
    fn a_bare_puback_is_read_in_place_as_the_decoder_reads_it() {
        for protocol in [Protocol::V311, Protocol::V5] {
            let wire = encoded(&Packet::PubAck(PubResp::new(0x1234)), protocol);
            assert_eq!(wire.len(), BARE_PUBACK_LEN);
            assert_eq!(bare_puback(&wire), Some(0x1234));
            let decoded = switchyard_codec::decode(&mut wire.clone(), Some(protocol), 1024).unwrap();
            assert_eq!(decoded, Some(Packet::PubAck(PubResp::new(0x1234))));
        }
    }

    #[test]
    fn anything_but_a_bare_puback_goes_to_the_decoder() {
        // Packet id 0 (a protocol error the decoder reports), flags set, a 5.0 reason code, a
        // PUBREC, and a PUBACK not yet complete.
        for wire in [
            &[0x40, 0x02, 0, 0][..],
            &[0x41, 0x02, 0, 1],
            &[0x40, 0x03, 0, 1, 0x10],
            &[0x50, 0x02, 0, 1],
            &[0x40, 0x02, 0],
        ] {
            assert_eq!(bare_puback(wire), None, "{wire:?}");
        }
        let refused = PubResp { reason: 0x10, ..PubResp::new(7) };
        assert_eq!(bare_puback(&encoded(&Packet::PubAck(refused), Protocol::V5)), None);
    }
}
