//! `$SYS` topics: broker figures published every interval into each namespace as retained
//! messages kept in memory only (never stored). Each namespace sees only its own figures;
//! the anonymous namespace also sees the broker-wide message counters.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
        let received = self.stats.messages_received.load(Ordering::Relaxed);
        let sent = self.stats.messages_sent.load(Ordering::Relaxed);
        let namespaces: Vec<Namespace> = self.spaces.keys().cloned().collect();
        for ns in namespaces {
            let (clients, sessions) = connected.get(&ns).copied().unwrap_or_default();
            let mut figures = vec![
                ("$SYS/broker/version", env!("CARGO_PKG_VERSION").to_owned()),
                ("$SYS/broker/uptime", format!("{uptime} seconds")),
                ("$SYS/broker/clients/connected", clients.to_string()),
                ("$SYS/broker/sessions", sessions.to_string()),
            ];
            if ns == Namespace::anonymous() {
                figures.push(("$SYS/broker/messages/received", received.to_string()));
                figures.push(("$SYS/broker/messages/sent", sent.to_string()));
            }
            for (topic, value) in figures {
                let message = Arc::new(Message {
                    topic: Arc::from(topic),
                    payload: Bytes::from(value),
                    qos: QoS::AtMostOnce,
                    retain: true,
                    expires_at_ms: None,
                    properties: Properties::default(),
                });
                self.space(&ns).retained.insert(topic.to_owned(), Arc::clone(&message));
                self.route(&ns, &message, None);
            }
        }
        self.schedule(now + self.cfg.sys_interval_ms.max(100), Timer::Sys);
    }
}
