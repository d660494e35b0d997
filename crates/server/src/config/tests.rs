//! Tests of configuration parsing: files, environment, flags and their errors.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn example_parses_and_matches_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let s = Settings::load(Some(&path), [], &Overrides::default()).unwrap();
    assert_eq!(s.mqtt_listen, "0.0.0.0:1883".parse().unwrap());
    assert_eq!(s.broker.max_packet_size, 262_144);
    assert_eq!(s.broker.max_topic_levels, BrokerConfig::default().max_topic_levels);
    assert_eq!(s.broker.max_retained_messages, BrokerConfig::default().max_retained_messages);
    assert_eq!(s.broker.max_retained_bytes, BrokerConfig::default().max_retained_bytes);
    assert_eq!(s.anonymous_deny, [DenyRule::Subscribe("test/nosubscribe".into())]);
    assert!(!s.allow_anonymous);
    assert_eq!(s.key_file, PathBuf::from("./switchyard.key"));
    // The example runs as printed: TLS stays off until its files exist.
    assert!(s.tls.is_none());
    assert_eq!(s.http_max_connections, 10_000);
    assert_eq!(s.http_max_websockets, 10_000);
    assert_eq!(s.auth_limits, LimiterConfig::default());
    assert_eq!(s.rotation_grace, switchyard_identity::DEFAULT_ROTATION_GRACE);
    assert_eq!(s.tenant_domain.as_str(), "localhost");
    assert_eq!((s.broker.max_session_expiry, s.broker.max_sessions_per_identity), (604_800, 100));
    assert_eq!(s.pipeline, PipelineConfig::default());
    assert_eq!(s.idempotency_window, Duration::from_secs(86_400));
    assert_eq!(s.max_body, switchyard_api::DEFAULT_MAX_BODY);
    // The PostgreSQL lines are commented out: the example runs on embedded storage.
    assert!(matches!(s.storage, crate::storage::Backend::Embedded(_)));
}

#[test]
fn client_certificate_authorities_are_read_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let text = "[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\nclient_auth = \"optional\"\n\
                [[tls.client_ca]]\ndomain = \"a.example\"\nca = \"a.pem\"\ncrl = \"a.crl\"\n\
                [[tls.client_ca]]\ndomain = \"b.example\"\nca = \"b.pem\"\n";
    std::fs::write(&path, text).unwrap();
    let tls = Settings::load(Some(&path), [], &Overrides::default()).unwrap().tls.unwrap();
    assert_eq!(tls.client_auth, ClientAuth::Optional);
    let cas: Vec<_> = tls.client_cas.iter().map(|c| (c.domain.as_str(), c.crl.is_some())).collect();
    assert_eq!(cas, [("a.example", true), ("b.example", false)]);
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[mqtt]\nlisten = \"127.0.0.1:1\"\nallow_anonymous = false\n").unwrap();
    let vars = env(&[
        ("SWITCHYARD_MQTT_LISTEN", "127.0.0.1:2"),
        ("SWITCHYARD_MQTT_ALLOW_ANONYMOUS", "true"),
        ("SWITCHYARD_HTTP_LISTEN", "127.0.0.1:3"),
        ("OTHER", "x"),
    ]);
    let flags = Overrides { http_listen: Some("127.0.0.1:4".into()), ..Overrides::default() };
    let s = Settings::load(Some(&path), vars, &flags).unwrap();
    assert_eq!(s.mqtt_listen.port(), 2);
    assert!(s.allow_anonymous);
    assert_eq!(s.http_listen.port(), 4);
}

#[test]
fn bad_values_are_named_in_the_error() {
    let cases = [
        ("[mqtt]\nlisten = \"nowhere\"\n", "mqtt.listen"),
        ("[mqtt]\nqueue_full = \"drop\"\n", "queue_full"),
        ("[mqtt]\nmax_packet_size = 10\n", "max_packet_size"),
        ("[mqtt]\nnot_a_key = 1\n", "not_a_key"),
        ("[[mqtt.anonymous_deny]]\n", "anonymous_deny"),
        ("[mqtt]\nmax_topic_levels = 0\n", "max_topic_levels"),
        ("[tenant]\ndomain = \"a_b\"\n", "tenant.domain"),
        ("[auth]\nfailure_window_secs = 0\n", "failure_window_secs"),
        ("[auth]\nmax_tracked = 0\n", "max_tracked"),
        ("[auth]\nmax_failures_per_username = 5\n", "max_failures_per_username"),
        ("[http]\nmax_connections = 0\n", "http.max_connections"),
        ("[http]\nmax_websockets = 0\n", "http.max_websockets"),
        ("[pipeline]\nmessage_cache = 0\n", "pipeline.message_cache"),
        ("[pipeline]\nidempotency_window = \"soon\"\n", "pipeline.idempotency_window"),
        ("[pipeline]\nmax_body = 10\n", "pipeline.max_body"),
        ("[pipeline]\nretention = \"forever\"\n", "pipeline.retention"),
        ("[pipeline]\nmesage_cache = 5\n", "mesage_cache"),
        ("[tls]\ncert = \"c\"\nkey = \"k\"\nclient_auth = \"yes\"\n", "tls.client_auth"),
        ("[tls]\ncert = \"c\"\nkey = \"k\"\nclient_auth = \"required\"\n", "tls.client_ca"),
        ("[tls]\ncert = \"c\"\nkey = \"k\"\n[[tls.client_ca]]\ndomain = \"A_B\"\nca = \"a.pem\"\n", "client_ca domain"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in cases {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let err = Settings::load(Some(&path), [], &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains(expected), "{text}: {err:#}");
    }
}

#[test]
fn default_key_file_is_beside_the_data_directory() {
    let load = |file: &str, data_dir: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, file).unwrap();
        let flags = Overrides { data_dir: data_dir.map(PathBuf::from), ..Overrides::default() };
        Settings::load(Some(&path), [], &flags).unwrap().key_file
    };
    assert_eq!(load("", None), PathBuf::from("./switchyard.key"));
    assert_eq!(load("", Some("/srv/sy/data")), PathBuf::from("/srv/sy/switchyard.key"));
    assert_eq!(load("", Some("data")), PathBuf::from("./switchyard.key"));
    assert_eq!(load("[server]\ndata_dir = \"/var/lib/sy\"\n", None), PathBuf::from("/var/lib/switchyard.key"));
    assert_eq!(load("[server]\nkey_file = \"/etc/sy.key\"\n", Some("/x/data")), PathBuf::from("/etc/sy.key"));
}
