//! Listing one scope: the [`InstanceSource`] trait and its AWS SDK implementation.

use std::collections::HashMap;
use std::future::Future;

use aws_config::retry::RetryConfig;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_types::SdkConfig;
use aws_types::region::Region;

use crate::aws::AwsErrorKind;
use crate::discovery::instance::{Instance, Scope};

/// Lists the instances of one scope. Implementations: [`SdkSource`] and
/// `FakeSource` (in tests).
pub trait InstanceSource: Send + Sync + 'static {
    /// Every instance of `scope`, EC2 and SSM facts joined.
    fn list(
        &self,
        scope: &Scope,
    ) -> impl Future<Output = Result<Vec<Instance>, SourceError>> + Send;
}

/// Gives the SDK configuration (credentials, region, endpoint) for a scope. The role broker
/// implements it per account; [`SingleProfile`] uses one identity for every scope.
pub trait ScopeConfigs: Send + Sync + 'static {
    /// The configuration for `scope`.
    fn config(&self, scope: &Scope) -> impl Future<Output = Result<SdkConfig, SourceError>> + Send;
}

/// A failed listing, with what the user needs to see in a warning line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed in {scope}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct SourceError {
    /// The scope.
    pub scope: Scope,
    /// The AWS operation (DescribeInstances, DescribeInstanceInformation, or a local step).
    pub operation: String,
    /// The service's error code, when there is one.
    pub code: Option<String>,
    /// The service's message, or the local cause.
    pub message: String,
    /// The request id, when the service sent one.
    pub request_id: Option<String>,
    /// Whether the call was throttled (and is worth retrying after a pause).
    pub throttled: bool,
    /// What kind of failure it is (credentials, an endpoint out of reach, ...), as an AWS
    /// call's error is classified.
    pub kind: AwsErrorKind,
}

/// The single-profile identity: the default credential chain or `--profile`, the same
/// credentials for every scope, with the scope's region.
#[derive(Clone, Debug)]
pub struct SingleProfile {
    base: SdkConfig,
}

/// Lists scopes with the real EC2 and SSM clients.
#[derive(Debug)]
pub struct SdkSource<C> {
    configs: C,
    page_size: i32,
    ssm_endpoint: Option<String>,
}

impl SourceError {
    /// A failure before or outside an AWS call.
    pub fn local(scope: &Scope, operation: &str, message: impl Into<String>) -> Self {
        Self {
            scope: scope.clone(),
            operation: operation.to_owned(),
            code: None,
            message: message.into(),
            request_id: None,
            throttled: false,
            kind: AwsErrorKind::Service,
        }
    }

    fn from_sdk<E, R>(
        scope: &Scope,
        operation: &str,
        error: &aws_sdk_ec2::error::SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        use aws_sdk_ec2::error::SdkError;
        let (code, message, request_id) = match error {
            SdkError::ServiceError(service) => {
                let err = service.err();
                let meta = err.meta();
                (
                    meta.code().map(str::to_owned),
                    meta.message()
                        .map_or_else(|| err.to_string(), str::to_owned),
                    meta.extra("aws_request_id").map(str::to_owned),
                )
            }
            other => (None, crate::report::error_chain(other), None),
        };
        let throttled = code.as_deref().is_some_and(is_throttling_code);
        Self {
            scope: scope.clone(),
            operation: operation.to_owned(),
            code,
            message,
            request_id,
            throttled,
            kind: crate::aws::classify(error),
        }
    }
}

impl SingleProfile {
    /// Uses `base` (loaded by [`crate::aws::load`]) for every scope. The SDK's own retries are
    /// turned off: discovery retries throttled calls itself, with its own budget.
    pub fn new(base: SdkConfig) -> Self {
        Self { base }
    }
}

impl ScopeConfigs for SingleProfile {
    async fn config(&self, scope: &Scope) -> Result<SdkConfig, SourceError> {
        Ok(self
            .base
            .to_builder()
            .region(Region::new(scope.region.clone()))
            .retry_config(RetryConfig::disabled())
            .build())
    }
}

