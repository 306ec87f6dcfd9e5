//! [`BrokerCredentials`]: an SDK credentials provider answering from the role broker, so every
//! client of a session or a discovery scope (StartSession, ResumeSession, TerminateSession,
//! DescribeInstances) runs with the target account's assumed-role credentials, refreshed from
//! the cache or by AssumeRole again before they lapse, with no new MFA prompt while the cached
//! GetSessionToken session is valid.

use std::sync::Arc;

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};

use crate::aws::CredentialsOverride;
use crate::broker::{Broker, RoleTarget};

/// Credentials for one role, through a shared [`Broker`].
#[derive(Clone, Debug)]
pub struct BrokerCredentials {
    broker: Arc<Broker>,
    target: RoleTarget,
}

impl BrokerCredentials {
    /// A provider of `target`'s credentials.
    pub fn new(broker: Arc<Broker>, target: RoleTarget) -> Self {
        Self { broker, target }
    }

    /// As an [`AwsOptions`](crate::aws::AwsOptions) credentials override, labelled with the
    /// role and account.
    pub fn into_override(self) -> CredentialsOverride {
        let label = format!(
            "account {} ({}), role {}",
            self.target.account.alias, self.target.account.id, self.target.role_arn
        );
        CredentialsOverride {
            label,
            provider: SharedCredentialsProvider::new(self),
        }
    }
}

impl ProvideCredentials for BrokerCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            let issued = self
                .broker
                .credentials(&self.target)
                .await
                .map_err(CredentialsError::provider_error)?;
            Ok(Credentials::new(
                issued.access_key_id,
                issued.secret_access_key.expose(),
                Some(issued.session_token.expose().to_owned()),
                Some(issued.expiration),
                PROVIDER_NAME,
            ))
        })
    }
}

/// The provider name the SDK records with the credentials.
const PROVIDER_NAME: &str = "postern-broker";
