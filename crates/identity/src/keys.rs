//! Device key derivation (SPEC §2.2) and a tenant's master-key set with rotation.
//!
//! `device_key = base64url_nopad(HMAC-SHA256(key = master_key_bytes,
//! msg = "switchyard/device/v1:" || resource_id))`. Published test vectors live in
//! `docs/device-keys.md` and in this module's tests.
//!
//! A tenant has a current master key and, after a rotation, the previous one until its
//! `retire_at_ms`; device keys and tokens derived from either are accepted until then. Every
//! candidate is always checked, in constant time, so timing does not tell which key matched.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::ids::{Domain, ResourceId};
use crate::keyfile::{KeyFile, SealError, SealedKey};
use crate::secret::{DeviceKey, EntropyError, MasterKey};

/// The derivation's domain-separation prefix.
pub const DEVICE_KEY_CONTEXT: &str = "switchyard/device/v1:";

/// How long the previous master key stays valid after a rotation, by default.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

impl MasterKey {
    /// The device key of `resource` under this master key (SPEC §2.2).
    pub fn derive_device_key(&self, resource: &ResourceId) -> DeviceKey {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.bytes()).expect("HMAC accepts any key length");
        mac.update(DEVICE_KEY_CONTEXT.as_bytes());
        mac.update(resource.as_str().as_bytes());
        DeviceKey::from_bytes(mac.finalize().into_bytes().into())
    }
}

/// The previous master key of a tenant, valid until `retire_at_ms`.
#[derive(Debug, Clone)]
pub struct PreviousKey {
    /// The key.
    pub key: MasterKey,
    /// Epoch milliseconds from which it is no longer accepted.
    pub retire_at_ms: u64,
}

/// A tenant's master keys: the current one and, during a rotation's grace period, the previous.
#[derive(Debug, Clone)]
pub struct TenantKeys {
    /// The key new device keys are derived from.
    pub current: MasterKey,
    /// The key being retired, if a rotation is in its grace period.
    pub previous: Option<PreviousKey>,
}

impl TenantKeys {
    /// A key set with no previous key.
    pub fn new(current: MasterKey) -> Self {
        Self { current, previous: None }
    }

    /// Makes `new` current; the current key becomes the previous one, retired at
    /// `now_ms + grace`. A still-active previous key is dropped (devices still on it stop
    /// verifying), so rotating twice within a grace period cuts the oldest key short.
    pub fn rotate(self, new: MasterKey, now_ms: u64, grace: Duration) -> Self {
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        Self {
            current: new,
            previous: Some(PreviousKey { key: self.current, retire_at_ms: now_ms.saturating_add(grace_ms) }),
        }
    }

    /// The device keys of `resource` that are valid at `now_ms`: the current key's first, then
    /// the previous key's while it is not retired.
    pub fn device_keys(&self, resource: &ResourceId, now_ms: u64) -> Vec<DeviceKey> {
        let mut keys = vec![self.current.derive_device_key(resource)];
        if let Some(previous) = &self.previous
            && now_ms < previous.retire_at_ms
        {
            keys.push(previous.key.derive_device_key(resource));
        }
        keys
    }

    /// Whether `presented` is a valid device key of `resource` at `now_ms`. Every candidate is
    /// compared in constant time, without an early exit.
    pub fn verify_device_key(&self, resource: &ResourceId, presented: &DeviceKey, now_ms: u64) -> bool {
        let matched = self
            .device_keys(resource, now_ms)
            .iter()
            .fold(Choice::from(0), |acc, candidate| acc | candidate.bytes().ct_eq(presented.bytes()));
        matched.into()
    }

    /// Encrypts the set for storage in the tenant's record.
    pub fn seal(&self, domain: &Domain, key_file: &KeyFile) -> Result<SealedTenantKeys, EntropyError> {
        Ok(SealedTenantKeys {
            current: key_file.seal(domain, &self.current)?,
            previous: match &self.previous {
                Some(p) => Some(SealedPrevious { key: key_file.seal(domain, &p.key)?, retire_at_ms: p.retire_at_ms }),
                None => None,
            },
        })
    }
}

/// [`TenantKeys`] as stored: each master key sealed by the server's [`KeyFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedTenantKeys {
    /// The current master key.
    pub current: SealedKey,
    /// The previous master key and when it retires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<SealedPrevious>,
}

/// A sealed previous master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPrevious {
    /// The sealed key.
    pub key: SealedKey,
    /// Epoch milliseconds from which it is no longer accepted.
    pub retire_at_ms: u64,
}

