//! Why a benchmark could not run: bad options, a broker that refused or went away during setup,
//! or a broken reply. Trouble during the measured phase is not an error: it is counted in the
//! report, because a broker that drops clients under load is itself a result.

use std::time::Duration;

use switchyard_codec::{DecodeError, EncodeError};

/// Everything that stops a scenario before it produces a report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options make no sense together (the message says which and why).
    #[error("invalid options: {0}")]
    Options(String),
    /// The target is not a loopback address: load is only ever sent to this machine.
    #[error("{0} is not a loopback address; the load tool only targets this machine")]
    NotLoopback(std::net::IpAddr),
    /// The host name did not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// A socket operation failed during setup.
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The broker closed the connection during setup.
    #[error("the broker closed the connection during {0}")]
    Closed(&'static str),
    /// The broker did not answer in time during setup.
    #[error("no answer from the broker within {0:?} during {1}")]
    Timeout(Duration, &'static str),
    /// The broker refused the CONNECT.
    #[error("the broker refused the connection: CONNACK code {0:#04x}")]
    Refused(u8),
    /// The broker refused a subscription.
    #[error("the broker refused the subscription to {filter:?}: SUBACK code {code:#04x}")]
    SubscribeRefused { filter: String, code: u8 },
    /// The broker sent something other than the expected answer.
    #[error("unexpected packet during {0}")]
    Unexpected(&'static str),
    /// The broker sent bytes that are not a valid MQTT packet.
    #[error("invalid packet from the broker")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded (a topic or field too long).
    #[error("cannot encode a packet")]
    Encode(#[from] EncodeError),
    /// The broker's process could not be read under /proc.
    #[error("cannot read /proc/{pid}/{file}")]
    Proc {
        pid: u32,
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// A client task panicked or was cancelled.
    #[error("a client task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The report could not be written as JSON.
    #[error("cannot write the JSON report")]
    Json(#[from] serde_json::Error),
}

impl BenchError {
    /// A setup I/O error, with a hint when the limit on open files is what failed.
    pub(crate) fn io(what: &'static str, source: std::io::Error) -> BenchError {
        if source.raw_os_error() == Some(EMFILE) {
            return BenchError::Options(format!("{what}: too many open files (raise `ulimit -n`)"));
        }
        BenchError::Io { what, source }
    }
}

/// errno for "too many open files" on Linux.
const EMFILE: i32 = 24;
