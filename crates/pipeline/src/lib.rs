//! The one intake path (SPEC §4.1): every message, from MQTT, HTTP or WebSocket, is parsed,
//! validated and normalized here, its metrics extracted, and handed to the core as
//! [`Ingest`](switchyard_storage::Ingest) records. No I/O: the core stores and delivers.
//!
//! - [`normalize()`]: the rules, for a body and a [`Context`]; [`Normalized`] out.
//! - [`Pipeline`]: the configured entry point. [`Pipeline::http`] for the HTTP and WebSocket
//!   endpoints, and the broker's [`IntakeHook`](switchyard_broker::IntakeHook) for MQTT
//!   PUBLISHes to `{domain}/resources/{id}/events` and (from applications) `.../commands`.
//!   Both call [`normalize()`]; [`Pipeline::http_on`] names the channel (commands yield no
//!   metrics and go to the commands history).
//! - [`Options`]: `store`, `forward`, `ttl` from a query string; [`parse_duration`] for the
//!   duration syntax (also fit for config values such as `idempotency_window`).
//! - [`IntakeError`]: `{"error","details"}` with an HTTP status (400/413), or MQTT `0x99`.

mod config;
mod error;
mod hook;
mod normalize;
mod options;
pub mod timestamp;

pub use config::{ConfigError, PipelineConfig};
pub use error::{ErrorKind, IntakeError, MAX_DETAILS};
pub use hook::{Pipeline, TenantData};
pub use normalize::{Channel, Context, DEPTH_CEILING, Limits, Normalized, RESERVED, normalize};
pub use options::{DurationError, MAX_TTL, Options, parse_duration, parse_ttl};
