//! EC2 Instance Connect: the instance's availability zone (EC2 DescribeInstances) and
//! SendSSHPublicKey, which lets one public key log in as one OS user of the instance for 60
//! seconds (the instance's AuthorizedKeysCommand fetches it from its metadata service).
//!
//! It must not print, hold a private key, or decide what to do about a failure: callers map
//! the [`AwsError`] (its code names the service's exception) to a message.

use crate::aws::config::AwsContext;
use crate::aws::error::{AwsError, AwsErrorKind};

/// The two calls `postern ssh --push-key` makes before ssh starts, with one configuration
/// (the target account's role, the instance's region).
#[derive(Clone, Debug)]
pub struct InstanceConnectClient {
    ec2: aws_sdk_ec2::Client,
    connect: aws_sdk_ec2instanceconnect::Client,
    region: String,
    profile: Option<String>,
}

/// What SendSSHPublicKey answered on success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedKey {
    /// The service's request id, for AWS support.
    pub request_id: Option<String>,
}

impl InstanceConnectClient {
    /// Clients for `context` (its credentials, region and endpoints).
    pub fn new(context: &AwsContext) -> Self {
        Self {
            ec2: aws_sdk_ec2::Client::new(&context.sdk),
            connect: aws_sdk_ec2instanceconnect::Client::new(&context.sdk),
            region: context.region.clone(),
            profile: context.profile.clone(),
        }
    }

    /// The availability zone of EC2 instance `instance_id` (SendSSHPublicKey needs it).
    pub async fn availability_zone(&self, instance_id: &str) -> Result<String, AwsError> {
        let reply = self
            .ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| self.error(DESCRIBE_INSTANCES, e))?;
        reply
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .and_then(|i| i.placement())
            .and_then(|p| p.availability_zone())
            .filter(|zone| !zone.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                AwsError::local(
                    AwsErrorKind::TargetNotConnected,
                    DESCRIBE_INSTANCES,
                    Some(self.region.clone()),
                    self.profile.clone(),
                    &format!("EC2 reports no availability zone for {instance_id}"),
                )
            })
    }

    /// Sends `public_key` (OpenSSH format) for `os_user` on `instance_id` in `zone`.
    pub async fn send_ssh_public_key(
        &self,
        instance_id: &str,
        os_user: &str,
        public_key: &str,
        zone: &str,
    ) -> Result<PushedKey, AwsError> {
        let reply = self
            .connect
            .send_ssh_public_key()
            .instance_id(instance_id)
            .instance_os_user(os_user)
            .ssh_public_key(public_key)
            .availability_zone(zone)
            .send()
            .await
            .map_err(|e| self.error(SEND_SSH_PUBLIC_KEY, e))?;
        if !reply.success() {
            // The API's only failure signal besides errors; never seen, but fail closed.
            return Err(AwsError::local(
                AwsErrorKind::Service,
                SEND_SSH_PUBLIC_KEY,
                Some(self.region.clone()),
                self.profile.clone(),
                "the service answered Success: false",
            ));
        }
        Ok(PushedKey {
            request_id: reply.request_id().map(str::to_owned),
        })
    }

    fn error<E, R>(
        &self,
        operation: &'static str,
        err: aws_sdk_ssm::error::SdkError<E, R>,
    ) -> AwsError
    where
        E: aws_sdk_ssm::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
        aws_sdk_ssm::error::SdkError<E, R>: aws_types::request_id::RequestId,
    {
        AwsError::from_sdk(operation, &self.region, self.profile.as_deref(), err)
    }
}

/// The EC2 operation that gives the availability zone.
pub const DESCRIBE_INSTANCES: &str = "DescribeInstances";
/// The EC2 Instance Connect operation.
pub const SEND_SSH_PUBLIC_KEY: &str = "SendSSHPublicKey";
