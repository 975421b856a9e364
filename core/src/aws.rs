//! AWS setup shared by every component: the SDK's own configuration chain (environment,
//! profiles, SSO, IMDS/ECS roles, `AWS_ENDPOINT_URL`), and a bridge that lets
//! `object_store` sign S3 requests with the credentials that chain resolves.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::CredentialProvider;
use object_store::aws::AwsCredential;
use tokio::sync::Mutex;

/// Time to open a connection to an AWS endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the next bytes of an answer. It covers SQS's longest long poll (20 s)
/// with a margin: a connection that goes silent (a NAT that forgot it sends no FIN, no RST)
/// fails within this time instead of hanging forever.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(35);
/// Longest one attempt of an SDK call may take.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(45);
/// Longest a whole SDK call may take, its retries included: a silent connection surfaces
/// as an error (logged, counted, retried by the caller) within this time.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Loads the SDK configuration the way every AWS tool does. Endpoint overrides
/// (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SQS`, ..., e.g. a moto_server) come from the same
/// chain. Every call gets the timeouts above.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .load()
        .await
}

/// The S3 endpoint override, as the SDK's own chain resolves it for S3 clients:
/// `AWS_ENDPOINT_URL_S3` (or the profile's `endpoint_url` of the s3 section), else
/// `AWS_ENDPOINT_URL`.
pub fn s3_endpoint(aws: &SdkConfig) -> Option<String> {
    use aws_types::service_config::ServiceConfigKey;
    // The key the S3 client itself uses: the loader appends the service (`_S3`).
    let key = ServiceConfigKey::builder()
        .service_id("S3")
        .profile("endpoint_url")
        .env("AWS_ENDPOINT_URL")
        .build()
        .ok();
    key.and_then(|key| {
        aws.service_config()
            .and_then(|config| config.load_config(key))
    })
    .filter(|url| !url.trim().is_empty())
    .or_else(|| aws.endpoint_url().map(str::to_owned))
}

/// Credentials refreshed this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// `object_store` credential provider backed by the AWS SDK's provider chain, with a cache
/// so instance-profile or SSO credentials are not fetched on every request.
#[derive(Debug)]
pub struct SdkCredentialProvider {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl SdkCredentialProvider {
    /// A bridge over the SDK's credentials provider.
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        SdkCredentialProvider {
            provider,
            cached: Mutex::new(None),
        }
    }
}

#[async_trait]
impl CredentialProvider for SdkCredentialProvider {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|expiry| {
                expiry
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > REFRESH_MARGIN)
            });
            if fresh {
                return Ok(credential.clone());
            }
        }
        let credentials = self.provider.provide_credentials().await.map_err(|error| {
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(error),
            }
        })?;
        let credential = Arc::new(AwsCredential {
            key_id: credentials.access_key_id().to_owned(),
            secret_key: credentials.secret_access_key().to_owned(),
            token: credentials.session_token().map(str::to_owned),
        });
        *cached = Some((credential.clone(), credentials.expiry()));
        Ok(credential)
    }
}
