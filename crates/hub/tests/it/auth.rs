//! `Hub::authenticate` with every credential form, the registry's refusals, rate limiting,
//! and what authentication costs the store.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use switchyard_broker::{Authenticator, Principal};
use switchyard_hub::{AuthFailure, Hub, HubConfig, TenantSettings};
use switchyard_identity::{
    AuthError, DeviceIdentity, Domain, Identity, KeyFile, MasterKey, ResourceId, mint_token, parse_authorization,
    parse_mqtt,
};
use switchyard_storage::{MemoryStore, RegistryError, RegistryOp, RegistryStore, StorageError, Table};
use switchyard_storage_embedded::EmbeddedStore;

use crate::{TestClock, memory_hub, registry_on};

fn d(s: &str) -> Domain {
    Domain::parse(s).unwrap()
}

fn dev(domain: &str, id: &str) -> DeviceIdentity {
    DeviceIdentity { domain: d(domain), resource: ResourceId::parse(id).unwrap() }
}

const IP: &str = "192.0.2.10";

async fn mqtt(hub: &Hub, user: &str, password: &str) -> Result<Identity, AuthFailure> {
    mqtt_from(hub, IP, user, password).await
}

async fn mqtt_from(hub: &Hub, ip: &str, user: &str, password: &str) -> Result<Identity, AuthFailure> {
    let ip: IpAddr = ip.parse().unwrap();
    hub.authenticate(parse_mqtt(Some(user), Some(password.as_bytes())), Some(user), Some(ip), "test").await
}

