//! The registry's operations, run on the memory store and on the embedded (redb) store, and what
//! survives a restart.

use std::sync::Arc;
use std::time::Duration;

use switchyard_hub::{DevicePatch, HubError, INITIAL_CREDENTIALS, Registry, TenantSettings};
use switchyard_identity::{AdminToken, ApiSecret, Domain, KeyFile, MasterKey, ResourceId};
use switchyard_storage::{MemoryStore, RegistryStore};
use switchyard_storage_embedded::EmbeddedStore;

use crate::{TestClock, registry_on};

fn d(s: &str) -> Domain {
    Domain::parse(s).unwrap()
}

fn r(s: &str) -> ResourceId {
    ResourceId::parse(s).unwrap()
}

/// Runs `check` on a registry over each store kind.
fn on_both(check: impl Fn(&Registry, &TestClock)) {
    let clock = TestClock::default();
    check(&registry_on(Arc::new(MemoryStore::default()), KeyFile::generate().unwrap(), &clock), &clock);
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    check(&registry_on(Arc::new(store), KeyFile::generate().unwrap(), &clock), &clock);
}

#[test]
fn tenants_create_list_disable_delete() {
    on_both(|reg, _| {
        let p = reg.create_tenant(d("a.example")).unwrap();
        reg.create_tenant(d("b.example")).unwrap();
        assert!(matches!(reg.create_tenant(d("a.example")), Err(HubError::Conflict("tenant"))));
        let domains: Vec<_> = reg.tenants().into_iter().map(|t| t.domain.to_string()).collect();
        assert_eq!(domains, ["a.example", "b.example"]);
        assert_eq!(reg.api_key(&p.api_key.id).unwrap().domain, d("a.example"));

        assert!(reg.set_tenant_disabled(&d("a.example"), true).unwrap().disabled);
        assert!(reg.tenant(&d("a.example")).unwrap().tenant.disabled);
        assert!(!reg.set_tenant_disabled(&d("a.example"), false).unwrap().disabled);

        reg.create_device(&d("a.example"), Some(r("dev")), None, None).unwrap();
        reg.delete_tenant(&d("a.example")).unwrap();
        assert!(reg.tenant(&d("a.example")).is_none());
        assert!(reg.api_key(&p.api_key.id).is_none());
        assert!(matches!(reg.delete_tenant(&d("a.example")), Err(HubError::NotFound("tenant"))));
        // Re-created, it starts empty.
        reg.create_tenant(d("a.example")).unwrap();
        assert!(reg.list_devices(&d("a.example"), None, 10).unwrap().is_empty());
        assert_eq!(reg.api_keys(&d("a.example")).len(), 1);
    });
}

#[test]
fn tenant_settings_are_checked() {
    on_both(|reg, _| {
        reg.create_tenant(d("a")).unwrap();
        let s = TenantSettings {
            require_registration: Some(true),
            max_token_lifetime: Some(Duration::from_secs(60)),
            message_cache: Some(Some(7)),
            retention: Some(Some(Duration::from_secs(3600))),
        };
        let t = reg.update_tenant_settings(&d("a"), &s).unwrap();
        assert!(t.require_registration);
        assert_eq!(t.max_token_lifetime, Duration::from_secs(60));
        assert_eq!((t.message_cache, t.retention_secs), (Some(7), Some(3600)));
        // None keeps a setting; Some(None) returns to the server's default.
        let t = reg.update_tenant_settings(&d("a"), &TenantSettings::default()).unwrap();
        assert_eq!((t.message_cache, t.retention_secs), (Some(7), Some(3600)));
        let s = TenantSettings { message_cache: Some(None), retention: Some(None), ..Default::default() };
        let t = reg.update_tenant_settings(&d("a"), &s).unwrap();
        assert_eq!((t.message_cache, t.retention_secs), (None, None));
        for bad in [Duration::ZERO, Duration::from_secs(400 * 24 * 3600)] {
            let s = TenantSettings { max_token_lifetime: Some(bad), ..Default::default() };
            assert!(matches!(reg.update_tenant_settings(&d("a"), &s), Err(HubError::Invalid(_))));
        }
        for bad in [
            TenantSettings { message_cache: Some(Some(0)), ..Default::default() },
            TenantSettings { message_cache: Some(Some(100_001)), ..Default::default() },
            TenantSettings { retention: Some(Some(Duration::ZERO)), ..Default::default() },
            TenantSettings { retention: Some(Some(Duration::from_secs(101 * 365 * 86_400))), ..Default::default() },
        ] {
            assert!(matches!(reg.update_tenant_settings(&d("a"), &bad), Err(HubError::Invalid(_))), "{bad:?}");
        }
        assert!(matches!(
            reg.update_tenant_settings(&d("zz"), &TenantSettings::default()),
            Err(HubError::NotFound("tenant"))
        ));
    });
}

