//! First start (SPEC §7): with no admin token stored yet, the server creates one and, unless it
//! exists already, the configured tenant (*default* `localhost`), and writes them once to
//! `DATA_DIR/initial-credentials.json` (mode 0600):
//!
//! ```json
//! {"admin_token": T, "tenant": {"domain": D, "master_key": K, "api_key": A, "api_secret": S}}
//! ```
//!
//! (`tenant` is absent when that tenant existed before the first start, e.g. created offline
//! with `switchyard tenant create`: its master key was shown then.) Only the admin token's hash
//! is stored. The file is written (to a temporary name, fsynced, renamed) *before* the registry
//! commit, so a crash between the two leaves credentials that do not work yet and the next start
//! bootstraps again, overwriting them; never stored credentials that nobody was shown.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;
use switchyard_identity::{AdminToken, Domain, Provisioned, Tenant};
use switchyard_storage::{RegistryOp, Table};

use crate::records::{self, tenant_key};
use crate::{HubError, Registry};

/// Name of the first-start credentials file inside the data directory.
pub const INITIAL_CREDENTIALS: &str = "initial-credentials.json";

/// The once-only view of a new tenant's secrets: `{"domain", "master_key", "api_key",
/// "api_secret"}` (admin API, CLI and the initial credentials file share it).
pub fn tenant_credentials(p: &Provisioned) -> serde_json::Value {
    json!({
        "domain": p.tenant.domain,
        "master_key": p.master_key.expose_base64(),
        "api_key": p.api_key.id,
        "api_secret": p.api_secret.expose_base64(),
    })
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |source| HubError::Io { path: path.display().to_string(), source }
}

/// Writes `contents` to `path` with mode 0600, atomically (temporary file, fsync, rename).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), HubError> {
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io_error(&tmp))?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

impl Registry {
    /// Runs the first-start bootstrap if no admin token exists; returns the credentials file
    /// written, or `None` when this is not a first start. Logs nothing: the caller logs the
    /// path, never the contents.
    pub fn bootstrap(&self, data_dir: &Path, domain: &Domain) -> Result<Option<PathBuf>, HubError> {
        let _w = self.writer();
        if self.admin_token_hash().is_some() {
            return Ok(None);
        }
        let admin = AdminToken::generate()?;
        let provisioned = match self.tenant(domain) {
            Some(_) => None,
            None => Some(Tenant::provision(domain.clone(), &self.key_file, self.now_ms())?),
        };
        let mut file = json!({"admin_token": admin.expose_base64()});
        let mut ops = Vec::new();
        if let Some(p) = &provisioned {
            file["tenant"] = tenant_credentials(p);
            ops.push(RegistryOp::Create {
                table: Table::Tenants,
                key: tenant_key(domain),
                value: records::encode(&p.tenant),
            });
            ops.push(records::create_api_key(&p.api_key));
        }
        std::fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
        let path = data_dir.join(INITIAL_CREDENTIALS);
        let text = serde_json::to_vec_pretty(&file).expect("credentials serialize");
        write_private(&path, &text)?;
        self.set_admin_token(admin.hash(), ops)?;
        if let Some(p) = &provisioned {
            self.cache_provisioned(p);
        }
        Ok(Some(path))
    }
}
