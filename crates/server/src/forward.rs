//! The `[[forward]]` blocks of the configuration (SPEC §6) and the sinks they make; and
//! `switchyard forward replay --sink NAME --from TIME [--config F] [--data-dir D]`, which moves a
//! sink's cursor back in the embedded store while the server is stopped (the sink resends from
//! there when it starts).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::Deserialize;
use switchyard_forward::{SinkKind, WebhookSink};
use switchyard_storage::forward::valid_sink_name;

/// One `[[forward]]` block as written.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForward {
    /// `"webhook"` (NATS JetStream is not built yet).
    kind: String,
    /// The sink's name (its cursor in the outbox, its metrics label); *default* the kind.
    name: Option<String>,
    url: String,
    /// Signing secret (Standard Webhooks v1).
    secret: Option<String>,
    /// A second secret, valid alongside `secret` while rotating: both signatures are sent.
    next_secret: Option<String>,
    /// Seconds before a request is given up and retried; *default* 10.
    timeout_secs: Option<u64>,
}

/// A checked sink.
#[derive(Clone)]
pub struct SinkSettings {
    pub name: String,
    url: String,
    secrets: Vec<String>,
    timeout: Duration,
}

impl std::fmt::Debug for SinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are never printed.
        f.debug_struct("SinkSettings").field("name", &self.name).field("url", &self.url).finish_non_exhaustive()
    }
}

impl SinkSettings {
    /// The sink to hand the forwarder.
    pub fn sink(&self) -> anyhow::Result<SinkKind> {
        let sink = WebhookSink::new(&self.url, &self.secrets, self.timeout)?;
        Ok(SinkKind::Webhook(Box::new(sink)))
    }
}

/// Checks the `[[forward]]` blocks: known kinds, valid and distinct names, usable URLs.
pub(crate) fn check(raw: Vec<RawForward>) -> anyhow::Result<Vec<SinkSettings>> {
    let mut sinks: Vec<SinkSettings> = Vec::new();
    for block in raw {
        if block.kind != "webhook" {
            bail!("[[forward]] kind = {:?}: only \"webhook\" is supported", block.kind);
        }
        let name = block.name.unwrap_or_else(|| block.kind.clone());
        if !valid_sink_name(&name) {
            bail!("[[forward]] name = {name:?}: 1 to 64 letters, digits, '-' or '_'");
        }
        if sinks.iter().any(|s| s.name == name) {
            bail!("[[forward]] name = {name:?} is used twice; give each sink its own name");
        }
        let secrets: Vec<String> =
            block.secret.into_iter().chain(block.next_secret).filter(|s| !s.is_empty()).collect();
        let settings = SinkSettings {
            name,
            url: block.url,
            secrets,
            timeout: Duration::from_secs(block.timeout_secs.unwrap_or(10).max(1)),
        };
        settings.sink().with_context(|| format!("[[forward]] {}", settings.name))?;
        sinks.push(settings);
    }
    Ok(sinks)
}

/// `POST /admin/forward/{sink}/replay?from=TIME` (admin token): the running sink resends every
/// record still in the outbox stored at or after TIME (as `forward replay --from`). Answers
/// `{"sink", "cursor"}`; 404 for an unknown sink, 400 for a bad time.
pub fn admin_routes(forwarder: switchyard_forward::Forwarder, state: switchyard_api::ApiState) -> axum::Router {
    use axum::extract::{Path, Query};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let handler = move |_: switchyard_api::AdminAuth,
                        Path(sink): Path<String>,
                        Query(query): Query<std::collections::HashMap<String, String>>| {
        let forwarder = forwarder.clone();
        async move {
            let answer = |status: StatusCode, body: serde_json::Value| (status, axum::Json(body)).into_response();
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
            let from = match query.get("from").map(|f| parse_time(f, now)) {
                Some(Ok(from)) => from,
                Some(Err(e)) => {
                    return answer(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"error": "invalid from", "details": [format!("{e:#}")]}),
                    );
                }
                None => {
                    return answer(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"error": "from is required", "details": []}),
                    );
                }
            };
            match forwarder.replay(&sink, from).await {
                Ok(cursor) => answer(StatusCode::OK, serde_json::json!({"sink": sink, "cursor": cursor})),
                Err(e @ switchyard_forward::ForwardError::UnknownSink(_)) => {
                    answer(StatusCode::NOT_FOUND, serde_json::json!({"error": e.to_string(), "details": []}))
                }
                Err(e) => {
                    answer(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"error": e.to_string(), "details": []}))
                }
            }
        }
    };
    axum::Router::new().route("/admin/forward/{sink}/replay", axum::routing::post(handler)).with_state(state)
}

