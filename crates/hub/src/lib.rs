//! The Device Hub (SPEC §2): tenants, devices and API keys, persisted through the
//! [`RegistryStore`](switchyard_storage::RegistryStore) trait, cached for per-connection
//! authentication, and the MQTT [`Authenticator`](switchyard_broker::Authenticator).
//!
//! The decisions themselves (key derivation, token checks, who may use which topic) are the
//! identity crate's; this crate does the lookups, the caching, the rate limiting, the counting
//! and the logging around them, and closes live connections when a credential is revoked.
//!
//! - [`Registry`] (blocking): the records and their caches — `registry` (tenants, API keys,
//!   admin token), `devices`, `bootstrap` (first start), `records` (store layout), `cache`
//!   (device status), `activity` (last seen, message counts).
//! - [`Hub`] (async): the registry behind `spawn_blocking`, revocations that close live
//!   connections through [`Broker::kick`](switchyard_broker::Broker::kick), authentication for
//!   every protocol (`auth`), devices authenticated by a TLS client certificate (`cert`) and
//!   the MQTT authenticator (`mqtt`).

mod activity;
mod auth;
mod bootstrap;
mod cache;
mod cert;
mod devices;
mod error;
mod mqtt;
mod records;
mod registry;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use switchyard_broker::{AnonymousAuth, Broker, Namespace, owner_key};
use switchyard_identity::{
    ApiKeyId, AppIdentity, AuthLimiter, DEFAULT_ROTATION_GRACE, Device, DeviceIdentity, Domain, Identity,
    LimiterConfig, MasterKey, ResourceId,
};
use tokio_util::sync::CancellationToken;

pub use activity::MAX_PENDING;
pub use auth::AuthFailure;
pub use bootstrap::{INITIAL_CREDENTIALS, tenant_credentials};
pub use cache::DEFAULT_DEVICE_CACHE;
pub use devices::{DevicePatch, IssuedToken, MAX_METADATA_LEN, MAX_NAME_LEN, MAX_PAGE};
pub use error::HubError;
pub use registry::{MAX_TOKEN_LIFETIME_CAP, Registry, TenantEntry, TenantSettings};

/// The time source: epoch milliseconds. Tests pass a controllable one.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(switchyard_broker::now_ms)
}

/// A revoked device's connections are closed at once and again after this long, to catch a
/// connection that authenticated just before the change and reached the core just after.
const KICK_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// Settings of the [`Hub`].
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// How long a previous master key stays valid after a rotation (*default* 30 days).
    pub rotation_grace: Duration,
    /// Failed-authentication limits.
    pub limiter: LimiterConfig,
    /// Clients without a tenant username: admitted to the anonymous namespace when
    /// `allow_anonymous`, minus its deny rules.
    pub anonymous: AnonymousAuth,
    /// How often pending last-seen times and message counts are written (*default* 10 s).
    pub flush_every: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            rotation_grace: DEFAULT_ROTATION_GRACE,
            limiter: LimiterConfig::default(),
            anonymous: AnonymousAuth::default(),
            flush_every: Duration::from_secs(10),
        }
    }
}

/// The Device Hub service; see the crate docs. Shared as `Arc<Hub>` by the broker (as its
/// authenticator), the HTTP API and the activity flusher.
pub struct Hub {
    registry: Arc<Registry>,
    config: HubConfig,
    limiter: Mutex<AuthLimiter>,
    broker: OnceLock<Broker>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub over `registry`.
    pub fn new(registry: Arc<Registry>, config: HubConfig) -> Arc<Hub> {
        Arc::new(Hub {
            limiter: Mutex::new(AuthLimiter::new(config.limiter)),
            registry,
            config,
            broker: OnceLock::new(),
        })
    }

    /// The registry (blocking calls).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Gives the hub the broker whose connections it closes on revocation. The broker is
    /// started with the hub as its authenticator, so this comes after; until then (and in the
    /// offline CLI) revocations only change the registry.
    pub fn attach(&self, broker: Broker) {
        if self.broker.set(broker).is_err() {
            tracing::warn!("device hub already attached to a broker");
        }
    }

    /// Runs a blocking registry call off the async runtime.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, HubError>
    where
        T: Send + 'static,
        F: FnOnce(&Registry) -> Result<T, HubError> + Send + 'static,
    {
        let registry = Arc::clone(&self.registry);
        tokio::task::spawn_blocking(move || f(&registry)).await.map_err(|e| HubError::Task(e.to_string()))?
    }

