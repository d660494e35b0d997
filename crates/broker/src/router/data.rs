//! Pipeline data in the core: PUBLISHes the pipeline refused, and data from outside MQTT
//! (HTTP, WebSocket) that is delivered live and stored in the batch's commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchyard_codec::{Packet, Properties, Protocol, PubResp, QoS, reason};

use super::Router;
use crate::message::{ConnId, IngestRequest, Message};
use crate::outbox::{AckKind, Outgoing};

/// Longest reason string sent with a refusal: one line, well under any packet size limit.
pub const MAX_REASON_STRING: usize = 200;

/// `detail` as a reason string: the code points MQTT 5.0 lets a receiver refuse (controls,
/// non-characters; the text may quote the client's payload) written as escapes, then cut to at
/// most `max` bytes on a character boundary.
fn reason_string(detail: &str, max: usize) -> String {
    let refused =
        |c: char| c.is_control() || matches!(u32::from(c), 0xfdd0..=0xfdef) || (u32::from(c) & 0xfffe) == 0xfffe;
    let mut text = String::with_capacity(detail.len().min(max));
    for c in detail.chars() {
        if refused(c) {
            text.extend(c.escape_default());
        } else {
            text.push(c);
        }
        if text.len() > max {
            break;
        }
    }
    cut(text, max)
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl Router {
    /// Acknowledge a refused PUBLISH in order with the other acknowledgements: 5.0 with `code`
    /// (an error ends a QoS 2 exchange at PUBREC); 3.1.1, which has no negative acknowledgement,
    /// as a success, so the client does not resend for ever (its message is dropped). Under 5.0
    /// a non-empty `detail` goes along as the reason string (escaped where MQTT forbids a code
    /// point, cut to [`MAX_REASON_STRING`] bytes).
    pub(super) fn refused(&mut self, conn: ConnId, qos: QoS, packet_id: u16, code: u8, detail: String) {
        let Some(id) = self.session_of(conn) else { return };
        let session = &self.sessions[&id];
        let Some(outbox) = session.attached.as_ref().map(|a| Arc::clone(&a.outbox)) else { return };
        let v5 = session.protocol == Protocol::V5;
        let code = if v5 { code } else { reason::SUCCESS };
        let kind = match qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => AckKind::PubAck,
            QoS::ExactlyOnce => AckKind::PubRec,
        };
        if !v5 || detail.is_empty() {
            self.send(&outbox, Outgoing::Ack(kind, packet_id, code));
            return;
        }
        let properties =
            Properties { reason_string: Some(reason_string(&detail, MAX_REASON_STRING)), ..Properties::default() };
        let resp = PubResp { packet_id, reason: code, properties };
        let packet = if kind == AckKind::PubAck { Packet::PubAck(resp) } else { Packet::PubRec(resp) };
        self.send(&outbox, Outgoing::Control(Box::new(packet)));
    }

    /// Route each live message to the namespace's subscribers of its topic (QoS 1, from no
    /// session, not retained) and store `data` in this batch; the reply waits for the commit.
    pub(super) fn ingest(&mut self, request: IngestRequest) {
        let IngestRequest { namespace, live, expires_at_ms, data, reply } = request;
        for (topic, payload) in live {
            self.stats.messages_received.fetch_add(1, Ordering::Relaxed);
            if let Some(space) = self.spaces.get_mut(&namespace) {
                space.received += 1;
            }
            let message = Message {
                topic,
                payload,
                qos: QoS::AtLeastOnce,
                retain: false,
                expires_at_ms,
                properties: Properties::default(),
            };
            self.route(&namespace, &Arc::new(message), None);
        }
        let start = self.data.len();
        self.data.extend(data);
        self.replies.push((start..self.data.len(), reply));
    }
}
