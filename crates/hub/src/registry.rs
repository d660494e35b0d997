//! [`Registry`]: the Device Hub's records — tenants, API keys, the admin token — with the caches
//! authentication reads. Blocking (it calls the store); async callers go through
//! [`crate::Hub`]. Devices are in [`crate::devices`].
//!
//! Tenants (with their master keys opened) and API keys are few and all held in memory, loaded
//! at [`Registry::open`]; devices are cached on demand ([`crate::cache`]). Writes are serialized
//! by one lock, committed to the store first, then applied to the caches, so the caches never
//! show what is not durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use switchyard_identity::{
    ApiKey, ApiKeyId, ApiSecret, Domain, KeyFile, MAX_MESSAGE_CACHE, MAX_RETENTION, MasterKey, Provisioned, SecretHash,
    Tenant, TenantKeys,
};
use switchyard_storage::{RegistryOp, RegistryStore, Table};

use crate::activity::Activity;
use crate::cache::DeviceCache;
use crate::records::{self, api_key_key, tenant_key, tenant_prefix};
use crate::{Clock, HubError};

/// A tenant as authentication needs it: the record and its opened master keys.
#[derive(Debug)]
pub struct TenantEntry {
    /// The record.
    pub tenant: Tenant,
    /// The master keys, decrypted.
    pub keys: TenantKeys,
}

/// Changes to a tenant's settings; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantSettings {
    /// Refuse devices without a registry row.
    pub require_registration: Option<bool>,
    /// Longest connection token lifetime.
    pub max_token_lifetime: Option<Duration>,
    /// Messages each resource's cache keeps; `Some(None)` returns to the server's default.
    pub message_cache: Option<Option<u32>>,
    /// How long data is kept after it is received; `Some(None)` keeps it as long as the
    /// server does.
    pub retention: Option<Option<Duration>>,
}

impl TenantSettings {
    /// Refuses values out of bounds: a token lifetime of 1 s to [`MAX_TOKEN_LIFETIME_CAP`], a
    /// message cache of 1 to [`MAX_MESSAGE_CACHE`], a retention of 1 s to [`MAX_RETENTION`].
    pub fn validate(&self) -> Result<(), HubError> {
        if let Some(max) = self.max_token_lifetime
            && (max.as_secs() == 0 || max > MAX_TOKEN_LIFETIME_CAP)
        {
            return Err(HubError::Invalid(format!(
                "max token lifetime must be between 1 s and {} s",
                MAX_TOKEN_LIFETIME_CAP.as_secs()
            )));
        }
        if let Some(Some(keep)) = self.message_cache
            && !(1..=MAX_MESSAGE_CACHE).contains(&keep)
        {
            return Err(HubError::Invalid(format!("message cache must be between 1 and {MAX_MESSAGE_CACHE}")));
        }
        if let Some(Some(retention)) = self.retention
            && (retention.as_secs() == 0 || retention > MAX_RETENTION)
        {
            return Err(HubError::Invalid(format!("retention must be between 1 s and {} s", MAX_RETENTION.as_secs())));
        }
        Ok(())
    }
}

/// Longest token lifetime a tenant may allow.
pub const MAX_TOKEN_LIFETIME_CAP: Duration = Duration::from_secs(366 * 24 * 3600);

/// See the module docs.
pub struct Registry {
    pub(crate) store: Arc<dyn RegistryStore>,
    pub(crate) key_file: KeyFile,
    pub(crate) clock: Clock,
    writer: Mutex<()>,
    tenants: RwLock<HashMap<Domain, Arc<TenantEntry>>>,
    api_keys: RwLock<HashMap<ApiKeyId, ApiKey>>,
    admin: RwLock<Option<SecretHash>>,
    pub(crate) devices: DeviceCache,
    pub(crate) activity: Activity,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// Loads tenants (opening each one's master keys with `key_file`), API keys and the admin
    /// token hash. Fails if a master key does not open: the key file is not this data's.
    pub fn open(
        store: Arc<dyn RegistryStore>,
        key_file: KeyFile,
        clock: Clock,
        device_cache: usize,
    ) -> Result<Registry, HubError> {
        let mut tenants = HashMap::new();
        for tenant in records::load_all::<Tenant>(&*store, Table::Tenants, "tenant")? {
            let keys = tenant
                .open_keys(&key_file)
                .map_err(|source| HubError::Sealed { domain: tenant.domain.to_string(), source })?;
            tenants.insert(tenant.domain.clone(), Arc::new(TenantEntry { tenant, keys }));
        }
        let api_keys = records::load_all::<ApiKey>(&*store, Table::ApiKeys, "api key")?
            .into_iter()
            .map(|k| (k.id.clone(), k))
            .collect();
        let admin = records::get(&*store, Table::Meta, "admin token", records::ADMIN_TOKEN)?;
        Ok(Registry {
            store,
            key_file,
            clock,
            writer: Mutex::new(()),
            tenants: RwLock::new(tenants),
            api_keys: RwLock::new(api_keys),
            admin: RwLock::new(admin),
            devices: DeviceCache::new(device_cache),
            activity: Activity::default(),
        })
    }

