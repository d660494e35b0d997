//! Typed names, parsed once at the edge: [`Domain`] (a tenant), [`ResourceId`] (a device or any
//! other data source), [`ApiKeyId`] (the public half of an application credential), and the
//! [`Identity`] a connection ends up with after authentication.
//!
//! A value of these types is valid by construction, so code past the edge never re-checks a
//! string. All three serialize as plain strings and refuse invalid strings on deserialization.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::secret::{EntropyError, random_bytes};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is empty.
    #[error("{kind} is empty")]
    Empty {
        /// Which kind of id.
        kind: &'static str,
    },
    /// The string is longer than the limit for its kind.
    #[error("{kind} is longer than {max} characters")]
    TooLong {
        /// Which kind of id.
        kind: &'static str,
        /// The limit.
        max: usize,
    },
    /// The string contains a character outside the allowed set.
    #[error("{kind} contains a character that is not allowed")]
    BadChar {
        /// Which kind of id.
        kind: &'static str,
    },
    /// A domain label is empty, too long, or starts or ends with `-`.
    #[error("domain label {label:?} is not a valid DNS label")]
    BadLabel {
        /// The offending label.
        label: String,
    },
    /// `.` and `..` are refused as resource ids: they vanish from URL paths.
    #[error("resource id may not be \".\" or \"..\"")]
    DotSegment,
}

/// Declares a string newtype with `as_str`, `Display`, `FromStr`, `AsRef<str>` and serde as a
/// string that goes through `parse`.
macro_rules! string_id {
    ($name:ident) => {
        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

/// A tenant's domain, e.g. `app.example.com`; it is also the tenant's key everywhere.
///
/// Rules: 1–253 characters; dot-separated labels of 1–63 characters each; a label is made of
/// `a-z`, `0-9` and `-` and neither starts nor ends with `-`. Lowercase only: `App.Example.com`
/// is refused, not folded, because the domain is also the first level of every topic of the
/// tenant and MQTT topics are case-sensitive (the CLI and admin API may lowercase user input
/// before parsing). A single label (`localhost`) is allowed; a trailing dot is not.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl Domain {
    /// Longest domain accepted.
    pub const MAX_LEN: usize = 253;
    const MAX_LABEL: usize = 63;

    /// Parses a domain (see the type's rules).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const KIND: &str = "domain";
        if s.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if s.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { kind: KIND, max: Self::MAX_LEN });
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.') {
            return Err(IdError::BadChar { kind: KIND });
        }
        for label in s.split('.') {
            if label.is_empty() || label.len() > Self::MAX_LABEL || label.starts_with('-') || label.ends_with('-') {
                return Err(IdError::BadLabel { label: label.to_owned() });
            }
        }
        Ok(Self(s.to_owned()))
    }
}

string_id!(Domain);

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({:?})", self.0)
    }
}

/// A resource (device) id: 1–128 characters of `A-Za-z0-9._:-`, case-sensitive (SPEC §1).
///
/// `.` and `..` alone are refused, because HTTP clients and proxies remove such path segments
/// from `/resources/{id}/...` URLs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceId(String);

impl ResourceId {
    /// Longest resource id accepted.
    pub const MAX_LEN: usize = 128;

    /// Parses a resource id (see the type's rules).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const KIND: &str = "resource id";
        if s.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if s.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { kind: KIND, max: Self::MAX_LEN });
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')) {
            return Err(IdError::BadChar { kind: KIND });
        }
        if s == "." || s == ".." {
            return Err(IdError::DotSegment);
        }
        Ok(Self(s.to_owned()))
    }

    /// A random UUID (version 4, lowercase, hyphenated), for a device created without an id.
    pub fn generate() -> Result<Self, EntropyError> {
        let mut b: [u8; 16] = random_bytes()?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Ok(Self(format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])))
    }
}

string_id!(ResourceId);

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({:?})", self.0)
    }
}

/// The public id of an API key: 1–64 characters of the base64url alphabet (`A-Za-z0-9_-`).
/// Generated ids are 16 random bytes (22 characters), so they are unique across tenants and
/// an HTTP `Basic` credential (which names no domain) finds its tenant by the key id alone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApiKeyId(String);

impl ApiKeyId {
    /// Longest key id accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses a key id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const KIND: &str = "api key id";
        if s.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if s.len() > Self::MAX_LEN {
            return Err(IdError::TooLong { kind: KIND, max: Self::MAX_LEN });
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(IdError::BadChar { kind: KIND });
        }
        Ok(Self(s.to_owned()))
    }

    /// A fresh random key id (128 bits from the OS).
    pub fn generate() -> Result<Self, EntropyError> {
        let bytes: [u8; 16] = random_bytes()?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }
}

string_id!(ApiKeyId);

impl fmt::Debug for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyId({:?})", self.0)
    }
}

/// A device of a tenant: what an MQTT username `{domain}/{resource_id}` or a token's
/// `iss`/`sub` names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceIdentity {
    /// The tenant.
    pub domain: Domain,
    /// The device.
    pub resource: ResourceId,
}

