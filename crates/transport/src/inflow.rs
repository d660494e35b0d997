//! Inbound QoS 1/2 flow control for one connection: the window a client's publishes count
//! against until we acknowledge them, and, for MQTT 3.1.1 (which has no receive maximum), the
//! packets held while that window is full.
//!
//! A 5.0 client that exceeds the window is disconnected (0x93) by the connection. A 3.1.1 client
//! is slowed instead: a QoS 1/2 PUBLISH that finds the window full is held, and so is everything
//! after it, in order, except acknowledgements of the other direction's flows and PINGREQ, which
//! answer packets already admitted and may overtake. Held packets go to the core as
//! acknowledgements free slots; the connection stops reading once [`HOLD_LIMIT`] bytes are held.

use std::collections::{BTreeSet, VecDeque};

use switchyard_codec::{Packet, QoS};

/// Held bytes from which the connection stops reading. Reading ahead this far still lets the
/// client's PUBACKs for our deliveries and its PUBRELs reach the core past the publishes that
/// wait for a slot, so a client subscribed to its own publishes keeps draining.
pub(crate) const HOLD_LIMIT: usize = 64 * 1024;

#[derive(Debug, Default)]
pub(crate) struct Inflow {
    /// Inbound QoS 1/2 packet ids not yet acknowledged.
    unacked: BTreeSet<u16>,
    /// Packets read while the window was full, oldest first, each with its size on the wire.
    held: VecDeque<(Packet, usize)>,
    held_bytes: usize,
}

impl Inflow {
    /// Count the QoS 1/2 publish `packet_id` in the window of `max`; false when it exceeds it.
    pub(crate) fn admit(&mut self, packet_id: u16, max: u16) -> bool {
        self.unacked.insert(packet_id);
        self.unacked.len() <= usize::from(max)
    }

    /// Our acknowledgement of `packet_id` went out: its slot is free.
    pub(crate) fn acked(&mut self, packet_id: u16) {
        self.unacked.remove(&packet_id);
    }

    fn full(&self, max: u16) -> bool {
        self.unacked.len() >= usize::from(max)
    }

    /// True when `packet` must wait: it needs a slot of a full window, or something waits
    /// before it that it may not overtake.
    pub(crate) fn must_hold(&self, packet: &Packet, max: u16) -> bool {
        if self.held.is_empty() { needs_slot(packet) && self.full(max) } else { !may_overtake(packet) }
    }

    /// Keep `packet` (`size` bytes on the wire) until [`Inflow::release`] lets it go.
    pub(crate) fn hold(&mut self, packet: Packet, size: usize) {
        self.held_bytes += size;
        self.held.push_back((packet, size));
    }

    pub(crate) fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// True while enough is held that the connection must stop reading.
    pub(crate) fn reading_paused(&self) -> bool {
        self.held_bytes >= HOLD_LIMIT
    }

    /// The oldest held packet, once the window has room for it.
    pub(crate) fn release(&mut self, max: u16) -> Option<Packet> {
        let (front, _) = self.held.front()?;
        if needs_slot(front) && self.full(max) {
            return None;
        }
        let (packet, size) = self.held.pop_front()?;
        self.held_bytes -= size;
        if self.held.is_empty() {
            self.held = VecDeque::new();
        }
        Some(packet)
    }
}

fn needs_slot(packet: &Packet) -> bool {
    matches!(packet, Packet::Publish(p) if p.qos != QoS::AtMostOnce)
}

/// Packets that concern flows already admitted (or none), so their order relative to the
/// client's new publishes does not matter.
fn may_overtake(packet: &Packet) -> bool {
    matches!(packet, Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) | Packet::PingReq)
}

#[cfg(test)]
mod tests {
    use switchyard_codec::{PubResp, Publish};

    use super::*;

    fn publish(qos: QoS, packet_id: u16) -> Packet {
        Packet::Publish(Publish { topic: "t".into(), qos, packet_id, ..Publish::default() })
    }

    fn packet_id(packet: &Packet) -> u16 {
        match packet {
            Packet::Publish(p) => p.packet_id,
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
    }

    #[test]
    fn a_full_window_holds_publishes_and_what_follows_them_in_order() {
        let mut inflow = Inflow::default();
        assert!(inflow.admit(1, 2));
        assert!(!inflow.must_hold(&publish(QoS::AtLeastOnce, 2), 2));
        assert!(inflow.admit(2, 2));
        // Full: QoS 0 and a SUBSCRIBE-like packet still pass while nothing is held.
        assert!(!inflow.must_hold(&publish(QoS::AtMostOnce, 0), 2));
        assert!(inflow.must_hold(&publish(QoS::ExactlyOnce, 3), 2));
        inflow.hold(publish(QoS::ExactlyOnce, 3), 10);
        // Behind a held packet: a QoS 0 publish and DISCONNECT wait, acknowledgements overtake.
        assert!(inflow.must_hold(&publish(QoS::AtMostOnce, 0), 2));
        assert!(inflow.must_hold(&Packet::Disconnect(Default::default()), 2));
        for overtakes in [Packet::PubAck(PubResp::new(9)), Packet::PubRel(PubResp::new(1)), Packet::PingReq] {
            assert!(!inflow.must_hold(&overtakes, 2));
        }
        inflow.hold(publish(QoS::AtMostOnce, 0), 10);
        assert_eq!(inflow.release(2), None, "no slot yet");
        inflow.acked(1);
        let first = inflow.release(2).expect("a slot is free");
        assert_eq!(packet_id(&first), 3);
        assert!(inflow.admit(3, 2));
        // The QoS 0 publish needs no slot: it follows at once, and nothing is left.
        assert_eq!(packet_id(&inflow.release(2).expect("needs no slot")), 0);
        assert!(!inflow.has_held());
    }

    #[test]
    fn reading_pauses_from_the_hold_limit_and_resumes_below_it() {
        let mut inflow = Inflow::default();
        assert!(inflow.admit(1, 1));
        inflow.hold(publish(QoS::AtLeastOnce, 2), HOLD_LIMIT - 1);
        assert!(!inflow.reading_paused());
        inflow.hold(publish(QoS::AtLeastOnce, 3), 1);
        assert!(inflow.reading_paused());
        inflow.acked(1);
        assert!(inflow.release(1).is_some());
        assert!(!inflow.reading_paused());
    }

    #[test]
    fn a_resent_packet_id_takes_no_second_slot() {
        let mut inflow = Inflow::default();
        assert!(inflow.admit(7, 1));
        assert!(inflow.admit(7, 1));
        assert!(!inflow.admit(8, 1));
    }
}