    pub(crate) fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// Serializes writes (read-modify-write of records).
    pub(crate) fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn commit(&self, what: &'static str, ops: &[RegistryOp]) -> Result<(), HubError> {
        self.store.commit(ops).map_err(|e| HubError::from_commit(what, e))
    }

    // ----- tenants -----

    /// The tenant, from memory.
    pub fn tenant(&self, domain: &Domain) -> Option<Arc<TenantEntry>> {
        read(&self.tenants).get(domain).cloned()
    }

    /// Every tenant record, sorted by domain.
    pub fn tenants(&self) -> Vec<Tenant> {
        let mut all: Vec<Tenant> = read(&self.tenants).values().map(|e| e.tenant.clone()).collect();
        all.sort_by(|a, b| a.domain.cmp(&b.domain));
        all
    }

    /// Creates a tenant with a fresh master key and first API key (shown once, by the caller).
    pub fn create_tenant(&self, domain: Domain) -> Result<Provisioned, HubError> {
        let _w = self.writer();
        let p = Tenant::provision(domain, &self.key_file, self.now_ms())?;
        let ops = [
            RegistryOp::Create {
                table: Table::Tenants,
                key: tenant_key(&p.tenant.domain),
                value: records::encode(&p.tenant),
            },
            records::create_api_key(&p.api_key),
        ];
        self.commit("tenant", &ops)?;
        self.cache_tenant(p.tenant.clone(), TenantKeys::new(p.master_key.clone()));
        write(&self.api_keys).insert(p.api_key.id.clone(), p.api_key.clone());
        Ok(p)
    }

    fn cache_tenant(&self, tenant: Tenant, keys: TenantKeys) {
        write(&self.tenants).insert(tenant.domain.clone(), Arc::new(TenantEntry { tenant, keys }));
    }

    /// Applies `change` to a copy of the tenant's record, stores it, and caches it.
    fn update_tenant(
        &self,
        domain: &Domain,
        change: impl FnOnce(&mut Tenant, &TenantKeys) -> Result<TenantKeys, HubError>,
    ) -> Result<Tenant, HubError> {
        let _w = self.writer();
        let entry = self.tenant(domain).ok_or(HubError::NotFound("tenant"))?;
        let mut tenant = entry.tenant.clone();
        let keys = change(&mut tenant, &entry.keys)?;
        self.commit("tenant", &[records::put_tenant(&tenant)])?;
        self.cache_tenant(tenant.clone(), keys);
        Ok(tenant)
    }

    /// Disables or enables a tenant. A disabled tenant's credentials are all refused.
    pub fn set_tenant_disabled(&self, domain: &Domain, disabled: bool) -> Result<Tenant, HubError> {
        self.update_tenant(domain, |t, keys| {
            t.disabled = disabled;
            Ok(keys.clone())
        })
    }

    /// Changes a tenant's settings.
    pub fn update_tenant_settings(&self, domain: &Domain, settings: &TenantSettings) -> Result<Tenant, HubError> {
        settings.validate()?;
        self.update_tenant(domain, |t, keys| {
            if let Some(r) = settings.require_registration {
                t.require_registration = r;
            }
            if let Some(max) = settings.max_token_lifetime {
                t.max_token_lifetime = max;
            }
            if let Some(keep) = settings.message_cache {
                t.message_cache = keep;
            }
            if let Some(retention) = settings.retention {
                t.retention_secs = retention.map(|r| r.as_secs());
            }
            Ok(keys.clone())
        })
    }

