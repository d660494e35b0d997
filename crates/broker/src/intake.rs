//! The pipeline hook: asked about every authorized PUBLISH before the core routes it, so that
//! data (a device's events) is validated, normalized and stored in the same group commit as its
//! acknowledgement (SPEC §4.1). The core knows neither JSON nor metrics: the hook answers with
//! bytes to deliver and [`Ingest`] records to store.

use bytes::Bytes;
use switchyard_storage::Ingest;

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
