//! The `[pipeline]` settings this crate owns: the message cache size and the input limits.
//!
//! Other keys of the `[pipeline]` table (`idempotency_window`, `max_outbox_bytes`) belong to
//! the store and the forwarder, so this struct does not deny unknown fields: the server's own
//! raw config struct is the place that refuses typos in the table as a whole.

use serde::Deserialize;

use crate::normalize::{DEPTH_CEILING, Limits};

pub use switchyard_identity::MAX_MESSAGE_CACHE;

/// `[pipeline]`: defaults as in SPEC §7 and [`Limits::default`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PipelineConfig {
    /// Messages kept per resource in the message cache (tenants may override).
    pub message_cache: u32,
    /// Messages per request (array length); more is refused with 413.
    pub max_messages_per_request: usize,
    /// Object/array nesting levels within one message (at most 100).
    pub max_depth: usize,
    /// Metrics per message; more is refused with 413.
    pub max_metrics: usize,
    /// Bytes of a flattened metric name.
    pub max_metric_name: usize,
    /// Bytes of a `messageId`.
    pub max_message_id: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            message_cache: 100,
            max_messages_per_request: l.max_messages,
            max_depth: l.max_depth,
            max_metrics: l.max_metrics,
            max_metric_name: l.max_metric_name,
            max_message_id: l.max_message_id,
        }
    }
}

/// A `[pipeline]` value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pipeline.{key} must be between {min} and {max}")]
pub struct ConfigError {
    pub key: &'static str,
    pub min: usize,
    pub max: usize,
}

impl PipelineConfig {
    /// Checks every value is in range (call once at startup, before serving).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, usize, usize, usize); 6] = [
            ("message_cache", self.message_cache as usize, 1, MAX_MESSAGE_CACHE as usize),
            ("max_messages_per_request", self.max_messages_per_request, 1, 1_000_000),
            ("max_depth", self.max_depth, 1, DEPTH_CEILING),
            ("max_metrics", self.max_metrics, 1, 1_000_000),
            ("max_metric_name", self.max_metric_name, 1, 65_536),
            ("max_message_id", self.max_message_id, 1, 65_536),
        ];
        for (key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(ConfigError { key, min, max });
            }
        }
        Ok(())
    }

    /// The input limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_messages: self.max_messages_per_request,
            max_depth: self.max_depth,
            max_metrics: self.max_metrics,
            max_metric_name: self.max_metric_name,
            max_message_id: self.max_message_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        pipeline: PipelineConfig,
    }

    #[test]
    fn defaults_and_partial_tables() {
        let c = PipelineConfig::default();
        assert_eq!(c.message_cache, 100);
        assert_eq!(c.limits(), Limits::default());
        c.validate().unwrap();
        let raw: Raw =
            serde_json::from_str(r#"{"pipeline": {"message_cache": 5, "idempotency_window": "24h"}}"#).unwrap();
        assert_eq!(raw.pipeline, PipelineConfig { message_cache: 5, ..PipelineConfig::default() });
        let raw: Raw = serde_json::from_str("{}").unwrap();
        assert_eq!(raw.pipeline, PipelineConfig::default());
    }

    #[test]
    fn validation() {
        let bad = PipelineConfig { max_depth: 101, ..PipelineConfig::default() };
        assert_eq!(bad.validate(), Err(ConfigError { key: "max_depth", min: 1, max: 100 }));
        let bad = PipelineConfig { message_cache: 0, ..PipelineConfig::default() };
        assert_eq!(bad.validate().unwrap_err().to_string(), "pipeline.message_cache must be between 1 and 100000");
    }
}
