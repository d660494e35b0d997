//! Tests of connection tokens: Python-computed vectors, every refusal, forged headers.

use super::*;
use crate::keys::tests::VECTORS;

/// Built with Python's `hmac`/`base64`/`json` (see `docs/device-keys.md`): header
/// `{"alg":"HS256","typ":"JWT"}`, claims serialized compactly in the order iss, sub, iat, exp,
/// jti. (device key vector index, resource id, iat, ttl s, jti, token)
type TokenVector = (usize, &'static str, u64, u64, Option<&'static str>, &'static str);
const TOKEN_VECTORS: &[TokenVector] = &[
    (
        1,
        "a:b.c-d_e",
        1_700_000_000,
        3600,
        None,
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhcHAuZXhhbXBsZS5jb20iLCJzdWIiOiJhOmIuYy1kX2UiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.P5yS7bc3E07LFpFlJwnZeQrvR1Xm2Jn6i_59De4u7uk",
    ),
    (
        2,
        "Device.42",
        1_700_000_000,
        86_400,
        Some("abc-123"),
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhcHAuZXhhbXBsZS5jb20iLCJzdWIiOiJEZXZpY2UuNDIiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDA4NjQwMCwianRpIjoiYWJjLTEyMyJ9.YcBeCt-xzE69Y12aesWCxSM7j02_83QEfA5ThopDV-c",
    ),
];

const IAT_MS: u64 = 1_700_000_000_000;

fn device(resource: &str) -> DeviceIdentity {
    DeviceIdentity { domain: Domain::parse("app.example.com").unwrap(), resource: ResourceId::parse(resource).unwrap() }
}

fn vector_key(index: usize) -> DeviceKey {
    DeviceKey::from_base64(VECTORS[index].2).unwrap()
}

#[test]
fn mint_matches_python_vectors_and_verifies() {
    for &(key_index, resource, iat, ttl, jti, expected) in TOKEN_VECTORS {
        let dev = device(resource);
        let key = vector_key(key_index);
        let minted = mint_token(&dev, &key, iat * 1000 + 999, Duration::from_secs(ttl), jti);
        assert_eq!(minted, expected, "{resource}");
        let claims = verify_token(expected, &dev, &[key], (iat + 1) * 1000, &TokenPolicy::default()).unwrap();
        assert_eq!(claims.device, dev);
        assert_eq!(claims.issued_at_s, iat);
        assert_eq!(claims.expires_s, iat + ttl);
        assert_eq!(claims.expires_ms(), (iat + ttl) * 1000);
        assert_eq!(claims.jti.as_deref(), jti);
    }
}

fn sign(header_json: &str, claims_json: &str, key: &DeviceKey) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header_json);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims_json));
    let mut m = mac(key);
    m.update(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()));
    token
}