#[test]
fn devices_create_page_patch_block_delete() {
    on_both(|reg, _| {
        let dom = d("a.example");
        let p = reg.create_tenant(dom.clone()).unwrap();
        let (dev, key) = reg.create_device(&dom, Some(r("a:b.c-d_e")), Some("first".into()), None).unwrap();
        assert_eq!(key.expose_base64(), p.master_key.derive_device_key(&r("a:b.c-d_e")).expose_base64());
        assert_eq!(dev.name.as_deref(), Some("first"));
        assert!(matches!(reg.create_device(&dom, Some(r("a:b.c-d_e")), None, None), Err(HubError::Conflict("device"))));
        let (generated, _) = reg.create_device(&dom, None, None, None).unwrap();
        assert_eq!(generated.resource.as_str().len(), 36);
        for i in 0..25 {
            reg.create_device(&dom, Some(r(&format!("dev-{i:02}"))), None, None).unwrap();
        }
        // Paging visits every device once, in id order.
        let mut seen = Vec::new();
        let mut after: Option<ResourceId> = None;
        loop {
            let page = reg.list_devices(&dom, after.as_ref(), 10).unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.resource.clone());
            seen.extend(page.into_iter().map(|d| d.resource.to_string()));
        }
        assert_eq!(seen.len(), 27);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));

        let patched = reg
            .patch_device(
                &dom,
                &r("dev-01"),
                DevicePatch { name: Some(Some("n".into())), metadata: Some(serde_json::json!({"floor": 3})) },
            )
            .unwrap();
        assert_eq!(patched.metadata["floor"], 3);
        let cleared = reg.patch_device(&dom, &r("dev-01"), DevicePatch { name: Some(None), metadata: None }).unwrap();
        assert_eq!((cleared.name, cleared.metadata["floor"].as_i64()), (None, Some(3)));
        for bad in [
            DevicePatch { metadata: Some(serde_json::json!([1])), ..Default::default() },
            DevicePatch { name: Some(Some("x".repeat(300))), ..Default::default() },
            DevicePatch { name: Some(Some("a\nb".into())), ..Default::default() },
        ] {
            assert!(matches!(reg.patch_device(&dom, &r("dev-01"), bad), Err(HubError::Invalid(_))));
        }
        assert!(matches!(
            reg.patch_device(&dom, &r("nope"), DevicePatch::default()),
            Err(HubError::NotFound("device"))
        ));

        assert!(reg.set_blocked(&dom, &r("dev-02"), true).unwrap().blocked);
        // Blocking an unregistered device registers it, blocked; unblocking one is NotFound.
        assert!(reg.set_blocked(&dom, &r("never-seen"), true).unwrap().blocked);
        assert!(matches!(reg.set_blocked(&dom, &r("ghost"), false), Err(HubError::NotFound("device"))));
        assert!(!reg.set_blocked(&dom, &r("never-seen"), false).unwrap().blocked);

        reg.delete_device(&dom, &r("dev-03")).unwrap();
        assert!(reg.device(&dom, &r("dev-03")).unwrap().is_none());
        assert!(matches!(reg.delete_device(&dom, &r("dev-03")), Err(HubError::NotFound("device"))));
        assert!(matches!(reg.list_devices(&d("other"), None, 10), Err(HubError::NotFound("tenant"))));
    });
}

