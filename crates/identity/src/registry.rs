//! Registry records: [`Tenant`], [`Device`], [`ApiKey`]. Plain serde data for the storage
//! crates to persist; secrets appear only sealed ([`SealedTenantKeys`]) or hashed
//! ([`SecretHash`]). The constructors that mint secrets return them beside the record, once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, Domain, ResourceId};
use crate::keyfile::{KeyFile, SealError};
use crate::keys::{SealedTenantKeys, TenantKeys};
use crate::secret::{ApiSecret, EntropyError, MasterKey, SecretHash};
use crate::token::TokenPolicy;

/// Largest message cache per resource a tenant or the server may set: the cache is per
/// resource, so this times the number of resources is what a store holds.
pub const MAX_MESSAGE_CACHE: u32 = 100_000;

/// Longest retention (and `ttl`): 100 years of 365 days. Anything longer is a mistake, and the
/// bound keeps `now + retention` far from overflow.
pub const MAX_RETENTION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// The tenant's name and key.
    pub domain: Domain,
    /// Creation time, epoch milliseconds.
    pub created_ms: u64,
    /// A disabled tenant's credentials are all refused.
    #[serde(default)]
    pub disabled: bool,
    /// Only devices with a registry row may connect.
    #[serde(default)]
    pub require_registration: bool,
    /// Longest allowed token lifetime (stored as whole seconds, `max_token_lifetime_s`).
    #[serde(rename = "max_token_lifetime_s", with = "duration_secs", default = "default_max_lifetime")]
    pub max_token_lifetime: Duration,
    /// Messages each resource's cache keeps; `None`: the server's `[pipeline] message_cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_cache: Option<u32>,
    /// How long the tenant's data is kept after it is received, in whole seconds; `None`: as
    /// long as the server keeps it (`[pipeline] retention`, or forever).
    #[serde(default, rename = "retention_s", skip_serializing_if = "Option::is_none")]
    pub retention_secs: Option<u64>,
    /// The master keys, sealed by the server's key file.
    pub keys: SealedTenantKeys,
}

fn default_max_lifetime() -> Duration {
    TokenPolicy::DEFAULT_MAX_LIFETIME
}

mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// A new tenant and the secrets to show its creator once (SPEC §2.1, §7).
#[derive(Debug)]
pub struct Provisioned {
    /// The record to store.
    pub tenant: Tenant,
    /// The first API key's record to store.
    pub api_key: ApiKey,
    /// The master key, to show once.
    pub master_key: MasterKey,
    /// The first API key's secret, to show once.
    pub api_secret: ApiSecret,
}

/// Rotating a tenant's master key failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The stored keys do not open with this key file.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// No randomness for the new key.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
}

impl Tenant {
    /// Creates a tenant with a fresh master key and a first API key, with default settings.
    pub fn provision(domain: Domain, key_file: &KeyFile, now_ms: u64) -> Result<Provisioned, EntropyError> {
        let master_key = MasterKey::generate()?;
        let keys = TenantKeys::new(master_key.clone()).seal(&domain, key_file)?;
        let (api_key, api_secret) = ApiKey::generate(domain.clone(), now_ms)?;
        Ok(Provisioned {
            tenant: Tenant {
                domain,
                created_ms: now_ms,
                disabled: false,
                require_registration: false,
                max_token_lifetime: TokenPolicy::DEFAULT_MAX_LIFETIME,
                message_cache: None,
                retention_secs: None,
                keys,
            },
            api_key,
            master_key,
            api_secret,
        })
    }

    /// The token policy of this tenant (its maximum lifetime, the default leeway).
    pub fn token_policy(&self) -> TokenPolicy {
        TokenPolicy::with_max_lifetime(self.max_token_lifetime)
    }

    /// Opens the master keys.
    pub fn open_keys(&self, key_file: &KeyFile) -> Result<TenantKeys, SealError> {
        self.keys.open(&self.domain, key_file)
    }

