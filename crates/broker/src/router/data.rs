//! Pipeline data in the core: PUBLISHes the pipeline refused, and data from outside MQTT
//! (HTTP, WebSocket) that is delivered live and stored in the batch's commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchyard_codec::{Properties, Protocol, QoS, reason};

use super::Router;
use crate::message::{ConnId, IngestRequest, Message};
use crate::outbox::{AckKind, Outgoing};

impl Router {
    /// Acknowledge a refused PUBLISH in order with the other acknowledgements: 5.0 with `code`
    /// (an error ends a QoS 2 exchange at PUBREC); 3.1.1, which has no negative acknowledgement,
    /// as a success, so the client does not resend for ever (its message is dropped).
    pub(super) fn refused(&mut self, conn: ConnId, qos: QoS, packet_id: u16, code: u8) {
        let Some(id) = self.session_of(conn) else { return };
        let session = &self.sessions[&id];
        let Some(outbox) = session.attached.as_ref().map(|a| Arc::clone(&a.outbox)) else { return };
        let code = if session.protocol == Protocol::V5 { code } else { reason::SUCCESS };
        let kind = match qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => AckKind::PubAck,
            QoS::ExactlyOnce => AckKind::PubRec,
        };
        self.send(&outbox, Outgoing::Ack(kind, packet_id, code));
    }

    /// Route each live message to the namespace's subscribers of its topic (QoS 1, from no
    /// session, not retained) and store `data` in this batch; the reply waits for the commit.
    pub(super) fn ingest(&mut self, request: IngestRequest) {
        let IngestRequest { namespace, live, data, reply } = request;
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
                expires_at_ms: None,
                properties: Properties::default(),
            };
            self.route(&namespace, &Arc::new(message), None);
        }
        let start = self.data.len();
        self.data.extend(data);
        self.replies.push((start..self.data.len(), reply));
    }
}
