//! Master keys at rest: the server's [`KeyFile`] encrypts each tenant's master key into a
//! [`SealedKey`] before it is stored, so a copied data directory without the key file reveals no
//! master key (and so no device key).
//!
//! Cipher: XChaCha20-Poly1305 with a random 24-byte nonce per seal (random nonces are safe at
//! that size). The tenant's domain is authenticated as associated data, so a sealed key moved
//! to another tenant's row does not open. Sealed layout: `0x01 || nonce (24) || ciphertext (32)
//! || tag (16)`, 73 bytes, serialized as unpadded base64url.
//!
//! The key file holds 32 random bytes as one line of unpadded base64url. It is created with
//! mode 0600 if absent, and an existing one that group or others may access is refused
//! ([`check_private`], Unix) rather than used; keep it outside the data directory and out of
//! data backups, and back it up separately: without it no sealed master key can be opened.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::ids::Domain;
use crate::secret::{Bytes32, EntropyError, MasterKey, decode32, random_bytes};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const SEALED_LEN: usize = 1 + NONCE_LEN + 32 + 16;
const AAD_PREFIX: &[u8] = b"switchyard/master-key/v1:";

/// Reading or creating the key file failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read, created or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// Group or others may access the file (Unix mode bits `0o077`).
    #[error("{path} is accessible to group or others (mode 0{mode:03o}); it holds a secret: run `chmod 600 {path}`")]
    NotPrivate {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold one line of 43 base64url characters.
    #[error("key file {path} does not hold a 32-byte key in unpadded base64url")]
    Format {
        /// The file.
        path: String,
    },
    /// No randomness for a new key.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
}

/// A sealed master key could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Wrong length or unknown version byte.
    #[error("sealed key has an unknown format")]
    Format,
    /// Authentication failed: another key file, another tenant, or a damaged value.
    #[error("sealed key does not open with this key file for this tenant")]
    Auth,
}

/// A master key encrypted under the server's key file, bound to one tenant's domain.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SealedKey(Vec<u8>);

impl fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedKey(..)")
    }
}

impl TryFrom<String> for SealedKey {
    type Error = SealError;
    fn try_from(s: String) -> Result<Self, SealError> {
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| SealError::Format)?;
        Self::from_bytes(bytes)
    }
}

impl From<SealedKey> for String {
    fn from(k: SealedKey) -> String {
        URL_SAFE_NO_PAD.encode(k.0)
    }
}

impl SealedKey {
    /// The raw sealed bytes (for storage backends that keep bytes rather than strings).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Takes raw sealed bytes back.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, SealError> {
        if bytes.len() != SEALED_LEN || bytes[0] != VERSION {
            return Err(SealError::Format);
        }
        Ok(Self(bytes))
    }
}

/// The server's key-encryption key. `Debug` prints `<redacted>`.
pub struct KeyFile(Bytes32);

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFile(<redacted>)")
    }
}

impl KeyFile {
    /// A fresh random key, in memory only (tests; [`KeyFile::load_or_create`] for servers).
    pub fn generate() -> Result<Self, EntropyError> {
        random_bytes().map(|b| Self(Bytes32::new(b)))
    }

    /// Reads an existing key file, refusing one that is not private ([`check_private`]).
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io { path: path.display().to_string(), source };
        let mut file = std::fs::File::open(path).map_err(io)?;
        check_private(path, &file.metadata().map_err(io)?)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).map_err(io)?;
        decode32(text.trim())
            .map(|b| Self(Bytes32::new(b)))
            .map_err(|_| KeyFileError::Format { path: path.display().to_string() })
    }

    /// Reads the key file, or creates it (mode 0600 on Unix, never overwriting) with a fresh
    /// key if it does not exist. The parent directory must exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let key = Self::generate()?;
        match options.open(path) {
            Ok(mut file) => {
                let mut line = format!("{}\n", URL_SAFE_NO_PAD.encode(key.0.expose()));
                let written = file.write_all(line.as_bytes()).and_then(|()| file.sync_all());
                zeroize::Zeroize::zeroize(&mut line);
                if let Err(source) = written {
                    // Leave no empty or partial key file behind for the next start to trip on.
                    let _ = std::fs::remove_file(path);
                    return Err(KeyFileError::Io { path: path.display().to_string(), source });
                }
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(source) => Err(KeyFileError::Io { path: path.display().to_string(), source }),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.expose().into())
    }

    /// Encrypts `key` for the tenant `domain`.
    pub fn seal(&self, domain: &Domain, key: &MasterKey) -> Result<SealedKey, EntropyError> {
        let nonce: [u8; NONCE_LEN] = random_bytes()?;
        let aad = aad(domain);
        let ciphertext = self
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: key.bytes(), aad: &aad })
            .expect("XChaCha20-Poly1305 accepts a 32-byte message");
        let mut sealed = Vec::with_capacity(SEALED_LEN);
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(SealedKey(sealed))
    }

    /// Decrypts a key sealed for the tenant `domain` by this key file.
    pub fn open(&self, domain: &Domain, sealed: &SealedKey) -> Result<MasterKey, SealError> {
        let bytes = &sealed.0;
        if bytes.len() != SEALED_LEN || bytes[0] != VERSION {
            return Err(SealError::Format);
        }
        let nonce: [u8; NONCE_LEN] = bytes[1..1 + NONCE_LEN].try_into().map_err(|_| SealError::Format)?;
        let aad = aad(domain);
        let mut plain = self
            .cipher()
            .decrypt(&XNonce::from(nonce), Payload { msg: &bytes[1 + NONCE_LEN..], aad: &aad })
            .map_err(|_| SealError::Auth)?;
        let key = <[u8; 32]>::try_from(plain.as_slice()).map(MasterKey::from_bytes).map_err(|_| SealError::Format);
        zeroize::Zeroize::zeroize(&mut plain);
        key
    }
}