#[test]
fn verify_refusals() {
    let dev = device("dev-1");
    let key = vector_key(0);
    let other_key = vector_key(1);
    let hour = Duration::from_secs(3600);
    let good = mint_token(&dev, &key, IAT_MS, hour, None);
    let p = TokenPolicy::default();
    let at = |s: u64| IAT_MS + s * 1000;
    let claims = |iat: u64, exp: u64, extra: &str| {
        format!(r#"{{"iss":"app.example.com","sub":"dev-1","iat":{iat},"exp":{exp}{extra}}}"#)
    };
    let iat = IAT_MS / 1000;
    let header = HEADER_JSON;
    type Case<'a> = (&'a str, String, &'a DeviceIdentity, u64, Result<(), TokenError>);
    let other_dev = device("dev-2");
    let mut other_domain = device("dev-1");
    other_domain.domain = Domain::parse("app.example.com.evil").unwrap();
    let cases: Vec<Case> = vec![
        ("valid", good.clone(), &dev, at(0), Ok(())),
        ("valid just before exp", good.clone(), &dev, at(3599), Ok(())),
        ("expired at exp", good.clone(), &dev, at(3600), Err(TokenError::Expired)),
        ("long expired", good.clone(), &dev, at(99_999), Err(TokenError::Expired)),
        ("iat within leeway", good.clone(), &dev, at(0) - 60_000, Ok(())),
        ("iat beyond leeway", good.clone(), &dev, at(0) - 61_000, Err(TokenError::NotYetValid)),
        ("other subject", good.clone(), &other_dev, at(0), Err(TokenError::WrongSubject)),
        ("other issuer", good.clone(), &other_domain, at(0), Err(TokenError::WrongIssuer)),
        ("wrong key", mint_token(&dev, &other_key, IAT_MS, hour, None), &dev, at(0), Err(TokenError::BadSignature)),
        (
            "lifetime over 24h",
            mint_token(&dev, &key, IAT_MS, Duration::from_secs(86_401), None),
            &dev,
            at(0),
            Err(TokenError::BadLifetime),
        ),
        (
            "lifetime exactly 24h",
            mint_token(&dev, &key, IAT_MS, Duration::from_secs(86_400), None),
            &dev,
            at(0),
            Ok(()),
        ),
        (
            "exp before iat",
            sign(header, &claims(iat + 30, iat + 10, ""), &key),
            &dev,
            at(0),
            Err(TokenError::BadLifetime),
        ),
        (
            "nbf in the future",
            sign(header, &claims(iat, iat + 100, &format!(r#","nbf":{}"#, iat + 90)), &key),
            &dev,
            at(0),
            Err(TokenError::NotYetValid),
        ),
        ("nbf passed", sign(header, &claims(iat, iat + 100, &format!(r#","nbf":{iat}"#)), &key), &dev, at(0), Ok(())),
        (
            "unknown claims ignored",
            sign(header, &claims(iat, iat + 100, r#","aud":"x","scope":[1]"#), &key),
            &dev,
            at(0),
            Ok(()),
        ),
        ("header without typ", sign(r#"{"alg":"HS256"}"#, &claims(iat, iat + 100, ""), &key), &dev, at(0), Ok(())),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
                URL_SAFE_NO_PAD.encode(claims(iat, iat + 100, ""))
            ),
            &dev,
            at(0),
            Err(TokenError::UnsupportedHeader),
        ),
        (
            "alg HS512",
            sign(r#"{"alg":"HS512"}"#, &claims(iat, iat + 100, ""), &key),
            &dev,
            at(0),
            Err(TokenError::UnsupportedHeader),
        ),
        (
            "alg RS256",
            sign(r#"{"alg":"RS256","typ":"JWT"}"#, &claims(iat, iat + 100, ""), &key),
            &dev,
            at(0),
            Err(TokenError::UnsupportedHeader),
        ),
        (
            "alg lowercase",
            sign(r#"{"alg":"hs256"}"#, &claims(iat, iat + 100, ""), &key),
            &dev,
            at(0),
            Err(TokenError::UnsupportedHeader),
        ),
        (
            "crit header",
            sign(r#"{"alg":"HS256","crit":["exp"]}"#, &claims(iat, iat + 100, ""), &key),
            &dev,
            at(0),
            Err(TokenError::UnsupportedHeader),
        ),
        (
            "typ other",
            sign(r#"{"alg":"HS256","typ":"at+jwt"}"#, &claims(iat, iat + 100, ""), &key),
            &dev,
            at(0),
            Err(TokenError::UnsupportedHeader),
        ),
        (
            "duplicate claim",
            sign(header, &claims(iat, iat + 100, r#","iss":"app.example.com""#), &key),
            &dev,
            at(0),
            Err(TokenError::Malformed),
        ),
        (
            "missing exp",
            sign(header, r#"{"iss":"app.example.com","sub":"dev-1","iat":1}"#, &key),
            &dev,
            at(0),
            Err(TokenError::Malformed),
        ),
        (
            "float exp",
            sign(header, &format!(r#"{{"iss":"app.example.com","sub":"dev-1","iat":{iat},"exp":{iat}.5}}"#), &key),
            &dev,
            at(0),
            Err(TokenError::Malformed),
        ),
        (
            "invalid subject",
            sign(header, &format!(r#"{{"iss":"app.example.com","sub":"a/b","iat":{iat},"exp":{}}}"#, iat + 9), &key),
            &dev,
            at(0),
            Err(TokenError::Malformed),
        ),
        ("two parts", "a.b".into(), &dev, at(0), Err(TokenError::Malformed)),
        ("four parts", format!("{good}.x"), &dev, at(0), Err(TokenError::Malformed)),
        ("padded signature", format!("{good}="), &dev, at(0), Err(TokenError::Malformed)),
        ("empty", String::new(), &dev, at(0), Err(TokenError::Malformed)),
        ("too long", "a".repeat(MAX_TOKEN_LEN + 1), &dev, at(0), Err(TokenError::TooLong)),
    ];
    for (name, token, expected, now, want) in cases {
        let got = verify_token(&token, expected, std::slice::from_ref(&key), now, &p).map(|_| ());
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn tampered_tokens_are_refused() {
    let dev = device("dev-1");
    let key = vector_key(0);
    let good = mint_token(&dev, &key, IAT_MS, Duration::from_secs(60), None);
    let p = TokenPolicy::default();
    // Swap claims for another subject's while keeping the signature.
    let other = mint_token(&device("dev-2"), &key, IAT_MS, Duration::from_secs(60), None);
    let parts: Vec<&str> = good.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    assert_eq!(
        verify_token(&spliced, &device("dev-2"), std::slice::from_ref(&key), IAT_MS, &p),
        Err(TokenError::BadSignature)
    );
    // Flip each signature character.
    let sig_start = good.rfind('.').unwrap() + 1;
    for i in sig_start..good.len() - 1 {
        let mut bytes = good.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(bytes).unwrap();
        assert!(verify_token(&t, &dev, std::slice::from_ref(&key), IAT_MS, &p).is_err());
    }
}

#[test]
fn previous_key_verifies_during_grace() {
    let dev = device("dev-1");
    let (current, previous) = (vector_key(0), vector_key(1));
    let token = mint_token(&dev, &previous, IAT_MS, Duration::from_secs(60), None);
    let p = TokenPolicy::default();
    let both = [current.clone(), previous];
    assert!(verify_token(&token, &dev, &both, IAT_MS, &p).is_ok());
    assert_eq!(verify_token(&token, &dev, &[current], IAT_MS, &p), Err(TokenError::BadSignature));
    assert_eq!(verify_token(&token, &dev, &[], IAT_MS, &p), Err(TokenError::BadSignature));
}

#[test]
fn tenant_policy_caps_lifetime() {
    let dev = device("dev-1");
    let key = vector_key(0);
    let token = mint_token(&dev, &key, IAT_MS, Duration::from_secs(7200), None);
    let one_hour = TokenPolicy::with_max_lifetime(Duration::from_secs(3600));
    assert_eq!(one_hour.leeway, TokenPolicy::DEFAULT_LEEWAY);
    assert_eq!(verify_token(&token, &dev, std::slice::from_ref(&key), IAT_MS, &one_hour), Err(TokenError::BadLifetime));
    assert!(verify_token(&token, &dev, &[key], IAT_MS, &TokenPolicy::default()).is_ok());
}

#[test]
fn claimed_device_and_debug() {
    let dev = device("dev-1");
    let token = mint_token(&dev, &vector_key(0), IAT_MS, Duration::from_secs(60), None);
    let parsed = DeviceToken::parse(&token).unwrap();
    assert_eq!(parsed.claimed_device(), &dev);
    assert_eq!(parsed.expires_ms(), IAT_MS + 60_000);
    let shown = format!("{parsed:?}");
    assert!(!shown.contains(&token[..20]), "{shown}");
    assert!(shown.contains("dev-1"));
}
