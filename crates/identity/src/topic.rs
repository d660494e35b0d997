//! Tenant isolation as a type. A [`TenantTopic`] (topic name) or [`TenantFilter`] (subscription
//! filter) can only be made by stripping a tenant's own `{domain}/` prefix from what a client
//! sent, or from typed ids; it holds the domain and the tenant-relative rest. The broker routes
//! by (domain, relative topic), so no other code needs a string prefix check, and a topic of one
//! tenant cannot match a filter of another.
//!
//! The relative part is never empty: `{domain}` and `{domain}/` alone are not tenant topics.

use std::fmt;

use crate::ids::{DeviceIdentity, Domain, ResourceId};

/// The two channels of every resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Device to cloud.
    Events,
    /// Cloud to device.
    Commands,
}

impl Channel {
    /// The topic level naming the channel.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Events => "events",
            Channel::Commands => "commands",
        }
    }
}

/// Whether `topic` is a valid MQTT topic name: non-empty, no wildcards, no NUL.
pub(crate) fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

/// Whether `filter` is a valid MQTT topic filter: non-empty, no NUL, `+` only as a whole level,
/// `#` only as the whole last level.
pub(crate) fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        let ok = match level {
            "+" => true,
            "#" => is_last,
            _ => !level.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The tenant-relative rest of `s` after `{domain}/`, if `s` starts with it and the rest is
/// not empty.
fn strip_domain<'a>(domain: &Domain, s: &'a str) -> Option<&'a str> {
    let rest = s.strip_prefix(domain.as_str())?.strip_prefix('/')?;
    (!rest.is_empty()).then_some(rest)
}

/// A topic name inside one tenant.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TenantTopic {
    domain: Domain,
    relative: String,
}

impl TenantTopic {
    /// Strips `{domain}/` from a topic name. `None` if the topic is not a valid topic name or
    /// not under the domain.
    pub fn strip(domain: &Domain, topic: &str) -> Option<Self> {
        if !is_valid_topic_name(topic) {
            return None;
        }
        strip_domain(domain, topic).map(|relative| Self { domain: domain.clone(), relative: relative.to_owned() })
    }

    /// `{domain}/resources/{id}/{channel}` of a device (used by HTTP and WebSocket, which name
    /// the resource in the path rather than in a topic).
    pub fn channel(device: &DeviceIdentity, channel: Channel) -> Self {
        Self { domain: device.domain.clone(), relative: format!("resources/{}/{}", device.resource, channel.as_str()) }
    }

    /// The tenant.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The topic without `{domain}/`.
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// The full MQTT topic name, as clients of the tenant see it.
    pub fn full(&self) -> String {
        format!("{}/{}", self.domain, self.relative)
    }

    /// If this is `resources/{id}/events` or `resources/{id}/commands`, the resource and
    /// channel (a publish to an events topic enters the pipeline).
    pub fn resource_channel(&self) -> Option<(ResourceId, Channel)> {
        let mut levels = self.relative.split('/');
        let (Some("resources"), Some(id), Some(channel), None) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return None;
        };
        let channel = match channel {
            "events" => Channel::Events,
            "commands" => Channel::Commands,
            _ => return None,
        };
        ResourceId::parse(id).ok().map(|id| (id, channel))
    }
}

impl fmt::Debug for TenantTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantTopic({}/{})", self.domain, self.relative)
    }
}

/// A subscription filter inside one tenant, possibly shared (`$share/{group}/{domain}/...`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TenantFilter {
    domain: Domain,
    share_group: Option<String>,
    relative: String,
}

/// Splits `$share/{group}/{filter}` into group and filter; `Ok(None)` if not shared,
/// `Err(())` if shared but malformed (empty or wildcard group, no filter).
pub(crate) fn split_share(filter: &str) -> Result<Option<(&str, &str)>, ()> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return Ok(None);
    };
    let (group, inner) = rest.split_once('/').ok_or(())?;
    if group.is_empty() || group.contains(['+', '#', '\0']) || inner.is_empty() {
        return Err(());
    }
    Ok(Some((group, inner)))
}

impl TenantFilter {
    /// Strips `{domain}/` from a (possibly `$share/{group}/`-prefixed) filter. `None` if it is
    /// malformed or could match anything outside the domain (`#`, `+/...`, another domain).
    pub fn strip(domain: &Domain, filter: &str) -> Option<Self> {
        let (share_group, inner) = match split_share(filter).ok()? {
            Some((group, inner)) => (Some(group.to_owned()), inner),
            None => (None, filter),
        };
        if !is_valid_filter(inner) {
            return None;
        }
        strip_domain(domain, inner).map(|relative| Self {
            domain: domain.clone(),
            share_group,
            relative: relative.to_owned(),
        })
    }

    /// The filter a device may hold: exactly its own commands topic.
    pub fn commands_of(device: &DeviceIdentity) -> Self {
        let topic = TenantTopic::channel(device, Channel::Commands);
        Self { domain: topic.domain, share_group: None, relative: topic.relative }
    }

