//! Every statement the stores run, parameterised: client data only ever travels as parameters.
//! `$n::bytea[]` parameters with `unnest` apply a whole batch in one statement. A prefix is
//! matched as the range `[prefix, successor)` (`$2` NULL: no upper bound), never with `LIKE`.

use switchyard_storage::Table;

// -- broker state -------------------------------------------------------------------------

pub(crate) const LOAD_SESSIONS: &str = "SELECT key, record FROM sessions ORDER BY key";
pub(crate) const LOAD_MESSAGES: &str = "SELECT m.session, m.seq, m.record FROM session_messages m \
     WHERE EXISTS (SELECT 1 FROM sessions s WHERE s.id = m.sid) ORDER BY m.session, m.seq";
pub(crate) const LOAD_ENTRIES: &str = "SELECT e.session, e.name, e.record FROM session_entries e \
     WHERE EXISTS (SELECT 1 FROM sessions s WHERE s.id = e.sid) ORDER BY e.session, e.name";
pub(crate) const LOAD_RETAINED: &str = "SELECT topic, record FROM retained ORDER BY topic";

pub(crate) const DELETE_PREFIX: &str = "WITH \
     m AS (DELETE FROM session_messages WHERE session >= $1 AND ($2::bytea IS NULL OR session < $2)), \
     e AS (DELETE FROM session_entries WHERE session >= $1 AND ($2::bytea IS NULL OR session < $2)), \
     r AS (DELETE FROM retained WHERE topic >= $1 AND ($2::bytea IS NULL OR topic < $2)) \
     DELETE FROM sessions WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2)";
pub(crate) const WIPE_SESSIONS: &str = "WITH k AS (SELECT sha256(key) AS id FROM unnest($1::bytea[]) AS key), \
     m AS (DELETE FROM session_messages WHERE sid IN (SELECT id FROM k)), \
     e AS (DELETE FROM session_entries WHERE sid IN (SELECT id FROM k)) \
     DELETE FROM sessions WHERE id IN (SELECT id FROM k)";
pub(crate) const PUT_SESSIONS: &str = "INSERT INTO sessions (id, key, record) \
     SELECT sha256(k), k, r FROM unnest($1::bytea[], $2::bytea[]) AS u(k, r) \
     ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record";
pub(crate) const DELETE_MESSAGES: &str = "DELETE FROM session_messages m \
     USING unnest($1::bytea[], $2::bigint[]) AS u(k, seq) WHERE m.sid = sha256(u.k) AND m.seq = u.seq";
pub(crate) const PUT_MESSAGES: &str = "INSERT INTO session_messages (sid, session, seq, record) \
     SELECT sha256(k), k, seq, r FROM unnest($1::bytea[], $2::bigint[], $3::bytea[]) AS u(k, seq, r) \
     ON CONFLICT (sid, seq) DO UPDATE SET record = EXCLUDED.record";
pub(crate) const DELETE_ENTRIES: &str = "DELETE FROM session_entries e \
     USING unnest($1::bytea[], $2::bytea[]) AS u(k, n) WHERE e.sid = sha256(u.k) AND e.nid = sha256(u.n)";
pub(crate) const PUT_ENTRIES: &str = "INSERT INTO session_entries (sid, nid, session, name, record) \
     SELECT sha256(k), sha256(n), k, n, r FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS u(k, n, r) \
     ON CONFLICT (sid, nid) DO UPDATE SET record = EXCLUDED.record";
pub(crate) const DELETE_RETAINED: &str =
    "DELETE FROM retained WHERE id IN (SELECT sha256(t) FROM unnest($1::bytea[]) AS t)";
pub(crate) const PUT_RETAINED: &str = "INSERT INTO retained (id, topic, record) \
     SELECT sha256(t), t, r FROM unnest($1::bytea[], $2::bytea[]) AS u(t, r) \
     ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record";

// -- registry -------------------------------------------------------------------------------

