//! `$SYS` topics: broker figures published every interval into each namespace as retained
//! messages kept in memory only (never stored). Each namespace sees only its own figures,
//! the anonymous one included: its clients, sessions and messages. Message counts run while the
//! namespace has a subscription or a retained message (while its space exists).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use switchyard_codec::{Properties, QoS};

use super::{Router, Timer};
use crate::auth::Namespace;
use crate::message::{Message, now_ms};

impl Router {
    /// Publish the current figures and schedule the next round.
    pub(super) fn publish_sys(&mut self) {
        let now = now_ms();
        let uptime = now.saturating_sub(self.started_ms) / 1000;
        let mut connected: HashMap<Namespace, (u64, u64)> = HashMap::new();
        for session in self.sessions.values() {
            let entry = connected.entry(session.namespace.clone()).or_default();
            entry.0 += u64::from(session.attached.is_some());
            entry.1 += 1;
        }
        let namespaces: Vec<Namespace> = self.spaces.keys().cloned().collect();
        for ns in namespaces {
            let (clients, sessions) = connected.get(&ns).copied().unwrap_or_default();
            let (received, sent) = self.spaces.get(&ns).map_or((0, 0), |s| (s.received, s.sent));
            let figures = [
                ("$SYS/broker/version", env!("CARGO_PKG_VERSION").to_owned()),
                ("$SYS/broker/uptime", format!("{uptime} seconds")),
                ("$SYS/broker/clients/connected", clients.to_string()),
                ("$SYS/broker/sessions", sessions.to_string()),
                ("$SYS/broker/messages/received", received.to_string()),
                ("$SYS/broker/messages/sent", sent.to_string()),
            ];
            let mut published = Vec::with_capacity(figures.len());
            for (topic, value) in figures {
                let message = Arc::new(Message {
                    topic: Arc::from(topic),
                    payload: Bytes::from(value),
                    qos: QoS::AtMostOnce,
                    retain: true,
                    expires_at_ms: None,
                    properties: Properties::default(),
                });
                self.route(&ns, &message, None);
                published.push(message);
            }
            if let Some(space) = self.spaces.get_mut(&ns) {
                space.sys = published;
            }
        }
        self.schedule(now + self.cfg.sys_interval_ms.max(100), Timer::Sys);
    }
}
