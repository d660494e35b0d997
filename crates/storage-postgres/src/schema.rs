//! The tables, as versioned migrations applied at open: each runs once per schema, in order,
//! recorded in `schema_migrations`. Opening takes a transaction-scoped advisory lock first, so
//! nodes starting together migrate one after the other, and a failed migration leaves nothing.
//!
//! Keys are `bytea` (byte order, any byte). Session and retained keys can be as long as a topic,
//! beyond what a btree entry holds, so those tables are keyed by the key's SHA-256 and keep the
//! key beside it; registry and data keys are bounded where they enter and are indexed directly.

use tokio_postgres::Client;

use crate::db::Fail;

/// The schema version this build creates and understands.
pub const LATEST_VERSION: i32 = 2;

/// `(version, DDL)`, oldest first; never edit one that has shipped, add the next.
const MIGRATIONS: &[(i32, &str)] = &[(1, V1), (2, V2)];

/// First argument of the advisory lock that serializes migrations (the second is the schema's
/// hash): "sw" in ASCII.
const LOCK_CLASS: i32 = 0x7377;

const V1: &str = r#"
CREATE TABLE sessions (
    id bytea PRIMARY KEY,
    key bytea NOT NULL,
    record bytea NOT NULL
);
CREATE TABLE session_messages (
    sid bytea NOT NULL,
    session bytea NOT NULL,
    seq bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (sid, seq)
);
CREATE TABLE session_entries (
    sid bytea NOT NULL,
    nid bytea NOT NULL,
    session bytea NOT NULL,
    name bytea NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (sid, nid)
);
CREATE TABLE retained (
    id bytea PRIMARY KEY,
    topic bytea NOT NULL,
    record bytea NOT NULL
);
CREATE TABLE registry_tenants (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE registry_devices (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE registry_apikeys (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE registry_meta (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE counters (
    name text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO counters (name, value) VALUES ('message_seq', 0), ('outbox_seq', 0);
CREATE TABLE messages (
    tenant bytea NOT NULL,
    resource bytea NOT NULL,
    ts bigint NOT NULL,
    seq bigint NOT NULL,
    body bytea NOT NULL,
    expires_at bigint,
    PRIMARY KEY (tenant, resource, ts, seq)
);
CREATE INDEX messages_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE message_ids (
    tenant bytea NOT NULL,
    resource bytea NOT NULL,
    id bytea NOT NULL,
    stored_at bigint NOT NULL,
    PRIMARY KEY (tenant, resource, id)
);
CREATE INDEX message_ids_age ON message_ids (stored_at);
CREATE TABLE points (
    tenant bytea NOT NULL,
    resource bytea NOT NULL,
    metric bytea NOT NULL,
    ts bigint NOT NULL,
    num double precision,
    txt bytea,
    expires_at bigint,
    PRIMARY KEY (tenant, resource, metric, ts),
    CHECK ((num IS NULL) <> (txt IS NULL))
);
CREATE INDEX points_expiry ON points (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE outbox (
    seq bigint PRIMARY KEY,
    at bigint NOT NULL,
    tenant bytea NOT NULL,
    resource bytea NOT NULL,
    channel smallint NOT NULL,
    body bytea NOT NULL
);
CREATE INDEX outbox_tenant ON outbox (tenant, seq);
CREATE TABLE outbox_sinks (
    name text COLLATE "C" PRIMARY KEY,
    cursor bigint NOT NULL
);
"#;

/// Points as one row per stored message (`point_groups`, see the `points` module) instead of one
/// per point; the points of version 1 move over, a group per timestamp and expiry, numbered below
/// every message so that any later write wins.
const V2: &str = r#"
CREATE TABLE point_groups (
    tenant bytea NOT NULL,
    resource bytea NOT NULL,
    ts bigint NOT NULL,
    seq bigint NOT NULL,
    expires_at bigint,
    metrics bytea[] NOT NULL,
    nums double precision[] NOT NULL,
    txts bytea[] NOT NULL,
    PRIMARY KEY (tenant, resource, ts, seq)
);
CREATE INDEX point_groups_expiry ON point_groups (expires_at) WHERE expires_at IS NOT NULL;
INSERT INTO point_groups (tenant, resource, ts, seq, expires_at, metrics, nums, txts)
SELECT tenant, resource, ts, -row_number() OVER (ORDER BY tenant, resource, ts, expires_at), expires_at,
    array_agg(metric ORDER BY metric), array_agg(num ORDER BY metric), array_agg(txt ORDER BY metric)
FROM points GROUP BY tenant, resource, ts, expires_at;
DROP TABLE points;
"#;

/// Creates `schema` if needed and applies the migrations it lacks, in one transaction.
/// `schema` was checked to be a plain identifier.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<(), Fail> {
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&LOCK_CLASS, &schema]).await?;
    txn.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")).await?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let applied: Vec<i32> =
        txn.query("SELECT version FROM schema_migrations", &[]).await?.iter().map(|row| row.get(0)).collect();
    if let Some(newer) = applied.iter().find(|v| **v > LATEST_VERSION) {
        return Err(Fail::Unknown(format!(
            "schema {schema} is at version {newer}, newer than this build understands ({LATEST_VERSION})"
        )));
    }
    for (version, ddl) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        txn.batch_execute(ddl).await?;
        txn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version]).await?;
    }
    txn.commit().await?;
    Ok(())
}
