//! Identity commands that need no running server:
//!
//! - `switchyard tenant create DOMAIN [--config F] [--data-dir D]`: creates a tenant in the
//!   configured store (`[storage]`; the server must be stopped: the embedded store is locked
//!   while it runs, and a running server would not see it; use `POST /admin/tenants` then) and
//!   prints its credentials once, as JSON;
//! - `switchyard device key --master-key-file F RESOURCE_ID`: prints the device key (SPEC §2.2);
//! - `switchyard device token --key K --domain D RESOURCE_ID [--ttl 1h]`: prints a connection
//!   token (SPEC §2.3) signed with the device key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use switchyard_hub::{DEFAULT_DEVICE_CACHE, Registry, system_clock, tenant_credentials};
use switchyard_identity::{DeviceIdentity, DeviceKey, Domain, KeyFile, MasterKey, ResourceId, mint_token};

use crate::config::{Overrides, Settings};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant offline (server stopped) and print its master key and first API key once.
    Create {
        /// The tenant's domain, e.g. app.example.com.
        domain: String,
        /// TOML configuration file (for server.data_dir and server.key_file).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Directory of the embedded storage.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Print a device's key, derived from the tenant's master key (no server needed).
    Key {
        /// File holding the master key (43 characters of unpadded base64url).
        #[arg(long)]
        master_key_file: PathBuf,
        /// The device's resource id.
        resource_id: String,
    },
    /// Print a connection token for a device, signed with its key (no server needed).
    Token {
        /// The device key (43 characters of unpadded base64url; it may start with `-`).
        #[arg(long, allow_hyphen_values = true)]
        key: String,
        /// The tenant's domain (the token's issuer).
        #[arg(long)]
        domain: String,
        /// The device's resource id (the token's subject).
        resource_id: String,
        /// Lifetime: seconds, or a number with s, m, h or d (at most the tenant's maximum,
        /// 24 h by default, or the server refuses the token).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

pub fn tenant(command: TenantCommand) -> anyhow::Result<()> {
    let TenantCommand::Create { domain, config, data_dir } = command;
    let flags = Overrides { data_dir, ..Overrides::default() };
    let settings = Settings::load(config.as_deref(), std::env::vars(), &flags)?;
    let domain =
        Domain::parse(&domain.to_ascii_lowercase()).with_context(|| format!("{domain:?} is not a valid domain"))?;
    let storage = crate::storage::open(&settings)
        .context("opening storage (if the server is running, use POST /admin/tenants instead)")?;
    let key_file = KeyFile::load_or_create(&settings.key_file).context("opening the server key file")?;
    let registry = Registry::open(storage.registry, key_file, system_clock(), DEFAULT_DEVICE_CACHE)
        .context("loading the device registry")?;
    let provisioned = registry.create_tenant(domain).context("creating the tenant")?;
    println!("{}", serde_json::to_string_pretty(&tenant_credentials(&provisioned))?);
    Ok(())
}

fn read_master_key(path: &Path) -> anyhow::Result<MasterKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    MasterKey::from_base64(text.trim())
        .with_context(|| format!("{} must hold a master key: 43 characters of unpadded base64url", path.display()))
}

fn resource(raw: &str) -> anyhow::Result<ResourceId> {
    ResourceId::parse(raw).with_context(|| format!("{raw:?} is not a valid resource id"))
}

pub fn device(command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Key { master_key_file, resource_id } => {
            let master = read_master_key(&master_key_file)?;
            println!("{}", master.derive_device_key(&resource(&resource_id)?).expose_base64());
        }
        DeviceCommand::Token { key, domain, resource_id, ttl } => {
            let key = DeviceKey::from_base64(key.trim())
                .context("--key must be a device key: 43 characters of unpadded base64url")?;
            let domain = Domain::parse(&domain.to_ascii_lowercase())
                .with_context(|| format!("{domain:?} is not a valid domain"))?;
            let Some(ttl) = switchyard_api::parse_ttl(&ttl).filter(|t| *t > Duration::ZERO) else {
                bail!("--ttl {ttl:?}: expected seconds, or a number with s, m, h or d");
            };
            let device = DeviceIdentity { domain, resource: resource(&resource_id)? };
            println!("{}", mint_token(&device, &key, switchyard_broker::now_ms(), ttl, None));
        }
    }
    Ok(())
}
