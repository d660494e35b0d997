//! Stored forms of queued messages: a fixed header with the flow state, then the message as an
//! MQTT 5.0 PUBLISH packet, so the codec that reads the wire also reads the disk.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use switchyard_codec::{Packet, Protocol, Publish, QoS};

use crate::message::{Delivery, Message};
use crate::session::{Flow, Held};

const VERSION: u8 = 1;
const HEADER: usize = 1 + 1 + 1 + 1 + 2 + 8;

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record too short")]
    Short,
    #[error("unknown record version {0}")]
    Version(u8),
    #[error("bad flow state {0}")]
    Flow(u8),
    #[error("stored packet unreadable: {0}")]
    Packet(String),
}

/// Encode a held message.
pub fn encode_held(held: &Held) -> Bytes {
    let d = &held.delivery;
    let mut out = BytesMut::with_capacity(HEADER + d.message.cost() + 32);
    out.put_u8(VERSION);
    out.put_u8(match held.flow {
        Flow::Queued => 0,
        Flow::Sent => 1,
        Flow::Released => 2,
    });
    out.put_u8(d.qos as u8);
    out.put_u8(u8::from(d.retain));
    out.put_u16(d.packet_id);
    out.put_u64(d.message.expires_at_ms.unwrap_or(0));
    let mut properties = d.message.properties.clone();
    properties.subscription_identifiers.clone_from(&d.subscription_ids);
    let publish = Publish {
        dup: false,
        qos: d.qos,
        retain: d.message.retain,
        topic: d.message.topic.to_string(),
        packet_id: if d.qos == QoS::AtMostOnce { 0 } else { d.packet_id.max(1) },
        payload: d.message.payload.clone(),
        properties,
    };
    // A PUBLISH built from an accepted message always encodes.
    let _ = switchyard_codec::encode(&Packet::Publish(publish), Protocol::V5, &mut out);
    out.freeze()
}

/// Decode a held message stored with `seq`.
pub fn decode_held(seq: u64, record: &Bytes) -> Result<Held, RecordError> {
    if record.len() < HEADER {
        return Err(RecordError::Short);
    }
    let mut header = &record[..HEADER];
    let version = header.get_u8();
    if version != VERSION {
        return Err(RecordError::Version(version));
    }
    let flow = match header.get_u8() {
        0 => Flow::Queued,
        1 => Flow::Sent,
        2 => Flow::Released,
        other => return Err(RecordError::Flow(other)),
    };
    let qos = QoS::from_u8(header.get_u8()).ok_or(RecordError::Flow(255))?;
    let retain = header.get_u8() != 0;
    let packet_id = header.get_u16();
    let expires = header.get_u64();
    let mut body = BytesMut::from(&record[HEADER..]);
    let packet = switchyard_codec::decode(&mut body, Some(Protocol::V5), usize::MAX)
        .map_err(|e| RecordError::Packet(e.to_string()))?;
    let Some(Packet::Publish(publish)) = packet else {
        return Err(RecordError::Packet("not a PUBLISH".into()));
    };
    let mut properties = publish.properties;
    let subscription_ids = std::mem::take(&mut properties.subscription_identifiers);
    let message = Message {
        topic: Arc::from(publish.topic),
        payload: publish.payload,
        qos,
        retain: publish.retain,
        expires_at_ms: (expires != 0).then_some(expires),
        properties,
    };
    let delivery = Delivery {
        message: Arc::new(message),
        qos,
        retain,
        dup: flow != Flow::Queued,
        packet_id: if flow == Flow::Queued { 0 } else { packet_id },
        subscription_ids,
    };
    Ok(Held { seq: Some(seq), ..Held::new(delivery, flow) })
}

/// Encode a retained message.
pub fn encode_retained(message: &Message) -> Bytes {
    let delivery = Delivery {
        message: Arc::new(message.clone()),
        qos: message.qos,
        retain: true,
        dup: false,
        packet_id: 0,
        subscription_ids: Vec::new(),
    };
    encode_held(&Held::new(delivery, Flow::Queued))
}

/// Decode a retained message.
pub fn decode_retained(record: &Bytes) -> Result<Message, RecordError> {
    let held = decode_held(0, record)?;
    Ok(Arc::unwrap_or_clone(held.delivery.message))
}

#[cfg(test)]
mod tests {
    use switchyard_codec::Properties;

    use super::*;

    #[test]
    fn held_messages_round_trip_in_every_flow_state() {
        let message = Message {
            topic: Arc::from("a/b"),
            payload: Bytes::from_static(b"{\"x\":1}"),
            qos: QoS::ExactlyOnce,
            retain: true,
            expires_at_ms: Some(1_700_000_000_000),
            properties: Properties {
                content_type: Some("application/json".into()),
                user_properties: vec![("k".into(), "v".into())],
                ..Properties::default()
            },
        };
        for (flow, packet_id) in [(Flow::Queued, 0), (Flow::Sent, 7), (Flow::Released, 65535)] {
            let delivery = Delivery {
                message: Arc::new(message.clone()),
                qos: QoS::ExactlyOnce,
                retain: false,
                dup: flow != Flow::Queued,
                packet_id,
                subscription_ids: vec![3, 9],
            };
            let held = Held { seq: Some(42), ..Held::new(delivery, flow) };
            let back = decode_held(42, &encode_held(&held)).expect("decodes");
            assert_eq!(back.flow, flow);
            assert_eq!(back.seq, Some(42));
            assert_eq!(back.delivery, held.delivery);
        }
    }

    #[test]
    fn corrupt_records_are_errors() {
        assert!(matches!(decode_held(1, &Bytes::from_static(b"\x01")), Err(RecordError::Short)));
        let mut bad = vec![9u8; HEADER];
        bad[0] = 9;
        assert!(matches!(decode_held(1, &Bytes::from(bad)), Err(RecordError::Version(9))));
    }
}