    /// Closes the live connections of `owner` in `namespace` (everyone there if `None`), now
    /// and again after [`KICK_AGAIN_AFTER`].
    async fn kick(&self, namespace: Namespace, owner: Option<Arc<str>>) {
        let Some(broker) = self.broker.get() else {
            return;
        };
        if broker.kick(namespace.clone(), owner.clone()).await.is_err() {
            return;
        }
        let broker = broker.clone();
        tokio::spawn(async move {
            tokio::time::sleep(KICK_AGAIN_AFTER).await;
            let _ = broker.kick(namespace, owner).await;
        });
    }

    async fn kick_device(&self, domain: &Domain, id: &ResourceId) {
        let identity = Identity::Device(DeviceIdentity { domain: domain.clone(), resource: id.clone() });
        self.kick(Namespace::tenant(domain), Some(owner_key(&identity))).await;
    }

    /// Blocks or unblocks a device; blocking closes its live connections.
    pub async fn set_blocked(&self, domain: &Domain, id: &ResourceId, blocked: bool) -> Result<Device, HubError> {
        let (d, i) = (domain.clone(), id.clone());
        let device = self.blocking(move |r| r.set_blocked(&d, &i, blocked)).await?;
        if blocked {
            tracing::info!(domain = %domain, resource = %id, "device blocked");
            self.kick_device(domain, id).await;
        } else {
            tracing::info!(domain = %domain, resource = %id, "device unblocked");
        }
        Ok(device)
    }

    /// Deletes a device's row; when its tenant requires registration, that revokes it, so its
    /// live connections are closed.
    pub async fn delete_device(&self, domain: &Domain, id: &ResourceId) -> Result<(), HubError> {
        let (d, i) = (domain.clone(), id.clone());
        self.blocking(move |r| r.delete_device(&d, &i)).await?;
        let required = self.registry.tenant(domain).is_some_and(|e| e.tenant.require_registration);
        if required {
            self.kick_device(domain, id).await;
        }
        Ok(())
    }

    /// Deletes an API key and closes the connections that authenticated with it.
    pub async fn delete_api_key(&self, domain: &Domain, id: &ApiKeyId) -> Result<(), HubError> {
        let (d, i) = (domain.clone(), id.clone());
        self.blocking(move |r| r.delete_api_key(&d, &i)).await?;
        tracing::info!(domain = %domain, api_key = %id, "api key deleted");
        let identity = Identity::Application(AppIdentity { domain: domain.clone(), api_key_id: id.clone() });
        self.kick(Namespace::tenant(domain), Some(owner_key(&identity))).await;
        Ok(())
    }

    /// Disables or enables a tenant; disabling closes every connection of the tenant.
    pub async fn set_tenant_disabled(
        &self,
        domain: &Domain,
        disabled: bool,
    ) -> Result<switchyard_identity::Tenant, HubError> {
        let d = domain.clone();
        let tenant = self.blocking(move |r| r.set_tenant_disabled(&d, disabled)).await?;
        tracing::info!(domain = %domain, disabled, "tenant updated");
        if disabled {
            self.kick(Namespace::tenant(domain), None).await;
        }
        Ok(tenant)
    }

    /// Deletes a tenant, then everything the broker keeps for it: its connections are closed
    /// and its sessions, subscriptions, queued and retained messages deleted, durably, before
    /// this returns, so a tenant created again under the domain inherits nothing. A client that
    /// authenticated just before the deletion and reaches the core just after is refused there
    /// ([`Authenticator::still_valid`](switchyard_broker::Authenticator::still_valid): its
    /// tenant is gone, or is another incarnation).
    pub async fn delete_tenant(&self, domain: &Domain) -> Result<(), HubError> {
        let d = domain.clone();
        self.blocking(move |r| r.delete_tenant(&d)).await?;
        tracing::info!(domain = %domain, "tenant deleted");
        let Some(broker) = self.broker.get() else {
            return Ok(());
        };
        broker.drop_namespace(Namespace::tenant(domain)).await.map_err(|_| HubError::Broker)
    }

    /// Rotates a tenant's master key with the configured grace period: the new key (show it
    /// once) and when the previous one retires, epoch ms.
    pub async fn rotate_master_key(&self, domain: &Domain) -> Result<(MasterKey, u64), HubError> {
        let (d, grace) = (domain.clone(), self.config.rotation_grace);
        let rotated = self.blocking(move |r| r.rotate_master_key(&d, grace)).await?;
        tracing::info!(domain = %domain, previous_retires_ms = rotated.1, "master key rotated");
        Ok(rotated)
    }

    /// Writes pending device activity every `flush_every` until `shutdown`, then once more.
    pub async fn run_flusher(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.config.flush_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stop = tokio::select! {
                () = shutdown.cancelled() => true,
                _ = every.tick() => false,
            };
            match self.blocking(Registry::flush_activity).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(devices = n, "device activity written"),
                Err(e) => tracing::warn!(error = %e, "writing device activity failed; will retry"),
            }
            if stop {
                return;
            }
        }
    }
}
