//! Tests of authentication decisions over every credential form and registry state.

use std::time::Duration;

use super::*;
use crate::credentials::{Credentials, parse_authorization, parse_mqtt};
use crate::ids::{Domain, ResourceId};
use crate::keyfile::KeyFile;
use crate::keys::DEFAULT_ROTATION_GRACE;
use crate::registry::Provisioned;
use crate::secret::MasterKey;
use crate::token::mint_token;

const NOW: u64 = 1_700_000_000_000;

struct Fixture {
    p: Provisioned,
    keys: TenantKeys,
    device: DeviceIdentity,
    device_key: DeviceKey,
}

fn fixture() -> Fixture {
    let kf = KeyFile::generate().unwrap();
    let domain = Domain::parse("app.example.com").unwrap();
    let p = Tenant::provision(domain.clone(), &kf, NOW).unwrap();
    let keys = p.tenant.open_keys(&kf).unwrap();
    let device = DeviceIdentity { domain, resource: ResourceId::parse("dev-1").unwrap() };
    let device_key = p.master_key.derive_device_key(&device.resource);
    Fixture { p, keys, device, device_key }
}

/// Parses MQTT credentials and authenticates them as the broker would.
fn mqtt(f: &Fixture, tenant: &Tenant, row: Option<&Device>, user: &str, pw: &str) -> Result<Identity, AuthError> {
    match parse_mqtt(Some(user), Some(pw.as_bytes())).unwrap() {
        Credentials::Device { device, proof } => authenticate_device(tenant, &f.keys, row, &device, &proof, NOW),
        Credentials::ApiKey { domain, secret, .. } => authenticate_app(tenant, &f.p.api_key, domain.as_ref(), &secret),
        other => panic!("{other:?}"),
    }
}

