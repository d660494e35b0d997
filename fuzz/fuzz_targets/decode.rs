//! Feeds arbitrary bytes to `decode` before CONNECT and under both protocols. Whatever decodes
//! must encode (to exactly `encoded_len` bytes) and decode back to the same packet.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard_codec::{Packet, Protocol, decode, encode, encoded_len};

fuzz_target!(|data: &[u8]| {
    for protocol in [None, Some(Protocol::V311), Some(Protocol::V5)] {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = decode(&mut buf, protocol, 1 << 20) {
            let level = match (&packet, protocol) {
                (Packet::Connect(connect), _) => connect.protocol,
                (_, Some(level)) => level,
                (_, None) => panic!("only CONNECT may decode before CONNECT: {packet:?}"),
            };
            let mut out = BytesMut::new();
            encode(&packet, level, &mut out).expect("a decoded packet encodes");
            assert_eq!(out.len(), encoded_len(&packet, level));
            let again = decode(&mut out, protocol, usize::MAX).expect("re-encoded packet decodes");
            assert_eq!(again.as_ref(), Some(&packet));
            assert!(out.is_empty());
        }
    }
});