/// An application of a tenant, authenticated by one of the tenant's API keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppIdentity {
    /// The tenant.
    pub domain: Domain,
    /// Which API key it used.
    pub api_key_id: ApiKeyId,
}

/// Who is on the other end of a connection or request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A device of a tenant.
    Device(DeviceIdentity),
    /// An application of a tenant.
    Application(AppIdentity),
    /// A client without credentials, admitted only when the broker allows anonymous clients;
    /// it lives in a namespace outside every tenant.
    Anonymous,
    /// The server administrator (admin API only; has no topic rights).
    Admin,
}

impl Identity {
    /// The tenant this identity belongs to, if any.
    pub fn domain(&self) -> Option<&Domain> {
        match self {
            Identity::Device(d) => Some(&d.domain),
            Identity::Application(a) => Some(&a.domain),
            Identity::Anonymous | Identity::Admin => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(s in "\\PC{0,300}") {
            if let Ok(d) = Domain::parse(&s) {
                prop_assert_eq!(d.to_string(), s.clone());
            }
            if let Ok(r) = ResourceId::parse(&s) {
                prop_assert_eq!(r.as_str(), s.as_str());
            }
            let _ = ApiKeyId::parse(&s);
        }

        #[test]
        fn generated_domains_parse(labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", 1..4)) {
            let s = labels.join(".");
            prop_assert!(Domain::parse(&s).is_ok(), "{}", s);
        }
    }

    #[test]
    fn domains() {
        let long_label = "a".repeat(63);
        let too_long_label = "a".repeat(64);
        let max = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "a".repeat(61));
        assert_eq!(max.len(), 253);
        let over = format!("{max}a");
        let cases: &[(&str, bool)] = &[
            ("app.example.com", true),
            ("localhost", true),
            ("a", true),
            ("127.0.0.1", true),
            ("xn--bcher-kva.example", true),
            ("a-b.c", true),
            (&long_label, true),
            (&max, true),
            ("", false),
            (&too_long_label, false),
            (&over, false),
            ("App.example.com", false),
            ("app.example.com.", false),
            (".app", false),
            ("a..b", false),
            ("-a.com", false),
            ("a-.com", false),
            ("a_b.com", false),
            ("a/b", false),
            ("a+b", false),
            ("a#", false),
            ("$sys", false),
            ("bücher.example", false),
            ("a b", false),
        ];
        for (input, ok) in cases {
            assert_eq!(Domain::parse(input).is_ok(), *ok, "{input:?}");
        }
    }

    #[test]
    fn resource_ids() {
        let max = "x".repeat(128);
        let over = "x".repeat(129);
        let cases: &[(&str, bool)] = &[
            ("sensor-1", true),
            ("a:b.c-d_e", true),
            ("A", true),
            ("...", true),
            ("a.", true),
            (&max, true),
            ("", false),
            (&over, false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("a+b", false),
            ("a#", false),
            ("a b", false),
            ("é", false),
            ("a\0", false),
            ("a%2F", false),
        ];
        for (input, ok) in cases {
            assert_eq!(ResourceId::parse(input).is_ok(), *ok, "{input:?}");
        }
    }

    #[test]
    fn generated_resource_ids_are_uuid_v4() {
        let id = ResourceId::generate().unwrap();
        let s = id.as_str();
        assert_eq!(s.len(), 36);
        assert_eq!(ResourceId::parse(s).unwrap(), id);
        let groups: Vec<&str> = s.split('-').collect();
        assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(groups[2].starts_with('4'));
        assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(ResourceId::generate().unwrap(), id);
    }

    #[test]
    fn resource_ids_are_case_sensitive() {
        assert_ne!(ResourceId::parse("a").unwrap(), ResourceId::parse("A").unwrap());
    }

    #[test]
    fn api_key_ids() {
        for (input, ok) in [("abc", true), ("aB-_9", true), ("", false), ("a.b", false), ("a/b", false), ("a=", false)]
        {
            assert_eq!(ApiKeyId::parse(input).is_ok(), ok, "{input:?}");
        }
        assert!(ApiKeyId::parse(&"a".repeat(65)).is_err());
        let generated = ApiKeyId::generate().unwrap();
        assert_eq!(generated.as_str().len(), 22);
        assert_eq!(ApiKeyId::parse(generated.as_str()).unwrap(), generated);
        assert_ne!(generated, ApiKeyId::generate().unwrap());
    }

    #[test]
    fn serde_refuses_invalid_strings() {
        let d: Domain = serde_json::from_str("\"app.example.com\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"app.example.com\"");
        assert!(serde_json::from_str::<Domain>("\"App\"").is_err());
        assert!(serde_json::from_str::<ResourceId>("\"a/b\"").is_err());
        assert!(serde_json::from_str::<ApiKeyId>("\"a.b\"").is_err());
    }

    #[test]
    fn identity_domain() {
        let domain = Domain::parse("d.example").unwrap();
        let device =
            Identity::Device(DeviceIdentity { domain: domain.clone(), resource: ResourceId::parse("r").unwrap() });
        assert_eq!(device.domain(), Some(&domain));
        assert_eq!(Identity::Anonymous.domain(), None);
        assert_eq!(Identity::Admin.domain(), None);
    }
}
