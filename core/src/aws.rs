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

/// Loads the SDK configuration the way every AWS tool does. Endpoint overrides
/// (`AWS_ENDPOINT_URL`, e.g. a moto_server) come from the same chain.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
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
