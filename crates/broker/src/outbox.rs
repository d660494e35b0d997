//! The per-connection outbox: the core pushes without ever waiting, the connection drains.
//!
//! It is bounded by construction: QoS 1/2 publishes enter only within the session's inflight
//! window, QoS 0 publishes beyond the byte budget push out the oldest QoS 0 publish (counted),
//! and control packets are answers to the client's own requests.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchyard_codec::{Packet, PubResp, QoS};
use tokio::sync::Notify;

use crate::message::Delivery;

/// Which QoS flow packet an [`Outgoing::Ack`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

/// Something the core asks a connection to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// PUBACK, PUBREC, PUBREL or PUBCOMP (the hot path, kept small): kind, packet id, reason.
    Ack(AckKind, u16, u8),
    /// Any other control packet: CONNACK, SUBACK, UNSUBACK.
    Control(Box<Packet>),
    /// An application message.
    Publish(Delivery),
    /// Close the connection; under 5.0 send DISCONNECT with this reason code first.
    Close(u8),
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Outgoing>,
    qos0_bytes: usize,
}

/// A bounded, non-blocking queue from the core to one connection.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    qos0_budget: usize,
    /// Items the core holds back for this outbox until their batch is durable.
    held: AtomicUsize,
}

impl Outbox {
    /// An outbox whose QoS 0 publishes may hold at most `qos0_budget` payload bytes.
    pub fn new(qos0_budget: usize) -> Outbox {
        Outbox { state: Mutex::new(State::default()), notify: Notify::new(), qos0_budget, held: AtomicUsize::new(0) }
    }

    /// Queue an item. Returns how many QoS 0 publishes were dropped to make room.
    pub fn push(&self, item: Outgoing) -> usize {
        let mut dropped = 0;
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Outgoing::Publish(d) = &item
                && d.qos == QoS::AtMostOnce
            {
                state.qos0_bytes += d.message.cost();
                while state.qos0_bytes > self.qos0_budget {
                    let Some(pos) = state.items.iter().position(is_qos0) else { break };
                    if let Some(Outgoing::Publish(old)) = state.items.remove(pos) {
                        state.qos0_bytes -= old.message.cost();
                        dropped += 1;
                    }
                }
                if state.qos0_bytes > self.qos0_budget {
                    // The new message alone is over budget: it is the one dropped.
                    state.qos0_bytes -= d.message.cost();
                    return dropped + 1;
                }
            }
            if state.items.capacity() == 0 {
                // A first item gets room for one: an idle connection keeps only its CONNACK's.
                state.items.reserve_exact(1);
            }
            state.items.push_back(item);
        }
        self.notify.notify_one();
        dropped
    }

    /// Count an item held back until its batch is durable; it arrives by [`Outbox::push_held`].
    pub fn hold(&self) {
        self.held.fetch_add(1, Ordering::AcqRel);
    }

    /// Queue an item that was held, ending its hold. Returns what [`Outbox::push`] returns.
    pub fn push_held(&self, item: Outgoing) -> usize {
        let dropped = self.push(item);
        self.held.fetch_sub(1, Ordering::AcqRel);
        dropped
    }

    /// True while held items are on their way: anything queued now must go behind them.
    pub fn has_held(&self) -> bool {
        self.held.load(Ordering::Acquire) > 0
    }

    /// Move everything queued into `into`, oldest first.
    pub fn drain(&self, into: &mut Vec<Outgoing>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        into.reserve_exact(state.items.len());
        into.extend(state.items.drain(..));
        state.qos0_bytes = 0;
    }

    /// Free the queue's buffer if nothing is waiting.
    pub fn release_if_empty(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.items.is_empty() {
            state.items = VecDeque::new();
        }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).items.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait until something is pushed (returns at once if a push happened since the last wait).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Outgoing {
    /// The packet for an [`Outgoing::Ack`] or [`Outgoing::Control`].
    pub fn control_packet(&self) -> Option<Packet> {
        match self {
            Outgoing::Ack(kind, packet_id, reason) => {
                let resp = PubResp { packet_id: *packet_id, reason: *reason, ..PubResp::default() };
                Some(match kind {
                    AckKind::PubAck => Packet::PubAck(resp),
                    AckKind::PubRec => Packet::PubRec(resp),
                    AckKind::PubRel => Packet::PubRel(resp),
                    AckKind::PubComp => Packet::PubComp(resp),
                })
            }
            Outgoing::Control(packet) => Some((**packet).clone()),
            Outgoing::Publish(_) | Outgoing::Close(_) => None,
        }
    }
}

fn is_qos0(item: &Outgoing) -> bool {
    matches!(item, Outgoing::Publish(d) if d.qos == QoS::AtMostOnce)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use switchyard_codec::Properties;

    use super::*;
    use crate::message::Message;

    fn delivery(qos: QoS, size: usize) -> Outgoing {
        let message = Message {
            topic: Arc::from("t"),
            payload: Bytes::from(vec![0; size]),
            qos,
            retain: false,
            expires_at_ms: None,
            properties: Properties::default(),
        };
        Outgoing::Publish(Delivery {
            message: Arc::new(message),
            qos,
            retain: false,
            dup: false,
            packet_id: u16::from(qos != QoS::AtMostOnce),
            subscription_ids: vec![],
        })
    }

    #[test]
    fn qos0_over_budget_drops_oldest_qos0_only() {
        let outbox = Outbox::new(250);
        assert_eq!(outbox.push(delivery(QoS::AtMostOnce, 99)), 0);
        assert_eq!(outbox.push(delivery(QoS::AtLeastOnce, 99)), 0);
        assert_eq!(outbox.push(delivery(QoS::AtMostOnce, 99)), 0);
        // Third QoS 0 message exceeds 250 bytes: the first QoS 0 goes, the QoS 1 stays.
        assert_eq!(outbox.push(delivery(QoS::AtMostOnce, 99)), 1);
        let mut items = Vec::new();
        outbox.drain(&mut items);
        let qos: Vec<QoS> = items
            .iter()
            .map(|i| match i {
                Outgoing::Publish(d) => d.qos,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(qos, [QoS::AtLeastOnce, QoS::AtMostOnce, QoS::AtMostOnce]);
    }

    #[test]
    fn oversized_qos0_is_itself_dropped() {
        let outbox = Outbox::new(10);
        assert_eq!(outbox.push(delivery(QoS::AtMostOnce, 50)), 1);
        assert!(outbox.is_empty());
    }
}