    /// Rotates the master key (see [`TenantKeys::rotate`]) and returns the new one to show
    /// once. The caller stores the updated record.
    pub fn rotate_master_key(
        &mut self,
        key_file: &KeyFile,
        now_ms: u64,
        grace: Duration,
    ) -> Result<MasterKey, RotateError> {
        let new = MasterKey::generate()?;
        let keys = self.open_keys(key_file)?.rotate(new.clone(), now_ms, grace);
        self.keys = keys.seal(&self.domain, key_file)?;
        Ok(new)
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A registered device (registration is optional unless the tenant requires it, SPEC §2.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The resource id.
    pub resource: ResourceId,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-form JSON metadata (an object by default).
    #[serde(default = "empty_object")]
    pub metadata: serde_json::Value,
    /// Registration time, epoch milliseconds.
    pub created_ms: u64,
    /// Last successful connection or message, epoch milliseconds.
    #[serde(default)]
    pub last_seen_ms: Option<u64>,
    /// Messages received from it.
    #[serde(default)]
    pub message_count: u64,
    /// A blocked device is refused with every credential form.
    #[serde(default)]
    pub blocked: bool,
}

impl Device {
    /// A fresh record with no name, empty metadata, never seen.
    pub fn new(resource: ResourceId, now_ms: u64) -> Self {
        Self {
            resource,
            name: None,
            metadata: empty_object(),
            created_ms: now_ms,
            last_seen_ms: None,
            message_count: 0,
            blocked: false,
        }
    }
}

/// An application credential of a tenant. The key id is globally unique, so HTTP `Basic`
/// (which names no domain) finds the record, and with it the tenant, by id alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The public key id.
    pub id: ApiKeyId,
    /// The tenant it belongs to.
    pub domain: Domain,
    /// The hash of the secret.
    pub secret_hash: SecretHash,
    /// Creation time, epoch milliseconds.
    pub created_ms: u64,
}

impl ApiKey {
    /// A new key for `domain`; the secret is returned to be shown once.
    pub fn generate(domain: Domain, now_ms: u64) -> Result<(Self, ApiSecret), EntropyError> {
        let secret = ApiSecret::generate()?;
        let key = Self { id: ApiKeyId::generate()?, domain, secret_hash: secret.hash(), created_ms: now_ms };
        Ok((key, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DEFAULT_ROTATION_GRACE;

    #[test]
    fn provision_rotate_and_round_trip() {
        let kf = KeyFile::generate().unwrap();
        let domain = Domain::parse("app.example.com").unwrap();
        let p = Tenant::provision(domain.clone(), &kf, 1_000).unwrap();
        assert_eq!(p.tenant.domain, domain);
        assert_eq!(p.api_key.domain, domain);
        assert!(p.api_secret.matches(&p.api_key.secret_hash));
        assert_eq!(p.tenant.token_policy(), TokenPolicy::default());
        let keys = p.tenant.open_keys(&kf).unwrap();
        assert_eq!(keys.current.bytes(), p.master_key.bytes());

        // Serialized records hold no secret.
        let json = serde_json::to_string(&(&p.tenant, &p.api_key)).unwrap();
        assert!(!json.contains(&p.master_key.expose_base64()));
        assert!(!json.contains(&p.api_secret.expose_base64()));
        assert!(json.contains("\"max_token_lifetime_s\":86400"));
        let (tenant, api_key): (Tenant, ApiKey) = serde_json::from_str(&json).unwrap();
        assert_eq!(tenant, p.tenant);
        assert_eq!(api_key, p.api_key);

        let mut rotated = tenant;
        let new = rotated.rotate_master_key(&kf, 2_000, DEFAULT_ROTATION_GRACE).unwrap();
        let keys = rotated.open_keys(&kf).unwrap();
        assert_eq!(keys.current.bytes(), new.bytes());
        assert_eq!(keys.previous.unwrap().key.bytes(), p.master_key.bytes());

        let other = KeyFile::generate().unwrap();
        assert!(matches!(
            rotated.rotate_master_key(&other, 3_000, DEFAULT_ROTATION_GRACE),
            Err(RotateError::Seal(SealError::Auth))
        ));
    }

    #[test]
    fn records_deserialize_with_defaults() {
        let kf = KeyFile::generate().unwrap();
        let domain = Domain::parse("a.b").unwrap();
        let keys = TenantKeys::new(MasterKey::generate().unwrap()).seal(&domain, &kf).unwrap();
        let json = serde_json::json!({"domain": "a.b", "created_ms": 5, "keys": keys});
        let tenant: Tenant = serde_json::from_value(json).unwrap();
        assert!(!tenant.disabled && !tenant.require_registration);
        assert_eq!(tenant.max_token_lifetime, TokenPolicy::DEFAULT_MAX_LIFETIME);

        let device: Device = serde_json::from_value(serde_json::json!({"resource": "d1", "created_ms": 7})).unwrap();
        assert_eq!(device, Device::new(ResourceId::parse("d1").unwrap(), 7));
        assert_eq!(
            serde_json::to_value(&device).unwrap(),
            serde_json::json!({"resource": "d1", "metadata": {}, "created_ms": 7,
                "last_seen_ms": null, "message_count": 0, "blocked": false})
        );
        assert!(serde_json::from_value::<Device>(serde_json::json!({"resource": "a/b", "created_ms": 1})).is_err());
    }

    #[test]
    fn api_keys_are_unique() {
        let d = Domain::parse("a.b").unwrap();
        let (a, secret_a) = ApiKey::generate(d.clone(), 0).unwrap();
        let (b, _) = ApiKey::generate(d, 0).unwrap();
        assert_ne!(a.id, b.id);
        assert!(!secret_a.matches(&b.secret_hash));
    }
}