    /// Rotates the tenant's master key: returns the new key (to show once) and when the previous
    /// one retires, epoch ms.
    pub fn rotate_master_key(&self, domain: &Domain, grace: Duration) -> Result<(MasterKey, u64), HubError> {
        let now = self.now_ms();
        let mut new_key = None;
        let tenant = self.update_tenant(domain, |t, _| {
            let key = t
                .rotate_master_key(&self.key_file, now, grace)
                .map_err(|e| HubError::from_rotate(domain.as_str(), e))?;
            new_key = Some(key);
            t.open_keys(&self.key_file).map_err(|source| HubError::Sealed { domain: domain.to_string(), source })
        })?;
        let retires = tenant.keys.previous.as_ref().map_or(now, |p| p.retire_at_ms);
        Ok((new_key.expect("set by the update"), retires))
    }

    /// Deletes a tenant with all its devices and API keys.
    pub fn delete_tenant(&self, domain: &Domain) -> Result<(), HubError> {
        let _w = self.writer();
        if self.tenant(domain).is_none() {
            return Err(HubError::NotFound("tenant"));
        }
        let prefix = tenant_prefix(domain);
        let ops = [
            RegistryOp::Delete { table: Table::Tenants, key: tenant_key(domain) },
            RegistryOp::DeletePrefix { table: Table::Devices, prefix: prefix.clone() },
            RegistryOp::DeletePrefix { table: Table::ApiKeys, prefix },
        ];
        self.commit("tenant", &ops)?;
        write(&self.tenants).remove(domain);
        write(&self.api_keys).retain(|_, k| &k.domain != domain);
        self.devices.forget_domain(domain);
        self.activity.forget_domain(domain);
        Ok(())
    }

    // ----- API keys -----

    /// The API key with this id, from memory.
    pub fn api_key(&self, id: &ApiKeyId) -> Option<ApiKey> {
        read(&self.api_keys).get(id).cloned()
    }

    /// The tenant's API keys, oldest first.
    pub fn api_keys(&self, domain: &Domain) -> Vec<ApiKey> {
        let mut keys: Vec<ApiKey> = read(&self.api_keys).values().filter(|k| &k.domain == domain).cloned().collect();
        keys.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        keys
    }

    /// Creates an API key for the tenant; the secret is returned to show once.
    pub fn create_api_key(&self, domain: &Domain) -> Result<(ApiKey, ApiSecret), HubError> {
        let _w = self.writer();
        if self.tenant(domain).is_none() {
            return Err(HubError::NotFound("tenant"));
        }
        let (key, secret) = ApiKey::generate(domain.clone(), self.now_ms())?;
        self.commit("api key", &[records::create_api_key(&key)])?;
        write(&self.api_keys).insert(key.id.clone(), key.clone());
        Ok((key, secret))
    }

    /// Deletes one of the tenant's API keys.
    pub fn delete_api_key(&self, domain: &Domain, id: &ApiKeyId) -> Result<(), HubError> {
        let _w = self.writer();
        match self.api_key(id) {
            Some(k) if &k.domain == domain => {}
            _ => return Err(HubError::NotFound("api key")),
        }
        let op = RegistryOp::Delete { table: Table::ApiKeys, key: api_key_key(domain, id) };
        self.commit("api key", &[op])?;
        write(&self.api_keys).remove(id);
        Ok(())
    }

    // ----- admin token -----

    /// The admin token's hash, if one was created.
    pub fn admin_token_hash(&self) -> Option<SecretHash> {
        read(&self.admin).clone()
    }

    /// Stores the admin token's hash, with other ops of the same first-start batch.
    pub(crate) fn set_admin_token(&self, hash: SecretHash, mut with: Vec<RegistryOp>) -> Result<(), HubError> {
        with.push(records::put_admin_token(&hash));
        self.commit("admin token", &with)?;
        *write(&self.admin) = Some(hash);
        Ok(())
    }

    /// Caches a tenant provisioned by a first-start batch (after its commit).
    pub(crate) fn cache_provisioned(&self, p: &Provisioned) {
        self.cache_tenant(p.tenant.clone(), TenantKeys::new(p.master_key.clone()));
        write(&self.api_keys).insert(p.api_key.id.clone(), p.api_key.clone());
    }
}
