//! The authentication and authorization hook, and the anonymous (plain-MQTT) policy.
//!
//! Connections call [`Authenticator::authenticate`] with the CONNECT credentials before the core
//! sees them; the answer is a [`Principal`] whose [`Namespace`] scopes every session, topic and
//! retained message it touches. Tenant identity plugs in here without the core knowing tenants.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use switchyard_codec::{reason, topic};
use switchyard_identity::{ClientCertificate, Domain, Identity};

/// A topic namespace: one per tenant, plus the anonymous one. Nothing crosses namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(Arc<str>);

/// The empty name: of the anonymous namespace, and the owner key of anonymous clients. Shared,
/// so an anonymous connection allocates neither.
static EMPTY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));

impl Namespace {
    /// The namespace anonymous clients share, outside every tenant.
    pub fn anonymous() -> Namespace {
        Namespace(Arc::clone(&EMPTY))
    }
    /// A tenant's namespace, named by its domain.
    pub fn tenant(domain: &Domain) -> Namespace {
        Namespace(Arc::from(domain.as_str()))
    }
    /// The namespace a storage key names ("" is the anonymous one).
    pub(crate) fn from_stored(name: &str) -> Namespace {
        Namespace(Arc::from(name))
    }
    /// The name used in storage keys ("" for the anonymous namespace).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who a connection is, as far as the core cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Where its sessions, subscriptions and retained messages live.
    pub namespace: Namespace,
    /// The authenticated identity, for authorization decisions.
    pub identity: Identity,
    /// Stable owner key: a session belongs to the identity that created it, and another
    /// identity presenting the same client id is refused.
    pub owner: Arc<str>,
    /// Which incarnation of its namespace the credentials were checked against (a tenant's
    /// creation time; 0 when the authenticator keeps none): a tenant deleted and created again
    /// under the same domain is a different tenant, see [`Authenticator::still_valid`].
    pub epoch: u64,
}

impl Principal {
    /// The principal of an authenticated identity: its tenant's namespace (or the anonymous
    /// one) and its owner key.
    pub fn new(identity: Identity) -> Principal {
        let namespace = identity.domain().map_or_else(Namespace::anonymous, Namespace::tenant);
        let owner = owner_key(&identity);
        Principal { namespace, identity, owner, epoch: 0 }
    }

    /// This principal, authenticated against incarnation `epoch` of its namespace.
    pub fn with_epoch(self, epoch: u64) -> Principal {
        Principal { epoch, ..self }
    }

    /// This principal behind a pointer, as a connection keeps it. Anonymous principals are all
    /// alike and share one allocation.
    pub fn shared(self) -> Arc<Principal> {
        static ANONYMOUS: LazyLock<Arc<Principal>> = LazyLock::new(|| Arc::new(Principal::new(Identity::Anonymous)));
        if self == **ANONYMOUS { Arc::clone(&ANONYMOUS) } else { Arc::new(self) }
    }
}

/// The owner key of an identity, unique within its namespace.
pub fn owner_key(identity: &Identity) -> Arc<str> {
    match identity {
        Identity::Device(d) => Arc::from(format!("device:{}", d.resource)),
        Identity::Application(a) => Arc::from(format!("app:{}", a.api_key_id)),
        Identity::Anonymous => Arc::clone(&EMPTY),
        Identity::Admin => Arc::from("admin"),
    }
}

/// What a client presented in CONNECT, plus where it came from.
#[derive(Debug, Clone)]
pub struct ConnectCredentials<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a Bytes>,
    pub peer: Option<SocketAddr>,
    /// The TLS client certificate the listener verified, if the client presented one.
    pub client_cert: Option<&'a ClientCertificate>,
}

/// A refusal: the 5.0 CONNACK reason code (translated for 3.1.1 clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub u8);

/// A boxed future, so the hook stays object-safe.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Principal, Refusal>> + Send + 'a>>;

/// Decides who may connect and what each principal may publish and subscribe to.
pub trait Authenticator: Send + Sync + 'static {
    /// Authenticate a CONNECT.
    fn authenticate<'a>(&'a self, creds: ConnectCredentials<'a>) -> AuthFuture<'a>;
    /// Is `who`, authenticated a moment ago, still admissible? The core asks when it attaches
    /// the connection, in order with [`Broker::drop_namespace`](crate::Broker::drop_namespace)
    /// and kicks, so credentials revoked between authentication and attachment are refused
    /// rather than let in after the revocation swept. Must not block.
    fn still_valid(&self, _who: &Principal) -> bool {
        true
    }
    /// May `who` publish to `topic`?
    fn may_publish(&self, who: &Principal, topic: &str) -> bool;
    /// May `who` subscribe to `filter`, as the client wrote it (`$share/{group}/...` included)?
    fn may_subscribe(&self, who: &Principal, filter: &str) -> bool;
    /// Whether some topics of `namespace` are withheld from subscribers whose (wider) filter
    /// matches them; when false the core skips [`Authenticator::may_receive`] entirely.
    fn filters_receive(&self, _namespace: &Namespace) -> bool {
        false
    }
    /// May subscribers in `namespace` receive messages published to `topic`?
    fn may_receive(&self, _namespace: &Namespace, _topic: &str) -> bool {
        true
    }
}

