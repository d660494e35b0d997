//! Device records of the [`Registry`]: create, list, read, patch, delete, block, and the status
//! lookup authentication uses ([`Registry::device_status`], cached).
//!
//! Registration is optional (SPEC §2.4): a device whose key verifies may connect without a row
//! unless its tenant requires registration. Blocking a device that has no row creates one, so a
//! derived-key device can be blocked before it was ever registered.

use std::time::Duration;

use switchyard_identity::{Device, DeviceIdentity, DeviceKey, DeviceToken, Domain, ResourceId, mint_token};
use switchyard_storage::{RegistryOp, Table};

use crate::cache::Status;
use crate::records::{self, device_key, tenant_prefix};
use crate::{HubError, Registry};

/// Longest device name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Largest metadata accepted, serialized as JSON, in bytes.
pub const MAX_METADATA_LEN: usize = 16 * 1024;
/// Most devices one list call returns.
pub const MAX_PAGE: usize = 1000;

/// Changes to a device; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct DevicePatch {
    /// `Some(None)` removes the name.
    pub name: Option<Option<String>>,
    /// Replaces the metadata (a JSON object).
    pub metadata: Option<serde_json::Value>,
}

/// A token the hub minted: the token and its `exp` in epoch ms.
#[derive(Debug)]
pub struct IssuedToken {
    /// The compact JWT (a bearer credential: show it to the caller only).
    pub token: String,
    /// When it expires, epoch milliseconds.
    pub expires_ms: u64,
}

fn check_name(name: &Option<String>) -> Result<(), HubError> {
    match name {
        Some(n) if n.len() > MAX_NAME_LEN || n.chars().any(char::is_control) => {
            Err(HubError::Invalid(format!("name must be at most {MAX_NAME_LEN} bytes without control characters")))
        }
        _ => Ok(()),
    }
}

fn check_metadata(metadata: &serde_json::Value) -> Result<(), HubError> {
    if !metadata.is_object() {
        return Err(HubError::Invalid("metadata must be a JSON object".into()));
    }
    if serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len()) > MAX_METADATA_LEN {
        return Err(HubError::Invalid(format!("metadata must be at most {MAX_METADATA_LEN} bytes of JSON")));
    }
    Ok(())
}

impl Registry {
    fn require_tenant(&self, domain: &Domain) -> Result<(), HubError> {
        self.tenant(domain).map(|_| ()).ok_or(HubError::NotFound("tenant"))
    }

    fn read_device(&self, domain: &Domain, id: &ResourceId) -> Result<Option<Device>, HubError> {
        records::get(&*self.store, Table::Devices, "device", &device_key(domain, id))
    }

    fn with_pending(&self, domain: &Domain, mut device: Device) -> Device {
        let who = DeviceIdentity { domain: domain.clone(), resource: device.resource.clone() };
        if let Some(p) = self.activity.peek(&who) {
            p.apply_to(&mut device);
        }
        device
    }

    fn store_device(&self, domain: &Domain, device: &Device) -> Result<(), HubError> {
        self.commit("device", &[records::put_device(domain, device)])?;
        self.devices
            .set(&DeviceIdentity { domain: domain.clone(), resource: device.resource.clone() }, Some(device.blocked));
        Ok(())
    }

    /// The device key of `id` under the tenant's current master key.
    pub fn device_key(&self, domain: &Domain, id: &ResourceId) -> Result<DeviceKey, HubError> {
        let entry = self.tenant(domain).ok_or(HubError::NotFound("tenant"))?;
        Ok(entry.keys.current.derive_device_key(id))
    }

    /// Registers a device (a fresh UUID when `id` is `None`) and returns its row and key.
    pub fn create_device(
        &self,
        domain: &Domain,
        id: Option<ResourceId>,
        name: Option<String>,
        metadata: Option<serde_json::Value>,
    ) -> Result<(Device, DeviceKey), HubError> {
        check_name(&name)?;
        if let Some(m) = &metadata {
            check_metadata(m)?;
        }
        let _w = self.writer();
        let id = match id {
            Some(id) => id,
            None => ResourceId::generate()?,
        };
        let key = self.device_key(domain, &id)?;
        let mut device = Device::new(id, self.now_ms());
        device.name = name;
        if let Some(m) = metadata {
            device.metadata = m;
        }
        let op = RegistryOp::Create {
            table: Table::Devices,
            key: device_key(domain, &device.resource),
            value: records::encode(&device),
        };
        self.commit("device", &[op])?;
        self.devices.set(&DeviceIdentity { domain: domain.clone(), resource: device.resource.clone() }, Some(false));
        Ok((device, key))
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) devices after `after`, in resource id byte order.
    pub fn list_devices(
        &self,
        domain: &Domain,
        after: Option<&ResourceId>,
        limit: usize,
    ) -> Result<Vec<Device>, HubError> {
        self.require_tenant(domain)?;
        let after = after.map(|id| device_key(domain, id));
        let page = self.store.scan(Table::Devices, &tenant_prefix(domain), after.as_deref(), limit.min(MAX_PAGE))?;
        page.iter()
            .map(|(key, bytes)| {
                let device: Device = records::decode("device", key, bytes)?;
                Ok(self.with_pending(domain, device))
            })
            .collect()
    }

