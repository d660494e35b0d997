//! What a client presents, parsed into one [`Credentials`] value whatever the protocol
//! (SPEC §2.5): MQTT username/password, an HTTP `Authorization` header, or WebSocket query
//! parameters. Parsing proves nothing; [`crate::auth`] checks the proof against the registry.
//!
//! MQTT usernames: `{domain}/{resource_id}` for a device, whose password is either its device
//! key (43 base64url characters, no dots) or a connection token (a JWT: exactly two dots);
//! `{domain}/apikey/{api_key}` for an application, whose password is the API secret.
//! Oversized input is refused before any other work: usernames over 512 bytes, passwords and
//! tokens over 4 KiB, header values and query strings over 8 KiB.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::ids::{ApiKeyId, DeviceIdentity, Domain, IdError, ResourceId};
use crate::secret::{AdminToken, ApiSecret, DeviceKey};
use crate::token::{DeviceToken, MAX_TOKEN_LEN, TokenError};

/// Longest MQTT username accepted, in bytes.
pub const MAX_USERNAME_LEN: usize = 512;
/// Longest password (device key, token or API secret) accepted, in bytes.
pub const MAX_PASSWORD_LEN: usize = MAX_TOKEN_LEN;
/// Longest `Authorization` header value or URL query string accepted, in bytes.
pub const MAX_HEADER_LEN: usize = 8192;

/// Credentials as presented, not yet verified. `Debug` never shows a secret.
#[derive(Debug)]
pub enum Credentials {
    /// MQTT username `{domain}/{resource_id}` and a device key or token as password.
    Device {
        /// The device the username names.
        device: DeviceIdentity,
        /// The password.
        proof: DeviceProof,
    },
    /// HTTP/WebSocket `Bearer` or `?token=`: a device token naming its own device.
    Bearer(DeviceToken),
    /// An API key and secret: MQTT `{domain}/apikey/{key}` (with a domain), HTTP `Basic` or
    /// `?apiKey=&apiSecret=` (without: the key id alone finds the tenant).
    ApiKey {
        /// The domain named by an MQTT username, if any.
        domain: Option<Domain>,
        /// The key id.
        key_id: ApiKeyId,
        /// The secret.
        secret: ApiSecret,
    },
    /// `Authorization: Bearer` with an admin token (43 characters, no dots).
    Admin(AdminToken),
    /// Nothing presented (MQTT without username and password).
    Anonymous,
}

/// The password of an MQTT device.
#[derive(Debug)]
pub enum DeviceProof {
    /// The device key itself.
    Key(DeviceKey),
    /// A connection token.
    Token(DeviceToken),
}

/// Why presented credentials cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Username over [`MAX_USERNAME_LEN`].
    #[error("username is too long")]
    UsernameTooLong,
    /// Password over [`MAX_PASSWORD_LEN`], or header/query over [`MAX_HEADER_LEN`].
    #[error("credentials are too long")]
    TooLong,
    /// A username without a `/`: not a tenant username (with anonymous access allowed, the
    /// broker may treat such a client as anonymous).
    #[error("username is not of the form {{domain}}/{{resource_id}} or {{domain}}/apikey/{{key}}")]
    NotTenantUsername,
    /// A username with a `/` whose parts are not valid.
    #[error("username is malformed: {0}")]
    BadUsername(String),
    /// A username without a password, or an API key without a secret.
    #[error("password is missing")]
    MissingPassword,
    /// A password without a username.
    #[error("password without username")]
    PasswordWithoutUsername,
    /// The password is not a device key, token or secret of the expected shape.
    #[error("password is malformed")]
    BadPassword,
    /// The token cannot be parsed.
    #[error("token is malformed: {0}")]
    BadToken(TokenError),
    /// Not `Basic` or `Bearer`, or a malformed value.
    #[error("authorization header is malformed or uses an unsupported scheme")]
    BadHeader,
    /// A credential parameter is repeated, or both a token and an API key are given.
    #[error("query has conflicting credentials")]
    Ambiguous,
}

impl From<IdError> for CredentialsError {
    fn from(e: IdError) -> Self {
        CredentialsError::BadUsername(e.to_string())
    }
}

/// Which tenant username form a username has.
pub(crate) enum Username {
    Device(DeviceIdentity),
    App { domain: Domain, key_id: ApiKeyId },
}

pub(crate) fn parse_username(username: &str) -> Result<Username, CredentialsError> {
    if username.len() > MAX_USERNAME_LEN {
        return Err(CredentialsError::UsernameTooLong);
    }
    let parts: Vec<&str> = username.splitn(4, '/').collect();
    match parts.as_slice() {
        [_] => Err(CredentialsError::NotTenantUsername),
        [domain, resource] => Ok(Username::Device(DeviceIdentity {
            domain: Domain::parse(domain)?,
            resource: ResourceId::parse(resource)?,
        })),
        [domain, "apikey", key] => Ok(Username::App { domain: Domain::parse(domain)?, key_id: ApiKeyId::parse(key)? }),
        _ => Err(CredentialsError::BadUsername("unknown username form".to_owned())),
    }
}