#[test]
fn device_key_and_token_table() {
    let f = fixture();
    let key = f.device_key.expose_base64();
    let token = mint_token(&f.device, &f.device_key, NOW, Duration::from_secs(600), None);
    let other_key = MasterKey::generate().unwrap().derive_device_key(&f.device.resource).expose_base64();
    let other_dev_key = f.p.master_key.derive_device_key(&ResourceId::parse("dev-2").unwrap()).expose_base64();
    let token_for_dev2 = mint_token(
        &DeviceIdentity { domain: f.device.domain.clone(), resource: ResourceId::parse("dev-2").unwrap() },
        &f.device_key,
        NOW,
        Duration::from_secs(600),
        None,
    );
    let mut disabled = f.p.tenant.clone();
    disabled.disabled = true;
    let mut strict = f.p.tenant.clone();
    strict.require_registration = true;
    let row = Device::new(f.device.resource.clone(), NOW);
    let mut blocked = row.clone();
    blocked.blocked = true;
    let other_tenant =
        Tenant::provision(Domain::parse("other.example.com").unwrap(), &KeyFile::generate().unwrap(), NOW)
            .unwrap()
            .tenant;

    let user = "app.example.com/dev-1";
    let t = &f.p.tenant;
    type Case<'a> = (&'a str, &'a Tenant, Option<&'a Device>, &'a str, Result<(), AuthError>);
    let cases: Vec<Case> = vec![
        ("key", t, None, &key, Ok(())),
        ("token", t, None, &token, Ok(())),
        ("key of other master", t, None, &other_key, Err(AuthError::BadDeviceKey)),
        ("key of other device", t, None, &other_dev_key, Err(AuthError::BadDeviceKey)),
        ("token naming another device", t, None, &token_for_dev2, Err(AuthError::BadToken(TokenError::WrongSubject))),
        ("disabled tenant", &disabled, None, &key, Err(AuthError::TenantDisabled)),
        ("disabled, bad key", &disabled, None, &other_key, Err(AuthError::BadDeviceKey)),
        ("unregistered, required", &strict, None, &key, Err(AuthError::NotRegistered)),
        ("registered, required", &strict, Some(&row), &token, Ok(())),
        ("blocked, key", t, Some(&blocked), &key, Err(AuthError::Blocked)),
        ("blocked, token", t, Some(&blocked), &token, Err(AuthError::Blocked)),
        ("other tenant's record", &other_tenant, None, &key, Err(AuthError::WrongTenant)),
    ];
    for (name, tenant, row, pw, want) in cases {
        let got = mqtt(&f, tenant, row, user, pw).map(|_| ());
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn rotated_master_key_grace() {
    let f = fixture();
    let old_key = f.device_key.expose_base64();
    let rotated = f.keys.clone().rotate(MasterKey::generate().unwrap(), NOW, DEFAULT_ROTATION_GRACE);
    let g = Fixture { keys: rotated, ..f };
    let user = "app.example.com/dev-1";
    assert!(mqtt(&g, &g.p.tenant, None, user, &old_key).is_ok());
    let retired = NOW + 30 * 24 * 3600 * 1000;
    let dev = g.device.clone();
    let Credentials::Device { proof, .. } = parse_mqtt(Some(user), Some(old_key.as_bytes())).unwrap() else { panic!() };
    assert_eq!(authenticate_device(&g.p.tenant, &g.keys, None, &dev, &proof, retired), Err(AuthError::BadDeviceKey));
}

#[test]
fn bearer_tokens() {
    let f = fixture();
    let token = mint_token(&f.device, &f.device_key, NOW, Duration::from_secs(60), None);
    let Credentials::Bearer(parsed) = parse_authorization(&format!("Bearer {token}")).unwrap() else { panic!() };
    assert_eq!(authenticate_bearer(&f.p.tenant, &f.keys, None, &parsed, NOW), Ok(Identity::Device(f.device.clone())));
    assert_eq!(
        authenticate_bearer(&f.p.tenant, &f.keys, None, &parsed, NOW + 60_000),
        Err(AuthError::BadToken(TokenError::Expired))
    );
    let mut blocked = Device::new(f.device.resource.clone(), NOW);
    blocked.blocked = true;
    assert_eq!(authenticate_bearer(&f.p.tenant, &f.keys, Some(&blocked), &parsed, NOW), Err(AuthError::Blocked));
    // A token for a longer lifetime than the tenant allows.
    let mut short = f.p.tenant.clone();
    short.max_token_lifetime = Duration::from_secs(30);
    assert_eq!(
        authenticate_bearer(&short, &f.keys, None, &parsed, NOW),
        Err(AuthError::BadToken(TokenError::BadLifetime))
    );
}

#[test]
fn applications() {
    let f = fixture();
    let secret = f.p.api_secret.expose_base64();
    let key_id = f.p.api_key.id.clone();
    let t = &f.p.tenant;
    let user = format!("app.example.com/apikey/{key_id}");
    assert_eq!(
        mqtt(&f, t, None, &user, &secret),
        Ok(Identity::Application(AppIdentity { domain: t.domain.clone(), api_key_id: key_id.clone() }))
    );
    let wrong = ApiSecret::generate().unwrap().expose_base64();
    assert_eq!(mqtt(&f, t, None, &user, &wrong), Err(AuthError::BadApiSecret));
    let foreign = format!("other.example.com/apikey/{key_id}");
    assert_eq!(mqtt(&f, t, None, &foreign, &secret), Err(AuthError::WrongTenant));
    let mut disabled = t.clone();
    disabled.disabled = true;
    assert_eq!(mqtt(&f, &disabled, None, &user, &secret), Err(AuthError::TenantDisabled));

    // HTTP Basic names no domain.
    let Credentials::ApiKey { domain: None, secret, .. } = parse_authorization(&format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{key_id}:{secret}"))
    ))
    .unwrap() else {
        panic!()
    };
    assert!(authenticate_app(t, &f.p.api_key, None, &secret).is_ok());
}

#[test]
fn admin() {
    let token = AdminToken::generate().unwrap();
    let stored = token.hash();
    assert_eq!(authenticate_admin(&stored, &token), Ok(Identity::Admin));
    assert_eq!(authenticate_admin(&stored, &AdminToken::generate().unwrap()), Err(AuthError::BadAdminToken));
}

#[test]
fn labels_and_classes() {
    assert_eq!(AuthError::Blocked.label(), "blocked");
    assert_eq!(AuthError::BadToken(TokenError::Expired).label(), "bad_token");
    assert!(AuthError::Blocked.is_refused_by_registry());
    assert!(!AuthError::BadDeviceKey.is_refused_by_registry());
    assert_eq!(AuthError::UnknownTenant.to_string(), "unknown tenant");
    assert_eq!(AuthError::UnknownApiKey.label(), "unknown_api_key");
}
