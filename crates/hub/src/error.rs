//! [`HubError`]: why a Device Hub operation failed. The HTTP layer maps each kind to one status
//! code; the messages name what is wrong without any secret.

use switchyard_identity::{EntropyError, KeyFileError, RotateError, SealError};
use switchyard_storage::{RegistryError, StorageError};

/// Why a Device Hub operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The tenant, device or API key does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// It exists already.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The operation is refused for this target (a token for a blocked device).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The request is not acceptable (a bad name, metadata, lifetime…).
    #[error("{0}")]
    Invalid(String),
    /// The registry store failed.
    #[error("registry storage failed: {0}")]
    Storage(#[from] StorageError),
    /// A stored record does not parse.
    #[error("stored {what} record {key:?} is unreadable: {detail}")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// Its key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A tenant's master keys do not open with this server's key file.
    #[error("master keys of tenant {domain} do not open with this key file: {source}")]
    Sealed {
        /// The tenant.
        domain: String,
        /// Why.
        source: SealError,
    },
    /// The key file could not be read or created.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The operating system gave no randomness.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
    /// The initial credentials file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The broker could not delete a tenant's state: it is shutting down or its storage is gone.
    #[error("the broker could not delete the tenant's sessions and messages")]
    Broker,
    /// A blocking task was cancelled or panicked.
    #[error("registry task failed: {0}")]
    Task(String),
}

impl HubError {
    /// A registry batch failed: a conflict names `what` already exists.
    pub(crate) fn from_commit(what: &'static str, e: RegistryError) -> Self {
        match e {
            RegistryError::Conflict { .. } => HubError::Conflict(what),
            RegistryError::Storage(e) => HubError::Storage(e),
        }
    }

    pub(crate) fn from_rotate(domain: &str, e: RotateError) -> Self {
        match e {
            RotateError::Seal(source) => HubError::Sealed { domain: domain.to_owned(), source },
            RotateError::Entropy(e) => HubError::Entropy(e),
        }
    }
}
