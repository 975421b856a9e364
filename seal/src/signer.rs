//! Checkpoint signatures. On the embedded default, an Ed25519 key in a file created on
//! first run (PKCS#8, mode 0600); on AWS, a KMS asymmetric key (to come). Verifying needs
//! only the public key, so an auditor checks a checkpoint without the archive.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2_merkle::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// The name of the Ed25519 algorithm in checkpoints.
pub const ED25519: &str = "ed25519";

/// An Ed25519 signing key kept in a file.
pub struct Ed25519KeyFile {
    path: PathBuf,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Ed25519KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519KeyFile")
            .field("path", &self.path)
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl Ed25519KeyFile {
    /// The key in `path`, created there (with its directory) when the file does not exist.
    /// A new file is readable by its owner only; an existing one must hold a PKCS#8
    /// Ed25519 key.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let failed = |message: String| Error::Key {
            path: path.to_owned(),
            message,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let pair = Ed25519KeyPair::from_pkcs8(&bytes)
                    .map_err(|_| failed("not a PKCS#8 Ed25519 key".to_owned()))?;
                Ok(Ed25519KeyFile {
                    path: path.to_owned(),
                    pair,
                })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path
                    .parent()
                    .filter(|parent| !parent.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(parent)
                        .map_err(|error| failed(format!("cannot create its directory: {error}")))?;
                }
                let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| failed("cannot generate a key".to_owned()))?;
                // create_new: two processes starting at once never overwrite each other's key.
                let written = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .and_then(|mut file| {
                        file.write_all(document.as_ref())?;
                        file.sync_all()
                    });
                match written {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Self::load_or_create(path);
                    }
                    Err(error) => return Err(failed(format!("cannot write it: {error}"))),
                }
                tracing::warn!(
                    key = %path.display(),
                    "created the checkpoint signing key: keep a copy, checkpoints are verified with its public key"
                );
                Self::load_or_create(path)
            }
            Err(error) => Err(failed(format!("cannot read it: {error}"))),
        }
    }

    /// The public key (32 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// A short stable name of the key: the first 8 bytes of SHA-256 of the public key, hex.
    pub fn key_id(&self) -> String {
        key_id(&self.public_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// What signs checkpoints: a key the operator controls.
#[async_trait::async_trait]
pub trait Signer: Send + Sync {
    /// The algorithm's name in checkpoints ([`ED25519`], ...).
    fn algorithm(&self) -> &str;
    /// The public key, as checkpoints carry it and verifiers trust it.
    fn public_key(&self) -> Vec<u8>;
    /// Signs `message`.
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>>;
}

#[async_trait::async_trait]
impl Signer for Ed25519KeyFile {
    fn algorithm(&self) -> &str {
        ED25519
    }

    fn public_key(&self) -> Vec<u8> {
        Ed25519KeyFile::public_key(self)
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        Ok(Ed25519KeyFile::sign(self, message))
    }
}

/// The key id of a public key (see [`Ed25519KeyFile::key_id`]).
pub(crate) fn key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
}

/// Whether `signature` is `algorithm`'s signature of `message` by `public_key`.
pub fn verify_signature(
    algorithm: &str,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<()> {
    match algorithm {
        ED25519 => UnparsedPublicKey::new(&signature::ED25519, public_key)
            .verify(message, signature)
            .map_err(|_| Error::Invalid("the signature does not verify".to_owned())),
        other => Err(Error::Invalid(format!(
            "unknown signature algorithm '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_key_is_created_once_owner_only_and_signs_what_its_public_key_verifies() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("keys/checkpoint.pk8");
        let key = Ed25519KeyFile::load_or_create(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Ed25519KeyFile::load_or_create(&path).expect("loaded");
        assert_eq!(
            again.public_key(),
            key.public_key(),
            "the same key, not a new one"
        );
        assert_eq!(key.key_id().len(), 16);
        let signature = key.sign(b"checkpoint");
        verify_signature(ED25519, &key.public_key(), b"checkpoint", &signature).expect("valid");
        assert!(verify_signature(ED25519, &key.public_key(), b"checkpoint!", &signature).is_err());
        let other = Ed25519KeyFile::load_or_create(&directory.path().join("other")).expect("key");
        assert!(verify_signature(ED25519, &other.public_key(), b"checkpoint", &signature).is_err());
        assert!(verify_signature("rsa", &key.public_key(), b"checkpoint", &signature).is_err());
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused_and_left_alone() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("key");
        std::fs::write(&path, b"not a key").expect("write");
        let error = Ed25519KeyFile::load_or_create(&path).expect_err("refused");
        assert!(error.to_string().contains("PKCS#8"), "{error}");
        assert_eq!(std::fs::read(&path).expect("read"), b"not a key");
    }
}