#[test]
fn tenants_do_not_see_each_others_devices() {
    on_both(|reg, _| {
        reg.create_tenant(d("a")).unwrap();
        reg.create_tenant(d("a.b")).unwrap();
        reg.create_device(&d("a.b"), Some(r("x")), None, None).unwrap();
        assert!(reg.list_devices(&d("a"), None, 10).unwrap().is_empty());
        assert!(reg.device(&d("a"), &r("x")).unwrap().is_none());
        assert_eq!(reg.list_devices(&d("a.b"), None, 10).unwrap().len(), 1);
    });
}

#[test]
fn api_keys_create_list_delete() {
    on_both(|reg, _| {
        let p = reg.create_tenant(d("a")).unwrap();
        reg.create_tenant(d("b")).unwrap();
        let (key, secret) = reg.create_api_key(&d("a")).unwrap();
        assert!(secret.matches(&key.secret_hash));
        let ids: Vec<_> = reg.api_keys(&d("a")).into_iter().map(|k| k.id).collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&p.api_key.id) && ids.contains(&key.id));
        // Another tenant cannot delete it.
        assert!(matches!(reg.delete_api_key(&d("b"), &key.id), Err(HubError::NotFound("api key"))));
        reg.delete_api_key(&d("a"), &key.id).unwrap();
        assert!(reg.api_key(&key.id).is_none());
        assert!(matches!(reg.create_api_key(&d("zz")), Err(HubError::NotFound("tenant"))));
    });
}

#[test]
fn tokens_respect_the_tenant_policy_and_the_registry() {
    on_both(|reg, clock| {
        let dom = d("a");
        reg.create_tenant(dom.clone()).unwrap();
        let t = reg.issue_token(&dom, &r("dev"), Duration::from_secs(3600)).unwrap();
        assert_eq!(t.expires_ms, (clock.now() / 1000 + 3600) * 1000);
        assert!(matches!(reg.issue_token(&dom, &r("dev"), Duration::from_secs(90_000)), Err(HubError::Invalid(_))));
        assert!(matches!(reg.issue_token(&dom, &r("dev"), Duration::ZERO), Err(HubError::Invalid(_))));
        reg.set_blocked(&dom, &r("dev"), true).unwrap();
        assert!(matches!(reg.issue_token(&dom, &r("dev"), Duration::from_secs(60)), Err(HubError::Forbidden(_))));
        let s = TenantSettings { require_registration: Some(true), ..Default::default() };
        reg.update_tenant_settings(&dom, &s).unwrap();
        assert!(matches!(reg.issue_token(&dom, &r("other"), Duration::from_secs(60)), Err(HubError::NotFound(_))));
    });
}

#[test]
fn rotation_keeps_the_previous_key_for_the_grace_period() {
    on_both(|reg, clock| {
        let dom = d("a");
        let p = reg.create_tenant(dom.clone()).unwrap();
        let (new, retires) = reg.rotate_master_key(&dom, Duration::from_secs(60)).unwrap();
        assert_eq!(retires, clock.now() + 60_000);
        let entry = reg.tenant(&dom).unwrap();
        let dev = r("d1");
        let now = clock.now();
        assert!(entry.keys.verify_device_key(&dev, &p.master_key.derive_device_key(&dev), now));
        assert!(entry.keys.verify_device_key(&dev, &new.derive_device_key(&dev), now));
        assert!(!entry.keys.verify_device_key(&dev, &p.master_key.derive_device_key(&dev), retires));
        assert_eq!(reg.device_key(&dom, &dev).unwrap().expose_base64(), new.derive_device_key(&dev).expose_base64());
    });
}