fn refused(result: Result<Identity, AuthFailure>) -> AuthError {
    match result {
        Err(AuthFailure::Refused(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn token(domain: &str, id: &str, key: &MasterKey, iat_ms: u64, ttl_s: u64) -> String {
    let device = dev(domain, id);
    mint_token(&device, &key.derive_device_key(&device.resource), iat_ms, Duration::from_secs(ttl_s), None)
}

#[tokio::test]
async fn devices_authenticate_with_key_or_token() {
    let (hub, clock) = memory_hub(HubConfig::default());
    let p = hub.registry().create_tenant(d("a.example")).unwrap();
    let mk = &p.master_key;
    let key = mk.derive_device_key(&ResourceId::parse("s1").unwrap()).expose_base64();
    let id = mqtt(&hub, "a.example/s1", &key).await.unwrap();
    assert_eq!(id, Identity::Device(dev("a.example", "s1")));
    let now = clock.now();
    assert!(mqtt(&hub, "a.example/s1", &token("a.example", "s1", mk, now, 600)).await.is_ok());

    assert_eq!(refused(mqtt(&hub, "a.example/s2", &key).await), AuthError::BadDeviceKey);
    assert_eq!(refused(mqtt(&hub, "b.example/s1", &key).await), AuthError::UnknownTenant);
    let expired = token("a.example", "s1", mk, now - 7_200_000, 3600);
    assert!(matches!(refused(mqtt(&hub, "a.example/s1", &expired).await), AuthError::BadToken(_)));
    let future = token("a.example", "s1", mk, now + 3_600_000, 600);
    assert!(matches!(refused(mqtt(&hub, "a.example/s1", &future).await), AuthError::BadToken(_)));
    let foreign = token("a.example", "s1", &MasterKey::generate().unwrap(), now, 600);
    assert!(matches!(refused(mqtt(&hub, "a.example/s1", &foreign).await), AuthError::BadToken(_)));
    // A token of s1 presented under s2's username.
    let other = token("a.example", "s1", mk, now, 600);
    assert!(matches!(refused(mqtt(&hub, "a.example/s2", &other).await), AuthError::BadToken(_)));
    assert!(matches!(mqtt(&hub, "a.example/s1", "short").await, Err(AuthFailure::Malformed(_))));

    // HTTP Bearer: the token names its device.
    let header = format!("Bearer {}", token("a.example", "s1", mk, now, 600));
    let id = hub.authenticate(parse_authorization(&header), None, None, "http").await.unwrap();
    assert_eq!(id, Identity::Device(dev("a.example", "s1")));
}

#[tokio::test]
async fn rotation_accepts_both_keys_until_the_grace_ends() {
    let config = HubConfig { rotation_grace: Duration::from_secs(60), ..HubConfig::default() };
    let (hub, clock) = memory_hub(config);
    let p = hub.registry().create_tenant(d("a")).unwrap();
    let r = ResourceId::parse("dev").unwrap();
    let old = p.master_key.derive_device_key(&r).expose_base64();
    let (new_master, _) = hub.rotate_master_key(&d("a")).await.unwrap();
    let new = new_master.derive_device_key(&r).expose_base64();
    assert!(mqtt(&hub, "a/dev", &old).await.is_ok());
    assert!(mqtt(&hub, "a/dev", &new).await.is_ok());
    let old_token = token("a", "dev", &p.master_key, clock.now(), 3600);
    assert!(mqtt(&hub, "a/dev", &old_token).await.is_ok());
    clock.advance(60_000);
    assert_eq!(refused(mqtt(&hub, "a/dev", &old).await), AuthError::BadDeviceKey);
    assert!(matches!(refused(mqtt(&hub, "a/dev", &old_token).await), AuthError::BadToken(_)));
    assert!(mqtt(&hub, "a/dev", &new).await.is_ok());
}

#[tokio::test]
async fn applications_and_admin() {
    let (hub, _) = memory_hub(HubConfig::default());
    let reg = hub.registry();
    let a = reg.create_tenant(d("a")).unwrap();
    reg.create_tenant(d("b")).unwrap();
    let (id, secret) = (a.api_key.id.to_string(), a.api_secret.expose_base64());
    let app = mqtt(&hub, &format!("a/apikey/{id}"), &secret).await.unwrap();
    assert!(matches!(app, Identity::Application(ref x) if x.domain == d("a")));
    assert_eq!(refused(mqtt(&hub, &format!("b/apikey/{id}"), &secret).await), AuthError::WrongTenant);
    let wrong = switchyard_identity::ApiSecret::generate().unwrap().expose_base64();
    assert_eq!(refused(mqtt(&hub, &format!("a/apikey/{id}"), &wrong).await), AuthError::BadApiSecret);

    let basic = |id: &str, secret: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    };
    let via_http = hub.authenticate(parse_authorization(&basic(&id, &secret)), Some(&id), None, "http").await;
    assert_eq!(via_http.unwrap(), app);
    hub.delete_api_key(&d("a"), &a.api_key.id).await.unwrap();
    assert_eq!(refused(mqtt(&hub, &format!("a/apikey/{id}"), &secret).await), AuthError::UnknownApiKey);

    // Admin: no token before the bootstrap, then only the right one.
    let token = switchyard_identity::AdminToken::generate().unwrap().expose_base64();
    let admin = |t: &str| parse_authorization(&format!("Bearer {t}"));
    assert_eq!(refused(hub.authenticate(admin(&token), None, None, "http").await), AuthError::BadAdminToken);
    let dir = tempfile::tempdir().unwrap();
    let path = reg.bootstrap(dir.path(), &d("localhost")).unwrap().unwrap();
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let real = file["admin_token"].as_str().unwrap();
    assert_eq!(hub.authenticate(admin(real), None, None, "http").await.unwrap(), Identity::Admin);
    assert_eq!(refused(hub.authenticate(admin(&token), None, None, "http").await), AuthError::BadAdminToken);
}

#[tokio::test]
async fn registry_refusals_apply_to_every_credential_form() {
    let (hub, clock) = memory_hub(HubConfig::default());
    let reg = hub.registry();
    let p = reg.create_tenant(d("a")).unwrap();
    let r = ResourceId::parse("dev").unwrap();
    let key = p.master_key.derive_device_key(&r).expose_base64();
    let tok = token("a", "dev", &p.master_key, clock.now(), 600);
    let app_user = format!("a/apikey/{}", p.api_key.id);
    let app_secret = p.api_secret.expose_base64();

    hub.set_blocked(&d("a"), &r, true).await.unwrap();
    assert_eq!(refused(mqtt(&hub, "a/dev", &key).await), AuthError::Blocked);
    assert_eq!(refused(mqtt(&hub, "a/dev", &tok).await), AuthError::Blocked);
    let bearer = parse_authorization(&format!("Bearer {tok}"));
    assert_eq!(refused(hub.authenticate(bearer, None, None, "http").await), AuthError::Blocked);
    hub.set_blocked(&d("a"), &r, false).await.unwrap();
    assert!(mqtt(&hub, "a/dev", &key).await.is_ok());

    let settings = TenantSettings { require_registration: Some(true), ..Default::default() };
    reg.update_tenant_settings(&d("a"), &settings).unwrap();
    let other = p.master_key.derive_device_key(&ResourceId::parse("new").unwrap()).expose_base64();
    assert_eq!(refused(mqtt(&hub, "a/new", &other).await), AuthError::NotRegistered);
    reg.create_device(&d("a"), Some(ResourceId::parse("new").unwrap()), None, None).unwrap();
    assert!(mqtt(&hub, "a/new", &other).await.is_ok());
    hub.delete_device(&d("a"), &ResourceId::parse("new").unwrap()).await.unwrap();
    assert_eq!(refused(mqtt(&hub, "a/new", &other).await), AuthError::NotRegistered);

    hub.set_tenant_disabled(&d("a"), true).await.unwrap();
    assert_eq!(refused(mqtt(&hub, "a/dev", &key).await), AuthError::TenantDisabled);
    assert_eq!(refused(mqtt(&hub, &app_user, &app_secret).await), AuthError::TenantDisabled);
    hub.set_tenant_disabled(&d("a"), false).await.unwrap();
    assert!(mqtt(&hub, &app_user, &app_secret).await.is_ok());
    hub.delete_tenant(&d("a")).await.unwrap();
    assert_eq!(refused(mqtt(&hub, "a/dev", &key).await), AuthError::UnknownTenant);
}

#[tokio::test]
async fn failures_are_rate_limited_per_address_and_identity() {
    let (hub, clock) = memory_hub(HubConfig::default());
    let p = hub.registry().create_tenant(d("a")).unwrap();
    let good = p.master_key.derive_device_key(&ResourceId::parse("dev").unwrap()).expose_base64();
    let bad = MasterKey::generate().unwrap().expose_base64();
    for _ in 0..10 {
        assert!(matches!(mqtt(&hub, "a/dev", &bad).await, Err(AuthFailure::Refused(_))));
    }
    // Locked from this address: even the right key is refused, without being checked.
    assert!(matches!(mqtt(&hub, "a/dev", &good).await, Err(AuthFailure::Throttled(_))));
    let other = p.master_key.derive_device_key(&ResourceId::parse("other").unwrap()).expose_base64();
    assert!(mqtt(&hub, "a/other", &other).await.is_ok());
    clock.advance(300_000);
    assert!(mqtt(&hub, "a/dev", &good).await.is_ok());

    // Per address: 30 failures with different usernames lock the address for everyone.
    for i in 0..30 {
        let _ = mqtt_from(&hub, "198.51.100.1", &format!("a/spray{i}"), &bad).await;
    }
    assert!(matches!(mqtt_from(&hub, "198.51.100.1", "a/dev", &good).await, Err(AuthFailure::Throttled(_))));
    assert!(mqtt_from(&hub, "198.51.100.2", "a/dev", &good).await.is_ok());
}

#[tokio::test]
async fn strangers_cannot_lock_a_device_an_application_or_the_admin_out() {
    let (hub, _) = memory_hub(HubConfig::default());
    let reg = hub.registry();
    let p = reg.create_tenant(d("a")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = reg.bootstrap(dir.path(), &d("localhost")).unwrap().unwrap();
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let admin_token = file["admin_token"].as_str().unwrap().to_owned();
    let wrong = MasterKey::generate().unwrap().expose_base64();
    let device_key = p.master_key.derive_device_key(&ResourceId::parse("x").unwrap()).expose_base64();
    let app_user = format!("a/apikey/{}", p.api_key.id);
    let app_secret = p.api_secret.expose_base64();
    let (a, b) = ("203.0.113.7", "198.51.100.9");
    let admin = |t: &str| parse_authorization(&format!("Bearer {t}"));
    let http = |token: &str, ip: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        hub.authenticate(admin(token), Some("admin"), Some(ip), "http")
    };
    for _ in 0..50 {
        let _ = mqtt_from(&hub, a, "a/x", &wrong).await;
        let _ = mqtt_from(&hub, a, &app_user, &wrong).await;
        let _ = http(&wrong, a).await;
    }
    assert!(mqtt_from(&hub, b, "a/x", &device_key).await.is_ok());
    assert!(mqtt_from(&hub, b, &app_user, &app_secret).await.is_ok());
    assert_eq!(http(&admin_token, b).await.unwrap(), Identity::Admin);
    assert!(matches!(mqtt_from(&hub, a, "a/x", &device_key).await, Err(AuthFailure::Throttled(_))));
    assert!(matches!(http(&admin_token, a).await, Err(AuthFailure::Throttled(_))));

    // The peer address reaches the limiter through the MQTT authenticator too.
    let password = Bytes::from(device_key);
    let creds = |ip: &str| switchyard_broker::auth::ConnectCredentials {
        client_id: "x",
        username: Some("a/x"),
        password: Some(&password),
        peer: Some(std::net::SocketAddr::new(ip.parse().unwrap(), 1883)),
        client_cert: None,
    };
    assert_eq!(Authenticator::authenticate(&*hub, creds(a)).await.unwrap_err().0, 0x9F);
    assert!(Authenticator::authenticate(&*hub, creds("198.51.100.10")).await.is_ok());
}

/// A store that counts reads, to check that authentication reads it only when it must.
struct Counting {
    inner: MemoryStore,
    reads: AtomicUsize,
}

impl RegistryStore for Counting {
    fn get(&self, table: Table, key: &str) -> Result<Option<Bytes>, StorageError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(table, key)
    }
    fn scan(&self, t: Table, p: &str, a: Option<&str>, l: usize) -> Result<Vec<(String, Bytes)>, StorageError> {
        self.inner.scan(t, p, a, l)
    }
    fn commit(&self, ops: &[RegistryOp]) -> Result<(), RegistryError> {
        RegistryStore::commit(&self.inner, ops)
    }
}

#[tokio::test]
async fn authentication_reads_the_store_once_per_device_and_never_for_a_bad_proof() {
    let clock = TestClock::default();
    let store = Arc::new(Counting { inner: MemoryStore::default(), reads: AtomicUsize::new(0) });
    let registry = registry_on(store.clone(), KeyFile::generate().unwrap(), &clock);
    let hub = Hub::new(Arc::new(registry), HubConfig::default());
    let p = hub.registry().create_tenant(d("a")).unwrap();
    store.reads.store(0, Ordering::Relaxed);
    let bad = MasterKey::generate().unwrap().expose_base64();
    for i in 0..5 {
        let _ = mqtt(&hub, &format!("a/x{i}"), &bad).await;
    }
    assert_eq!(store.reads.load(Ordering::Relaxed), 0);
    let key = p.master_key.derive_device_key(&ResourceId::parse("dev").unwrap()).expose_base64();
    for _ in 0..5 {
        mqtt(&hub, "a/dev", &key).await.unwrap();
    }
    assert_eq!(store.reads.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn device_publishes_are_counted_and_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let stores: [Arc<dyn RegistryStore>; 2] =
        [Arc::new(MemoryStore::default()), Arc::new(EmbeddedStore::open(dir.path()).unwrap())];
    for store in stores {
        let hub = Hub::new(Arc::new(registry_on(store, KeyFile::generate().unwrap(), &clock)), HubConfig::default());
        let reg = hub.registry();
        reg.create_tenant(d("a")).unwrap();
        let id = ResourceId::parse("reg").unwrap();
        reg.create_device(&d("a"), Some(id.clone()), None, None).unwrap();
        let who = Principal::new(Identity::Device(dev("a", "reg")));
        let stranger = Principal::new(Identity::Device(dev("a", "unregistered")));
        for _ in 0..3 {
            assert!(hub.may_publish(&who, "a/resources/reg/events"));
        }
        assert!(!hub.may_publish(&who, "a/resources/other/events"));
        assert!(hub.may_publish(&stranger, "a/resources/unregistered/events"));
        // Reads merge what is pending; the flush writes registered devices only.
        assert_eq!(reg.device(&d("a"), &id).unwrap().unwrap().message_count, 3);
        assert_eq!(reg.flush_activity().unwrap(), 1);
        let row = reg.device(&d("a"), &id).unwrap().unwrap();
        assert_eq!((row.message_count, row.last_seen_ms), (3, Some(clock.now())));
        assert!(reg.device(&d("a"), &ResourceId::parse("unregistered").unwrap()).unwrap().is_none());
        assert!(hub.may_publish(&who, "a/resources/reg/events"));
        reg.flush_activity().unwrap();
        assert_eq!(reg.list_devices(&d("a"), None, 10).unwrap()[0].message_count, 4);
    }
}

#[tokio::test]
async fn a_principal_of_a_deleted_or_recreated_tenant_is_no_longer_valid() {
    use switchyard_broker::auth::ConnectCredentials;

    let (hub, clock) = memory_hub(HubConfig::default());
    let connect = |user: &'static str, password: String| {
        let hub = Arc::clone(&hub);
        async move {
            let password = Bytes::from(password);
            let creds = ConnectCredentials {
                client_id: "c",
                username: Some(user),
                password: Some(&password),
                peer: None,
                client_cert: None,
            };
            Authenticator::authenticate(&*hub, creds).await.expect("authenticated")
        }
    };
    let dev = ResourceId::parse("dev").unwrap();
    let first = hub.registry().create_tenant(d("a")).unwrap();
    let before = connect("a/dev", first.master_key.derive_device_key(&dev).expose_base64()).await;
    assert!(hub.still_valid(&before));
    hub.delete_tenant(&d("a")).await.unwrap();
    assert!(!hub.still_valid(&before), "its tenant is gone");
    clock.advance(1);
    let second = hub.registry().create_tenant(d("a")).unwrap();
    assert!(!hub.still_valid(&before), "a tenant created again under the domain is another tenant");
    let after = connect("a/dev", second.master_key.derive_device_key(&dev).expose_base64()).await;
    assert!(hub.still_valid(&after));
    hub.set_tenant_disabled(&d("a"), true).await.unwrap();
    assert!(!hub.still_valid(&after), "a disabled tenant admits no one");
}
