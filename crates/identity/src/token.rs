//! Connection tokens (SPEC §2.3): compact JWTs signed HS256 with the device key's 32 raw bytes,
//! claims `iss` = domain, `sub` = resource id, `iat`, `exp` (seconds) and an optional `jti`.
//!
//! Hand-rolled on `hmac` + `sha2` + `base64` rather than a general JWT library: only one
//! algorithm exists here, so there is no algorithm negotiation to get wrong (`none`, RS/HS
//! confusion), and every check takes the time as an argument instead of reading a clock.
//!
//! Verification ([`DeviceToken::verify`]) refuses, in this order: a header whose `alg` is not
//! `HS256` (or that has `crit`), a signature that matches no candidate key (all candidates are
//! tried, each in constant time), `iss`/`sub` other than the expected device, `exp` not after
//! now, `iat` (or `nbf`) later than now plus the leeway (*default* 60 s), `exp <= iat`, and a
//! lifetime `exp - iat` above the tenant's maximum (*default* 24 h). `exp` gets no leeway.
//! Times are epoch milliseconds in the API and whole seconds inside the token.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::Choice;

use crate::ids::{DeviceIdentity, Domain, ResourceId};
use crate::secret::DeviceKey;

/// Longest token accepted, in bytes (the same cap as an MQTT password).
pub const MAX_TOKEN_LEN: usize = 4096;

/// The header every token carries; minted tokens use exactly these bytes.
const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token is too long")]
    TooLong,
    /// Not three base64url parts of JSON with the required claims.
    #[error("token is malformed")]
    Malformed,
    /// `alg` is not `HS256`, or the header has extensions (`crit`) or a `typ` other than JWT.
    #[error("token algorithm or header is not supported")]
    UnsupportedHeader,
    /// The signature matches no valid key of the device.
    #[error("token signature is invalid")]
    BadSignature,
    /// `iss` is not the expected domain.
    #[error("token issuer does not match")]
    WrongIssuer,
    /// `sub` is not the expected resource id.
    #[error("token subject does not match")]
    WrongSubject,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `iat` or `nbf` is in the future beyond the leeway.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `exp - iat` exceeds the tenant's maximum, or `exp <= iat`.
    #[error("token lifetime is not allowed")]
    BadLifetime,
}

/// What a tenant allows for tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Longest allowed `exp - iat` (*default* 24 h).
    pub max_lifetime: Duration,
    /// How far `iat`/`nbf` may be in the future, for clock skew (*default* 60 s).
    pub leeway: Duration,
}

impl TokenPolicy {
    /// Default maximum token lifetime.
    pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
    /// Default clock-skew leeway.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

    /// The default policy with the given maximum lifetime.
    pub fn with_max_lifetime(max_lifetime: Duration) -> Self {
        Self { max_lifetime, ..Self::default() }
    }
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self { max_lifetime: Self::DEFAULT_MAX_LIFETIME, leeway: Self::DEFAULT_LEEWAY }
    }
}

/// The verified claims of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `iss` and `sub`.
    pub device: DeviceIdentity,
    /// `iat`, epoch seconds.
    pub issued_at_s: u64,
    /// `exp`, epoch seconds.
    pub expires_s: u64,
    /// `jti`, if present.
    pub jti: Option<String>,
}

impl Claims {
    /// `exp` in epoch milliseconds (what `POST /devices/{id}/token` returns as `expires`).
    pub fn expires_ms(&self) -> u64 {
        self.expires_s.saturating_mul(1000)
    }
}

#[derive(Serialize)]
struct OutClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    crit: Option<serde_json::Value>,
}

#[derive(Clone, Deserialize)]
struct InClaims {
    iss: String,
    sub: String,
    iat: u64,
    exp: u64,
    nbf: Option<u64>,
    jti: Option<String>,
}

fn mac(key: &DeviceKey) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key.bytes()).expect("HMAC accepts any key length")
}

/// Mints a token for `device`, signed with its device key, issued at `issued_at_ms` (rounded
/// down to whole seconds) and valid for `ttl` (whole seconds). A `ttl` above the tenant's
/// maximum yields a token that [`DeviceToken::verify`] refuses; callers cap it first.
pub fn mint_token(
    device: &DeviceIdentity,
    key: &DeviceKey,
    issued_at_ms: u64,
    ttl: Duration,
    jti: Option<&str>,
) -> String {
    let iat = issued_at_ms / 1000;
    let claims = OutClaims {
        iss: device.domain.as_str(),
        sub: device.resource.as_str(),
        iat,
        exp: iat.saturating_add(ttl.as_secs()),
        jti,
    };
    let claims = serde_json::to_vec(&claims).expect("claims serialize");
    let mut token = URL_SAFE_NO_PAD.encode(HEADER_JSON);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let mut mac = mac(key);
    mac.update(token.as_bytes());
    let signature = mac.finalize().into_bytes();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}

