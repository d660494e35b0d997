//! Authorization (SPEC §2.6), decided here and nowhere else: [`authorize_publish`] and
//! [`authorize_subscribe`] take an [`Identity`] and what the client sent, and either allow it,
//! returning the typed target the broker routes by, or deny it with a reason.
//!
//! - A device publishes only to `{domain}/resources/{its id}/events` and subscribes only to
//!   exactly `{domain}/resources/{its id}/commands` (no wildcards, no shared subscription).
//! - An application publishes and subscribes anywhere under `{domain}/`, wildcards and
//!   `$share/{group}/{domain}/...` included; a filter that could match outside its domain
//!   (`#`, `+/...`) is refused.
//! - `$SYS/...` is read-only: applications (and anonymous clients) may subscribe, and the
//!   broker must then show them only their own tenant's (or no tenant's) figures; nobody
//!   publishes there.
//! - Anonymous clients get their own namespace and may use any non-`$` topic; the broker applies
//!   the configured `anonymous_deny` rules on top of an allow.
//! - The administrator has no topic rights.

use crate::ids::{Domain, Identity};
use crate::topic::{Channel, TenantFilter, TenantTopic, is_valid_filter, is_valid_topic_name, split_share};

/// An authorization decision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Decision<T> {
    /// Allowed; the broker routes by the target.
    Allow(T),
    /// Refused (subscribe: failure return code; publish: disconnect, SPEC §2.6).
    Deny(DenyReason),
}

impl<T> Decision<T> {
    /// Whether this is an allow.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// Why a publish or subscribe is refused (for logs and counters; clients only see "not
/// authorized").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// Not a valid topic name or filter.
    Malformed,
    /// Outside the identity's tenant (or could match outside it).
    OutsideTenant,
    /// A device's topic other than the one it may use.
    NotOwnTopic,
    /// A publish to `$SYS`, or a `$` topic other than `$SYS` and `$share`.
    Reserved,
    /// The identity has no topic rights at all (admin).
    NoTopicRights,
}

/// Where an allowed publish goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishTarget {
    /// A topic of one tenant.
    Tenant(TenantTopic),
    /// A topic of the anonymous namespace.
    Anonymous(String),
}

/// What an allowed subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeTarget {
    /// A filter inside one tenant.
    Tenant(TenantFilter),
    /// A `$SYS` filter; the broker shows only `tenant`'s figures (or none for anonymous).
    Sys {
        /// Whose figures may be shown.
        tenant: Option<Domain>,
        /// The filter, starting with `$SYS`.
        filter: String,
    },
    /// A filter in the anonymous namespace, possibly shared.
    Anonymous {
        /// The shared-subscription group, if any.
        share_group: Option<String>,
        /// The filter without the share prefix.
        filter: String,
    },
}

fn is_sys(s: &str) -> bool {
    s == "$SYS" || s.starts_with("$SYS/")
}

/// May `identity` publish to `topic`?
pub fn authorize_publish(identity: &Identity, topic: &str) -> Decision<PublishTarget> {
    use Decision::{Allow, Deny};
    if !is_valid_topic_name(topic) {
        return Deny(DenyReason::Malformed);
    }
    if topic.starts_with('$') {
        return Deny(match identity {
            Identity::Admin => DenyReason::NoTopicRights,
            _ => DenyReason::Reserved,
        });
    }
    match identity {
        Identity::Device(device) => match TenantTopic::strip(&device.domain, topic) {
            Some(t) if t.resource_channel() == Some((device.resource.clone(), Channel::Events)) => {
                Allow(PublishTarget::Tenant(t))
            }
            Some(_) => Deny(DenyReason::NotOwnTopic),
            None => Deny(DenyReason::OutsideTenant),
        },
        Identity::Application(app) => match TenantTopic::strip(&app.domain, topic) {
            Some(t) => Allow(PublishTarget::Tenant(t)),
            None => Deny(DenyReason::OutsideTenant),
        },
        Identity::Anonymous => Allow(PublishTarget::Anonymous(topic.to_owned())),
        Identity::Admin => Deny(DenyReason::NoTopicRights),
    }
}

/// May `identity` subscribe to `filter`?
pub fn authorize_subscribe(identity: &Identity, filter: &str) -> Decision<SubscribeTarget> {
    use Decision::{Allow, Deny};
    let Ok(shared) = split_share(filter) else {
        return Deny(DenyReason::Malformed);
    };
    let (share_group, inner) = match shared {
        Some((group, inner)) => (Some(group), inner),
        None => (None, filter),
    };
    if !is_valid_filter(inner) {
        return Deny(DenyReason::Malformed);
    }
    if let Identity::Admin = identity {
        return Deny(DenyReason::NoTopicRights);
    }
    if inner.starts_with('$') {
        return match (is_sys(inner), share_group, identity) {
            (true, None, Identity::Application(app)) => {
                Allow(SubscribeTarget::Sys { tenant: Some(app.domain.clone()), filter: inner.to_owned() })
            }
            (true, None, Identity::Anonymous) => Allow(SubscribeTarget::Sys { tenant: None, filter: inner.to_owned() }),
            _ => Deny(DenyReason::Reserved),
        };
    }
    match identity {
        Identity::Device(device) => {
            let own = TenantFilter::commands_of(device);
            match TenantFilter::strip(&device.domain, filter) {
                Some(f) if f == own => Allow(SubscribeTarget::Tenant(f)),
                Some(_) => Deny(DenyReason::NotOwnTopic),
                None => Deny(DenyReason::OutsideTenant),
            }
        }
        Identity::Application(app) => match TenantFilter::strip(&app.domain, filter) {
            Some(f) => Allow(SubscribeTarget::Tenant(f)),
            None => Deny(DenyReason::OutsideTenant),
        },
        Identity::Anonymous => {
            Allow(SubscribeTarget::Anonymous { share_group: share_group.map(str::to_owned), filter: inner.to_owned() })
        }
        Identity::Admin => Deny(DenyReason::NoTopicRights),
    }
}

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;
