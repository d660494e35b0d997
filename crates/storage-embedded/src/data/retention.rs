//! Retention (SPEC §4.3): with [`DataConfig::retention_ms`](super::DataConfig) set, maintenance
//! deletes the messages and points whose timestamp is older than `now − retention`, so that a
//! store of bounded age holds bounded data. TTL (per request, from the receive time) and
//! retention (per store, by the data's own timestamp) both apply; the shorter wins.
//!
//! The sweep visits every resource with series and every resource's cache, so it runs when the
//! cut-off moved by at least [`RETENTION_STEP_MS`] since the last one, not at every maintenance.

use std::collections::BTreeSet;
use std::ops::Bound;

use switchyard_storage::StorageError;
use switchyard_storage::data::TimeRange;

use super::EmbeddedDataStore;
use super::codec::{self, backend};

/// The cut-off advances in steps of this much: data is kept at most this long past retention.
pub const RETENTION_STEP_MS: i64 = 60_000;

impl EmbeddedDataStore {
    /// Deletes what retention no longer keeps at `now`; a no-op without retention.
    pub(super) fn apply_retention(&self, now: i64) -> Result<(), StorageError> {
        let Some(retention) = self.retention_ms else { return Ok(()) };
        let cutoff = now.saturating_sub(retention);
        {
            let mut state = self.lock();
            if state.retained_until.is_some_and(|done| cutoff < done.saturating_add(RETENTION_STEP_MS)) {
                return Ok(());
            }
            state.retained_until = Some(cutoff);
        }
        let range = TimeRange { from: None, until: Some(cutoff) };
        // The resources with series, each deleted from in its own batch.
        let resources: BTreeSet<Vec<u8>> = {
            let state = self.lock();
            state
                .series
                .iter()
                .map(|series| codec::resource_of(series).map(<[u8]>::to_vec))
                .collect::<Result<_, _>>()?
        };
        for resource in resources {
            self.remove_points_under(&resource, range, None)?;
        }
        // The resources with messages: one seek each, from one resource's keys to the next's.
        let mut after: Bound<Vec<u8>> = Bound::Unbounded;
        loop {
            let next = self.messages.range((after, Bound::Unbounded)).next();
            let Some(guard) = next else { return Ok(()) };
            let key = guard.key().map_err(|e| backend("read messages", e))?;
            let resource = codec::resource_of(&key)?.to_vec();
            self.remove_messages_under(&resource, range)?;
            after = Bound::Excluded([&resource[..], &[0xff; 16][..]].concat());
        }
    }
}
