//! The hub as the broker's MQTT [`Authenticator`] (SPEC §2.5, §2.6).
//!
//! CONNECT: the username/password are parsed with the identity crate's `parse_mqtt`. A client
//! that presents no tenant username — nothing, a username without `/`, or only a password — is
//! admitted to the anonymous namespace when `allow_anonymous` is set (plain-MQTT mode, with the
//! deny rules), and otherwise refused. A tenant username is authenticated by [`Hub::authenticate`].
//! A client that presented a verified TLS client certificate is authenticated by it instead
//! (`cert`), never as anonymous.
//! CONNACK reason codes (5.0; the transport maps them to 3.1.1):
//!
//! | outcome | 5.0 | 3.1.1 |
//! |---|---|---|
//! | malformed or wrong credentials, unknown tenant or key, certificate not naming the device | `0x86` | `0x04` |
//! | no credentials (anonymous not allowed), tenant disabled, device not registered | `0x87` | `0x05` |
//! | device blocked | `0x8A` Banned | `0x05` |
//! | too many failures from this address, or for this identity from this address | `0x9F` Connection rate exceeded | `0x03` |
//! | registry unavailable | `0x88` | `0x03` |
//!
//! `0x9F` says exactly what happened and invites a later retry (3.1.1's "server unavailable"
//! does too); `0x8A` is kept for an administrator's decision.
//!
//! PUBLISH / SUBSCRIBE: decided by `authorize_publish` / `authorize_subscribe`, counted as
//! `switchyard_authz_denied_total{action}` when refused. An allowed device publish counts as a
//! message of that device. Anonymous clients keep the plain-broker rules of
//! [`AnonymousAuth`](switchyard_broker::AnonymousAuth) (any topic minus the deny rules, denied
//! topics withheld from wider filters), except that `$SYS` is read-only for them too; tenant
//! namespaces have no deny rules.

use switchyard_broker::auth::{AuthFuture, ConnectCredentials};
use switchyard_broker::{Authenticator, Namespace, Principal, Refusal};
use switchyard_codec::reason;
use switchyard_identity::{
    AuthError, Credentials, CredentialsError, Decision, Identity, authorize_publish, authorize_subscribe, parse_mqtt,
};

use crate::Hub;
use crate::auth::{AuthFailure, count_anonymous};

fn is_sys(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

impl AuthFailure {
    /// The 5.0 CONNACK reason code for this failure (see the module table).
    pub fn connack_code(&self) -> u8 {
        match self {
            AuthFailure::Throttled(_) => reason::CONNECTION_RATE_EXCEEDED,
            AuthFailure::Malformed(_) => reason::BAD_USER_NAME_OR_PASSWORD,
            AuthFailure::Missing => reason::NOT_AUTHORIZED,
            AuthFailure::Refused(AuthError::Blocked) => reason::BANNED,
            AuthFailure::Refused(e) if e.is_refused_by_registry() => reason::NOT_AUTHORIZED,
            AuthFailure::Refused(_) => reason::BAD_USER_NAME_OR_PASSWORD,
            AuthFailure::Unavailable(_) => reason::SERVER_UNAVAILABLE,
        }
    }
}

impl Hub {
    async fn connect(&self, creds: ConnectCredentials<'_>) -> Result<Principal, Refusal> {
        let ip = creds.peer.map(|p| p.ip());
        if let Some(cert) = creds.client_cert {
            return match self.authenticate_certificate(cert, creds.username, ip).await {
                Ok(identity) => Ok(self.principal(identity)),
                Err(failure) => Err(Refusal(failure.connack_code())),
            };
        }
        let parsed = parse_mqtt(creds.username, creds.password.map(|p| p.as_ref()));
        let no_tenant_username = matches!(
            parsed,
            Ok(Credentials::Anonymous)
                | Err(CredentialsError::NotTenantUsername | CredentialsError::PasswordWithoutUsername)
        );
        if no_tenant_username && self.config().anonymous.allow_anonymous {
            count_anonymous("mqtt");
            return Ok(Principal::new(Identity::Anonymous));
        }
        match self.authenticate(parsed, creds.username, ip, "mqtt").await {
            Ok(identity) => Ok(self.principal(identity)),
            Err(failure) => Err(Refusal(failure.connack_code())),
        }
    }

    /// The principal of an identity just authenticated, stamped with its tenant's incarnation.
    fn principal(&self, identity: Identity) -> Principal {
        let epoch = self.tenant_epoch(&identity);
        Principal::new(identity).with_epoch(epoch)
    }

    /// The creation time of the identity's tenant as the registry has it now (0 without one).
    fn tenant_epoch(&self, identity: &Identity) -> u64 {
        identity.domain().and_then(|d| self.registry().tenant(d)).map_or(0, |e| e.tenant.created_ms)
    }

    fn denied<T>(&self, action: &'static str, who: &Principal, topic: &str, d: &Decision<T>) {
        if let Decision::Deny(why) = d {
            metrics::counter!("switchyard_authz_denied_total", "action" => action).increment(1);
            tracing::info!(action, namespace = who.namespace.as_str(), owner = &*who.owner, topic, reason = ?why, "not authorized");
        }
    }
}

impl Authenticator for Hub {
    fn authenticate<'a>(&'a self, creds: ConnectCredentials<'a>) -> AuthFuture<'a> {
        Box::pin(self.connect(creds))
    }

    /// A tenant principal stays valid while its tenant exists, is the one it authenticated
    /// against (not deleted and created again since) and is not disabled.
    fn still_valid(&self, who: &Principal) -> bool {
        match who.identity.domain() {
            None => true,
            Some(domain) => {
                self.registry().tenant(domain).is_some_and(|e| e.tenant.created_ms == who.epoch && !e.tenant.disabled)
            }
        }
    }

    fn may_publish(&self, who: &Principal, topic: &str) -> bool {
        if let Identity::Anonymous = who.identity {
            let allowed = !is_sys(topic) && self.config().anonymous.may_publish(who, topic);
            if !allowed {
                metrics::counter!("switchyard_authz_denied_total", "action" => "publish").increment(1);
            }
            return allowed;
        }
        let decision = authorize_publish(&who.identity, topic);
        self.denied("publish", who, topic, &decision);
        let allowed = decision.is_allowed();
        if allowed && let Identity::Device(device) = &who.identity {
            self.registry().activity.message(device, self.registry().now_ms());
        }
        allowed
    }

    fn may_subscribe(&self, who: &Principal, filter: &str) -> bool {
        if let Identity::Anonymous = who.identity {
            let allowed = self.config().anonymous.may_subscribe(who, filter);
            if !allowed {
                metrics::counter!("switchyard_authz_denied_total", "action" => "subscribe").increment(1);
            }
            return allowed;
        }
        let decision = authorize_subscribe(&who.identity, filter);
        self.denied("subscribe", who, filter, &decision);
        decision.is_allowed()
    }

    fn filters_receive(&self, namespace: &Namespace) -> bool {
        self.config().anonymous.filters_receive(namespace)
    }

    fn may_receive(&self, namespace: &Namespace, topic: &str) -> bool {
        self.config().anonymous.may_receive(namespace, topic)
    }
}
