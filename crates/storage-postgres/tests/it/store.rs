//! What is particular to the PostgreSQL backend: migrations (recorded, idempotent, safe when
//! several nodes open at once), failed batches leaving nothing, calls from `spawn_blocking`,
//! both stores sharing one schema, and errors that never show the password.

use std::sync::Arc;

use bytes::Bytes;
use switchyard_storage::data::{Channel, DataStore, Ingest, MessageStore, ResourceKey, TimeRange};
use switchyard_storage::forward::OutboxStore;
use switchyard_storage::{RegistryOp, RegistryStore, SessionOp, SessionStore, Snapshot, Table};
use switchyard_storage_postgres::{LATEST_VERSION, PgConfig, PgDataStore, PgError, PgStore};

use super::{Place, admin};

fn put_session(key: &str) -> SessionOp {
    SessionOp::PutSession { session: key.into(), record: Bytes::from_static(b"r") }
}

fn ingest(resource: &str, ts: i64, metric: &str) -> Ingest {
    Ingest {
        resource: ResourceKey { tenant: "t".into(), resource: resource.into() },
        ts,
        message_id: Some(format!("id-{ts}").into()),
        body: Bytes::from(format!("{{\"n\":{ts}}}")),
        expires_at: None,
        keep: 10,
        points: vec![(Arc::from(metric), switchyard_storage::data::Value::Number(1.0))],
        channel: Channel::Events,
        forward: true,
    }
}

/// Makes every insert into `table` of the place's schema fail when `NEW` meets `condition`.
fn sabotage(place: &Place, table: &str, condition: &str) {
    let schema = place.schema();
    admin(&format!(
        "CREATE FUNCTION \"{schema}\".boom() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
    ))
    .unwrap();
    admin(&format!(
        "CREATE TRIGGER boom BEFORE INSERT ON \"{schema}\".{table} FOR EACH ROW \
         WHEN ({condition}) EXECUTE FUNCTION \"{schema}\".boom()"
    ))
    .unwrap();
}

#[test]
fn migrations_are_recorded_and_run_once() {
    let place = Place::fresh();
    drop(PgStore::open(&place.config).unwrap());
    drop(PgDataStore::open(&place.config, 1000).unwrap());
    let store = PgStore::open(&place.config).unwrap();
    let rows = admin(&format!("SELECT version FROM \"{}\".schema_migrations", place.schema())).unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=LATEST_VERSION).collect::<Vec<_>>());
    SessionStore::commit(&store, &[put_session("s")]).unwrap();
}

#[test]
fn nodes_opening_together_migrate_once() {
    let place = Place::fresh();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let config = &place.config;
                s.spawn(move || {
                    if i % 2 == 0 { PgStore::open(config).map(drop) } else { PgDataStore::open(config, 1000).map(drop) }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap().unwrap_or_else(|e| panic!("concurrent open: {e}"));
        }
    });
    let rows = admin(&format!("SELECT count(*) FROM \"{}\".schema_migrations", place.schema())).unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), i64::from(LATEST_VERSION));
}

#[test]
fn a_newer_schema_is_refused() {
    let place = Place::fresh();
    drop(PgStore::open(&place.config).unwrap());
    admin(&format!("INSERT INTO \"{}\".schema_migrations (version) VALUES (1000)", place.schema())).unwrap();
    match PgStore::open(&place.config) {
        Err(PgError::Migrate(message)) => assert!(message.contains("1000"), "{message}"),
        Err(other) => panic!("opening a newer schema gave {other}"),
        Ok(_) => panic!("opening a newer schema succeeded"),
    }
}

#[test]
fn a_failed_commit_leaves_nothing() {
    let place = Place::fresh();
    let store = PgStore::open(&place.config).unwrap();
    SessionStore::commit(&store, &[put_session("kept")]).unwrap();
    sabotage(&place, "retained", "NEW.topic = convert_to('boom', 'UTF8')");
    let batch = [
        SessionOp::DeleteSession { session: "kept".into() },
        put_session("new"),
        SessionOp::PutRetained { topic: "boom".into(), record: Bytes::from_static(b"x") },
    ];
    assert!(SessionStore::commit(&store, &batch).is_err());
    let snapshot = store.load().unwrap();
    assert_eq!(snapshot.sessions.iter().map(|s| s.session.as_str()).collect::<Vec<_>>(), ["kept"]);
    assert!(snapshot.retained.is_empty());
    SessionStore::commit(&store, &[put_session("after")]).unwrap();
    assert_eq!(store.load().unwrap().sessions.len(), 2, "the store works after a failed commit");
}

#[test]
fn a_failed_data_write_leaves_nothing() {
    let place = Place::fresh();
    let store = PgDataStore::open(&place.config, 60_000).unwrap();
    store.set_sinks(&["hook"]).unwrap();
    store.write(&[ingest("r", 1, "x")], 0).unwrap();
    sabotage(&place, "point_groups", "convert_to('boom', 'UTF8') = ANY(NEW.metrics)");
    assert!(store.write(&[ingest("r", 2, "x"), ingest("r", 3, "boom")], 0).is_err());
    let res = ResourceKey { tenant: "t".into(), resource: "r".into() };
    let ts: Vec<i64> = store.messages(&res, TimeRange::default(), 10, 0).unwrap().iter().map(|m| m.ts).collect();
    assert_eq!(ts, [1], "no message of the failed batch");
    assert_eq!(store.read(0, 10).unwrap().len(), 1, "no outbox record of the failed batch");
    assert_eq!(store.last(), 1, "the outbox sequence did not move");
    // Its messageIds were not remembered, and its sequence numbers are given again.
    let written = store.write(&[ingest("r", 2, "x")], 0).unwrap();
    assert_eq!(written, [switchyard_storage::data::Written::Stored { seq: 2 }]);
}