impl SealedTenantKeys {
    /// Decrypts the set.
    pub fn open(&self, domain: &Domain, key_file: &KeyFile) -> Result<TenantKeys, SealError> {
        Ok(TenantKeys {
            current: key_file.open(domain, &self.current)?,
            previous: match &self.previous {
                Some(p) => Some(PreviousKey { key: key_file.open(domain, &p.key)?, retire_at_ms: p.retire_at_ms }),
                None => None,
            },
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// (master key, resource id, device key), computed independently with Python's `hmac`:
    /// `base64.urlsafe_b64encode(hmac.new(mk, b"switchyard/device/v1:" + rid.encode(),
    /// hashlib.sha256).digest()).rstrip(b"=")`. The same table is in `docs/device-keys.md`.
    pub(crate) const VECTORS: &[(&str, &str, &str)] = &[
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "sensor-1", "XtBWHrV7Y9FsY6DRL_lJMK3WhOUZZfh_TmjoAymFxz0"),
        ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "a:b.c-d_e", "uOrxQTU7LF0EQximQsdB7dacINECpNLAF0OYY_AQr9o"),
        ("SMKT2Fw1wvnBmREt-Ns7ZVx4JSBrUxJBXY_hYZRGLKU", "Device.42", "X35AGMHR9iR3vHoA7FPngjZSUlroTvW8Cy1ZBmCrf1M"),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "a", "sa9XpojhB4SvDz3SiGjjrGwI6kboxmtwpGgNp-xEwSc"),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "A", "r86-h5C2kucfiyWBaWbgw4zBBEpGj_pMOemh1ayCndE"),
    ];

    /// Master key = bytes 0..32, resource id = 128 × `x`.
    const LONG_ID_KEY: &str = "V4Bgz9L90TnQpEcFfajFbZNIbkJZk7m4mz0M7JfJ5VQ";

    #[test]
    fn derivation_matches_published_vectors() {
        for (master, resource, expected) in VECTORS {
            let master = MasterKey::from_base64(master).unwrap();
            let key = master.derive_device_key(&ResourceId::parse(resource).unwrap());
            assert_eq!(key.expose_base64(), *expected, "{resource}");
        }
        let master = MasterKey::from_base64(VECTORS[1].0).unwrap();
        let long = ResourceId::parse(&"x".repeat(128)).unwrap();
        assert_eq!(master.derive_device_key(&long).expose_base64(), LONG_ID_KEY);
    }

    fn rid(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    #[test]
    fn rotation_accepts_both_keys_until_retired() {
        let old = MasterKey::generate().unwrap();
        let new = MasterKey::generate().unwrap();
        let r = rid("dev-1");
        let old_device_key = old.derive_device_key(&r);
        let new_device_key = new.derive_device_key(&r);

        let keys = TenantKeys::new(old.clone());
        assert!(keys.verify_device_key(&r, &old_device_key, 0));
        assert!(!keys.verify_device_key(&r, &new_device_key, 0));

        let rotated = keys.rotate(new, 1_000, Duration::from_secs(10));
        let retire = rotated.previous.as_ref().unwrap().retire_at_ms;
        assert_eq!(retire, 11_000);
        for (now, old_ok) in [(1_000, true), (10_999, true), (11_000, false), (u64::MAX, false)] {
            assert!(rotated.verify_device_key(&r, &new_device_key, now), "{now}");
            assert_eq!(rotated.verify_device_key(&r, &old_device_key, now), old_ok, "{now}");
        }
        assert_eq!(rotated.device_keys(&r, 1_000).len(), 2);
        assert_eq!(rotated.device_keys(&r, 11_000).len(), 1);
        // Another resource's key never verifies.
        assert!(!rotated.verify_device_key(&rid("dev-2"), &new_device_key, 1_000));
    }

    #[test]
    fn rotating_twice_drops_the_oldest() {
        let first = MasterKey::generate().unwrap();
        let r = rid("d");
        let first_key = first.derive_device_key(&r);
        let keys = TenantKeys::new(first).rotate(MasterKey::generate().unwrap(), 0, DEFAULT_ROTATION_GRACE).rotate(
            MasterKey::generate().unwrap(),
            1,
            DEFAULT_ROTATION_GRACE,
        );
        assert!(!keys.verify_device_key(&r, &first_key, 2));
        assert_eq!(keys.previous.unwrap().retire_at_ms, 1 + 30 * 24 * 3600 * 1000);
    }

    #[test]
    fn sealed_set_round_trip() {
        let kf = KeyFile::generate().unwrap();
        let d = Domain::parse("app.example.com").unwrap();
        let keys = TenantKeys::new(MasterKey::generate().unwrap()).rotate(
            MasterKey::generate().unwrap(),
            5,
            Duration::from_secs(1),
        );
        let sealed = keys.seal(&d, &kf).unwrap();
        let json = serde_json::to_string(&sealed).unwrap();
        let opened = serde_json::from_str::<SealedTenantKeys>(&json).unwrap().open(&d, &kf).unwrap();
        assert_eq!(opened.current.bytes(), keys.current.bytes());
        let (a, b) = (opened.previous.unwrap(), keys.previous.unwrap());
        assert_eq!(a.key.bytes(), b.key.bytes());
        assert_eq!(a.retire_at_ms, 1_005);

        let single = TenantKeys::new(MasterKey::generate().unwrap()).seal(&d, &kf).unwrap();
        assert!(!serde_json::to_string(&single).unwrap().contains("previous"));
        assert!(single.open(&d, &kf).unwrap().previous.is_none());
    }
}
