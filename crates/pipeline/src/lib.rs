//! The one intake path (SPEC §4.1): every message, from MQTT, HTTP or WebSocket, is parsed,
//! validated and normalized here, its metrics extracted, and handed to the core as
//! [`Ingest`](switchyard_storage::Ingest) records. No I/O: the core stores and delivers.
//!
//! INTERFACE — being written.
