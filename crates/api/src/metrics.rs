//! `GET /metrics` (Prometheus text format): the counters recorded through the `metrics` facade
//! (authentication and authorization outcomes from the Device Hub, …) and the broker core's
//! figures, read from its [`Stats`](switchyard_broker::Stats) at scrape time.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::ApiState;

/// Renders every metric.
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let mut text = state.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    let stats = state.broker.stats();
    let figures = [
        ("switchyard_connections", "gauge", "Open MQTT connections.", &stats.connections),
        ("switchyard_sessions", "gauge", "Sessions held by the broker.", &stats.sessions),
        ("switchyard_messages_received_total", "counter", "PUBLISH packets received.", &stats.messages_received),
        ("switchyard_messages_sent_total", "counter", "PUBLISH packets sent.", &stats.messages_sent),
        ("switchyard_qos0_dropped_total", "counter", "QoS 0 messages dropped for slow clients.", &stats.qos0_dropped),
        ("switchyard_queue_refused_total", "counter", "Messages refused by full session queues.", &stats.queue_refused),
        ("switchyard_oversized_dropped_total", "counter", "Messages too large for a client.", &stats.oversized_dropped),
        (
            "switchyard_retained_refused_total",
            "counter",
            "Messages not retained: namespace at its limit.",
            &stats.retained_refused,
        ),
        ("switchyard_storage_errors_total", "counter", "Failed storage commits.", &stats.storage_errors),
        (
            "switchyard_data_refused_total",
            "counter",
            "MQTT publishes refused as invalid data (5.0: 0x99; 3.1.1: dropped).",
            &stats.data_refused,
        ),
    ];
    for (name, kind, help, value) in figures {
        let _ = write!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n", value.load(Ordering::Relaxed));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
