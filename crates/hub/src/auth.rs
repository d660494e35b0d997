//! Authentication for every protocol: presented [`Credentials`] → [`Identity`], with the
//! lookups from the caches, failed-attempt rate limiting ([`AuthLimiter`]), counters and logs.
//!
//! Order: a locked source address, or an identity locked from that address, is refused before
//! anything else (never an identity from everywhere: strangers cannot lock a valid client out);
//! then the credentials are parsed and checked by the identity crate. A device's registry row
//! is read from the cache; on a miss the proof is checked first, as if unregistered, so a wrong
//! key never costs a store read. Every outcome is counted (`switchyard_auth_success_total{protocol,kind}`,
//! `switchyard_auth_failure_total{protocol,reason}`) and logged with who was claimed, never a
//! proof; refusals of a locked address are logged at debug level, the lock itself at warn.
//! Every failure except "no credentials" counts towards the limits.
//!
//! [`AuthLimiter`]: switchyard_identity::AuthLimiter

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use switchyard_broker::Escaped;
use switchyard_identity::{
    AuthError, Credentials, CredentialsError, Device, DeviceIdentity, DeviceProof, DeviceToken, Identity, Locked,
    Throttled, authenticate_admin, authenticate_app, authenticate_bearer, authenticate_device,
};

use crate::cache::Status;
use crate::{Hub, HubError};

/// Why authentication failed. Clients learn only the class (bad credentials, not allowed, slow
/// down, unavailable); logs and counters get [`AuthFailure::label`].
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// Too many failures from this address, or for this identity from this address.
    #[error("too many failed authentications")]
    Throttled(Throttled),
    /// The credentials do not parse.
    #[error("malformed credentials: {0}")]
    Malformed(CredentialsError),
    /// No credentials were presented (and anonymous access does not apply).
    #[error("no credentials")]
    Missing,
    /// The credentials were checked and refused.
    #[error(transparent)]
    Refused(AuthError),
    /// The registry could not be read.
    #[error("registry unavailable: {0}")]
    Unavailable(HubError),
}

impl AuthFailure {
    /// A short stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            AuthFailure::Throttled(_) => "throttled",
            AuthFailure::Malformed(_) => "malformed",
            AuthFailure::Missing => "missing",
            AuthFailure::Refused(e) => e.label(),
            AuthFailure::Unavailable(_) => "unavailable",
        }
    }
}

/// How a device proves itself.
enum Proof<'a> {
    Mqtt(&'a DeviceProof),
    Bearer(&'a DeviceToken),
}

fn kind(identity: &Identity) -> &'static str {
    match identity {
        Identity::Device(_) => "device",
        Identity::Application(_) => "application",
        Identity::Anonymous => "anonymous",
        Identity::Admin => "admin",
    }
}

/// Counts an accepted anonymous client (MQTT with anonymous access).
pub(crate) fn count_anonymous(protocol: &'static str) {
    metrics::counter!("switchyard_auth_success_total", "protocol" => protocol, "kind" => "anonymous").increment(1);
}