#[test]
fn stores_work_from_spawn_blocking() {
    let place = Place::fresh();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = place.config.clone();
    let loaded = runtime.block_on(async move {
        let store = tokio::task::spawn_blocking(move || PgStore::open(&config).unwrap()).await.unwrap();
        let store = Arc::new(store);
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::task::spawn_blocking(move || {
                    SessionStore::commit(&*store, &[put_session(&format!("s{i}"))]).unwrap()
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let reader = Arc::clone(&store);
        let loaded = tokio::task::spawn_blocking(move || reader.load().unwrap()).await.unwrap();
        // Dropping the last handle inside the runtime must not panic either.
        drop(store);
        loaded
    });
    assert_eq!(loaded.sessions.len(), 8);
}

#[test]
fn both_stores_share_a_schema_and_survive_reopen() {
    let place = Place::fresh();
    {
        let store = PgStore::open(&place.config).unwrap();
        let data = PgDataStore::open(&place.config, 60_000).unwrap();
        SessionStore::commit(&store, &[put_session("s")]).unwrap();
        let create = RegistryOp::Create { table: Table::Tenants, key: "a".into(), value: Bytes::from_static(b"t") };
        RegistryStore::commit(&store, &[create]).unwrap();
        data.write(&[ingest("r", 5, "x")], 0).unwrap();
    }
    let store = PgStore::open(&place.config).unwrap();
    let data = PgDataStore::open(&place.config, 60_000).unwrap();
    assert_eq!(store.load().unwrap().sessions.len(), 1);
    assert_eq!(store.get(Table::Tenants, "a").unwrap(), Some(Bytes::from_static(b"t")));
    let res = ResourceKey { tenant: "t".into(), resource: "r".into() };
    assert_eq!(data.current(&res, 0).unwrap().map(|m| m.ts), Some(5));
    // A resource of another tenant with the same name sees nothing.
    let other = ResourceKey { tenant: "u".into(), resource: "r".into() };
    assert_eq!(data.current(&other, 0).unwrap(), None);
    data.drop_tenant("u").unwrap();
    assert!(data.current(&res, 0).unwrap().is_some());
    assert_ne!(store.load().unwrap(), Snapshot::default());
}

#[test]
fn errors_never_show_the_password() {
    // Nothing listens on port 1 of the loopback address.
    let config = PgConfig {
        connect_timeout: std::time::Duration::from_secs(2),
        ..PgConfig::new("postgres://switchyard:s3cret-pw@127.0.0.1:1/switchyard")
    };
    let error = PgStore::open(&config).err().expect("no server on port 1");
    let message = error.to_string();
    assert!(matches!(error, PgError::Connect(_)), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
    let bad = PgConfig::new("postgres://switchyard:s3cret-pw@127.0.0.1:notaport/db");
    let message = PgStore::open(&bad).err().expect("invalid URL").to_string();
    assert!(!message.contains("s3cret-pw"), "{message}");
    let bad_schema = PgConfig { schema: Some("x; DROP TABLE y".into()), ..PgConfig::new(super::url()) };
    assert!(matches!(PgStore::open(&bad_schema), Err(PgError::Schema(_))));
}

/// The test server's own certificate (`scripts/postgres.sh` makes it and exports its path).
fn test_ca() -> std::path::PathBuf {
    match std::env::var_os("SWITCHYARD_TEST_PG_CA") {
        Some(path) if !path.is_empty() => path.into(),
        _ => panic!("SWITCHYARD_TEST_PG_CA is not set: start the server with scripts/postgres.sh, which exports it"),
    }
}

/// `extra` added to the test server's URL as query options.
fn url_with(extra: &str) -> String {
    let url = super::url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{extra}")
}

#[test]
fn tls_to_the_database_checks_the_servers_certificate() {
    let place = Place::fresh();
    let name = format!("sy_tls_{}", place.schema());
    let config = PgConfig {
        ca_file: Some(test_ca()),
        url: url_with(&format!("application_name={name}")),
        ..place.config.clone()
    };
    let store = PgStore::open(&config).unwrap();
    SessionStore::commit(&store, &[put_session("over-tls")]).unwrap();
    assert_eq!(store.load().unwrap().sessions.len(), 1);
    let sql = format!(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{name}'"
    );
    let rows = admin(&sql).unwrap();
    assert!(!rows.is_empty(), "the store's connections are open");
    assert!(rows.iter().all(|row| row.get::<_, bool>(0)), "every connection of the store is TLS");
    drop(store);

    // Without the certificate that signed the server's, `require` is refused, not downgraded.
    let unknown = PgConfig {
        url: url_with("sslmode=require"),
        connect_timeout: std::time::Duration::from_secs(5),
        ..place.config.clone()
    };
    let error = PgStore::open(&unknown).err().expect("an unknown server certificate is refused");
    assert!(matches!(error, PgError::Connect(_)), "{error}");
}
