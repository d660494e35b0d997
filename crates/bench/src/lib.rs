//! `switchyard bench`: a load generator for MQTT brokers, ours or any other, on this machine.
//!
//! It speaks MQTT through our codec on plain tokio sockets, with no client library in between,
//! so the tool costs little of the two cores it shares with the broker it measures. Every client
//! lives in one process and stamps each payload with the publish time on one monotonic clock, so
//! latency is end to end: publisher socket → broker → subscriber socket.
//!
//! Modules:
//! - [`options`]: the command line and its checked form (loopback only, always time-bounded).
//! - [`scenario`]: the scenario table; each row turns options into a [`scenario::Workload`].
//! - `flow`: the runner of publish/subscribe workloads (rates, flow control, latency, drain).
//! - `conns`: the idle-connections and connection-rate runners, and parallel connect.
//! - `ingest`: the durable-ingest runner (devices publishing events to the data pipeline),
//!   with `events` (what they publish) and `verify` (the stored-points check over HTTP).
//! - `bridge`: messages crossing protocols (HTTP → MQTT, MQTT → SSE, MQTT → WebSocket) with
//!   their end-to-end latency, with `bridge_ends` (senders and receivers) and `http` (a
//!   keep-alive HTTP/1.1 client and the opening of streams).
//! - `client`: the minimal MQTT client: one stream, two buffers, encoded-once packets.
//! - `stats`: latency histograms and what `/proc` says about the broker.
//! - [`report`]: the report, as JSON or text.
//! - `progress`: the progress bar on stderr.
//! - [`error`]: why a run could not produce a report.

mod bridge;
mod bridge_ends;
mod client;
mod conns;
pub mod error;
mod events;
mod flow;
mod http;
mod ingest;
pub mod options;
mod progress;
pub mod report;
pub mod scenario;
mod stats;
mod verify;

use std::io::IsTerminal;
use std::sync::Arc;

pub use error::BenchError;
pub use options::{Args, Options};
pub use report::Report;

use crate::conns::Ctx;
use crate::progress::Progress;
use crate::report::Figures;
use crate::scenario::{Names, Workload};

/// Run the command line: one scenario, its report on stdout (text, or JSON with `--json`).
pub fn run(args: Args) -> Result<(), BenchError> {
    let options = Options::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(BenchError::Runtime)?;
    let show_progress = std::io::stderr().is_terminal();
    let report = runtime.block_on(run_scenario(options.clone(), show_progress))?;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// Run one scenario inside the current tokio runtime and return its report.
pub async fn run_scenario(options: Options, show_progress: bool) -> Result<Report, BenchError> {
    let names = Names::unique(&options.topic_prefix);
    let workload = (options.scenario.plan)(&options, &names)?;
    let ctx = Arc::new(Ctx { options, names });
    let progress = Progress::new(show_progress);
    let figures = match workload {
        Workload::Flow(plan) => flow::run(plan, &ctx, &progress).await.map(Figures::Flow),
        Workload::Idle { connections } => conns::idle(connections, &ctx, &progress).await.map(Figures::Idle),
        Workload::ConnectRate { workers } => conns::connect_rate(workers, &ctx, &progress).await.map(Figures::Connect),
        Workload::Ingest(plan) => ingest::run(plan, &ctx, &progress).await.map(Figures::Ingest),
        Workload::Bridge(plan) => bridge::run(plan, &ctx, &progress).await.map(Figures::Bridge),
    };
    progress.finish();
    Ok(Report::new(&ctx.options, figures?))
}
