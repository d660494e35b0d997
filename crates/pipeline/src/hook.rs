//! [`Pipeline`]: the configured intake, one object the server builds once and shares between
//! the broker (as its [`IntakeHook`]) and the HTTP API ([`Pipeline::http`]), so both protocols
//! run the same [`normalize`] with the same limits.
//!
//! Over MQTT, a PUBLISH of a tenant's device or application to
//! `{domain}/resources/{id}/events` or `{domain}/resources/{id}/commands` is pipeline data; it
//! is normalized with that resource, channel and the default [`Options`] (MQTT has no
//! per-message options; a 5.0 message expiry still applies to its delivery). Everything else
//! (the anonymous namespace, other topics of a tenant) passes through unchanged. Authorization
//! happened before the hook is asked, so a device only reaches its own events topic and only
//! applications publish commands.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchyard_broker::{Intake, IntakeHook, Principal};
use switchyard_codec::reason;
use switchyard_identity::topic::{Channel as TopicChannel, TenantTopic};
use switchyard_identity::{Domain, ResourceId};

use crate::config::PipelineConfig;
use crate::error::IntakeError;
use crate::normalize::{Channel, Context, Limits, Normalized, normalize};
use crate::options::Options;

/// A tenant's own data settings, where it has them (SPEC §4.2, §4.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantData {
    /// Messages each resource's cache keeps; `None`: [`PipelineConfig::message_cache`].
    pub message_cache: Option<u32>,
    /// Stored data expires this long after it is received (a shorter `ttl` wins); `None`: it is
    /// kept as long as the store keeps it.
    pub retention: Option<Duration>,
}

/// Looks up a tenant's [`TenantData`].
type TenantLookup = dyn Fn(&Domain) -> TenantData + Send + Sync;

/// Whether a tenant's forwarding outbox is full.
type OutboxFull = dyn Fn(&Domain) -> bool + Send + Sync;

/// The configured intake path.
pub struct Pipeline {
    config: PipelineConfig,
    limits: Limits,
    tenant_data: Option<Arc<TenantLookup>>,
    outbox_full: Option<Arc<OutboxFull>>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline with these settings (validate them first with [`PipelineConfig::validate`]).
    pub fn new(config: PipelineConfig) -> Pipeline {
        let limits = config.limits();
        Pipeline { config, limits, tenant_data: None, outbox_full: None }
    }

    /// Looks up each tenant's own settings (message cache size, retention) through `lookup`,
    /// once per request or PUBLISH, so a change applies from the next message on.
    pub fn with_tenant_data(mut self, lookup: impl Fn(&Domain) -> TenantData + Send + Sync + 'static) -> Pipeline {
        self.tenant_data = Some(Arc::new(lookup));
        self
    }

    fn tenant_data(&self, tenant: &Domain) -> TenantData {
        self.tenant_data.as_ref().map(|f| f(tenant)).unwrap_or_default()
    }