/// `switchyard forward ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ForwardCommand {
    /// Send a sink again every record still in the outbox stored at or after a time (offline:
    /// stop the server first; records every sink acknowledged are kept for an hour).
    Replay {
        /// The sink's name (its `name` in `[[forward]]`, default its kind).
        #[arg(long)]
        sink: String,
        /// RFC 3339 time (2026-01-01T00:00:00Z), epoch milliseconds, or an age (15m, 1h).
        #[arg(long)]
        from: String,
        /// TOML configuration file (for server.data_dir).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// Runs a `forward` command.
pub fn command(command: ForwardCommand) -> anyhow::Result<()> {
    let ForwardCommand::Replay { sink, from, config, data_dir } = command;
    let flags = crate::config::Overrides { data_dir, ..Default::default() };
    let settings = crate::config::Settings::load(config.as_deref(), std::env::vars(), &flags)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let from_ms = parse_time(&from, now)?;
    let store = switchyard_storage_embedded::EmbeddedDataStore::open(
        &settings.data_dir,
        switchyard_storage_embedded::DataConfig::default(),
    )
    .with_context(|| format!("opening the data store in {} (is the server running?)", settings.data_dir.display()))?;
    let cursor = switchyard_storage::OutboxStore::rewind(&store, &sink, from_ms)
        .with_context(|| format!("sink {sink:?} (known: the [[forward]] sinks of the last start)"))?;
    println!("sink {sink}: resends from record {} when the server starts", cursor + 1);
    Ok(())
}

/// Epoch ms from an integer, an age before `now` (`15m`, `1h`, `P1D`) or an RFC 3339 time.
fn parse_time(text: &str, now: i64) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(age) = switchyard_pipeline::parse_duration(text) {
        return Ok(now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
    }
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--from {text:?}: not an RFC 3339 time, epoch milliseconds or an age"))?;
    Ok(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn replay_times() {
        let now = 1_700_000_000_000;
        assert_eq!(super::parse_time("1234", now).unwrap(), 1234);
        assert_eq!(super::parse_time("1h", now).unwrap(), now - 3_600_000);
        assert_eq!(super::parse_time("2023-11-14T22:13:20Z", now).unwrap(), 1_700_000_000_000);
        assert!(super::parse_time("yesterday", now).is_err());
    }

    use super::*;

    fn parse(text: &str) -> anyhow::Result<Vec<SinkSettings>> {
        #[derive(Deserialize)]
        struct Doc {
            forward: Vec<RawForward>,
        }
        check(toml::from_str::<Doc>(text)?.forward)
    }

    #[test]
    fn webhook_blocks() {
        let sinks = parse(
            "[[forward]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9000/hook\"\nsecret = \"s\"\nnext_secret = \"t\"\n\
             [[forward]]\nkind = \"webhook\"\nname = \"audit\"\nurl = \"http://127.0.0.1:9001/\"\n",
        )
        .unwrap();
        assert_eq!(sinks.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["webhook", "audit"]);
        assert_eq!(sinks[0].secrets.len(), 2);
        assert!(!format!("{:?}", sinks[0]).contains("\"s\""), "secrets are not printed");
    }

    #[test]
    fn bad_blocks_are_refused() {
        let url = "url = \"http://127.0.0.1:9000/\"";
        assert!(parse(&format!("[[forward]]\nkind = \"smtp\"\n{url}")).is_err());
        assert!(parse(&format!("[[forward]]\nkind = \"webhook\"\nname = \"a b\"\n{url}")).is_err());
        assert!(
            parse(&format!("[[forward]]\nkind = \"webhook\"\n{url}\n[[forward]]\nkind = \"webhook\"\n{url}")).is_err()
        );
        assert!(parse("[[forward]]\nkind = \"webhook\"\nurl = \"ftp://x/\"").is_err());
        assert!(parse(&format!("[[forward]]\nkind = \"webhook\"\n{url}\ncolour = 1")).is_err());
    }
}
