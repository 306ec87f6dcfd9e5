//! AWS control plane: configuration loading (profile, region, endpoint; the SDK's HTTPS client
//! with postern's proxy and CA-bundle settings), the three SSM session calls (StartSession,
//! ResumeSession, TerminateSession), KMS GenerateDataKey for encrypted sessions, and EC2
//! Instance Connect's SendSSHPublicKey for `postern ssh --push-key`.
//!
//! It must not import the protocol crate, print, or let a token, credential or stream URL
//! query reach a log line or an error message: those travel in redacting newtypes.

mod config;
mod documents;
mod error;
mod http;
mod instance_connect;
mod kms;
mod ssm;

pub use config::{
    AwsContext, AwsOptions, CredentialsOverride, ENDPOINT_SETTINGS, NETWORK_SETTINGS,
    endpoint_overrides, load, profile_in_effect, service_endpoint_from_env, ssm_client,
    ssm_endpoint_in_effect,
};
pub use documents::{DocumentVersions, DocumentsClient};
pub use error::{AwsError, AwsErrorKind, classify};
pub use http::HttpClientError;
pub use instance_connect::{
    DESCRIBE_INSTANCES, InstanceConnectClient, PushedKey, SEND_SSH_PUBLIC_KEY,
};
pub use kms::{GeneratedKey, KmsClient};
pub use ssm::{SessionCredentials, SessionToken, SsmClient, StartSessionRequest, StreamUrl};
