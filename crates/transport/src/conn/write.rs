//! The writing half of a connection: what the core queued in the outbox, encoded into the
//! write buffer (shared messages written as stored where the protocol allows, 5.0 topic aliases
//! applied on the way out).

use switchyard_broker::{AckKind, Delivery, Outgoing, WillAction, now_ms};
use switchyard_codec::{Packet, Protocol, Publish, PublishRef};

use super::{Connection, Ending};

impl Connection {
    /// Encode what the core queued, until the write buffer is full enough.
    pub(super) fn drain_outbox(&mut self) {
        self.outbox.drain(&mut self.pending);
        let protocol = self.protocol();
        let mut items = std::mem::take(&mut self.pending);
        let now = now_ms();
        let mut connack = false;
        for item in items.drain(..) {
            if self.closing.is_some() {
                break;
            }
            let packet = match item {
                Outgoing::Ack(kind, packet_id, code) => {
                    // Our acknowledgement frees a slot of the client's receive window. Under 3.1.1 a
                    // QoS 2 slot frees at PUBREC: the window must never wait for a PUBREL that
                    // may sit behind held publishes (the core's QoS 2 state is bounded by the
                    // packet id space).
                    let frees = match kind {
                        AckKind::PubAck | AckKind::PubComp => true,
                        AckKind::PubRec => code >= 0x80 || protocol == Protocol::V311,
                        AckKind::PubRel => false,
                    };
                    if frees && let Some(rare) = &mut self.rare {
                        rare.inflow.acked(packet_id);
                    }
                    match Outgoing::Ack(kind, packet_id, code).control_packet() {
                        Some(packet) => packet,
                        None => continue,
                    }
                }
                Outgoing::Control(packet) => {
                    if let Packet::ConnAck(c) = &*packet {
                        connack = true;
                        if c.code != 0 {
                            self.closing = Some(Box::new(Ending {
                                will: WillAction::Discard,
                                session_expiry: None,
                                disconnect: None,
                                why: "connection refused",
                            }));
                        }
                    }
                    *packet
                }
                Outgoing::Publish(delivery) => {
                    if self.writes_as_stored(&delivery) {
                        self.encode_stored(&delivery);
                        continue;
                    }
                    let mut publish = delivery.message.to_publish(&delivery, now);
                    self.apply_outbound_alias(&mut publish);
                    Packet::Publish(publish)
                }
                Outgoing::Close(code) => {
                    // A refusing CONNACK already decided how we close: no DISCONNECT after it.
                    self.closing.get_or_insert_with(|| {
                        Box::new(Ending {
                            will: WillAction::Discard,
                            session_expiry: None,
                            disconnect: Some(code),
                            why: "closed by the broker",
                        })
                    });
                    continue;
                }
            };
            if let Err(e) = switchyard_codec::encode(&packet, protocol, &mut self.wbuf) {
                tracing::warn!(error = %e, "cannot encode an outgoing packet; skipped");
            }
        }
        if connack {
            // The CONNACK's queue buffers say nothing of the traffic to come: an idle
            // connection keeps none.
            items = Vec::new();
            self.outbox.release_if_empty();
        }
        self.pending = items;
    }

    /// True when the PUBLISH for `delivery` carries the stored message's properties unchanged
    /// (3.1.1 has none; 5.0 without an expiry to count down, subscription ids or topic aliases),
    /// so it can be written straight from the shared message.
    fn writes_as_stored(&self, delivery: &Delivery) -> bool {
        self.protocol() == Protocol::V311
            || (delivery.message.expires_at_ms.is_none()
                && delivery.subscription_ids.is_empty()
                && self.accepted.client_alias_max == 0)
    }

    fn encode_stored(&mut self, delivery: &Delivery) {
        let message = &delivery.message;
        let publish = PublishRef {
            dup: delivery.dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: &message.topic,
            packet_id: delivery.packet_id,
            payload: &message.payload,
            properties: &message.properties,
        };
        if let Err(e) = switchyard_codec::encode_publish(publish, self.protocol(), &mut self.wbuf) {
            tracing::warn!(error = %e, "cannot encode an outgoing packet; skipped");
        }
    }

    fn apply_outbound_alias(&mut self, publish: &mut Publish) {
        let max = self.accepted.client_alias_max;
        if max == 0 || self.protocol() != Protocol::V5 {
            return;
        }
        let outbound = &mut self.rare.get_or_insert_default().outbound;
        if let Some(&alias) = outbound.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic.clear();
        } else if outbound.len() < usize::from(max) {
            let alias = outbound.len() as u16 + 1;
            outbound.insert(publish.topic.clone(), alias);
            publish.properties.topic_alias = Some(alias);
        }
    }
}