/// Refuses a secret file that group or others may read, write or execute (Unix mode bits
/// `0o077`); the error names the file and the fix, `chmod 600`. Elsewhere it accepts any file.
pub fn check_private(path: &Path, metadata: &std::fs::Metadata) -> Result<(), KeyFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::NotPrivate { path: path.display().to_string(), mode });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, metadata);
    Ok(())
}

fn aad(domain: &Domain) -> Vec<u8> {
    [AAD_PREFIX, domain.as_str().as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn seal_round_trip() {
        let kf = KeyFile::generate().unwrap();
        let key = MasterKey::generate().unwrap();
        let d = domain("app.example.com");
        let sealed = kf.seal(&d, &key).unwrap();
        assert_eq!(sealed.as_bytes().len(), SEALED_LEN);
        assert!(!sealed.as_bytes().windows(32).any(|w| w == key.bytes().as_slice()));
        assert_eq!(kf.open(&d, &sealed).unwrap().bytes(), key.bytes());
        // Fresh nonce every time.
        assert_ne!(kf.seal(&d, &key).unwrap(), sealed);
    }

    #[test]
    fn open_refuses_wrong_file_tenant_or_damage() {
        let kf = KeyFile::generate().unwrap();
        let key = MasterKey::generate().unwrap();
        let d = domain("app.example.com");
        let sealed = kf.seal(&d, &key).unwrap();

        let other = KeyFile::generate().unwrap();
        assert_eq!(other.open(&d, &sealed).err(), Some(SealError::Auth));
        assert_eq!(kf.open(&domain("evil.example.com"), &sealed).err(), Some(SealError::Auth));
        for i in 1..SEALED_LEN {
            let mut bytes = sealed.as_bytes().to_vec();
            bytes[i] ^= 0x01;
            let damaged = SealedKey::from_bytes(bytes).unwrap();
            assert_eq!(kf.open(&d, &damaged).err(), Some(SealError::Auth), "byte {i}");
        }
        let mut bytes = sealed.as_bytes().to_vec();
        bytes[0] = 2;
        assert_eq!(SealedKey::from_bytes(bytes).err(), Some(SealError::Format));
        assert_eq!(SealedKey::from_bytes(vec![VERSION; 10]).err(), Some(SealError::Format));
    }

    #[test]
    fn sealed_key_serde() {
        let kf = KeyFile::generate().unwrap();
        let d = domain("a");
        let sealed = kf.seal(&d, &MasterKey::generate().unwrap()).unwrap();
        let json = serde_json::to_string(&sealed).unwrap();
        let back: SealedKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sealed);
        assert!(serde_json::from_str::<SealedKey>("\"AAAA\"").is_err());
        assert_eq!(format!("{sealed:?}"), "SealedKey(..)");
    }

    #[test]
    fn key_file_created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.key");
        let created = KeyFile::load_or_create(&path).unwrap();
        let loaded = KeyFile::load_or_create(&path).unwrap();
        assert_eq!(created.0.expose(), loaded.0.expose());
        assert_eq!(KeyFile::load(&path).unwrap().0.expose(), created.0.expose());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 44);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A key sealed with the created file opens with the reloaded one.
        let d = domain("a.b");
        let key = MasterKey::generate().unwrap();
        let sealed = created.seal(&d, &key).unwrap();
        assert_eq!(loaded.open(&d, &sealed).unwrap().bytes(), key.bytes());
    }

    #[test]
    fn key_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(KeyFile::load(&missing), Err(KeyFileError::Io { .. })));
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "not a key\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(KeyFile::load_or_create(&bad), Err(KeyFileError::Format { .. })));
        let no_dir = dir.path().join("no/such/dir/key");
        assert!(matches!(KeyFile::load_or_create(&no_dir), Err(KeyFileError::Io { .. })));
        assert_eq!(format!("{:?}", KeyFile::generate().unwrap()), "KeyFile(<redacted>)");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.key");
        KeyFile::load_or_create(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = KeyFile::load_or_create(&path).unwrap_err();
            assert!(matches!(err, KeyFileError::NotPrivate { mode: m, .. } if m == mode), "{mode:o}: {err}");
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()) && message.contains("chmod 600"), "{message}");
            assert!(KeyFile::load(&path).is_err());
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(KeyFile::load_or_create(&path).is_ok(), "{mode:o}");
        }
    }
}