    /// The tenant.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The shared-subscription group, if any (groups are per tenant).
    pub fn share_group(&self) -> Option<&str> {
        self.share_group.as_deref()
    }

    /// The filter without `$share/{group}/` and `{domain}/`.
    pub fn relative(&self) -> &str {
        &self.relative
    }

    /// The full filter without the share prefix, as the client wrote it.
    pub fn full(&self) -> String {
        format!("{}/{}", self.domain, self.relative)
    }
}

impl fmt::Debug for TenantFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.share_group {
            Some(g) => write!(f, "TenantFilter($share/{g}/{}/{})", self.domain, self.relative),
            None => write!(f, "TenantFilter({}/{})", self.domain, self.relative),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn filter_syntax() {
        for (filter, ok) in [
            ("a", true),
            ("a/b", true),
            ("#", true),
            ("+", true),
            ("a/+/b", true),
            ("a/#", true),
            ("+/+/#", true),
            ("/", true),
            ("a//b", true),
            ("", false),
            ("a#", false),
            ("a/#/b", false),
            ("a+/b", false),
            ("a/b+", false),
            ("##", false),
            ("a\0", false),
        ] {
            assert_eq!(is_valid_filter(filter), ok, "{filter:?}");
        }
    }

    #[test]
    fn topic_strip() {
        let dom = d("app.example.com");
        for (topic, relative) in [
            ("app.example.com/a", Some("a")),
            ("app.example.com/a/b", Some("a/b")),
            ("app.example.com//a", Some("/a")),
            ("app.example.com/ü", Some("ü")),
            ("app.example.com", None),
            ("app.example.com/", None),
            ("app.example.com.evil/a", None),
            ("app.example.comx/a", None),
            ("example.com/a", None),
            ("xapp.example.com/a", None),
            ("/app.example.com/a", None),
            ("app.example.com/+", None),
            ("app.example.com/#", None),
            ("app.example.com/a\0", None),
        ] {
            let got = TenantTopic::strip(&dom, topic);
            assert_eq!(got.as_ref().map(|t| t.relative()), relative, "{topic:?}");
            if let Some(t) = got {
                assert_eq!(t.full(), topic);
                assert_eq!(t.domain(), &dom);
            }
        }
    }

    #[test]
    fn filter_strip() {
        let dom = d("app.example.com");
        for (filter, expected) in [
            ("app.example.com/#", Some((None, "#"))),
            ("app.example.com/+/x", Some((None, "+/x"))),
            ("$share/g/app.example.com/a/#", Some((Some("g"), "a/#"))),
            ("#", None),
            ("+/a", None),
            ("+", None),
            ("app.example.com", None),
            ("app.example.com/", None),
            ("app.example.com/a#", None),
            ("app.example.com.evil/#", None),
            ("$share/g/#", None),
            ("$share/g/+/a", None),
            ("$share//app.example.com/#", None),
            ("$share/g", None),
            ("$share/g/", None),
            ("$share/g+/app.example.com/#", None),
            ("$SYS/#", None),
        ] {
            let got = TenantFilter::strip(&dom, filter);
            assert_eq!(got.as_ref().map(|f| (f.share_group(), f.relative())), expected, "{filter:?}");
        }
    }

    #[test]
    fn resource_channels() {
        let dom = d("a.b");
        for (topic, expected) in [
            ("a.b/resources/x/events", Some(("x", Channel::Events))),
            ("a.b/resources/a:b.c-d_e/commands", Some(("a:b.c-d_e", Channel::Commands))),
            ("a.b/resources/x/events/more", None),
            ("a.b/resources/x/other", None),
            ("a.b/resources//events", None),
            ("a.b/resources/../events", None),
            ("a.b/resource/x/events", None),
            ("a.b/resources/x", None),
        ] {
            let t = TenantTopic::strip(&dom, topic).unwrap();
            let got = t.resource_channel();
            assert_eq!(got.as_ref().map(|(id, c)| (id.as_str(), *c)), expected, "{topic:?}");
        }
    }

    #[test]
    fn typed_constructors() {
        let device = DeviceIdentity { domain: d("a.b"), resource: ResourceId::parse("dev").unwrap() };
        let events = TenantTopic::channel(&device, Channel::Events);
        assert_eq!(events.full(), "a.b/resources/dev/events");
        assert_eq!(format!("{events:?}"), "TenantTopic(a.b/resources/dev/events)");
        let commands = TenantFilter::commands_of(&device);
        assert_eq!(commands.full(), "a.b/resources/dev/commands");
        assert_eq!(commands.share_group(), None);
        assert_eq!(TenantFilter::strip(&d("a.b"), "a.b/resources/dev/commands"), Some(commands));
        let shared = TenantFilter::strip(&d("a.b"), "$share/g/a.b/#").unwrap();
        assert_eq!(format!("{shared:?}"), "TenantFilter($share/g/a.b/#)");
    }
}
