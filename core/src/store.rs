//! Store URIs and the archive handle over `object_store` (S3 or a local directory).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use crate::aws::SdkCredentialProvider;
use crate::error::{Error, Result};
use crate::layout::{DataFile, Partition, Table};

/// Where the archive lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `s3://bucket/prefix`
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix inside it (`islets`, or empty).
        prefix: String,
    },
    /// A local directory (`/var/lib/islets`, `./data`, `file:///var/lib/islets`).
    Local {
        /// The directory.
        root: PathBuf,
    },
}

impl StoreLocation {
    /// Parses a store URI: `s3://bucket[/prefix]`, `file:///path`, or a plain path.
    pub fn parse(uri: &str) -> Result<Self> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Err(Error::Config(
                "the store is empty: pass s3://bucket/prefix or a local directory".to_owned(),
            ));
        }
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid_bucket {
                return Err(Error::Config(format!(
                    "'{bucket}' in store '{uri}' is not a valid S3 bucket name (3-63 lowercase letters, digits, '-' or '.')"
                )));
            }
            return Ok(StoreLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if let Some(path) = uri.strip_prefix("file://") {
            return Ok(StoreLocation::Local {
                root: PathBuf::from(path),
            });
        }
        if let Some((scheme, _)) = uri.split_once("://") {
            return Err(Error::Config(format!(
                "unsupported store scheme '{scheme}://' in '{uri}': use s3://bucket/prefix or a local directory path"
            )));
        }
        Ok(StoreLocation::Local {
            root: PathBuf::from(uri),
        })
    }

    /// Whether opening this store needs AWS configuration.
    pub fn is_s3(&self) -> bool {
        matches!(self, StoreLocation::S3 { .. })
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreLocation::Local { root } => write!(f, "{}", root.display()),
        }
    }
}

/// A handle on the archive: an object store and the root prefix below which the layout
/// of [`crate::layout`] lives.
#[derive(Debug, Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    root: Path,
    description: String,
    /// The directory of a local store: puts are fsynced there before they count as stored.
    local_root: Option<PathBuf>,
}

impl Archive {
    /// Opens the archive at `location`. `aws` is required for S3 stores.
    pub fn open(location: &StoreLocation, aws: Option<&SdkConfig>) -> Result<Self> {
        match location {
            StoreLocation::Local { root } => {
                std::fs::create_dir_all(root).map_err(|source| Error::Io {
                    path: root.clone(),
                    source,
                })?;
                let store =
                    LocalFileSystem::new_with_prefix(root).map_err(|source| Error::Store {
                        operation: "open",
                        location: location.to_string(),
                        source,
                    })?;
                Ok(Archive {
                    store: Arc::new(store),
                    root: Path::default(),
                    description: location.to_string(),
                    local_root: Some(root.clone()),
                })
            }
            StoreLocation::S3 { bucket, prefix } => {
                let aws = aws.ok_or_else(|| {
                    Error::Config("an s3:// store needs the AWS configuration".to_owned())
                })?;
                let store = s3_store(bucket, aws).map_err(|source| Error::Store {
                    operation: "open",
                    location: location.to_string(),
                    source,
                })?;
                Ok(Archive {
                    store: Arc::new(store),
                    root: Path::from(prefix.as_str()),
                    description: location.to_string(),
                    local_root: None,
                })
            }
        }
    }