    /// Refuses forwarded messages of tenants for which `full` answers true (their forwarding
    /// outbox is at its bound): [`ErrorKind::Unavailable`](crate::ErrorKind), HTTP 503 and
    /// MQTT `0x97`, counted in `switchyard_forward_refused_total`. Messages sent with
    /// `forward=false` are still taken.
    pub fn with_outbox_bound(mut self, full: impl Fn(&Domain) -> bool + Send + Sync + 'static) -> Pipeline {
        self.outbox_full = Some(Arc::new(full));
        self
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many messages a resource of `tenant` keeps.
    pub fn keep(&self, tenant: &Domain) -> u32 {
        self.keep_of(&self.tenant_data(tenant))
    }

    fn keep_of(&self, data: &TenantData) -> u32 {
        data.message_cache.unwrap_or(self.config.message_cache).max(1)
    }

    /// An HTTP or WebSocket request body of `tenant`: `POST /resources/{id}/events` passes the
    /// path's `resource`, `POST /messages` passes `None` (each message names its own).
    /// `options` come from [`Options::from_query`]; `now_ms` is the receive time.
    pub fn http(
        &self,
        tenant: &Domain,
        resource: Option<&ResourceId>,
        body: &[u8],
        options: Options,
        now_ms: i64,
    ) -> Result<Normalized, IntakeError> {
        self.http_on(Channel::Events, tenant, resource, body, options, now_ms)
    }

    /// [`Pipeline::http`] for `channel`: `POST /resources/{id}/commands` passes
    /// [`Channel::Commands`] (normalized alike, no metrics, stored in the commands history).
    pub fn http_on(
        &self,
        channel: Channel,
        tenant: &Domain,
        resource: Option<&ResourceId>,
        body: &[u8],
        options: Options,
        now_ms: i64,
    ) -> Result<Normalized, IntakeError> {
        if options.forward && self.outbox_full.as_ref().is_some_and(|full| full(tenant)) {
            metrics::counter!("switchyard_forward_refused_total").increment(1);
            return Err(IntakeError {
                kind: crate::error::ErrorKind::Unavailable,
                error: "forwarding outbox full".into(),
                details: vec!["the tenant's messages wait for a forwarding sink; try again later".into()],
            });
        }
        let data = self.tenant_data(tenant);
        let ctx = Context {
            tenant,
            resource,
            now_ms,
            options,
            keep: self.keep_of(&data),
            retention: data.retention,
            limits: &self.limits,
            channel,
        };
        normalize(body, &ctx)
    }

    /// [`Pipeline::http`] with the options read from the request's raw query string
    /// ([`Options::from_query`]; other parameters are ignored).
    pub fn http_query(
        &self,
        tenant: &Domain,
        resource: Option<&ResourceId>,
        body: &[u8],
        query: &str,
        now_ms: i64,
    ) -> Result<Normalized, IntakeError> {
        self.http(tenant, resource, body, Options::from_query(query)?, now_ms)
    }
}

impl IntakeHook for Pipeline {
    fn intake(&self, who: &Principal, topic: &str, payload: &Bytes, now_ms: u64) -> Intake {
        let Some(domain) = who.identity.domain() else {
            return Intake::Pass;
        };
        let Some((resource, channel)) = TenantTopic::strip(domain, topic).and_then(|t| t.resource_channel()) else {
            return Intake::Pass;
        };
        let channel = match channel {
            TopicChannel::Events => Channel::Events,
            TopicChannel::Commands => Channel::Commands,
        };
        let now_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
        match self.http_on(channel, domain, Some(&resource), payload, Options::default(), now_ms) {
            Ok(n) => Intake::Store { payload: n.payload, data: n.data },
            Err(e) if e.kind == crate::error::ErrorKind::Unavailable => {
                Intake::Refuse { reason: reason::QUOTA_EXCEEDED, detail: e.reason_string() }
            }
            Err(e) => Intake::Refuse { reason: reason::PAYLOAD_FORMAT_INVALID, detail: e.reason_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use switchyard_identity::{ApiKeyId, AppIdentity, DeviceIdentity, Identity};

    use super::*;

    fn domain() -> Domain {
        Domain::parse("app.example.com").unwrap()
    }

    fn device(id: &str) -> Principal {
        Principal::new(Identity::Device(DeviceIdentity { domain: domain(), resource: ResourceId::parse(id).unwrap() }))
    }

    fn app() -> Principal {
        Principal::new(Identity::Application(AppIdentity {
            domain: domain(),
            api_key_id: ApiKeyId::parse("k").unwrap(),
        }))
    }

    fn body(intake: &Intake) -> serde_json::Value {
        match intake {
            Intake::Store { payload, .. } => serde_json::from_slice(payload).unwrap(),
            other => panic!("not stored: {other:?}"),
        }
    }

    #[test]
    fn events_topics_are_normalized() {
        let p = Pipeline::new(PipelineConfig::default());
        let payload = Bytes::from_static(br#"{"temp": 21.5}"#);
        let got = p.intake(&device("dev-1"), "app.example.com/resources/dev-1/events", &payload, 1_000);
        assert_eq!(body(&got), serde_json::json!({"temp": 21.5, "timestamp": 1000, "resource": "dev-1"}));
        let Intake::Store { data, .. } = got else { unreachable!() };
        assert_eq!(data.len(), 1);
        assert_eq!(&*data[0].resource.tenant, "app.example.com");
        assert_eq!(&*data[0].resource.resource, "dev-1");
        assert_eq!(data[0].keep, 100);
        assert_eq!(data[0].expires_at, None);

        // An application may publish to any resource's events topic.
        let got = p.intake(&app(), "app.example.com/resources/other/events", &payload, 1_000);
        assert_eq!(body(&got)["resource"], "other");
    }

    #[test]
    fn invalid_events_are_refused_with_0x99() {
        let p = Pipeline::new(PipelineConfig::default());
        for payload in [&b"not json"[..], b"42", br#"{"resource": "dev-2"}"#, br#"{"timestamp": "soon"}"#] {
            let got = p.intake(&device("dev-1"), "app.example.com/resources/dev-1/events", &Bytes::from(payload), 1);
            match got {
                Intake::Refuse { reason, detail } => {
                    assert_eq!(reason, 0x99);
                    assert!(!detail.is_empty());
                }
                other => panic!("{payload:?}: {other:?}"),
            }
        }
        let got = p.intake(&device("d"), "app.example.com/resources/d/events", &Bytes::from_static(b"[]"), 1);
        assert!(matches!(got, Intake::Refuse { reason: 0x99, .. }), "{got:?}");
    }

    #[test]
    fn everything_else_passes() {
        let p = Pipeline::new(PipelineConfig::default());
        let junk = Bytes::from_static(b"not json");
        let anonymous = Principal::new(Identity::Anonymous);
        for (who, topic) in [
            (&anonymous, "app.example.com/resources/dev-1/events"),
            (&anonymous, "anything"),
            (&app(), "app.example.com/resources/dev-1/events/extra"),
            (&app(), "app.example.com/resources/dev-1"),
            (&app(), "app.example.com/other/topic"),
            (&app(), "app.example.com/resources/bad id/events"),
            (&app(), "other.example.com/resources/dev-1/events"),
        ] {
            assert!(matches!(p.intake(who, topic, &junk, 1), Intake::Pass), "{topic}");
        }
        let admin = Principal::new(Identity::Admin);
        assert!(matches!(p.intake(&admin, "app.example.com/resources/d/events", &junk, 1), Intake::Pass));
    }

    #[test]
    fn commands_are_normalized_without_metrics() {
        let p = Pipeline::new(PipelineConfig::default());
        let payload = Bytes::from_static(br#"{"led": "on", "level": 3}"#);
        let got = p.intake(&app(), "app.example.com/resources/dev-1/commands", &payload, 1_000);
        assert_eq!(body(&got)["resource"], "dev-1");
        let Intake::Store { data, .. } = got else { unreachable!() };
        assert_eq!(data[0].channel, Channel::Commands);
        assert!(data[0].points.is_empty(), "commands are never metrics");
        let got = p.intake(&app(), "app.example.com/resources/dev-1/commands", &Bytes::from_static(b"x"), 1);
        assert!(matches!(got, Intake::Refuse { reason: 0x99, .. }));
        let n = p
            .http_on(
                Channel::Commands,
                &domain(),
                Some(&ResourceId::parse("d").unwrap()),
                &payload,
                Options::from_query("ttl=10s").unwrap(),
                5,
            )
            .unwrap();
        assert_eq!(
            (n.data[0].channel, n.data[0].points.len(), n.data[0].expires_at),
            (Channel::Commands, 0, Some(10_005))
        );
    }

    #[test]
    fn http_uses_options_and_tenant_keep() {
        let p = Pipeline::new(PipelineConfig::default()).with_tenant_data(|d| TenantData {
            message_cache: (d.as_str() == "app.example.com").then_some(7),
            retention: None,
        });
        let options = Options::from_query("ttl=10s").unwrap();
        let n = p.http(&domain(), None, br#"[{"resource":"a","x":1},{"resource":"b","x":2}]"#, options, 5_000).unwrap();
        assert_eq!(n.count, 2);
        assert_eq!(
            n.data.iter().map(|d| (&*d.resource.resource, d.keep, d.expires_at)).collect::<Vec<_>>(),
            [("a", 7, Some(15_000)), ("b", 7, Some(15_000))]
        );
        assert_eq!(p.keep(&Domain::parse("other").unwrap()), 100);
        let n =
            p.http_query(&domain(), Some(&ResourceId::parse("a").unwrap()), br#"{"x":1}"#, "store=false", 5).unwrap();
        assert!(n.data.is_empty());
        assert_eq!(n.count, 1);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&n.payload).unwrap()["x"], 1);
        let e = p.http_query(&domain(), None, br#"{"x":1}"#, "ttl=never", 5).unwrap_err();
        assert_eq!(e.error, "invalid options");
    }

    #[test]
    fn a_tenant_retention_bounds_what_is_stored_not_what_is_delivered() {
        let p = Pipeline::new(PipelineConfig::default()).with_tenant_data(|d| TenantData {
            message_cache: None,
            retention: (d.as_str() == "app.example.com").then_some(Duration::from_secs(60)),
        });
        let expiry = |query: &str| {
            let n =
                p.http_query(&domain(), Some(&ResourceId::parse("a").unwrap()), br#"{"x":1}"#, query, 5_000).unwrap();
            (n.data[0].expires_at, n.options.ttl)
        };
        assert_eq!(expiry(""), (Some(65_000), None), "retention alone");
        assert_eq!(expiry("ttl=10s"), (Some(15_000), Some(Duration::from_secs(10))), "a shorter ttl wins");
        assert_eq!(expiry("ttl=1h"), (Some(65_000), Some(Duration::from_secs(3600))), "retention caps a longer ttl");
        // Over MQTT alike; another tenant keeps its data as long as the store does.
        let payload = Bytes::from_static(br#"{"x":1}"#);
        let Intake::Store { data, .. } = p.intake(&device("d"), "app.example.com/resources/d/events", &payload, 1_000)
        else {
            panic!("not stored")
        };
        assert_eq!(data[0].expires_at, Some(61_000));
        let other = Domain::parse("other.example.com").unwrap();
        let n = p.http(&other, None, br#"{"resource":"a","x":1}"#, Options::default(), 5_000).unwrap();
        assert_eq!(n.data[0].expires_at, None);
    }

    #[test]
    fn a_full_outbox_refuses_forwarded_messages() {
        let full = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = Arc::clone(&full);
        let p = Pipeline::new(PipelineConfig::default())
            .with_outbox_bound(move |_| flag.load(std::sync::atomic::Ordering::SeqCst));
        let r = ResourceId::parse("a").unwrap();
        let e = p.http_query(&domain(), Some(&r), br#"{"x":1}"#, "", 5).unwrap_err();
        assert_eq!(e.http_status(), 503);
        let got = p.intake(&device("a"), "app.example.com/resources/a/events", &Bytes::from_static(b"{}"), 5);
        assert!(matches!(got, Intake::Refuse { reason: 0x97, .. }), "{got:?}");
        assert!(p.http_query(&domain(), Some(&r), br#"{"x":1}"#, "forward=false", 5).is_ok(), "not forwarded: taken");
        full.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(p.http_query(&domain(), Some(&r), br#"{"x":1}"#, "", 5).is_ok());
    }
}
