//! Authentication decisions: given parsed [`crate::Credentials`] and the registry rows the
//! caller looked up, decide the [`Identity`] or why not. Pure; the caller does the lookups, the
//! rate limiting ([`crate::AuthLimiter`]), the counting and the logging (with
//! [`AuthError::label`], never a secret).
//!
//! The proof is checked before the registry state, so only a holder of valid credentials learns
//! that a tenant is disabled or a device blocked or unregistered.

use crate::certificate::CertificateError;
use crate::credentials::DeviceProof;
use crate::ids::{AppIdentity, DeviceIdentity, Domain, Identity};
use crate::keys::TenantKeys;
use crate::registry::{ApiKey, Device, Tenant};
use crate::secret::{AdminToken, ApiSecret, DeviceKey, SecretHash};
use crate::token::{DeviceToken, TokenError};

/// Why authentication failed. Clients are told only "bad credentials" or "not authorized".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No tenant has the named domain (the caller's lookup found none).
    #[error("unknown tenant")]
    UnknownTenant,
    /// No API key has the presented id (the caller's lookup found none).
    #[error("unknown api key")]
    UnknownApiKey,
    /// The credentials name another tenant than the record found.
    #[error("credentials belong to another tenant")]
    WrongTenant,
    /// The device key is not the one derived from a valid master key.
    #[error("device key is invalid")]
    BadDeviceKey,
    /// The token is refused.
    #[error("token refused: {0}")]
    BadToken(#[from] TokenError),
    /// The API secret does not match.
    #[error("api secret is invalid")]
    BadApiSecret,
    /// The admin token does not match.
    #[error("admin token is invalid")]
    BadAdminToken,
    /// The tenant is disabled.
    #[error("tenant is disabled")]
    TenantDisabled,
    /// The tenant requires registration and the device has no registry row.
    #[error("device is not registered")]
    NotRegistered,
    /// The device is blocked.
    #[error("device is blocked")]
    Blocked,
    /// A verified client certificate names no device, or another than the username.
    #[error("client certificate refused: {0}")]
    Certificate(#[from] CertificateError),
}

impl AuthError {
    /// A short stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::UnknownTenant => "unknown_tenant",
            AuthError::UnknownApiKey => "unknown_api_key",
            AuthError::WrongTenant => "wrong_tenant",
            AuthError::BadDeviceKey => "bad_device_key",
            AuthError::BadToken(_) => "bad_token",
            AuthError::BadApiSecret => "bad_api_secret",
            AuthError::BadAdminToken => "bad_admin_token",
            AuthError::TenantDisabled => "tenant_disabled",
            AuthError::NotRegistered => "not_registered",
            AuthError::Blocked => "blocked",
            AuthError::Certificate(_) => "certificate",
        }
    }

    /// Whether the credentials themselves were valid and the registry refused them (MQTT 5
    /// may answer `0x8A Banned` / `0x87 Not authorized` rather than `0x86 Bad user name or
    /// password`).
    pub fn is_refused_by_registry(&self) -> bool {
        matches!(self, AuthError::TenantDisabled | AuthError::NotRegistered | AuthError::Blocked)
    }
}

/// Checks a device's proof (key or token) against the tenant's keys at `now_ms`, then the
/// registry: tenant enabled, device registered if required, device not blocked.
/// `registered` is the registry row of `device`, if any. For HTTP `Bearer`, pass the token's
/// [`DeviceToken::claimed_device`] as `device`.
pub fn authenticate_device(
    tenant: &Tenant,
    keys: &TenantKeys,
    registered: Option<&Device>,
    device: &DeviceIdentity,
    proof: &DeviceProof,
    now_ms: u64,
) -> Result<Identity, AuthError> {
    match proof {
        DeviceProof::Key(key) => check_device_key(tenant, keys, device, key, now_ms)?,
        DeviceProof::Token(token) => check_device_token(tenant, keys, device, token, now_ms)?,
    }
    admit_device(tenant, registered)?;
    Ok(Identity::Device(device.clone()))
}

/// [`authenticate_device`] for a token presented alone (HTTP `Bearer`, WebSocket `?token=`):
/// the device is the one the token names.
pub fn authenticate_bearer(
    tenant: &Tenant,
    keys: &TenantKeys,
    registered: Option<&Device>,
    token: &DeviceToken,
    now_ms: u64,
) -> Result<Identity, AuthError> {
    let device = token.claimed_device();
    check_device_token(tenant, keys, device, token, now_ms)?;
    admit_device(tenant, registered)?;
    Ok(Identity::Device(device.clone()))
}

/// [`authenticate_device`] for a device that proved itself with a TLS client certificate the
/// listener verified: `device` is what [`crate::certificate_device`] named, and `tenant` and
/// `registered` its rows. Only the registry is left to check.
pub fn authenticate_certificate(
    tenant: &Tenant,
    registered: Option<&Device>,
    device: &DeviceIdentity,
) -> Result<Identity, AuthError> {
    check_tenant(tenant, &device.domain)?;
    admit_device(tenant, registered)?;
    Ok(Identity::Device(device.clone()))
}

fn check_tenant(tenant: &Tenant, domain: &Domain) -> Result<(), AuthError> {
    if &tenant.domain == domain { Ok(()) } else { Err(AuthError::WrongTenant) }
}

fn check_device_key(
    tenant: &Tenant,
    keys: &TenantKeys,
    device: &DeviceIdentity,
    key: &DeviceKey,
    now_ms: u64,
) -> Result<(), AuthError> {
    check_tenant(tenant, &device.domain)?;
    if keys.verify_device_key(&device.resource, key, now_ms) { Ok(()) } else { Err(AuthError::BadDeviceKey) }
}

fn check_device_token(
    tenant: &Tenant,
    keys: &TenantKeys,
    device: &DeviceIdentity,
    token: &DeviceToken,
    now_ms: u64,
) -> Result<(), AuthError> {
    check_tenant(tenant, &device.domain)?;
    let candidates = keys.device_keys(&device.resource, now_ms);
    token.verify(device, &candidates, now_ms, &tenant.token_policy())?;
    Ok(())
}

fn admit_device(tenant: &Tenant, registered: Option<&Device>) -> Result<(), AuthError> {
    if tenant.disabled {
        return Err(AuthError::TenantDisabled);
    }
    match registered {
        Some(row) if row.blocked => Err(AuthError::Blocked),
        None if tenant.require_registration => Err(AuthError::NotRegistered),
        _ => Ok(()),
    }
}

/// Checks an application's API secret against the key's record, then that the key belongs to
/// `tenant` and to the domain an MQTT username named (if any), and that the tenant is enabled.
pub fn authenticate_app(
    tenant: &Tenant,
    key: &ApiKey,
    named_domain: Option<&Domain>,
    secret: &ApiSecret,
) -> Result<Identity, AuthError> {
    if !secret.matches(&key.secret_hash) {
        return Err(AuthError::BadApiSecret);
    }
    check_tenant(tenant, &key.domain)?;
    if let Some(named) = named_domain {
        check_tenant(tenant, named)?;
    }
    if tenant.disabled {
        return Err(AuthError::TenantDisabled);
    }
    Ok(Identity::Application(AppIdentity { domain: key.domain.clone(), api_key_id: key.id.clone() }))
}

/// Checks the admin token against its stored hash.
pub fn authenticate_admin(stored: &SecretHash, token: &AdminToken) -> Result<Identity, AuthError> {
    if token.matches(stored) { Ok(Identity::Admin) } else { Err(AuthError::BadAdminToken) }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
