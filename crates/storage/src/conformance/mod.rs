//! Conformance suite: the behaviour every [`SessionStore`] backend shares, so the broker can rely
//! on it whatever backend it was given.
//!
//! A backend describes how to make and reopen its stores by implementing [`Backend`], then runs
//! the suite with [`session_store_conformance!`](crate::session_store_conformance), which expands
//! to one `#[test]` per check, or all at once with [`run_all`]. Each check is also a public
//! function that panics with a message naming what differs.
//!
//! What the checks pin down, beyond the [`SessionStore`] docs:
//! - keys and topics are compared as exact strings (no normalization, no pattern matching), and
//!   [`Snapshot`](crate::Snapshot) lists them in byte order, which is `str`'s `Ord`; keys never contain U+0000;
//! - `seq` is ordered as an unsigned 64-bit integer over its whole range;
//! - `PutSession` on an existing session replaces its record and keeps its messages;
//! - messages and entries stored under a key that has no session record are not loaded;
//! - records come back byte for byte, empty ones included.
//!
//! The registry's checks ([`RegistryStore`](crate::RegistryStore)) live in [`registry`], with
//! their own macro, [`registry_store_conformance!`](crate::registry_store_conformance).
//!
//! The data store's checks ([`DataStore`](crate::DataStore)) live in [`data`], with their own
//! macro, [`data_store_conformance!`](crate::data_store_conformance).
//!
//! A batch that fails must leave nothing behind; the suite cannot provoke a failure in a backend it
//! does not know, so backends test that themselves where they can.

use crate::SessionStore;

mod checks;
pub mod data;
mod data_channels;
pub mod forward;
pub mod registry;
mod support;

pub use checks::*;

/// How the suite gets stores of one backend.
pub trait Backend {
    /// The store under test.
    type Store: SessionStore;
    /// Where one store keeps its data: a directory, a database schema. Dropping it may delete the
    /// data; the suite drops it after every store opened on it.
    type Place;
    /// A new place holding nothing, independent of every other place this returns.
    fn place(&self) -> Self::Place;
    /// Opens the store at `place`. Called again once the previous store there has been dropped,
    /// to check what survives a restart. Panics if the store cannot be opened.
    fn open(&self, place: &Self::Place) -> Self::Store;
}

/// Expands to one `#[test]` per conformance check, each running that check on the [`Backend`]
/// that `$backend` evaluates to. Invoke it in a module of its own: the tests are named after the
/// checks.
///
/// ```
/// use switchyard_storage::{MemoryStore, conformance::Backend};
///
/// struct Memory;
///
/// impl Backend for Memory {
///     type Store = MemoryStore;
///     type Place = MemoryStore;
///     fn place(&self) -> MemoryStore {
///         MemoryStore::default()
///     }
///     fn open(&self, place: &MemoryStore) -> MemoryStore {
///         place.clone()
///     }
/// }
///
/// mod conformance {
///     switchyard_storage::session_store_conformance!(super::Memory);
/// }
/// ```
#[macro_export]
macro_rules! session_store_conformance {
    ($backend:expr) => {
        $crate::__session_store_checks!(__session_store_tests, $backend);
    };
}

/// The one list of checks: calls `$crate::$expand!([check, ...] args)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __session_store_checks {
    ($expand:ident, $($args:tt)*) => {
        $crate::$expand!(
            [
                empty_store_loads_nothing,
                sessions_round_trip,
                records_round_trip_byte_for_byte,
                put_session_replaces_record_and_keeps_messages,
                delete_session_removes_only_its_messages,
                messages_load_in_seq_order,
                put_message_replaces,
                delete_message_removes_one,
                added_messages_store_and_cancel,
                messages_without_session_are_not_loaded,
                retained_put_replace_delete,
                ops_apply_in_batch_order,
                large_batch_is_fully_visible,
                data_survives_reopen,
                concurrent_commits_all_land,
                entries_round_trip_and_go_with_their_session,
                delete_prefix_removes_only_matching_keys,
            ]
            $($args)*
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __session_store_tests {
    ([$($check:ident,)*] $backend:expr) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::$check(&$backend);
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __session_store_run_all {
    ([$($check:ident,)*] $backend:expr) => {
        $($crate::conformance::$check($backend);)*
    };
}

/// Runs every check on `backend`, stopping at the first that fails.
pub fn run_all<B: Backend>(backend: &B) {
    crate::__session_store_checks!(__session_store_run_all, backend);
}