/// A token parsed but not yet verified: its header is acceptable and its claims are readable,
/// so [`DeviceToken::claimed_device`] can pick the tenant and device whose keys verify it.
/// Nothing in it may be trusted before [`DeviceToken::verify`] succeeds. `Debug` hides it: a
/// token is a bearer credential.
#[derive(Clone)]
pub struct DeviceToken {
    /// `header.claims`, what the signature covers.
    signing_input: String,
    signature: Vec<u8>,
    claimed: DeviceIdentity,
    claims: InClaims,
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceToken").field("claimed", &self.claimed).finish_non_exhaustive()
    }
}

fn decode_part(part: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)
}

impl DeviceToken {
    /// Parses a compact JWT: three base64url parts, an HS256 header, claims with `iss`, `sub`,
    /// `iat` and `exp` where `iss` is a [`Domain`] and `sub` a [`ResourceId`].
    pub fn parse(token: &str) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = serde_json::from_slice(&decode_part(header)?).map_err(|_| TokenError::Malformed)?;
        if header.alg != "HS256" || header.crit.is_some() || header.typ.is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(TokenError::UnsupportedHeader);
        }
        let claims_json = decode_part(claims)?;
        let claims: InClaims = serde_json::from_slice(&claims_json).map_err(|_| TokenError::Malformed)?;
        let signature = decode_part(signature)?;
        if signature.len() != 32 {
            return Err(TokenError::Malformed);
        }
        let claimed = DeviceIdentity {
            domain: Domain::parse(&claims.iss).map_err(|_| TokenError::Malformed)?,
            resource: ResourceId::parse(&claims.sub).map_err(|_| TokenError::Malformed)?,
        };
        Ok(Self {
            signing_input: token[..token.rfind('.').expect("three parts")].to_owned(),
            signature,
            claimed,
            claims,
        })
    }

    /// The device the token claims to be for (unverified): use it to look up the tenant and
    /// derive the candidate keys, then call [`DeviceToken::verify`].
    pub fn claimed_device(&self) -> &DeviceIdentity {
        &self.claimed
    }

    /// The token's `exp` in epoch milliseconds (unverified; e.g. for the `expires` field of a
    /// token the server has just minted).
    pub fn expires_ms(&self) -> u64 {
        self.claims.exp.saturating_mul(1000)
    }

    /// Verifies the token for `expected` against every candidate key (current and, during a
    /// rotation, previous master key's device key) at `now_ms` under `policy`.
    pub fn verify(
        &self,
        expected: &DeviceIdentity,
        candidates: &[DeviceKey],
        now_ms: u64,
        policy: &TokenPolicy,
    ) -> Result<Claims, TokenError> {
        let valid = candidates.iter().fold(Choice::from(0), |acc, key| {
            let mut mac = mac(key);
            mac.update(self.signing_input.as_bytes());
            acc | Choice::from(u8::from(mac.verify_slice(&self.signature).is_ok()))
        });
        if !bool::from(valid) {
            return Err(TokenError::BadSignature);
        }
        if self.claimed.domain != expected.domain {
            return Err(TokenError::WrongIssuer);
        }
        if self.claimed.resource != expected.resource {
            return Err(TokenError::WrongSubject);
        }
        let now_s = now_ms / 1000;
        let c = &self.claims;
        if c.exp <= now_s {
            return Err(TokenError::Expired);
        }
        let latest_start = now_s.saturating_add(policy.leeway.as_secs());
        if c.iat > latest_start || c.nbf.is_some_and(|nbf| nbf > latest_start) {
            return Err(TokenError::NotYetValid);
        }
        if c.exp <= c.iat || c.exp - c.iat > policy.max_lifetime.as_secs() {
            return Err(TokenError::BadLifetime);
        }
        Ok(Claims { device: self.claimed.clone(), issued_at_s: c.iat, expires_s: c.exp, jti: c.jti.clone() })
    }
}

/// Parses and verifies in one step (see [`DeviceToken::verify`]).
pub fn verify_token(
    token: &str,
    expected: &DeviceIdentity,
    candidates: &[DeviceKey],
    now_ms: u64,
    policy: &TokenPolicy,
) -> Result<Claims, TokenError> {
    DeviceToken::parse(token)?.verify(expected, candidates, now_ms, policy)
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