#[test]
fn everything_survives_a_restart_and_needs_its_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("switchyard.key");
    let data = dir.path().join("data");
    let clock = TestClock::default();
    let open = || -> Arc<dyn RegistryStore> { Arc::new(EmbeddedStore::open(&data).unwrap()) };
    let (master, api_key, secret);
    {
        let reg = registry_on(open(), KeyFile::load_or_create(&key_path).unwrap(), &clock);
        let p = reg.create_tenant(d("a")).unwrap();
        reg.rotate_master_key(&d("a"), Duration::from_secs(3600)).unwrap();
        master = reg.tenant(&d("a")).unwrap().keys.current.expose_base64();
        let (k, s) = reg.create_api_key(&d("a")).unwrap();
        (api_key, secret) = (k.id, s);
        reg.create_device(&d("a"), Some(r("dev")), None, None).unwrap();
        reg.set_blocked(&d("a"), &r("dev"), true).unwrap();
        drop(p);
    }
    let reg = registry_on(open(), KeyFile::load_or_create(&key_path).unwrap(), &clock);
    let entry = reg.tenant(&d("a")).unwrap();
    assert_eq!(entry.keys.current.expose_base64(), master);
    assert!(entry.keys.previous.is_some());
    assert!(secret.matches(&reg.api_key(&api_key).unwrap().secret_hash));
    assert!(reg.device(&d("a"), &r("dev")).unwrap().unwrap().blocked);
    drop(reg);

    // Another key file cannot open the master keys: the server refuses to start.
    let err = Registry::open(open(), KeyFile::generate().unwrap(), clock.clock(), 10).unwrap_err();
    assert!(matches!(err, HubError::Sealed { .. }), "{err}");
}

#[test]
fn bootstrap_writes_the_credentials_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let store: Arc<dyn RegistryStore> = Arc::new(MemoryStore::default());
    let reg = registry_on(Arc::clone(&store), KeyFile::generate().unwrap(), &clock);
    let path = reg.bootstrap(dir.path(), &d("localhost")).unwrap().unwrap();
    assert_eq!(path, dir.path().join(INITIAL_CREDENTIALS));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<_> = file.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["admin_token", "tenant"]);
    let tenant = &file["tenant"];
    let mut fields: Vec<_> = tenant.as_object().unwrap().keys().cloned().collect();
    fields.sort();
    assert_eq!(fields, ["api_key", "api_secret", "domain", "master_key"]);
    assert_eq!(tenant["domain"], "localhost");

    // Only hashes are stored: the admin token and the API secret match, the store holds neither.
    let admin = AdminToken::from_base64(file["admin_token"].as_str().unwrap()).unwrap();
    assert!(admin.matches(&reg.admin_token_hash().unwrap()));
    let secret = ApiSecret::from_base64(tenant["api_secret"].as_str().unwrap()).unwrap();
    let key_id = switchyard_identity::ApiKeyId::parse(tenant["api_key"].as_str().unwrap()).unwrap();
    assert!(secret.matches(&reg.api_key(&key_id).unwrap().secret_hash));
    let master = MasterKey::from_base64(tenant["master_key"].as_str().unwrap()).unwrap();
    assert_eq!(reg.tenant(&d("localhost")).unwrap().keys.current.expose_base64(), master.expose_base64());
    let mut dump = String::new();
    for table in switchyard_storage::Table::ALL {
        for (k, v) in store.scan(table, "", None, usize::MAX).unwrap() {
            dump.push_str(&format!("{k}={}\n", String::from_utf8_lossy(&v)));
        }
    }
    for secret in [&file["admin_token"], &tenant["api_secret"], &tenant["master_key"]] {
        assert!(!dump.contains(secret.as_str().unwrap()), "a secret is stored in the clear");
    }

    // A second start does nothing, and neither does one after the tenant was deleted.
    assert_eq!(reg.bootstrap(dir.path(), &d("localhost")).unwrap(), None);
    reg.delete_tenant(&d("localhost")).unwrap();
    assert_eq!(reg.bootstrap(dir.path(), &d("localhost")).unwrap(), None);
    assert!(reg.tenants().is_empty());
}

#[test]
fn bootstrap_keeps_a_tenant_created_offline() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let reg = registry_on(Arc::new(MemoryStore::default()), KeyFile::generate().unwrap(), &clock);
    reg.create_tenant(d("localhost")).unwrap();
    let path = reg.bootstrap(dir.path(), &d("localhost")).unwrap().unwrap();
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(file.get("tenant").is_none());
    assert!(file["admin_token"].is_string());
    assert_eq!(reg.tenants().len(), 1);
}
