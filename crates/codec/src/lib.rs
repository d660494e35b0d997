//! MQTT 3.1.1 and 5.0 wire format: [`decode`] turns bytes into a [`Packet`] (or reports that more
//! bytes are needed), [`encode`] does the reverse. Pure: no sockets, no tokio, no clocks.
//!
//! Every MUST of both specifications that can be checked from one packet's bytes is checked here;
//! what needs connection state (a second CONNECT, topic aliases, receive maximum) is the
//! connection's job.
//!
//! Modules: `wire` (integers, strings, binary data), `properties` (5.0 property blocks),
//! `decode` and `encode` (one function per packet each), [`topic`] (names, filters, matching),
//! [`reason`] (reason codes).
//!
//! ```
//! use bytes::BytesMut;
//! use switchyard_codec::{Packet, Protocol, PubResp, decode, encode};
//!
//! let mut out = BytesMut::new();
//! encode(&Packet::PubAck(PubResp::new(7)), Protocol::V5, &mut out).unwrap();
//! assert_eq!(&out[..], [0x40, 2, 0, 7]);
//!
//! let mut buf = BytesMut::from(&out[..3]);
//! assert_eq!(decode(&mut buf, Some(Protocol::V5), 1024), Ok(None)); // incomplete: read more
//! buf.extend_from_slice(&out[3..]);
//! assert_eq!(decode(&mut buf, Some(Protocol::V5), 1024), Ok(Some(Packet::PubAck(PubResp::new(7)))));
//! assert!(buf.is_empty());
//! ```

mod decode;
mod encode;
mod error;
mod packet;
mod properties;
pub mod reason;
pub mod topic;
mod wire;

#[cfg(test)]
mod tests;

pub use decode::decode;
pub use encode::{PublishRef, encode, encode_publish, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
