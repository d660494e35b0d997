//! Identity for Switchyard (SPEC §2, "Device Hub"): who a client is and what it may do.
//!
//! Pure: no sockets, no tokio, no clocks (every time is an argument, epoch milliseconds), no
//! logging. The only I/O is reading or creating the server's key file ([`KeyFile`]).
//!
//! - [`ids`]: typed names — [`Domain`], [`ResourceId`], [`ApiKeyId`], [`Identity`].
//! - [`secret`]: secrets as types that never print or serialize — [`MasterKey`], [`DeviceKey`],
//!   [`ApiSecret`], [`AdminToken`] — and the [`SecretHash`] stored instead of the last two.
//! - [`keys`]: device key derivation (SPEC §2.2) and master-key rotation ([`TenantKeys`]).
//! - [`keyfile`]: master keys at rest, sealed by the server's [`KeyFile`].
//! - [`token`]: HS256 connection tokens (SPEC §2.3), [`mint_token`] and [`verify_token`].
//! - [`credentials`]: what a client presents on MQTT, HTTP or WebSocket, as [`Credentials`].
//! - [`certificate`]: which device a verified TLS client certificate names (mTLS).
//! - [`auth`]: credentials + registry rows -> [`Identity`] or [`AuthError`].
//! - [`authz`]: [`authorize_publish`] / [`authorize_subscribe`] (SPEC §2.6), the only place
//!   topic rights are decided; tenant isolation is carried by [`TenantTopic`] / [`TenantFilter`]
//!   ([`topic`]).
//! - [`registry`]: the records storage persists — [`Tenant`], [`Device`], [`ApiKey`].
//! - [`limiter`]: [`AuthLimiter`], bounded rate limiting of failed authentication.

pub mod auth;
pub mod authz;
pub mod certificate;
pub mod credentials;
pub mod ids;
pub mod keyfile;
pub mod keys;
pub mod limiter;
pub mod registry;
pub mod secret;
pub mod token;
pub mod topic;

pub use auth::{
    AuthError, authenticate_admin, authenticate_app, authenticate_bearer, authenticate_certificate, authenticate_device,
};
pub use authz::{Decision, DenyReason, PublishTarget, SubscribeTarget, authorize_publish, authorize_subscribe};
pub use certificate::{CertificateError, ClientCertificate, URI_SAN_PREFIX, certificate_device};
pub use credentials::{Credentials, CredentialsError, DeviceProof, parse_authorization, parse_mqtt, parse_query};
pub use ids::{ApiKeyId, AppIdentity, DeviceIdentity, Domain, IdError, Identity, ResourceId};
pub use keyfile::{KeyFile, KeyFileError, SealError, SealedKey, check_private};
pub use keys::{DEFAULT_ROTATION_GRACE, SealedTenantKeys, TenantKeys};
pub use limiter::{AuthLimiter, LimitRule, LimiterConfig, Locked, Throttled};
pub use registry::{ApiKey, Device, MAX_MESSAGE_CACHE, MAX_RETENTION, Provisioned, RotateError, Tenant};
pub use secret::{AdminToken, ApiSecret, DeviceKey, EntropyError, MasterKey, SecretHash, SecretParseError};
pub use token::{Claims, DeviceToken, TokenError, TokenPolicy, mint_token, verify_token};
pub use topic::{Channel, TenantFilter, TenantTopic};