/// The statements of one registry table.
pub(crate) struct RegistrySql {
    pub(crate) get: &'static str,
    pub(crate) scan: &'static str,
    pub(crate) create: &'static str,
    pub(crate) put: &'static str,
    pub(crate) delete: &'static str,
    pub(crate) delete_prefix: &'static str,
}

macro_rules! registry_sql {
    ($table:literal) => {
        RegistrySql {
            get: concat!("SELECT value FROM ", $table, " WHERE key = $1"),
            scan: concat!(
                "SELECT key, value FROM ",
                $table,
                " WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2) AND ($3::bytea IS NULL OR key > $3) ",
                "ORDER BY key LIMIT $4"
            ),
            create: concat!("INSERT INTO ", $table, " (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"),
            put: concat!(
                "INSERT INTO ",
                $table,
                " (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
            ),
            delete: concat!("DELETE FROM ", $table, " WHERE key = $1"),
            delete_prefix: concat!("DELETE FROM ", $table, " WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2)"),
        }
    };
}

const TENANTS: RegistrySql = registry_sql!("registry_tenants");
const DEVICES: RegistrySql = registry_sql!("registry_devices");
const API_KEYS: RegistrySql = registry_sql!("registry_apikeys");
const META: RegistrySql = registry_sql!("registry_meta");

/// The statements of `table`.
pub(crate) fn registry(table: Table) -> &'static RegistrySql {
    match table {
        Table::Tenants => &TENANTS,
        Table::Devices => &DEVICES,
        Table::ApiKeys => &API_KEYS,
        Table::Meta => &META,
    }
}

// -- data -------------------------------------------------------------------------------------

/// Locks both counters for the rest of the transaction: writers of every node take turns, so
/// numbers are handed out in commit order.
pub(crate) const LOCK_COUNTERS: &str = "SELECT name, value FROM counters ORDER BY name FOR UPDATE";
/// An unsynced write's commit returns before its WAL record is on disk; [`SYNC`] makes it durable.
pub(crate) const ASYNC_COMMIT: &str = "SET LOCAL synchronous_commit = off";
/// A transaction given an id commits with a WAL record and, committing synchronously, waits until
/// the WAL is on disk up to that record, so every commit before it is durable too.
pub(crate) const SYNC: &str = "BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT";
pub(crate) const HAS_SINKS: &str = "SELECT EXISTS (SELECT 1 FROM outbox_sinks)";
pub(crate) const SET_COUNTERS: &str = "UPDATE counters SET value = CASE name \
     WHEN 'message_seq' THEN $1::bigint WHEN 'outbox_seq' THEN $2::bigint END";
pub(crate) const KNOWN_IDS: &str = "SELECT m.tenant, m.resource, m.id, m.stored_at FROM message_ids m \
     JOIN unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS u(tenant, resource, id) \
     ON m.tenant = u.tenant AND m.resource = u.resource AND m.id = u.id";
pub(crate) const PUT_IDS: &str = "INSERT INTO message_ids (tenant, resource, id, stored_at) \
     SELECT t, r, i, $4 FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS u(t, r, i) \
     ON CONFLICT (tenant, resource, id) DO UPDATE SET stored_at = EXCLUDED.stored_at";
pub(crate) const INSERT_MESSAGES: &str = "INSERT INTO messages (tenant, resource, ts, seq, body, expires_at) \
     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bytea[], $6::bigint[])";
/// One row per stored message with points, copied in binary (`points::PointRows`).
pub(crate) const PUT_POINTS: &str =
    "COPY point_groups (tenant, resource, ts, seq, expires_at, metrics, nums, txts) FROM STDIN (FORMAT binary)";
