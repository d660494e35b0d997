//! The pipeline hook: asked about every authorized PUBLISH before the core routes it, so that
//! data (a device's events) is validated, normalized and stored in the same group commit as its
//! acknowledgement (SPEC §4.1). The core knows neither JSON nor metrics: the hook answers with
//! bytes to deliver and [`Ingest`] records to store.
//!
//! Wills are routed as they are, not through the hook: a will is published by the core long
//! after its CONNECT, by no connection, and nothing acknowledges it.

use std::sync::Arc;

use bytes::Bytes;
use switchyard_storage::data::{Block, SeriesInfo, StoredMessage, TimeRange, Written};
use switchyard_storage::{DataStore, Ingest, MessageStore, ResourceKey, SeriesStore, StorageError};

use crate::auth::Principal;

/// What the core does with one PUBLISH.
#[derive(Debug)]
pub enum Intake {
    /// Not pipeline data (the anonymous namespace, commands, other topics): routed as it is.
    Pass,
    /// Pipeline data: `payload` (the normalized message) is delivered live, and `data` is stored
    /// in the commit that acknowledges the PUBLISH. Empty `data` (`store=false`) stores nothing.
    Store { payload: Bytes, data: Vec<Ingest> },
    /// Invalid data: a 5.0 publisher gets its PUBACK/PUBREC with `reason` (0x99 payload format
    /// invalid), a 3.1.1 publisher's message is dropped, counted and logged; the connection stays.
    Refuse { reason: u8, detail: String },
}

/// Decides what a PUBLISH is; implemented by the pipeline, wired by the server.
pub trait IntakeHook: Send + Sync + 'static {
    /// `now_ms` is the receive time, added as `timestamp` where the message has none.
    fn intake(&self, who: &Principal, topic: &str, payload: &Bytes, now_ms: u64) -> Intake;
}

/// No pipeline: every PUBLISH is routed as it is (plain MQTT, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoIntake;

impl IntakeHook for NoIntake {
    fn intake(&self, _who: &Principal, _topic: &str, _payload: &Bytes, _now_ms: u64) -> Intake {
        Intake::Pass
    }
}

/// The pipeline's two parts as the core takes them: the hook asked about every PUBLISH, and the
/// store its data is written to in each group commit. The default is no pipeline: [`NoIntake`]
/// and [`NoData`].
#[derive(Clone)]
pub struct DataPath {
    pub intake: Arc<dyn IntakeHook>,
    pub store: Arc<dyn DataStore>,
}

impl Default for DataPath {
    fn default() -> DataPath {
        DataPath { intake: Arc::new(NoIntake), store: Arc::new(NoData) }
    }
}

impl std::fmt::Debug for DataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPath").finish_non_exhaustive()
    }
}

/// A data store that keeps nothing: every write "succeeds" and every read is empty. For a broker
/// without a pipeline, where no data arrives; the counterpart of `NullStore` for sessions.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoData;

impl MessageStore for NoData {
    fn messages(&self, _: &ResourceKey, _: TimeRange, _: usize, _: i64) -> Result<Vec<StoredMessage>, StorageError> {
        Ok(Vec::new())
    }
    fn current(&self, _: &ResourceKey, _: i64) -> Result<Option<StoredMessage>, StorageError> {
        Ok(None)
    }
    fn delete_messages(&self, _: &ResourceKey, _: TimeRange) -> Result<u64, StorageError> {
        Ok(0)
    }
}

impl SeriesStore for NoData {
    fn series(&self, _: &ResourceKey, _: i64) -> Result<Vec<SeriesInfo>, StorageError> {
        Ok(Vec::new())
    }
    fn scan(&self, _: &ResourceKey, _: &str, _: TimeRange, _: i64) -> Result<Vec<Block>, StorageError> {
        Ok(Vec::new())
    }
    fn delete_points(&self, _: &ResourceKey, _: TimeRange, _: Option<&[String]>) -> Result<u64, StorageError> {
        Ok(0)
    }
}

impl DataStore for NoData {
    fn write(&self, batch: &[Ingest], _now: i64) -> Result<Vec<Written>, StorageError> {
        Ok(vec![Written::Stored { seq: 0 }; batch.len()])
    }
    fn drop_tenant(&self, _tenant: &str) -> Result<(), StorageError> {
        Ok(())
    }
    fn maintain(&self, _now: i64) -> Result<(), StorageError> {
        Ok(())
    }
}
