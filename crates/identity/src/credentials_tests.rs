//! Tests of credential parsing on every protocol, including oversized and hostile input.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::token::mint_token;

const KEY: &str = "XtBWHrV7Y9FsY6DRL_lJMK3WhOUZZfh_TmjoAymFxz0";

fn token_for(domain: &str, resource: &str) -> String {
    let device =
        DeviceIdentity { domain: Domain::parse(domain).unwrap(), resource: ResourceId::parse(resource).unwrap() };
    mint_token(&device, &DeviceKey::from_base64(KEY).unwrap(), 1_700_000_000_000, Duration::from_secs(60), None)
}

/// A compact, comparable summary of a parse result.
fn summary(result: Result<Credentials, CredentialsError>) -> String {
    match result {
        Ok(c) => c.to_string(),
        Err(e) => format!("error: {e:?}"),
    }
}

#[test]
fn mqtt_table() {
    let token = token_for("app.example.com", "dev-1");
    let long_user = format!("app.example.com/{}", "x".repeat(MAX_USERNAME_LEN));
    let long_password = "a".repeat(MAX_PASSWORD_LEN + 1);
    type Case<'a> = (Option<&'a str>, Option<&'a [u8]>, &'a str);
    let cases: Vec<Case> = vec![
        (None, None, "anonymous"),
        (Some("app.example.com/dev-1"), Some(KEY.as_bytes()), "device app.example.com/dev-1 (key)"),
        (Some("app.example.com/dev-1"), Some(token.as_bytes()), "device app.example.com/dev-1 (token)"),
        (Some("localhost/a:b.c-d_e"), Some(KEY.as_bytes()), "device localhost/a:b.c-d_e (key)"),
        (Some("app.example.com/apikey"), Some(KEY.as_bytes()), "device app.example.com/apikey (key)"),
        (Some("app.example.com/apikey/k1"), Some(KEY.as_bytes()), "api key app.example.com/k1"),
        (None, Some(b"x"), "error: PasswordWithoutUsername"),
        (Some("app.example.com/dev-1"), None, "error: MissingPassword"),
        (Some("plainuser"), Some(b"pw"), "error: NotTenantUsername"),
        (Some("plainuser"), None, "error: NotTenantUsername"),
        (Some(""), Some(b"pw"), "error: NotTenantUsername"),
        (Some(&long_user), Some(KEY.as_bytes()), "error: UsernameTooLong"),
        (Some("app.example.com/dev-1"), Some(long_password.as_bytes()), "error: TooLong"),
        (Some("app.example.com/dev-1"), Some(b"short"), "error: BadPassword"),
        (Some("app.example.com/dev-1"), Some(b"\xff\xfe"), "error: BadPassword"),
        (Some("app.example.com/dev-1"), Some(b"a.b.c"), "error: BadToken(Malformed)"),
        (Some("app.example.com/apikey/k1"), Some(b"not-a-secret"), "error: BadPassword"),
        (Some("app.example.com/apikey/k1"), Some(token.as_bytes()), "error: BadPassword"),
    ];
    for (username, password, want) in cases {
        assert_eq!(summary(parse_mqtt(username, password)), want, "{username:?}");
    }
}

#[test]
fn mqtt_bad_usernames() {
    for username in [
        "App.example.com/dev-1",
        "app.example.com/",
        "/dev-1",
        "app.example.com/dev 1",
        "app.example.com/dev/1",
        "app.example.com//dev",
        "app.example.com/apikey/",
        "app.example.com/apikey/k.1",
        "app.example.com/apikey/k1/extra",
        "app.example.com/dev-ü",
        "app.example.com/..",
    ] {
        let got = parse_mqtt(Some(username), Some(KEY.as_bytes()));
        assert!(matches!(got, Err(CredentialsError::BadUsername(_))), "{username:?}: {got:?}");
    }
}