/// Deletes every message of each resource beyond its newest `keep` (ties: the higher seq is newer),
/// walking each resource's index from its newest message and deleting by row address.
pub(crate) const TRIM_MESSAGES: &str = "DELETE FROM messages WHERE ctid = ANY(ARRAY( \
     SELECT c.ctid FROM unnest($1::bytea[], $2::bytea[], $3::bigint[]) AS u(tenant, resource, keep) \
     CROSS JOIN LATERAL (SELECT ctid FROM messages x WHERE x.tenant = u.tenant AND x.resource = u.resource \
     ORDER BY ts DESC, seq DESC OFFSET u.keep) c))";
pub(crate) const APPEND_OUTBOX: &str = "INSERT INTO outbox (seq, at, tenant, resource, channel, body) \
     SELECT s, $2, t, r, c, b FROM unnest($1::bigint[], $3::bytea[], $4::bytea[], $5::smallint[], $6::bytea[]) \
     AS u(s, t, r, c, b)";

pub(crate) const MESSAGES: &str = "SELECT ts, seq, body FROM messages \
     WHERE tenant = $1 AND resource = $2 AND ($3::bigint IS NULL OR ts >= $3) AND ($4::bigint IS NULL OR ts < $4) \
     AND (expires_at IS NULL OR expires_at > $5) ORDER BY ts DESC, seq DESC LIMIT $6";
pub(crate) const DELETE_MESSAGE_RANGE: &str = "DELETE FROM messages \
     WHERE tenant = $1 AND resource = $2 AND ($3::bigint IS NULL OR ts >= $3) AND ($4::bigint IS NULL OR ts < $4)";
/// Each metric's newest point not expired at `$3`: per `(metric, ts)` the row written last, then
/// per metric the newest of those.
pub(crate) const SERIES: &str = "SELECT DISTINCT ON (metric) metric, ts, num, txt FROM ( \
     SELECT DISTINCT ON (u.metric, p.ts) u.metric, p.ts, u.num, u.txt, p.expires_at FROM point_groups p \
     CROSS JOIN LATERAL unnest(p.metrics, p.nums, p.txts) AS u(metric, num, txt) \
     WHERE p.tenant = $1 AND p.resource = $2 ORDER BY u.metric, p.ts, p.seq DESC) x \
     WHERE expires_at IS NULL OR expires_at > $3 ORDER BY metric, ts DESC";
/// The points of metric `$3` in the range, per timestamp the row written last, unless expired at `$6`.
pub(crate) const SCAN: &str = "SELECT ts, num, txt FROM ( \
     SELECT DISTINCT ON (p.ts) p.ts, p.nums[k.i] AS num, p.txts[k.i] AS txt, p.expires_at FROM point_groups p \
     CROSS JOIN LATERAL (SELECT array_position(p.metrics, $3::bytea) AS i) k \
     WHERE p.tenant = $1 AND p.resource = $2 AND k.i IS NOT NULL \
     AND ($4::bigint IS NULL OR p.ts >= $4) AND ($5::bigint IS NULL OR p.ts < $5) ORDER BY p.ts, p.seq DESC) x \
     WHERE expires_at IS NULL OR expires_at > $6 ORDER BY ts";
/// Removes the named metrics `$5` (every metric when NULL) in the range: a row left without
/// points is deleted, another loses those metrics. Counts each `(metric, ts)` removed once (all
/// parts see the rows as they were before the statement).
pub(crate) const DELETE_POINTS: &str = "WITH \
     d AS (DELETE FROM point_groups WHERE tenant = $1 AND resource = $2 \
       AND ($3::bigint IS NULL OR ts >= $3) AND ($4::bigint IS NULL OR ts < $4) \
       AND ($5::bytea[] IS NULL OR metrics <@ $5::bytea[])), \
     c AS (UPDATE point_groups p SET (metrics, nums, txts) = ( \
       SELECT array_agg(u.m ORDER BY u.i), array_agg(u.n ORDER BY u.i), array_agg(u.t ORDER BY u.i) \
       FROM unnest(p.metrics, p.nums, p.txts) WITH ORDINALITY AS u(m, n, t, i) WHERE NOT (u.m = ANY($5::bytea[]))) \
       WHERE p.tenant = $1 AND p.resource = $2 AND ($3::bigint IS NULL OR p.ts >= $3) AND ($4::bigint IS NULL OR p.ts < $4) \
       AND p.metrics && $5::bytea[] AND NOT (p.metrics <@ $5::bytea[])) \
     SELECT count(*) FROM (SELECT DISTINCT u.metric, p.ts FROM point_groups p \
       CROSS JOIN LATERAL unnest(p.metrics) AS u(metric) WHERE p.tenant = $1 AND p.resource = $2 \
       AND ($3::bigint IS NULL OR p.ts >= $3) AND ($4::bigint IS NULL OR p.ts < $4) \
       AND ($5::bytea[] IS NULL OR u.metric = ANY($5::bytea[]))) removed";
