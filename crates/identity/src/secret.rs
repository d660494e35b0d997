//! Secret values as types: [`MasterKey`], [`DeviceKey`], [`ApiSecret`], [`AdminToken`].
//!
//! Each is 32 bytes, travels as unpadded base64url (43 characters), is wiped from memory when
//! dropped, prints as `<redacted>` under `Debug`, and implements neither `Display` nor
//! `Serialize`: the only way to see one is the explicitly named `expose_base64`, which callers
//! use exactly where a secret must be shown once (creation responses, the initial credentials
//! file, the offline CLI).
//!
//! API secrets and admin tokens are stored as a [`SecretHash`]: SHA-256 over a context string and
//! the 32 secret bytes. The secrets are 256-bit random values, so there is nothing to guess and
//! nothing for a slow password hash (argon2, bcrypt) to protect; a fast hash lets every
//! connection be checked without a CPU-bound denial of service. Comparison is constant-time.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// The operating system's random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct EntropyError(#[from] getrandom::Error);

/// `N` random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], EntropyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

/// Why a string is not a valid 32-byte secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretParseError {
    /// Not 43 characters of unpadded, canonical base64url.
    #[error("expected 32 bytes as 43 characters of unpadded base64url")]
    Encoding,
}

/// Length of a 32-byte value in unpadded base64url.
pub(crate) const B64_32_LEN: usize = 43;

/// Decodes exactly 32 bytes of canonical unpadded base64url.
pub(crate) fn decode32(s: &str) -> Result<[u8; 32], SecretParseError> {
    if s.len() != B64_32_LEN {
        return Err(SecretParseError::Encoding);
    }
    let mut out = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(s, &mut out) {
        Ok(32) => Ok(out),
        _ => {
            out.zeroize();
            Err(SecretParseError::Encoding)
        }
    }
}

/// 32 secret bytes, zeroed on drop.
#[derive(Clone)]
pub(crate) struct Bytes32([u8; 32]);

impl Bytes32 {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for Bytes32 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

macro_rules! secret32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Bytes32);

        impl $name {
            /// Parses the unpadded base64url form (43 characters).
            pub fn from_base64(s: &str) -> Result<Self, SecretParseError> {
                decode32(s).map(|b| Self(Bytes32(b)))
            }

            /// The unpadded base64url form. Named so that every place a secret leaves the
            /// process is easy to find.
            pub fn expose_base64(&self) -> String {
                URL_SAFE_NO_PAD.encode(self.0.0)
            }

            pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(Bytes32(bytes))
            }

            pub(crate) fn bytes(&self) -> &[u8; 32] {
                &self.0.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret32!(
    /// A tenant's master key: 32 random bytes, from which every device key is derived.
    MasterKey
);
secret32!(
    /// A device key, derived from a master key (SPEC §2.2); also the HS256 secret of the
    /// device's connection tokens.
    DeviceKey
);
secret32!(
    /// The secret half of an API key.
    ApiSecret
);
secret32!(
    /// The administrator's bearer token for the admin API.
    AdminToken
);

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Result<Self, EntropyError> {
        random_bytes().map(Self::from_bytes)
    }
}

impl DeviceKey {
    /// Constant-time comparison.
    pub fn ct_eq(&self, other: &DeviceKey) -> bool {
        self.bytes().ct_eq(other.bytes()).into()
    }
}

impl ApiSecret {
    const CONTEXT: &'static [u8] = b"switchyard/api-secret/v1:";

    /// A fresh random secret.
    pub fn generate() -> Result<Self, EntropyError> {
        random_bytes().map(Self::from_bytes)
    }

    /// The hash to store.
    pub fn hash(&self) -> SecretHash {
        SecretHash::compute(Self::CONTEXT, self.bytes())
    }

    /// Whether this secret hashes to `stored` (constant-time).
    pub fn matches(&self, stored: &SecretHash) -> bool {
        stored.ct_matches(&self.hash())
    }
}

impl AdminToken {
    const CONTEXT: &'static [u8] = b"switchyard/admin-token/v1:";

    /// A fresh random token.
    pub fn generate() -> Result<Self, EntropyError> {
        random_bytes().map(Self::from_bytes)
    }