impl<C: ScopeConfigs> SdkSource<C> {
    /// A source that asks `configs` for each scope's configuration.
    pub fn new(configs: C) -> Self {
        Self {
            configs,
            page_size: DESCRIBE_PAGE,
            ssm_endpoint: None,
        }
    }

    /// Sends the SSM calls to `endpoint` (`--endpoint-url`); EC2 keeps the SDK's endpoint.
    #[must_use]
    pub fn with_ssm_endpoint(mut self, endpoint: Option<String>) -> Self {
        self.ssm_endpoint = endpoint;
        self
    }

    /// Asks for `page_size` items per DescribeInstances page instead of the API's maximum
    /// (the API allows 5 to 1000): tests use it to turn many pages over a small fleet.
    #[must_use]
    pub fn with_page_size(mut self, page_size: i32) -> Self {
        self.page_size = page_size;
        self
    }
}

impl<C: ScopeConfigs> InstanceSource for SdkSource<C> {
    async fn list(&self, scope: &Scope) -> Result<Vec<Instance>, SourceError> {
        let config = self.configs.config(scope).await?;
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let ssm = crate::aws::ssm_client(&config, self.ssm_endpoint.as_deref());
        let (ec2, ssm) = tokio::join!(
            describe_instances(&ec2, scope, self.page_size),
            describe_information(&ssm, scope)
        );
        let ec2 = ec2?;
        let ssm = match ssm {
            Ok(ssm) => ssm,
            // Discovery retries throttling. Any other SSM failure (a role without the SSM
            // permission, an endpoint without the call) must not hide the EC2 listing: its
            // rows stay, without agent facts.
            Err(error) if !error.throttled => {
                tracing::warn!("{error}; listing the EC2 instances without agent status");
                HashMap::new()
            }
            Err(error) => return Err(error),
        };
        Ok(join(scope, ec2, ssm))
    }
}

/// The SSM facts of one instance.
#[derive(Debug, Default)]
struct AgentFacts {
    ping_status: Option<String>,
    agent_version: Option<String>,
    platform: String,
    name: Option<String>,
    ip: Option<String>,
}

async fn describe_instances(
    client: &aws_sdk_ec2::Client,
    scope: &Scope,
    page_size: i32,
) -> Result<Vec<Instance>, SourceError> {
    let mut out = Vec::new();
    let mut pages = client
        .describe_instances()
        .max_results(page_size)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| SourceError::from_sdk(scope, "DescribeInstances", &e))?;
        for reservation in page.reservations.unwrap_or_default() {
            let owner = reservation
                .owner_id
                .unwrap_or_else(|| scope.account.clone());
            for i in reservation.instances.unwrap_or_default() {
                let Some(id) = i.instance_id else { continue };
                let tags: std::collections::BTreeMap<String, String> = i
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
                    .collect();
                out.push(Instance {
                    id,
                    name: tags.get("Name").cloned().unwrap_or_default(),
                    account: owner.clone(),
                    alias: scope.alias.clone(),
                    env: scope.env.clone(),
                    region: scope.region.clone(),
                    state: i
                        .state
                        .and_then(|s| s.name)
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default(),
                    private_ip: i.private_ip_address,
                    public_ip: i.public_ip_address,
                    private_dns: i.private_dns_name.filter(|d| !d.is_empty()),
                    vpc_id: i.vpc_id,
                    subnet_id: i.subnet_id,
                    instance_type: i.instance_type.map(|t| t.as_str().to_owned()),
                    launch_time: i.launch_time.and_then(|t| {
                        t.fmt(aws_sdk_ec2::primitives::DateTimeFormat::DateTime)
                            .ok()
                    }),
                    tags,
                    ping_status: None,
                    agent_version: None,
                    platform: i.platform_details.unwrap_or_default(),
                });
            }
        }
    }
    Ok(out)
}