/// One `[[mqtt.anonymous_deny]]` rule: a filter anonymous clients may not use for that action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyRule {
    Subscribe(String),
    Publish(String),
}

/// Plain-MQTT policy: anonymous clients allowed (or not) in one shared namespace, minus the
/// deny rules. With `allow_anonymous = false` every CONNECT is refused until a real
/// authenticator replaces this one.
#[derive(Debug, Clone, Default)]
pub struct AnonymousAuth {
    pub allow_anonymous: bool,
    pub deny: Vec<DenyRule>,
}

impl Authenticator for AnonymousAuth {
    fn authenticate<'a>(&'a self, _creds: ConnectCredentials<'a>) -> AuthFuture<'a> {
        let answer = if self.allow_anonymous {
            Ok(Principal::new(Identity::Anonymous))
        } else {
            Err(Refusal(reason::NOT_AUTHORIZED))
        };
        Box::pin(std::future::ready(answer))
    }

    fn may_publish(&self, _who: &Principal, topic_name: &str) -> bool {
        !self.deny.iter().any(|rule| match rule {
            DenyRule::Publish(filter) => topic::matches(filter, topic_name),
            DenyRule::Subscribe(_) => false,
        })
    }

    fn may_subscribe(&self, _who: &Principal, filter: &str) -> bool {
        let filter = topic::parse_shared(filter).map_or(filter, |(_, inner)| inner);
        // The filter itself is refused when a rule covers it; a wider filter (`#`) is granted
        // and the denied topics are withheld at delivery (see `may_receive`).
        !self.deny.iter().any(|rule| match rule {
            DenyRule::Subscribe(denied) => denied == filter || covers(denied, filter),
            DenyRule::Publish(_) => false,
        })
    }

    fn filters_receive(&self, namespace: &Namespace) -> bool {
        *namespace == Namespace::anonymous() && self.deny.iter().any(|r| matches!(r, DenyRule::Subscribe(_)))
    }

    fn may_receive(&self, _namespace: &Namespace, topic_name: &str) -> bool {
        !self.deny.iter().any(|rule| match rule {
            DenyRule::Subscribe(denied) => topic::matches(denied, topic_name),
            DenyRule::Publish(_) => false,
        })
    }
}

/// True when every topic `filter` can match is also matched by `rule`.
fn covers(rule: &str, filter: &str) -> bool {
    let mut rule_levels = rule.split('/');
    for level in filter.split('/') {
        match rule_levels.next() {
            Some("#") => return true,
            Some("+") if level != "#" => {}
            Some(r) if r == level && level != "+" && level != "#" => {}
            _ => return false,
        }
    }
    matches!(rule_levels.next(), None | Some("#"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_principals_share_one_allocation_and_others_keep_their_own() {
        let a = Principal::new(Identity::Anonymous).shared();
        let b = Principal::new(Identity::Anonymous).shared();
        assert!(Arc::ptr_eq(&a, &b));
        let device = |id: &str| {
            Identity::Device(switchyard_identity::DeviceIdentity {
                domain: Domain::parse("t.example").unwrap(),
                resource: switchyard_identity::ResourceId::parse(id).unwrap(),
            })
        };
        let d1 = Principal::new(device("d1")).shared();
        assert_eq!(d1.identity, device("d1"));
        assert!(!Arc::ptr_eq(&d1, &a));
        assert!(!Arc::ptr_eq(&d1, &Principal::new(device("d1")).shared()));
    }

    #[test]
    fn deny_rules_apply_per_action() {
        let auth = AnonymousAuth {
            allow_anonymous: true,
            deny: vec![DenyRule::Subscribe("test/nosubscribe".into()), DenyRule::Publish("ro/#".into())],
        };
        let who = Principal::new(Identity::Anonymous);
        for (filter, allowed) in
            [("test/nosubscribe", false), ("test/#", true), ("#", true), ("test/other", true), ("ro/x", true)]
        {
            assert_eq!(auth.may_subscribe(&who, filter), allowed, "{filter}");
        }
        // Wider filters are granted, but the denied topic is withheld from them.
        assert!(auth.filters_receive(&Namespace::anonymous()));
        assert!(!auth.may_receive(&Namespace::anonymous(), "test/nosubscribe"));
        assert!(auth.may_receive(&Namespace::anonymous(), "test/other"));
        let rule = |r: &str, f: &str| covers(r, f);
        assert!(rule("a/#", "a/b/+") && rule("a/+", "a/b") && rule("#", "x/#") && rule("a/#", "a"));
        assert!(!rule("a/+", "a/#") && !rule("a/b", "a/+") && !rule("a/b", "a") && !rule("a", "a/b"));
        for (name, allowed) in [("ro/x", false), ("ro", false), ("test/nosubscribe", true)] {
            assert_eq!(auth.may_publish(&who, name), allowed, "{name}");
        }
    }
}
