//! The forwarding outbox: the shared conformance suite on PostgreSQL, where the outbox lives in
//! the same database (and the same transaction) as the messages.

mod conformance {
    switchyard_storage::outbox_conformance!(super::super::data::PgData);
}