async fn describe_information(
    client: &aws_sdk_ssm::Client,
    scope: &Scope,
) -> Result<HashMap<String, AgentFacts>, SourceError> {
    let mut out = HashMap::new();
    let mut pages = client
        .describe_instance_information()
        .max_results(SSM_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| SourceError::from_sdk(scope, "DescribeInstanceInformation", &e))?;
        for info in page.instance_information_list.unwrap_or_default() {
            let Some(id) = info.instance_id else { continue };
            let platform = match (info.platform_name, info.platform_version) {
                (Some(name), Some(version)) => format!("{name} {version}"),
                (Some(name), None) => name,
                _ => String::new(),
            };
            out.insert(
                id,
                AgentFacts {
                    ping_status: info.ping_status.map(|p| p.as_str().to_owned()),
                    agent_version: info.agent_version,
                    platform,
                    name: info.name.or(info.computer_name),
                    ip: info.ip_address,
                },
            );
        }
    }
    Ok(out)
}

/// EC2 rows enriched with SSM facts, then the SSM-only nodes (`mi-`, or instances EC2 did not
/// return), sorted by name then id.
fn join(scope: &Scope, ec2: Vec<Instance>, mut ssm: HashMap<String, AgentFacts>) -> Vec<Instance> {
    let mut out = Vec::with_capacity(ec2.len() + ssm.len());
    // SSM does not say which account a managed node is in; the scope's EC2 owner does.
    let account = ec2
        .first()
        .map_or_else(|| scope.account.clone(), |i| i.account.clone());
    for mut instance in ec2 {
        if let Some(facts) = ssm.remove(&instance.id) {
            instance.ping_status = facts.ping_status;
            instance.agent_version = facts.agent_version;
            if !facts.platform.is_empty() {
                instance.platform = facts.platform;
            }
            if instance.name.is_empty() {
                instance.name = facts.name.unwrap_or_default();
            }
        }
        out.push(instance);
    }
    let mut rest: Vec<_> = ssm.into_iter().collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, facts) in rest {
        out.push(Instance {
            id,
            name: facts.name.unwrap_or_default(),
            account: account.clone(),
            alias: scope.alias.clone(),
            env: scope.env.clone(),
            region: scope.region.clone(),
            private_ip: facts.ip,
            ping_status: facts.ping_status,
            agent_version: facts.agent_version,
            platform: facts.platform,
            ..Instance::default()
        });
    }
    out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    out
}

fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "SlowDown"
    )
}

/// DescribeInstances page size (the API allows 5 to 1000).
const DESCRIBE_PAGE: i32 = 1000;
/// DescribeInstanceInformation page size (the API allows 5 to 50).
const SSM_PAGE: i32 = 50;

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            account: "111122223333".into(),
            alias: "dev".into(),
            env: Some("dev".into()),
            region: "eu-west-1".into(),
        }
    }

    #[test]
    fn join_enriches_ec2_rows_and_keeps_managed_nodes() {
        let ec2 = vec![
            Instance {
                id: "i-1".into(),
                name: "web".into(),
                state: "running".into(),
                platform: "Linux/UNIX".into(),
                ..Instance::default()
            },
            Instance {
                id: "i-2".into(),
                state: "stopped".into(),
                ..Instance::default()
            },
        ];
        let mut ssm = HashMap::new();
        ssm.insert(
            "i-1".to_owned(),
            AgentFacts {
                ping_status: Some("Online".into()),
                agent_version: Some("3.3.0.0".into()),
                platform: "Amazon Linux 2023".into(),
                ..AgentFacts::default()
            },
        );
        ssm.insert(
            "mi-0123456789abcdef0".to_owned(),
            AgentFacts {
                ping_status: Some("Online".into()),
                name: Some("onprem".into()),
                ip: Some("10.9.9.9".into()),
                ..AgentFacts::default()
            },
        );
        let rows = join(&scope(), ec2, ssm);
        let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["i-2", "mi-0123456789abcdef0", "i-1"]);
        let web = &rows[2];
        assert!(web.is_online());
        assert_eq!(web.platform, "Amazon Linux 2023");
        assert_eq!(rows[0].agent_status(), "no-agent");
        assert_eq!(rows[1].private_ip.as_deref(), Some("10.9.9.9"));
        assert_eq!(rows[1].alias, "dev");
    }

    #[test]
    fn throttling_codes_are_recognised() {
        assert!(is_throttling_code("RequestLimitExceeded"));
        assert!(is_throttling_code("ThrottlingException"));
        assert!(!is_throttling_code("AuthFailure"));
    }
}
