//! The `[[forward]]` blocks of the configuration (SPEC §6) and the sinks they make; and
//! `switchyard forward replay --sink NAME --from TIME [--config F] [--data-dir D]`, which moves a
//! sink's cursor back in the configured store (`[storage]`) while the server is stopped (the sink
//! resends from there when it starts).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::Deserialize;
use switchyard_forward::{JetStreamConfig, JetStreamSink, NatsAuth, SinkKind, WebhookSink};
use switchyard_storage::forward::valid_sink_name;

/// One `[[forward]]` block as written.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForward {
    /// `"webhook"` or `"jetstream"` (also written `"nats"`).
    kind: String,
    /// The sink's name (its cursor in the outbox, its metrics label); *default* the kind.
    name: Option<String>,
    url: String,
    /// Seconds before a request (webhook) or a connection, stream request or PubAck (JetStream)
    /// is given up and retried; *default* 10.
    timeout_secs: Option<u64>,
    /// PEM certificates trusted beside the system's roots for the sink's TLS certificate
    /// (`https://` webhooks; JetStream, where it also requires TLS).
    ca_file: Option<PathBuf>,
    /// Webhook: signing secret (Standard Webhooks v1).
    secret: Option<String>,
    /// Webhook: a second secret, valid alongside `secret` while rotating: both signatures are sent.
    next_secret: Option<String>,
    /// JetStream: the subjects' first tokens; *default* `"switchyard"`.
    #[serde(alias = "subject")]
    subject_prefix: Option<String>,
    /// JetStream: the stream's name; *default* `"SWITCHYARD"`.
    stream: Option<String>,
    /// JetStream: create the stream (subjects `{subject_prefix}.>`) when missing; *default* true.
    create_stream: Option<bool>,
    /// JetStream: publish acks awaited at once; *default* 256.
    max_in_flight: Option<usize>,
    /// JetStream: user name, with the password in the environment variable `password_env`.
    user: Option<String>,
    password_env: Option<String>,
    /// JetStream: the environment variable holding an authentication token.
    token_env: Option<String>,
}

/// A checked sink.
#[derive(Clone)]
pub struct SinkSettings {
    pub name: String,
    target: Target,
}

/// Where a checked sink sends.
#[derive(Clone)]
enum Target {
    Webhook { url: String, secrets: Vec<String>, timeout: Duration, ca_file: Option<PathBuf> },
    JetStream(JetStreamConfig),
}

impl std::fmt::Debug for SinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets are never printed.
        let mut out = f.debug_struct("SinkSettings");
        out.field("name", &self.name);
        match &self.target {
            Target::Webhook { url, .. } => out.field("webhook", url),
            Target::JetStream(config) => out.field("jetstream", config),
        };
        out.finish_non_exhaustive()
    }
}

impl SinkSettings {
    /// The sink to hand the forwarder (nothing is connected yet).
    pub fn sink(&self) -> anyhow::Result<SinkKind> {
        Ok(match &self.target {
            Target::Webhook { url, secrets, timeout, ca_file } => {
                SinkKind::Webhook(Box::new(WebhookSink::new(url, secrets, *timeout, ca_file.as_deref())?))
            }
            Target::JetStream(config) => SinkKind::JetStream(Box::new(JetStreamSink::new(config.clone())?)),
        })
    }
}

/// The value of the environment variable `name`, named by `[[forward]] key`.
fn from_env(key: &str, name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{key} = {name:?}: that environment variable is not set"))
}

/// The target of one block, refusing settings of the other kind.
fn target(block: RawForward, timeout: Duration) -> anyhow::Result<Target> {
    let foreign = |given: &[(&str, bool)]| -> anyhow::Result<()> {
        match given.iter().find(|(_, set)| *set) {
            Some((key, _)) => bail!("{key} does not apply to kind = {:?}", block.kind),
            None => Ok(()),
        }
    };
    match block.kind.as_str() {
        "webhook" => {
            foreign(&[
                ("subject_prefix", block.subject_prefix.is_some()),
                ("stream", block.stream.is_some()),
                ("create_stream", block.create_stream.is_some()),
                ("max_in_flight", block.max_in_flight.is_some()),
                ("user", block.user.is_some()),
                ("password_env", block.password_env.is_some()),
                ("token_env", block.token_env.is_some()),
            ])?;
            let secrets = block.secret.into_iter().chain(block.next_secret).filter(|s| !s.is_empty()).collect();
            Ok(Target::Webhook { url: block.url, secrets, timeout, ca_file: block.ca_file })
        }
        "jetstream" | "nats" => {
            foreign(&[("secret", block.secret.is_some()), ("next_secret", block.next_secret.is_some())])?;
            let auth = match (block.user, block.password_env, block.token_env) {
                (None, None, None) => NatsAuth::None,
                (Some(user), Some(password_env), None) => {
                    NatsAuth::UserPassword { user, password: from_env("password_env", &password_env)? }
                }
                (None, None, Some(token_env)) => NatsAuth::Token(from_env("token_env", &token_env)?),
                _ => bail!("give user with password_env, or token_env alone"),
            };
            Ok(Target::JetStream(JetStreamConfig {
                url: block.url,
                auth,
                ca_file: block.ca_file,
                subject_prefix: block.subject_prefix.unwrap_or_else(|| "switchyard".into()),
                stream: block.stream.unwrap_or_else(|| "SWITCHYARD".into()),
                create_stream: block.create_stream.unwrap_or(true),
                max_in_flight: block.max_in_flight.unwrap_or(256),
                timeout,
            }))
        }
        other => bail!("kind = {other:?}: expected \"webhook\" or \"jetstream\""),
    }
}

