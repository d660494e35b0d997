//! The `[[forward]]` blocks of the configuration (SPEC §6) and the sinks they make.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
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