    /// The hash to store.
    pub fn hash(&self) -> SecretHash {
        SecretHash::compute(Self::CONTEXT, self.bytes())
    }

    /// Whether this token hashes to `stored` (constant-time).
    pub fn matches(&self, stored: &SecretHash) -> bool {
        stored.ct_matches(&self.hash())
    }
}

/// SHA-256 of a context string and a secret's 32 bytes; what is stored instead of an
/// [`ApiSecret`] or [`AdminToken`]. The context differs per kind, so a hash of one kind never
/// matches a secret of another. Serializes as unpadded base64url.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    fn compute(context: &[u8], secret: &[u8; 32]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(context);
        hasher.update(secret);
        Self(hasher.finalize().into())
    }

    fn ct_matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({})", URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl TryFrom<String> for SecretHash {
    type Error = SecretParseError;
    fn try_from(s: String) -> Result<Self, SecretParseError> {
        decode32(&s).map(Self)
    }
}

impl From<SecretHash> for String {
    fn from(h: SecretHash) -> String {
        URL_SAFE_NO_PAD.encode(h.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_strictness() {
        let key = MasterKey::generate().unwrap();
        let text = key.expose_base64();
        assert_eq!(text.len(), B64_32_LEN);
        let again = MasterKey::from_base64(&text).unwrap();
        assert_eq!(again.bytes(), key.bytes());

        let zeros = "A".repeat(43);
        assert!(MasterKey::from_base64(&zeros).is_ok());
        for bad in [
            "",
            "AAAA",
            &format!("{zeros}="),                          // padded
            &"A".repeat(44),                               // too long
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", // standard alphabet
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/", // standard alphabet
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", // non-canonical trailing bits
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.",
        ] {
            assert_eq!(MasterKey::from_base64(bad).err(), Some(SecretParseError::Encoding), "{bad:?}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let key = MasterKey::generate().unwrap();
        let text = key.expose_base64();
        let shown = format!(
            "{key:?} {:?} {:?} {:?}",
            DeviceKey::from_bytes([7; 32]),
            ApiSecret::generate().unwrap(),
            AdminToken::generate().unwrap()
        );
        assert_eq!(
            shown,
            "MasterKey(<redacted>) DeviceKey(<redacted>) ApiSecret(<redacted>) \
             AdminToken(<redacted>)"
        );
        assert!(!shown.contains(&text));
    }

    #[test]
    fn generated_secrets_differ() {
        assert_ne!(ApiSecret::generate().unwrap().expose_base64(), ApiSecret::generate().unwrap().expose_base64());
    }

    #[test]
    fn hashes_match_only_their_secret_and_kind() {
        let secret = ApiSecret::generate().unwrap();
        let stored = secret.hash();
        assert!(secret.matches(&stored));
        assert!(!ApiSecret::generate().unwrap().matches(&stored));

        let same_bytes_as_token = AdminToken::from_bytes(*secret.bytes());
        assert!(!same_bytes_as_token.matches(&stored));
        assert!(same_bytes_as_token.matches(&same_bytes_as_token.hash()));
    }

    #[test]
    fn hash_known_answer() {
        // python3 -c 'import hashlib;print(hashlib.sha256(b"switchyard/api-secret/v1:"+bytes(32)).hexdigest())'
        let hash = ApiSecret::from_bytes([0; 32]).hash();
        let hex: String = hash.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, API_SECRET_ZERO_HASH_HEX);
    }

    const API_SECRET_ZERO_HASH_HEX: &str = "9d2c2ed909644bd29dbd0127a9e409751ab8aa25d879dc58880f7a3af20761ed";

    #[test]
    fn secret_hash_serde() {
        let hash = ApiSecret::generate().unwrap().hash();
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json.len(), B64_32_LEN + 2);
        assert_eq!(serde_json::from_str::<SecretHash>(&json).unwrap(), hash);
        assert!(serde_json::from_str::<SecretHash>("\"short\"").is_err());
    }

    #[test]
    fn device_key_ct_eq() {
        let a = DeviceKey::from_bytes([1; 32]);
        let mut other = [1; 32];
        assert!(a.ct_eq(&DeviceKey::from_bytes(other)));
        other[31] = 2;
        assert!(!a.ct_eq(&DeviceKey::from_bytes(other)));
    }
}
