//! How registry records are laid out in the [`RegistryStore`]: keys and JSON values.
//!
//! - `tenants`: `{domain}` → [`Tenant`];
//! - `devices`: `{domain}/{resource id}` → [`Device`];
//! - `apikeys`: `{domain}/{key id}` → [`ApiKey`];
//! - `meta`: `admin_token` → the admin token's [`SecretHash`].
//!
//! Neither a domain, a resource id nor a key id can contain `/`, so `{domain}/` selects exactly
//! one tenant's rows (`a/` is not a prefix of `a.b/…`), and a tenant's devices list in resource
//! id byte order. Values are the identity crate's serde records: secrets appear only sealed or
//! hashed.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_identity::{ApiKey, ApiKeyId, Device, Domain, ResourceId, SecretHash, Tenant};
use switchyard_storage::{RegistryOp, RegistryStore, Table};

use crate::HubError;

/// The `meta` key of the admin token's hash.
pub(crate) const ADMIN_TOKEN: &str = "admin_token";

/// How many records one scan reads when loading a whole table.
const LOAD_PAGE: usize = 1000;

pub(crate) fn tenant_key(domain: &Domain) -> String {
    domain.as_str().to_owned()
}

pub(crate) fn tenant_prefix(domain: &Domain) -> String {
    format!("{domain}/")
}

pub(crate) fn device_key(domain: &Domain, resource: &ResourceId) -> String {
    format!("{domain}/{resource}")
}

pub(crate) fn api_key_key(domain: &Domain, id: &ApiKeyId) -> String {
    format!("{domain}/{id}")
}

pub(crate) fn encode<T: Serialize>(record: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(record).expect("registry records serialize"))
}

pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, key: &str, bytes: &[u8]) -> Result<T, HubError> {
    serde_json::from_slice(bytes).map_err(|e| HubError::Corrupt { what, key: key.to_owned(), detail: e.to_string() })
}

/// Reads one record.
pub(crate) fn get<T: DeserializeOwned>(
    store: &dyn RegistryStore,
    table: Table,
    what: &'static str,
    key: &str,
) -> Result<Option<T>, HubError> {
    match store.get(table, key)? {
        Some(bytes) => decode(what, key, &bytes).map(Some),
        None => Ok(None),
    }
}

/// Reads every record of a table, page by page.
pub(crate) fn load_all<T: DeserializeOwned>(
    store: &dyn RegistryStore,
    table: Table,
    what: &'static str,
) -> Result<Vec<T>, HubError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.scan(table, "", after.as_deref(), LOAD_PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(out);
        };
        after = Some(last.clone());
        for (key, bytes) in &page {
            out.push(decode(what, key, bytes)?);
        }
    }
}

pub(crate) fn put_tenant(tenant: &Tenant) -> RegistryOp {
    RegistryOp::Put { table: Table::Tenants, key: tenant_key(&tenant.domain), value: encode(tenant) }
}

pub(crate) fn put_device(domain: &Domain, device: &Device) -> RegistryOp {
    RegistryOp::Put { table: Table::Devices, key: device_key(domain, &device.resource), value: encode(device) }
}

pub(crate) fn create_api_key(key: &ApiKey) -> RegistryOp {
    RegistryOp::Create { table: Table::ApiKeys, key: api_key_key(&key.domain, &key.id), value: encode(key) }
}

pub(crate) fn put_admin_token(hash: &SecretHash) -> RegistryOp {
    RegistryOp::Put { table: Table::Meta, key: ADMIN_TOKEN.to_owned(), value: encode(hash) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_tenants_apart() {
        let a = Domain::parse("a").unwrap();
        let ab = Domain::parse("a.b").unwrap();
        let r = ResourceId::parse("x").unwrap();
        assert_eq!(device_key(&a, &r), "a/x");
        assert!(device_key(&a, &r).starts_with(&tenant_prefix(&a)));
        assert!(!device_key(&ab, &r).starts_with(&tenant_prefix(&a)));
        let id = ApiKeyId::parse("k").unwrap();
        assert_eq!(api_key_key(&ab, &id), "a.b/k");
    }

    #[test]
    fn corrupt_records_are_named() {
        let err = decode::<Device>("device", "a/x", b"{not json").unwrap_err();
        assert!(err.to_string().contains("device record \"a/x\""), "{err}");
    }
}