#[test]
fn authorization_header_table() {
    let token = token_for("app.example.com", "dev-1");
    let basic = |s: &str| format!("Basic {}", STANDARD.encode(s));
    let bearer = format!("Bearer {token}");
    let lower = format!("bearer   {token}");
    let admin = format!("Bearer {KEY}");
    let good_basic = basic(&format!("k1:{KEY}"));
    let too_long = format!("Bearer {}", "a".repeat(MAX_HEADER_LEN));
    let cases: Vec<(String, &str)> = vec![
        (good_basic, "api key k1"),
        (format!("BASIC {}", STANDARD.encode(format!("k1:{KEY}"))), "api key k1"),
        (bearer, "device app.example.com/dev-1 (bearer token)"),
        (lower, "device app.example.com/dev-1 (bearer token)"),
        (admin, "admin"),
        (basic("k1"), "error: BadHeader"),
        (basic(&format!("k.1:{KEY}")), "error: BadUsername(\"api key id contains a character that is not allowed\")"),
        (basic("k1:short"), "error: BadPassword"),
        (format!("Basic {KEY}"), "error: BadHeader"),
        ("Basic !!!".to_owned(), "error: BadHeader"),
        ("Bearer".to_owned(), "error: BadHeader"),
        ("Bearer short".to_owned(), "error: BadPassword"),
        ("Bearer a.b.c".to_owned(), "error: BadToken(Malformed)"),
        ("Digest abc".to_owned(), "error: BadHeader"),
        (String::new(), "error: BadHeader"),
        (too_long, "error: TooLong"),
    ];
    for (header, want) in cases {
        assert_eq!(summary(parse_authorization(&header)), want, "{header:?}");
    }
}

#[test]
fn query_table() {
    let token = token_for("app.example.com", "dev-1");
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "none"),
        ("foo=bar&limit=3".into(), "none"),
        (format!("apiKey=k1&apiSecret={KEY}"), "api key k1"),
        (format!("?apiSecret={KEY}&x=1&apiKey=k1"), "api key k1"),
        (format!("token={token}"), "device app.example.com/dev-1 (bearer token)"),
        (format!("token={token}&token={token}"), "error: Ambiguous"),
        (format!("token={token}&apiKey=k1&apiSecret={KEY}"), "error: Ambiguous"),
        (format!("token={token}&apiKey=k1"), "error: Ambiguous"),
        ("apiKey=k1".into(), "error: MissingPassword"),
        ("apiKey=k1&apiSecret=".into(), "error: BadPassword"),
        (format!("apiSecret={KEY}"), "error: BadUsername(\"apiSecret without apiKey\")"),
        (
            format!("apiKey=k%31&apiSecret={KEY}"),
            "error: BadUsername(\"api key id contains a character that is not allowed\")",
        ),
        ("token=abc".into(), "error: BadToken(Malformed)"),
        ("token".into(), "error: BadToken(Malformed)"),
        (format!("x={}", "a".repeat(MAX_HEADER_LEN)), "error: TooLong"),
    ];
    for (query, want) in cases {
        let got = match parse_query(&query) {
            Ok(None) => "none".to_owned(),
            Ok(Some(c)) => summary(Ok(c)),
            Err(e) => summary(Err(e)),
        };
        assert_eq!(got, want, "{query:?}");
    }
}

#[test]
fn debug_never_shows_secrets() {
    let token = token_for("app.example.com", "dev-1");
    let all = [
        parse_mqtt(Some("app.example.com/dev-1"), Some(KEY.as_bytes())).unwrap(),
        parse_mqtt(Some("app.example.com/dev-1"), Some(token.as_bytes())).unwrap(),
        parse_mqtt(Some("app.example.com/apikey/k"), Some(KEY.as_bytes())).unwrap(),
        parse_authorization(&format!("Bearer {KEY}")).unwrap(),
        parse_authorization(&format!("Bearer {token}")).unwrap(),
    ];
    let signature = token.rsplit('.').next().unwrap();
    for c in all {
        let shown = format!("{c:?} {c}");
        assert!(!shown.contains(KEY), "{shown}");
        assert!(!shown.contains(signature), "{shown}");
    }
}

fn resource_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,128}".prop_filter("dot segments are refused", |s| s != "." && s != "..")
}

fn domain() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 1..5).prop_map(|l| l.join("."))
}

proptest! {
    #[test]
    fn any_valid_device_username_round_trips(d in domain(), r in resource_id()) {
        let username = format!("{d}/{r}");
        match parse_mqtt(Some(&username), Some(KEY.as_bytes())) {
            Ok(Credentials::Device { device, proof: DeviceProof::Key(_) }) => {
                prop_assert_eq!(device.domain.as_str(), d.as_str());
                prop_assert_eq!(device.resource.as_str(), r.as_str());
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn arbitrary_input_never_panics(u in ".{0,600}", p in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_mqtt(Some(&u), Some(&p));
        let _ = parse_authorization(&u);
        let _ = parse_query(&u);
    }
}