    /// One device's row, with pending activity merged.
    pub fn device(&self, domain: &Domain, id: &ResourceId) -> Result<Option<Device>, HubError> {
        self.require_tenant(domain)?;
        Ok(self.read_device(domain, id)?.map(|d| self.with_pending(domain, d)))
    }

    /// Changes a device's name or metadata.
    pub fn patch_device(&self, domain: &Domain, id: &ResourceId, patch: DevicePatch) -> Result<Device, HubError> {
        if let Some(name) = &patch.name {
            check_name(name)?;
        }
        if let Some(m) = &patch.metadata {
            check_metadata(m)?;
        }
        self.require_tenant(domain)?;
        let _w = self.writer();
        let mut device = self.read_device(domain, id)?.ok_or(HubError::NotFound("device"))?;
        if let Some(name) = patch.name {
            device.name = name;
        }
        if let Some(m) = patch.metadata {
            device.metadata = m;
        }
        self.store_device(domain, &device)?;
        Ok(self.with_pending(domain, device))
    }

    /// Deletes a device's row.
    pub fn delete_device(&self, domain: &Domain, id: &ResourceId) -> Result<(), HubError> {
        self.require_tenant(domain)?;
        let _w = self.writer();
        if self.read_device(domain, id)?.is_none() {
            return Err(HubError::NotFound("device"));
        }
        let op = RegistryOp::Delete { table: Table::Devices, key: device_key(domain, id) };
        self.commit("device", &[op])?;
        let who = DeviceIdentity { domain: domain.clone(), resource: id.clone() };
        self.devices.set(&who, None);
        self.activity.forget(&who);
        Ok(())
    }

    /// Blocks or unblocks a device. Blocking a device without a row registers it, blocked;
    /// unblocking one without a row is `NotFound`.
    pub fn set_blocked(&self, domain: &Domain, id: &ResourceId, blocked: bool) -> Result<Device, HubError> {
        self.require_tenant(domain)?;
        let _w = self.writer();
        let mut device = match self.read_device(domain, id)? {
            Some(d) => d,
            None if blocked => Device::new(id.clone(), self.now_ms()),
            None => return Err(HubError::NotFound("device")),
        };
        device.blocked = blocked;
        self.store_device(domain, &device)?;
        Ok(self.with_pending(domain, device))
    }

    /// Mints a connection token for the device, valid for `ttl` (at most the tenant's maximum
    /// token lifetime). Refused for a blocked device, and for an unregistered one when the
    /// tenant requires registration.
    pub fn issue_token(&self, domain: &Domain, id: &ResourceId, ttl: Duration) -> Result<IssuedToken, HubError> {
        let entry = self.tenant(domain).ok_or(HubError::NotFound("tenant"))?;
        let max = entry.tenant.max_token_lifetime;
        if ttl.as_secs() == 0 || ttl > max {
            return Err(HubError::Invalid(format!(
                "ttl must be between 1 s and the tenant's maximum token lifetime, {} s",
                max.as_secs()
            )));
        }
        match self.read_device(domain, id)? {
            Some(d) if d.blocked => return Err(HubError::Forbidden("device is blocked")),
            None if entry.tenant.require_registration => {
                return Err(HubError::NotFound("device"));
            }
            _ => {}
        }
        let device = DeviceIdentity { domain: domain.clone(), resource: id.clone() };
        let key = entry.keys.current.derive_device_key(id);
        let token = mint_token(&device, &key, self.now_ms(), ttl, None);
        let expires_ms = DeviceToken::parse(&token)
            .map(|t| t.expires_ms())
            .map_err(|e| HubError::Invalid(format!("minted token does not parse: {e}")))?;
        Ok(IssuedToken { token, expires_ms })
    }

    /// Whether the device has a row and whether it is blocked, from the cache or the store.
    pub(crate) fn device_status(&self, device: &DeviceIdentity) -> Result<Status, HubError> {
        match self.devices.lookup(device) {
            Ok(status) => Ok(status),
            Err(miss) => {
                let status = self.read_device(&device.domain, &device.resource)?.map(|d| d.blocked);
                self.devices.fill(device, status, miss);
                Ok(status)
            }
        }
    }

    /// Whether the status is cached (authentication then needs no blocking call).
    pub(crate) fn cached_status(&self, device: &DeviceIdentity) -> Option<Status> {
        self.devices.lookup(device).ok()
    }

    /// Writes pending last-seen times and message counts of registered devices in one batch;
    /// returns how many rows were updated. On failure the activity is kept for the next try.
    pub fn flush_activity(&self) -> Result<usize, HubError> {
        let pending = self.activity.take();
        if pending.is_empty() {
            return Ok(0);
        }
        let _w = self.writer();
        let mut ops = Vec::new();
        let mut read_all = || -> Result<(), HubError> {
            for (who, activity) in &pending {
                if let Some(mut device) = self.read_device(&who.domain, &who.resource)? {
                    activity.apply_to(&mut device);
                    ops.push(records::put_device(&who.domain, &device));
                }
            }
            Ok(())
        };
        let result = read_all().and_then(|()| self.commit("device", &ops));
        match result {
            Ok(()) => Ok(ops.len()),
            Err(e) => {
                self.activity.restore(pending);
                Err(e)
            }
        }
    }
}