pub(crate) const DROP_TENANT: &str = "WITH \
     m AS (DELETE FROM messages WHERE tenant = $1), i AS (DELETE FROM message_ids WHERE tenant = $1) \
     DELETE FROM point_groups WHERE tenant = $1";
pub(crate) const EXPIRE_MESSAGES: &str = "DELETE FROM messages WHERE expires_at <= $1";
pub(crate) const EXPIRE_POINTS: &str = "DELETE FROM point_groups WHERE expires_at <= $1";
pub(crate) const EXPIRE_IDS: &str = "DELETE FROM message_ids WHERE stored_at <= $1";

// -- outbox -----------------------------------------------------------------------------------

pub(crate) const LAST: &str = "SELECT value FROM counters WHERE name = 'outbox_seq'";
pub(crate) const LOCK_OUTBOX: &str = "SELECT value FROM counters WHERE name = 'outbox_seq' FOR UPDATE";
pub(crate) const FORGET_SINKS: &str = "DELETE FROM outbox_sinks WHERE NOT (name = ANY($1::text[]))";
pub(crate) const ADD_SINKS: &str = "INSERT INTO outbox_sinks (name, cursor) SELECT unnest($1::text[]), $2 \
     ON CONFLICT (name) DO NOTHING";
pub(crate) const SINKS: &str = "SELECT name, cursor FROM outbox_sinks ORDER BY name";
pub(crate) const CURSOR: &str = "SELECT cursor FROM outbox_sinks WHERE name = $1";
pub(crate) const READ: &str =
    "SELECT seq, at, tenant, resource, channel, body FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2";
pub(crate) const ACKNOWLEDGE: &str = "UPDATE outbox_sinks SET cursor = LEAST($2::bigint, \
     (SELECT value FROM counters WHERE name = 'outbox_seq')) WHERE name = $1";
pub(crate) const REWIND: &str = "UPDATE outbox_sinks SET cursor = COALESCE( \
     (SELECT seq - 1 FROM outbox WHERE at >= $2 ORDER BY seq LIMIT 1), \
     (SELECT value FROM counters WHERE name = 'outbox_seq')) WHERE name = $1 RETURNING cursor";
/// Deletes, oldest first, records every sink has acknowledged, up to the first stored at or after
/// `$1`.
pub(crate) const TRIM: &str = "WITH f AS (SELECT COALESCE((SELECT min(cursor) FROM outbox_sinks), \
     (SELECT value FROM counters WHERE name = 'outbox_seq')) AS floor) \
     DELETE FROM outbox WHERE seq <= (SELECT floor FROM f) AND seq < COALESCE( \
     (SELECT min(seq) FROM outbox WHERE seq <= (SELECT floor FROM f) AND at >= $1), (SELECT floor FROM f) + 1)";
pub(crate) const PENDING: &str = "SELECT COALESCE(sum(length(body) + length(tenant) + length(resource) + $2::bigint), 0)::bigint \
     FROM outbox WHERE tenant = $1 AND seq > COALESCE((SELECT min(cursor) FROM outbox_sinks), \
     (SELECT value FROM counters WHERE name = 'outbox_seq'))";