    /// An archive over any object store (tests use `InMemory`).
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        root: Path,
        description: impl Into<String>,
    ) -> Self {
        Archive {
            store,
            root,
            description: description.into(),
            local_root: None,
        }
    }

    /// The underlying store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The root prefix of the layout inside the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks that the store answers (listing the root), so bad configuration fails at
    /// start-up with a clear message instead of at the first flush.
    pub async fn check_reachable(&self, timeout: Duration) -> Result<()> {
        let listing = self.store.list_with_delimiter(Some(&self.root));
        match tokio::time::timeout(timeout, listing).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(Error::Store {
                operation: "list",
                location: self.description.clone(),
                source,
            }),
            Err(_) => Err(Error::Config(format!(
                "the store {} did not answer within {}s",
                self.description,
                timeout.as_secs()
            ))),
        }
    }

    /// Writes a whole object. Returns once the store has acknowledged it (for S3: durable).
    ///
    /// On a local store the object counts as stored only once it is on disk: the file and
    /// every directory from it up to the store's root are fsynced (a power loss cannot
    /// leave a truncated file, or lose a file whose writer was told "stored").
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.store
            .put(key, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|source| Error::Store {
                operation: "put",
                location: key.to_string(),
                source,
            })?;
        if let Some(root) = &self.local_root {
            self.sync_local(root, key).await?;
        }
        Ok(())
    }

    /// Writes a whole object only if no object has `key` yet (S3 `If-None-Match: *`, an
    /// exclusive create on a local store): `Ok(false)` when one already had it, which is
    /// then left as it was. Concurrent writers of one key never overwrite each other.
    pub async fn put_new(&self, key: &Path, bytes: Bytes) -> Result<bool> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(key, PutPayload::from_bytes(bytes), options)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
            // S3 answers a lost race of two conditional writes with 409.
            Err(object_store::Error::Precondition { .. }) => return Ok(false),
            Err(source) => {
                return Err(Error::Store {
                    operation: "put",
                    location: key.to_string(),
                    source,
                });
            }
        }
        if let Some(root) = &self.local_root {
            self.sync_local(root, key).await?;
        }
        Ok(true)
    }

    async fn sync_local(&self, root: &std::path::Path, key: &Path) -> Result<()> {
        let root = root.to_path_buf();
        let file = key
            .parts()
            .fold(root.clone(), |path, part| path.join(part.as_ref()));
        let synced = tokio::task::spawn_blocking(move || sync_to_root(&file, &root))
            .await
            .unwrap_or_else(|error| Err(std::io::Error::other(error)));
        synced.map_err(|source| Error::Store {
            operation: "fsync",
            location: key.to_string(),
            source: object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(source),
            },
        })
    }

    /// Reads a whole object, `None` when there is none.
    pub async fn get_if_exists(&self, key: &Path) -> Result<Option<Bytes>> {
        match self.get(key).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every object below `relative` (a prefix under the root, such as `seal/log`), in
    /// key order.
    pub async fn list_under(&self, relative: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = crate::layout::join(&self.root, relative);
        let mut objects: Vec<ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| Error::Store {
                operation: "list",
                location: prefix.to_string(),
                source,
            })?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &Path) -> Result<Bytes> {
        let result = self.store.get(key).await.map_err(|source| Error::Store {
            operation: "get",
            location: key.to_string(),
            source,
        })?;
        result.bytes().await.map_err(|source| Error::Store {
            operation: "get",
            location: key.to_string(),
            source,
        })
    }

    /// Every data file of `table`, with its object metadata, in key order.
    pub async fn list_files(&self, table: Table) -> Result<Vec<(DataFile, ObjectMeta)>> {
        self.list_files_after(table, None).await
    }

    /// The data files of the partitions from `first` on (a LIST that starts after the
    /// keys of earlier partitions: cheap however old the archive is), in key order.
    pub async fn list_files_from(&self, first: &Partition) -> Result<Vec<(DataFile, ObjectMeta)>> {
        self.list_files_after(first.table, Some(first)).await
    }

    async fn list_files_after(
        &self,
        table: Table,
        first: Option<&Partition>,
    ) -> Result<Vec<(DataFile, ObjectMeta)>> {
        let prefix = self.root.clone().join(table.prefix());
        let listing = match first {
            // Keys of `first` and later sort after its directory name.
            Some(first) => {
                let offset = crate::layout::join(&self.root, &first.relative_dir());
                self.store.list_with_offset(Some(&prefix), &offset)
            }
            None => self.store.list(Some(&prefix)),
        };
        let objects: Vec<ObjectMeta> =
            listing.try_collect().await.map_err(|source| Error::Store {
                operation: "list",
                location: prefix.to_string(),
                source,
            })?;
        let mut files: Vec<_> = objects
            .into_iter()
            .filter_map(|meta| DataFile::parse(&self.root, &meta.location).map(|file| (file, meta)))
            .collect();
        files.sort_by(|a, b| a.1.location.cmp(&b.1.location));
        Ok(files)
    }
}

/// Fsyncs `file`, then each directory from its parent up to `root` (new partition
/// directories included).
fn sync_to_root(file: &std::path::Path, root: &std::path::Path) -> std::io::Result<()> {
    let sync = |path: &std::path::Path| {
        std::fs::File::open(path)
            .and_then(|handle| handle.sync_all())
            .map_err(|error| {
                std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
            })
    };
    sync(file)?;
    let mut directory = file.parent();
    while let Some(current) = directory {
        sync(current)?;
        if current == root || !current.starts_with(root) {
            break;
        }
        directory = current.parent();
    }
    Ok(())
}

impl fmt::Display for Archive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// Longest one object-store request may take (a Parquet file of a flush is tens of MB).
pub(crate) const STORE_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

fn s3_store(bucket: &str, aws: &SdkConfig) -> object_store::Result<object_store::aws::AmazonS3> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(
            aws.region()
                .map(|region| region.as_ref().to_owned())
                .unwrap_or_else(|| "us-east-1".to_owned()),
        )
        .with_retry(RetryConfig {
            max_retries: 5,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        })
        // A store that goes silent fails the request (and the flush retries) instead of
        // holding it forever.
        .with_client_options(
            object_store::ClientOptions::new()
                .with_connect_timeout(crate::aws::CONNECT_TIMEOUT)
                .with_timeout(STORE_REQUEST_TIMEOUT),
        );
    if let Some(provider) = aws.credentials_provider() {
        builder = builder.with_credentials(Arc::new(SdkCredentialProvider::new(provider)));
    }
    if let Some(endpoint) = crate::aws::s3_endpoint(aws) {
        // An S3-compatible endpoint (moto, MinIO, LocalStack): path-style requests.
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_uris_parse_or_say_what_to_use() {
        assert_eq!(
            StoreLocation::parse("s3://audit-bucket/prod/events/").expect("s3"),
            StoreLocation::S3 {
                bucket: "audit-bucket".into(),
                prefix: "prod/events".into()
            }
        );
        assert_eq!(
            StoreLocation::parse("s3://audit-bucket")
                .expect("s3")
                .to_string(),
            "s3://audit-bucket"
        );
        assert_eq!(
            StoreLocation::parse("./data").expect("local"),
            StoreLocation::Local {
                root: PathBuf::from("./data")
            }
        );
        assert_eq!(
            StoreLocation::parse("file:///var/lib/islets").expect("file"),
            StoreLocation::Local {
                root: PathBuf::from("/var/lib/islets")
            }
        );
        for (bad, expected) in [
            ("gs://bucket/x", "unsupported store scheme 'gs://'"),
            ("s3://Bad_Bucket/x", "not a valid S3 bucket name"),
            ("s3:///x", "not a valid S3 bucket name"),
            ("", "the store is empty"),
        ] {
            let error = StoreLocation::parse(bad).expect_err(bad).to_string();
            assert!(error.contains(expected), "{bad}: {error}");
        }
    }
}