fn parse_device_proof(password: &str) -> Result<DeviceProof, CredentialsError> {
    if password.bytes().filter(|&b| b == b'.').count() == 2 {
        DeviceToken::parse(password).map(DeviceProof::Token).map_err(CredentialsError::BadToken)
    } else {
        DeviceKey::from_base64(password).map(DeviceProof::Key).map_err(|_| CredentialsError::BadPassword)
    }
}

fn parse_secret(secret: &str) -> Result<ApiSecret, CredentialsError> {
    ApiSecret::from_base64(secret).map_err(|_| CredentialsError::BadPassword)
}

/// Parses MQTT CONNECT credentials. No username and no password is [`Credentials::Anonymous`];
/// whether that is allowed is the broker's decision.
pub fn parse_mqtt(username: Option<&str>, password: Option<&[u8]>) -> Result<Credentials, CredentialsError> {
    if password.is_some_and(|p| p.len() > MAX_PASSWORD_LEN) {
        return Err(CredentialsError::TooLong);
    }
    let Some(username) = username else {
        return match password {
            None => Ok(Credentials::Anonymous),
            Some(_) => Err(CredentialsError::PasswordWithoutUsername),
        };
    };
    let form = parse_username(username)?;
    let password = password.ok_or(CredentialsError::MissingPassword)?;
    let password = std::str::from_utf8(password).map_err(|_| CredentialsError::BadPassword)?;
    Ok(match form {
        Username::Device(device) => Credentials::Device { device, proof: parse_device_proof(password)? },
        Username::App { domain, key_id } => {
            Credentials::ApiKey { domain: Some(domain), key_id, secret: parse_secret(password)? }
        }
    })
}

/// Parses an HTTP `Authorization` header value: `Basic base64(apiKey:apiSecret)`,
/// `Bearer <device token>` or `Bearer <admin token>`. The scheme is case-insensitive.
pub fn parse_authorization(value: &str) -> Result<Credentials, CredentialsError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(CredentialsError::TooLong);
    }
    let (scheme, rest) = value.trim().split_once(' ').ok_or(CredentialsError::BadHeader)?;
    let rest = rest.trim_start();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).map_err(|_| CredentialsError::BadHeader)?;
        let decoded = String::from_utf8(decoded).map_err(|_| CredentialsError::BadHeader)?;
        let (key, secret) = decoded.split_once(':').ok_or(CredentialsError::BadHeader)?;
        Ok(Credentials::ApiKey { domain: None, key_id: ApiKeyId::parse(key)?, secret: parse_secret(secret)? })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if rest.contains('.') {
            parse_bearer_token(rest)
        } else {
            AdminToken::from_base64(rest).map(Credentials::Admin).map_err(|_| CredentialsError::BadPassword)
        }
    } else {
        Err(CredentialsError::BadHeader)
    }
}

fn parse_bearer_token(token: &str) -> Result<Credentials, CredentialsError> {
    DeviceToken::parse(token).map(Credentials::Bearer).map_err(CredentialsError::BadToken)
}

/// Parses WebSocket URL query credentials (`apiKey=…&apiSecret=…` or `token=…`, for browsers
/// that cannot set headers). Other parameters are ignored; `Ok(None)` when there are none of
/// these. Values are taken literally: every valid value is URL-safe, so a percent-encoded one
/// is malformed.
pub fn parse_query(query: &str) -> Result<Option<Credentials>, CredentialsError> {
    if query.len() > MAX_HEADER_LEN {
        return Err(CredentialsError::TooLong);
    }
    let (mut api_key, mut api_secret, mut token) = (None, None, None);
    for pair in query.trim_start_matches('?').split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "apiKey" => &mut api_key,
            "apiSecret" => &mut api_secret,
            "token" => &mut token,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(CredentialsError::Ambiguous);
        }
    }
    match (api_key, api_secret, token) {
        (None, None, None) => Ok(None),
        (None, None, Some(token)) => parse_bearer_token(token).map(Some),
        (Some(key), Some(secret), None) => {
            Ok(Some(Credentials::ApiKey { domain: None, key_id: ApiKeyId::parse(key)?, secret: parse_secret(secret)? }))
        }
        (Some(_), None, None) => Err(CredentialsError::MissingPassword),
        (None, Some(_), None) => Err(CredentialsError::BadUsername("apiSecret without apiKey".to_owned())),
        _ => Err(CredentialsError::Ambiguous),
    }
}

impl fmt::Display for Credentials {
    /// A log-safe description: who is claimed, never the proof.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Device { device, proof } => {
                let kind = match proof {
                    DeviceProof::Key(_) => "key",
                    DeviceProof::Token(_) => "token",
                };
                write!(f, "device {}/{} ({kind})", device.domain, device.resource)
            }
            Credentials::Bearer(token) => {
                let d = token.claimed_device();
                write!(f, "device {}/{} (bearer token)", d.domain, d.resource)
            }
            Credentials::ApiKey { domain: Some(d), key_id, .. } => write!(f, "api key {d}/{key_id}"),
            Credentials::ApiKey { key_id, .. } => write!(f, "api key {key_id}"),
            Credentials::Admin(_) => f.write_str("admin"),
            Credentials::Anonymous => f.write_str("anonymous"),
        }
    }
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
