//! The `switchyard` binary: parses the command line and runs the chosen command.
//!
//! - `serve`: the broker, wired from typed settings (see `serve.rs`, storage in `storage.rs`).
//! - `bench`: the load generator (`switchyard-bench`).
//! - `config example`: prints a commented, complete configuration.
//! - `tenant create`, `device key`, `device token`: identity commands without a server
//!   (see `identity.rs`).

mod config;
mod forward;
mod identity;
mod serve;
mod storage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about = "Multi-tenant IoT broker: MQTT 3.1.1/5.0, HTTP and WebSocket")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (embedded storage in ./data by default, or PostgreSQL; no config file needed).
    Serve {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Directory for embedded storage.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// MQTT listen address, e.g. 0.0.0.0:1883.
        #[arg(long)]
        mqtt_listen: Option<String>,
        /// HTTP listen address, e.g. 0.0.0.0:8080.
        #[arg(long)]
        http_listen: Option<String>,
    },
    /// Load generator: run a benchmark scenario against a broker on this machine.
    Bench(Box<switchyard_bench::Args>),
    /// Tenants (offline, against the configured store).
    Tenant {
        #[command(subcommand)]
        command: identity::TenantCommand,
    },
    /// Device keys and connection tokens, computed offline.
    Device {
        #[command(subcommand)]
        command: identity::DeviceCommand,
    },
    /// Forwarding to sinks (offline, against the configured store).
    Forward {
        #[command(subcommand)]
        command: forward::ForwardCommand,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a commented, complete configuration file.
    Example,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config, data_dir, mqtt_listen, http_listen } => {
            let flags = config::Overrides { data_dir, mqtt_listen, http_listen };
            config::Settings::load(config.as_deref(), std::env::vars(), &flags).and_then(serve::run)
        }
        Command::Bench(args) => switchyard_bench::run(*args).map_err(anyhow::Error::from),
        Command::Tenant { command } => identity::tenant(command),
        Command::Device { command } => identity::device(command),
        Command::Forward { command } => forward::command(command),
        Command::Config { command: ConfigCommand::Example } => {
            print!("{}", config::EXAMPLE);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command, identity};

    #[test]
    fn a_device_key_may_start_with_a_hyphen() {
        // Keys are base64url: one in 64 starts with `-`, which must stay the option's value.
        let line = ["switchyard", "device", "token", "--key", "-uX9", "--domain", "a.example", "dev-1"];
        let cli = Cli::try_parse_from(line).expect("parsed");
        assert!(
            matches!(cli.command, Command::Device { command: identity::DeviceCommand::Token { ref key, .. } } if key == "-uX9")
        );
    }
}