/// Checks the `[[forward]]` blocks: known kinds, valid and distinct names, usable settings.
pub(crate) fn check(raw: Vec<RawForward>) -> anyhow::Result<Vec<SinkSettings>> {
    let mut sinks: Vec<SinkSettings> = Vec::new();
    for block in raw {
        let name = block.name.clone().unwrap_or_else(|| block.kind.clone());
        if !valid_sink_name(&name) {
            bail!("[[forward]] name = {name:?}: 1 to 64 letters, digits, '-' or '_'");
        }
        if sinks.iter().any(|s| s.name == name) {
            bail!("[[forward]] name = {name:?} is used twice; give each sink its own name");
        }
        let timeout = Duration::from_secs(block.timeout_secs.unwrap_or(10).max(1));
        let target = target(block, timeout).with_context(|| format!("[[forward]] {name}"))?;
        let settings = SinkSettings { name, target };
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
    let storage = crate::storage::open(&settings).context("opening storage (is the server running?)")?;
    let cursor = (storage.outbox.rewind(&sink, from_ms))
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
        assert!(matches!(&sinks[0].target, Target::Webhook { secrets, .. } if secrets.len() == 2));
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
        assert!(parse(&format!("[[forward]]\nkind = \"webhook\"\n{url}\nstream = \"S\"")).is_err());
        // A ca_file must exist, and a plain http:// webhook has no use for one.
        let missing = "ca_file = \"/nonexistent/ca.pem\"";
        assert!(parse(&format!("[[forward]]\nkind = \"webhook\"\nurl = \"https://h/\"\n{missing}")).is_err());
        assert!(parse(&format!("[[forward]]\nkind = \"jetstream\"\nurl = \"tls://h:4222\"\n{missing}")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let pem = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap().cert.pem();
        std::fs::write(&ca, pem).unwrap();
        let ca_file = format!("ca_file = {:?}", ca.display().to_string());
        assert!(parse(&format!("[[forward]]\nkind = \"webhook\"\n{url}\n{ca_file}")).is_err());
        assert!(parse(&format!("[[forward]]\nkind = \"webhook\"\nurl = \"https://h/\"\n{ca_file}")).is_ok());
    }

    #[test]
    fn jetstream_blocks() {
        let sinks = parse(
            "[[forward]]\nkind = \"jetstream\"\nurl = \"nats://127.0.0.1:4222\"\n\
             [[forward]]\nkind = \"nats\"\nname = \"rules\"\nurl = \"nats://127.0.0.1:4222\"\n\
             subject = \"switchyard.events\"\nstream = \"EVENTS\"\ncreate_stream = false\nmax_in_flight = 8\n",
        )
        .unwrap();
        let Target::JetStream(first) = &sinks[0].target else { panic!("a JetStream sink") };
        assert_eq!(sinks[0].name, "jetstream");
        assert_eq!((first.subject_prefix.as_str(), first.stream.as_str()), ("switchyard", "SWITCHYARD"));
        assert!(first.create_stream && first.max_in_flight == 256);
        let Target::JetStream(second) = &sinks[1].target else { panic!("a JetStream sink") };
        assert_eq!((second.subject_prefix.as_str(), second.stream.as_str()), ("switchyard.events", "EVENTS"));
        assert!(!second.create_stream && second.max_in_flight == 8);

        let nats = "[[forward]]\nkind = \"jetstream\"\nurl = \"nats://127.0.0.1:4222\"\n";
        assert!(parse(&format!("{nats}secret = \"s\"")).is_err(), "webhook settings are refused");
        assert!(parse(&format!("{nats}subject_prefix = \"a.*\"")).is_err());
        assert!(parse(&format!("{nats}max_in_flight = 0")).is_err());
        assert!(parse(&format!("{nats}user = \"u\"")).is_err(), "a user needs password_env");
        assert!(parse(&format!("{nats}token_env = \"SWITCHYARD_TEST_UNSET_TOKEN\"")).is_err());
        let with_path = parse(&format!("{nats}user = \"u\"\npassword_env = \"PATH\"")).unwrap();
        assert!(!format!("{:?}", with_path[0]).contains(&std::env::var("PATH").unwrap()), "secrets are not printed");
    }
}
