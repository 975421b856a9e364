//! Checkpoints: a head of the log (its size, its root, when) signed by the operator's key.
//!
//! The signed text (docs/ARCHIVE.md, "Sealing"), in the shape of a transparency-log
//! checkpoint, each line ending with `\n`:
//!
//! ```text
//! <origin>                    the archive, e.g. islets-audit s3://audit/islets
//! <size>                      decimal leaf count of the log
//! <root>                      base64 (standard, padded) of the 32-byte root
//! <time>                      milliseconds since the Unix epoch, decimal
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::signer::{ED25519, Ed25519KeyFile, Signer, key_id, verify_signature};
use crate::tree::Digest;

/// A log head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// What log this is (the archive's name).
    pub origin: String,
    /// How many leaves the log holds.
    pub size: u64,
    /// The log's root.
    pub root: Digest,
    /// When it was made (ms since the epoch).
    pub time_ms: i64,
}

impl Checkpoint {
    /// The signed text.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root),
            self.time_ms
        )
    }
}

/// A checkpoint with its signature, as stored and handed to auditors (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// What log this is.
    pub origin: String,
    /// How many leaves the log holds.
    pub size: u64,
    /// The log's root, hex.
    pub root: String,
    /// When it was made (ms since the epoch).
    pub time_ms: i64,
    /// The signature algorithm (`ed25519`).
    pub algorithm: String,
    /// The signing key's id (first 8 bytes of SHA-256 of its public key, hex).
    pub key_id: String,
    /// The signing key's public key, base64.
    pub public_key: String,
    /// The signature of [`Checkpoint::body`], base64.
    pub signature: String,
}

impl SignedCheckpoint {
    /// Signs `checkpoint` with `key`.
    pub fn sign(checkpoint: &Checkpoint, key: &Ed25519KeyFile) -> Self {
        SignedCheckpoint {
            origin: checkpoint.origin.clone(),
            size: checkpoint.size,
            root: hex::encode(checkpoint.root),
            time_ms: checkpoint.time_ms,
            algorithm: ED25519.to_owned(),
            key_id: key.key_id(),
            public_key: STANDARD.encode(key.public_key()),
            signature: STANDARD.encode(key.sign(checkpoint.body().as_bytes())),
        }
    }

    /// Signs `checkpoint` with any [`Signer`] (a key file, KMS).
    pub async fn sign_with(checkpoint: &Checkpoint, signer: &dyn Signer) -> Result<Self> {
        let public_key = signer.public_key();
        let signature = signer.sign(checkpoint.body().as_bytes()).await?;
        Ok(SignedCheckpoint {
            origin: checkpoint.origin.clone(),
            size: checkpoint.size,
            root: hex::encode(checkpoint.root),
            time_ms: checkpoint.time_ms,
            algorithm: signer.algorithm().to_owned(),
            key_id: key_id(&public_key),
            public_key: STANDARD.encode(&public_key),
            signature: STANDARD.encode(signature),
        })
    }

    /// The log's root, when it is a hex digest.
    pub fn root_digest(&self) -> Result<Digest> {
        crate::manifest::parse_digest(&self.root, "checkpoint root")
    }

    /// The checkpoint, once its signature verifies with `trusted` (the operator's public
    /// key, as the auditor holds it). A checkpoint signed by any other key is refused,
    /// whatever key it names.
    pub fn verify(&self, trusted: &[u8]) -> Result<Checkpoint> {
        let public_key = STANDARD
            .decode(&self.public_key)
            .map_err(|error| Error::Invalid(format!("checkpoint public_key: {error}")))?;
        if public_key != trusted {
            return Err(Error::Invalid(format!(
                "checkpoint of size {} is signed by key {}, not by the trusted key {}",
                self.size,
                self.key_id,
                key_id(trusted)
            )));
        }
        let root = hex::decode(&self.root)
            .ok()
            .and_then(|bytes| Digest::try_from(bytes.as_slice()).ok())
            .ok_or_else(|| Error::Invalid(format!("checkpoint root '{}'", self.root)))?;
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size: self.size,
            root,
            time_ms: self.time_ms,
        };
        let signature = STANDARD
            .decode(&self.signature)
            .map_err(|error| Error::Invalid(format!("checkpoint signature: {error}")))?;
        verify_signature(
            &self.algorithm,
            trusted,
            checkpoint.body().as_bytes(),
            &signature,
        )
        .map_err(|_| {
            Error::Invalid(format!(
                "the signature of the checkpoint of size {} does not verify: it was altered after signing",
                self.size
            ))
        })?;
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "islets-audit /var/lib/islets".to_owned(),
            size: 42,
            root: [7; 32],
            time_ms: 1_795_168_800_000,
        }
    }

    #[test]
    fn the_signed_text_is_the_documented_one() {
        assert_eq!(
            checkpoint().body(),
            "islets-audit /var/lib/islets\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n1795168800000\n"
        );
    }

    #[test]
    fn a_checkpoint_verifies_with_its_key_only_and_not_once_altered() {
        let directory = tempfile::tempdir().expect("tempdir");
        let key = Ed25519KeyFile::load_or_create(&directory.path().join("a")).expect("key");
        let other = Ed25519KeyFile::load_or_create(&directory.path().join("b")).expect("key");
        let signed = SignedCheckpoint::sign(&checkpoint(), &key);
        assert_eq!(
            signed.verify(&key.public_key()).expect("valid"),
            checkpoint()
        );
        let json = serde_json::to_string(&signed).expect("json");
        let back: SignedCheckpoint = serde_json::from_str(&json).expect("parses");
        back.verify(&key.public_key()).expect("round trip");

        // Re-signed with another key: refused against the trusted one.
        let resigned = SignedCheckpoint::sign(&checkpoint(), &other);
        let error = resigned.verify(&key.public_key()).expect_err("another key");
        assert!(
            error.to_string().contains("not by the trusted key"),
            "{error}"
        );
        // Another key's signature under the trusted public key.
        let mut swapped = resigned.clone();
        swapped.public_key = signed.public_key.clone();
        assert!(swapped.verify(&key.public_key()).is_err());
        // Each signed field altered.
        for alter in [
            |c: &mut SignedCheckpoint| c.size += 1,
            |c: &mut SignedCheckpoint| c.root = hex::encode([8u8; 32]),
            |c: &mut SignedCheckpoint| c.time_ms -= 1,
            |c: &mut SignedCheckpoint| c.origin.push('x'),
        ] {
            let mut altered = signed.clone();
            alter(&mut altered);
            let error = altered.verify(&key.public_key()).expect_err("altered");
            assert!(error.to_string().contains("does not verify"), "{error}");
        }
        let mut garbage = signed.clone();
        garbage.root = "zz".to_owned();
        assert!(garbage.verify(&key.public_key()).is_err());
    }
}