impl Hub {
    fn limiter(&self) -> std::sync::MutexGuard<'_, switchyard_identity::AuthLimiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Authenticates what a client presented. `limit_key` is the claimed identity (MQTT
    /// username, API key id, a token's `domain/resource`, `admin`) the per-(address, identity)
    /// limit applies to; `ip` the source address (absent: all such callers share one address
    /// bucket); `protocol` a label for counters and logs.
    pub async fn authenticate(
        &self,
        presented: Result<Credentials, CredentialsError>,
        limit_key: Option<&str>,
        ip: Option<IpAddr>,
        protocol: &'static str,
    ) -> Result<Identity, AuthFailure> {
        let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let now = self.registry.now_ms();
        let allowed = self.limiter().check(ip, limit_key, now);
        let result = match allowed {
            Err(throttled) => Err(AuthFailure::Throttled(throttled)),
            Ok(()) => match &presented {
                Err(e) => Err(AuthFailure::Malformed(e.clone())),
                Ok(creds) => self.check(creds).await,
            },
        };
        let who = presented.as_ref().map_or_else(|_| "unparsed credentials".to_owned(), ToString::to_string);
        match &result {
            Ok(identity) => {
                if let Some(key) = limit_key {
                    self.limiter().record_success(ip, key);
                }
                if let Identity::Device(d) = identity {
                    self.registry.activity.seen(d, now);
                }
                metrics::counter!("switchyard_auth_success_total", "protocol" => protocol, "kind" => kind(identity))
                    .increment(1);
                tracing::info!(protocol, who = %Escaped(&who), %ip, "authenticated");
            }
            Err(failure) => {
                let counts =
                    !matches!(failure, AuthFailure::Missing | AuthFailure::Throttled(_) | AuthFailure::Unavailable(_));
                let locked = if counts { self.limiter().record_failure(ip, limit_key, now) } else { None };
                metrics::counter!("switchyard_auth_failure_total", "protocol" => protocol, "reason" => failure.label())
                    .increment(1);
                if let Some(locked) = locked {
                    let lockout_s = match locked {
                        Locked::Address => self.config.limiter.per_address.cooldown.as_secs(),
                        Locked::Identity => self.config.limiter.per_identity.cooldown.as_secs(),
                    };
                    tracing::warn!(protocol, %who, %ip, ?locked, lockout_s, "too many failed authentications; locked");
                }
                match failure {
                    AuthFailure::Throttled(_) => {
                        tracing::debug!(protocol, %who, %ip, "authentication refused: locked");
                    }
                    AuthFailure::Unavailable(e) => {
                        tracing::error!(protocol, who = %Escaped(&who), %ip, error = %e, "authentication failed: registry unavailable");
                    }
                    _ => {
                        tracing::warn!(protocol, who = %Escaped(&who), %ip, reason = failure.label(), detail = %Escaped(failure), "authentication refused")
                    }
                }
            }
        }
        result
    }

    async fn check(&self, creds: &Credentials) -> Result<Identity, AuthFailure> {
        match creds {
            Credentials::Device { device, proof } => self.device(device, Proof::Mqtt(proof)).await,
            Credentials::Bearer(token) => self.device(token.claimed_device(), Proof::Bearer(token)).await,
            Credentials::ApiKey { domain, key_id, secret } => {
                let key = self.registry.api_key(key_id).ok_or(AuthFailure::Refused(AuthError::UnknownApiKey))?;
                let entry = self.registry.tenant(&key.domain).ok_or(AuthFailure::Refused(AuthError::UnknownTenant))?;
                authenticate_app(&entry.tenant, &key, domain.as_ref(), secret).map_err(AuthFailure::Refused)
            }
            Credentials::Admin(token) => match self.registry.admin_token_hash() {
                Some(hash) => authenticate_admin(&hash, token).map_err(AuthFailure::Refused),
                None => Err(AuthFailure::Refused(AuthError::BadAdminToken)),
            },
            Credentials::Anonymous => Err(AuthFailure::Missing),
        }
    }

    async fn device(&self, device: &DeviceIdentity, proof: Proof<'_>) -> Result<Identity, AuthFailure> {
        let entry = self.registry.tenant(&device.domain).ok_or(AuthFailure::Refused(AuthError::UnknownTenant))?;
        let now = self.registry.now_ms();
        let decide = |status: Status| {
            let row = status.map(|blocked| Device { blocked, ..Device::new(device.resource.clone(), 0) });
            match proof {
                Proof::Mqtt(p) => authenticate_device(&entry.tenant, &entry.keys, row.as_ref(), device, p, now),
                Proof::Bearer(t) => authenticate_bearer(&entry.tenant, &entry.keys, row.as_ref(), t, now),
            }
        };
        let status = match self.registry.cached_status(device) {
            Some(status) => status,
            None => {
                // Proof first, as if unregistered: only a valid proof costs a store read.
                match decide(None) {
                    Err(e) if !e.is_refused_by_registry() || e == AuthError::TenantDisabled => {
                        return Err(AuthFailure::Refused(e));
                    }
                    _ => {}
                }
                let registry = Arc::clone(&self.registry);
                let who = device.clone();
                tokio::task::spawn_blocking(move || registry.device_status(&who))
                    .await
                    .map_err(|e| AuthFailure::Unavailable(HubError::Task(e.to_string())))?
                    .map_err(AuthFailure::Unavailable)?
            }
        };
        decide(status).map_err(AuthFailure::Refused)
    }
}
