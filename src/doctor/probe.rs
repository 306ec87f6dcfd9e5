//! The checks of `postern doctor`, one function each, in the order the command runs them:
//! configuration, network settings, credentials (with the endpoint and the clock, from the
//! same STS response), the instance's SSM registration, its agent's features, StartSession
//! permission (a real probe: StartSession, then TerminateSession at once), and the account's
//! KMS requirement.
//!
//! Each returns [`Check`]s and never prints; `cli` orders, prints and exits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use aws_sdk_sts::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_sts::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sts::error::BoxError;
use aws_sdk_sts::primitives::{DateTime, DateTimeFormat as Format};
use postern_protocol::version;

use crate::aws::StartSessionRequest;
use crate::aws::{self, AwsContext, AwsError, AwsErrorKind, AwsOptions, SsmClient};
use crate::doctor::check::Check;
use crate::network::{CA_BUNDLE_VARIABLE, CaBundle, ProxySettings};
use crate::report::ErrorKind;

/// Who the credentials belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The caller's ARN.
    pub arn: String,
    /// Its account.
    pub account: String,
}

/// What SSM says about an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceFacts {
    /// `Online`, `ConnectionLost`, `Inactive`.
    pub ping_status: String,
    /// The agent's version.
    pub agent_version: String,
}

/// Loads the AWS configuration (no network call).
pub async fn configuration(options: &AwsOptions) -> Result<(AwsContext, Check), Check> {
    match aws::load(options).await {
        Ok(context) => {
            let profile = match &context.profile {
                Some(p) => format!("profile {p}"),
                None => "no profile (environment or default chain)".to_owned(),
            };
            let endpoint = match &options.endpoint_url {
                Some(url) => format!("SSM endpoint {url}"),
                None => "AWS endpoints (or AWS_ENDPOINT_URL*)".to_owned(),
            };
            let detail = format!("region {}, {profile}, {endpoint}", context.region);
            Ok((context, Check::pass("configuration", detail)))
        }
        Err(e) if e.operation == aws::NETWORK_SETTINGS => Err(Check::fail(
            "configuration",
            ErrorKind::AwsConfig,
            e.to_string(),
            "fix or unset the variable named: HTTPS_PROXY=http://[user:password@]host:port, \
             AWS_CA_BUNDLE=a readable PEM file of CA certificates",
        )),
        Err(e) => Err(Check::fail(
            "configuration",
            ErrorKind::AwsConfig,
            e.to_string(),
            "pass --region or set AWS_REGION (or a region in the profile)",
        )),
    }
}

/// Reports the proxy and CA-bundle settings postern uses, for the SDK's calls and the
/// session's websocket alike (`network`): the proxy for TLS connections (`HTTPS_PROXY`,
/// without its credentials), what bypasses it (`NO_PROXY`, and loopback always), and the
/// roots TLS trusts (the system's, `SSL_CERT_FILE` included, plus `AWS_CA_BUNDLE`: its path
/// and number of certificates). An unusable variable fails the check; `HTTP_PROXY` or
/// `ALL_PROXY` without `HTTPS_PROXY` warns, since postern (as the session-manager-plugin)
/// proxies only through `HTTPS_PROXY`.
pub fn network_settings(var: impl Fn(&str) -> Option<String>) -> Check {
    let proxy = match ProxySettings::from_vars(&var) {
        Ok(proxy) => proxy,
        Err(e) => {
            return Check::fail(
                "network settings",
                ErrorKind::AwsConfig,
                e.to_string(),
                "set HTTPS_PROXY to http://[user:password@]host:port, or unset it",
            );
        }
    };
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let bundle = match set(CA_BUNDLE_VARIABLE) {
        Some(path) => match CaBundle::load(CA_BUNDLE_VARIABLE, path) {
            Ok(bundle) => Some(bundle),
            Err(e) => {
                return Check::fail(
                    "network settings",
                    ErrorKind::AwsConfig,
                    crate::report::error_chain(&e),
                    "point AWS_CA_BUNDLE at a readable PEM file of CA certificates, or unset it",
                );
            }
        },
        None => None,
    };
    let mut parts = vec![match &proxy.https_proxy {
        Some(url) => format!(
            "proxy {url} ({}{})",
            url.variable(),
            if url.credentials().is_some() {
                ", with its user and password"
            } else {
                ""
            }
        ),
        None => "no proxy (HTTPS_PROXY unset): direct connections".to_owned(),
    }];
    if let Some((name, value)) = proxy.no_proxy.source() {
        parts.push(format!("{name}={value}"));
    }
    parts.push(match &bundle {
        Some(bundle) => format!(
            "TLS trusts the system's roots and {} certificate{} of {}={}",
            bundle.certificates().len(),
            if bundle.certificates().len() == 1 {
                ""
            } else {
                "s"
            },
            bundle.variable(),
            bundle.path().display()
        ),
        None => "TLS trusts the system's roots (AWS_CA_BUNDLE unset)".to_owned(),
    });
    let detail = format!(
        "{}; for the AWS calls and the session alike",
        parts.join("; ")
    );
    let unused: Vec<&str> = IGNORED_PROXY_VARIABLES
        .into_iter()
        .filter(|name| set(name).is_some())
        .collect();
    if proxy.https_proxy.is_none() && !unused.is_empty() {
        return Check::warn(
            "network settings",
            format!("{detail}; {} set but not used", unused.join(", ")),
            "postern, like the session-manager-plugin, sends HTTPS through HTTPS_PROXY only: \
             set HTTPS_PROXY if the network needs a proxy",
        );
    }
    Check::pass("network settings", detail)
}

/// STS GetCallerIdentity: the credentials line, then the endpoint and clock lines read from
/// the same response.
pub async fn credentials(
    context: &AwsContext,
    sdk: &SdkConfig,
    endpoint: Option<&str>,
) -> (Vec<Check>, Option<Identity>) {
    let capture = DateCapture::default();
    let sts = aws_sdk_sts::Client::new(sdk);
    let sent = tokio::time::timeout(
        CALL_LIMIT,
        sts.get_caller_identity()
            .customize()
            .interceptor(capture.clone())
            .send(),
    )
    .await;
    let result = match sent {
        Ok(result) => result.map_err(|e| {
            AwsError::from_sdk(
                "GetCallerIdentity",
                &context.region,
                context.profile.as_deref(),
                e,
            )
        }),
        Err(_) => {
            return (
                vec![Check::fail(
                    "credentials",
                    ErrorKind::EndpointUnreachable,
                    format!(
                        "GetCallerIdentity got no answer within {}",
                        humantime::format_duration(CALL_LIMIT)
                    ),
                    "check the network, any proxy, and --endpoint-url / AWS_ENDPOINT_URL",
                )],
                None,
            );
        }
    };
    match result {
        Ok(who) => {
            let identity = Identity {
                arn: who.arn().unwrap_or_default().to_owned(),
                account: who.account().unwrap_or_default().to_owned(),
            };
            let mut checks = vec![Check::pass(
                "credentials",
                format!("{} (account {})", identity.arn, identity.account),
            )];
            checks.push(Check::pass(
                "endpoint",
                endpoint_detail(endpoint, &context.region),
            ));
            checks.push(clock(capture.date().as_deref(), SystemTime::now()));
            (checks, Some(identity))
        }
        Err(e) => {
            let (kind, hint) = match e.kind {
                AwsErrorKind::Unreachable => (
                    ErrorKind::EndpointUnreachable,
                    "check the network, any proxy (HTTPS_PROXY), a custom CA (AWS_CA_BUNDLE), and \
                     --endpoint-url / AWS_ENDPOINT_URL",
                ),
                _ => (
                    ErrorKind::AwsConfig,
                    "refresh the credentials (for example `aws sso login`), or pick another \
                     --profile",
                ),
            };
            let detail = crate::report::error_chain(&e);
            let mut checks = vec![Check::fail("credentials", kind, detail, hint)];
            // A service answer (even a refusal) still dates the endpoint's clock.
            if let Some(date) = capture.date() {
                checks.push(clock(Some(&date), SystemTime::now()));
            }
            (checks, None)
        }
    }
}

/// Compares the endpoint's `Date` header with the local clock.
pub fn clock(date: Option<&str>, now: SystemTime) -> Check {
    let Some(date) = date else {
        return Check::warn(
            "clock",
            "the endpoint's response had no Date header: skew unknown",
            "make sure the local clock is synchronised (NTP): signatures more than 5 minutes \
             off are rejected",
        );
    };
    let Ok(remote) = DateTime::from_str(date, Format::HttpDate) else {
        return Check::warn(
            "clock",
            format!("the endpoint's Date header `{date}` is not an HTTP date: skew unknown"),
            "make sure the local clock is synchronised (NTP)",
        );
    };
    let local = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let skew = local - remote.secs();
    let ahead = if skew >= 0 { "ahead of" } else { "behind" };
    let size = Duration::from_secs(skew.unsigned_abs());
    // The Date header has whole seconds: a second of difference is rounding.
    if size <= Duration::from_secs(2) {
        Check::pass(
            "clock",
            "the local clock agrees with the endpoint's (Date header)",
        )
    } else if size < SKEW_FAIL {
        Check::warn(
            "clock",
            format!(
                "the local clock is {} {ahead} the endpoint's",
                humantime::format_duration(size)
            ),
            "synchronise the clock (NTP) before it drifts past 5 minutes, where AWS rejects \
             signatures",
        )
    } else {
        Check::fail(
            "clock",
            ErrorKind::AwsConfig,
            format!(
                "the local clock is {} {ahead} the endpoint's",
                humantime::format_duration(size)
            ),
            "synchronise the clock (NTP, e.g. `timedatectl set-ntp true`): AWS rejects request \
             signatures more than 5 minutes off",
        )
    }
}

/// DescribeInstanceInformation for `target`: registered, online, agent version.
pub async fn instance(
    context: &AwsContext,
    sdk: &SdkConfig,
    target: &str,
    account: Option<&str>,
) -> (Check, Option<InstanceFacts>) {
    let ssm = aws::ssm_client(sdk, context.ssm_endpoint.as_deref());
    let filter = aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
        .key("InstanceIds")
        .values(target)
        .build();
    let filter = match filter {
        Ok(filter) => filter,
        Err(e) => {
            return (
                Check::fail(
                    "instance",
                    ErrorKind::Usage,
                    e.to_string(),
                    "report this bug",
                ),
                None,
            );
        }
    };
    let sent = tokio::time::timeout(
        CALL_LIMIT,
        ssm.describe_instance_information().filters(filter).send(),
    )
    .await;
    let where_ = match account {
        Some(account) => format!("account {account}, {}", context.region),
        None => context.region.clone(),
    };
    let output = match sent {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            let e = AwsError::from_sdk(
                "DescribeInstanceInformation",
                &context.region,
                context.profile.as_deref(),
                e,
            );
            let (kind, hint) = match e.kind {
                AwsErrorKind::AccessDenied => (
                    ErrorKind::AccessDenied,
                    "allow ssm:DescribeInstanceInformation, or skip this check by trusting the \
                     session permission check below",
                ),
                AwsErrorKind::Unreachable => (
                    ErrorKind::EndpointUnreachable,
                    "check the network and the SSM endpoint (--endpoint-url, AWS_ENDPOINT_URL_SSM)",
                ),
                _ => (
                    ErrorKind::AwsRequest,
                    "retry; if it persists, quote the request id",
                ),
            };
            return (
                Check::fail("instance", kind, crate::report::error_chain(&e), hint),
                None,
            );
        }
        Err(_) => {
            return (
                Check::fail(
                    "instance",
                    ErrorKind::EndpointUnreachable,
                    "DescribeInstanceInformation got no answer",
                    "check the network and the SSM endpoint",
                ),
                None,
            );
        }
    };
    let Some(info) = output
        .instance_information_list()
        .iter()
        .find(|i| i.instance_id() == Some(target))
    else {
        return (
            Check::fail(
                "instance",
                ErrorKind::TargetNotConnected,
                format!("{target} is not registered with Systems Manager in {where_}"),
                "check the instance id, the account and the region (--region, --account); on the \
                 instance, install and start the SSM agent and give it an instance profile with \
                 AmazonSSMManagedInstanceCore",
            ),
            None,
        );
    };
    let facts = InstanceFacts {
        ping_status: info
            .ping_status()
            .map_or_else(|| "unknown".to_owned(), |p| p.as_str().to_owned()),
        agent_version: info.agent_version().unwrap_or_default().to_owned(),
    };
    let platform = [info.platform_name(), info.platform_version()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let check = if facts.ping_status == "Online" {
        Check::pass(
            "instance",
            format!(
                "{target} is Online in {where_}, SSM agent {}{}",
                facts.agent_version,
                if platform.is_empty() {
                    String::new()
                } else {
                    format!(", {platform}")
                }
            ),
        )
    } else {
        let last = info
            .last_ping_date_time()
            .and_then(|t| t.fmt(Format::DateTime).ok())
            .map(|t| format!(", last ping {t}"))
            .unwrap_or_default();
        Check::fail(
            "instance",
            ErrorKind::TargetNotConnected,
            format!(
                "{target} is {} in {where_} (SSM agent {}{last})",
                facts.ping_status, facts.agent_version
            ),
            "start the instance if it is stopped; otherwise check on it that amazon-ssm-agent \
             runs and reaches ssm, ssmmessages and ec2messages (security groups, VPC endpoints, \
             proxy)",
        )
    };
    (check, Some(facts))
}

/// What the agent's version lacks (SPEC.md §6.9 thresholds).
pub fn agent_features(agent_version: &str) -> Check {
    let mut lacks = Vec::new();
    if !version::client_uses_mux(agent_version) {
        lacks.push(format!(
            "multiplexed port forwarding (needs > {}; forwards run in basic mode, one \
             connection at a time)",
            version::MUX_AFTER_AGENT
        ));
    }
    if !version::client_disables_smux_keepalive(agent_version) {
        lacks.push(format!(
            "the smux keepalive fix (needs > {}; idle forwards are kept alive by keepalives)",
            version::SMUX_KEEPALIVE_OFF_AFTER_AGENT
        ));
    }
    if !version::client_sends_terminate_flag(agent_version) {
        lacks.push(format!(
            "the TerminateSession flag (needs > {}; sessions end through the API)",
            version::TERMINATE_SESSION_FLAG_AFTER_AGENT
        ));
    }
    if !crate::forward::agent_at_least(agent_version, REMOTE_HOST_MIN_AGENT) {
        lacks.push(format!(
            "port forwarding to remote hosts (needs {REMOTE_HOST_MIN_AGENT})"
        ));
    }
    if !crate::forward::agent_at_least(agent_version, crate::forward::stdio::SSH_MIN_AGENT) {
        lacks.push(format!(
            "SSH sessions (needs {})",
            crate::forward::stdio::SSH_MIN_AGENT
        ));
    }
    if lacks.is_empty() {
        Check::pass(
            "agent features",
            format!(
                "agent {agent_version} has muxed port forwarding, the keepalive fix, the \
                 TerminateSession flag, remote-host forwarding and SSH"
            ),
        )
    } else {
        Check::warn(
            "agent features",
            format!("agent {agent_version} lacks {}", lacks.join("; ")),
            "update the agent (run the AWS-UpdateSSMAgent document on the instance)",
        )
    }
}

/// A real probe of ssm:StartSession (and ssm:TerminateSession): starts a session on `target`
/// with `document` and terminates it at once, without opening its data channel.
pub async fn session_permission(ssm: &SsmClient, target: &str, document: Option<&str>) -> Check {
    let request = StartSessionRequest {
        target: target.to_owned(),
        document_name: document.map(str::to_owned),
        reason: Some("postern doctor: permission probe".to_owned()),
        ..StartSessionRequest::default()
    };
    let what = document.unwrap_or("the default shell document");
    // Through the ledger: a probe that times out still has the session its call starts ended
    // (at once when the answer comes, at exit when it comes no sooner).
    let started = match tokio::time::timeout(
        CALL_LIMIT,
        crate::transport::lifecycle::start(ssm, &request),
    )
    .await
    {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => {
            let (kind, hint) = match e.kind {
                AwsErrorKind::AccessDenied => (
                    ErrorKind::AccessDenied,
                    format!(
                        "grant ssm:StartSession on arn:aws:ec2:REGION:ACCOUNT:instance/{target} \
                         and on the document ({what}), plus ssm:TerminateSession on your own \
                         sessions; also check permission boundaries and SCPs"
                    ),
                ),
                AwsErrorKind::TargetNotConnected => (
                    ErrorKind::TargetNotConnected,
                    "the service cannot reach the instance's agent: see the instance check"
                        .to_owned(),
                ),
                AwsErrorKind::Credentials => {
                    (ErrorKind::AwsConfig, "refresh the credentials".to_owned())
                }
                AwsErrorKind::Unreachable => (
                    ErrorKind::EndpointUnreachable,
                    "check the network and the SSM endpoint".to_owned(),
                ),
                _ => (
                    ErrorKind::AwsRequest,
                    "check the document name and its parameters".to_owned(),
                ),
            };
            return Check::fail(
                "session permission",
                kind,
                format!(
                    "probe StartSession on {target} ({what}) refused: {}",
                    crate::report::error_chain(&e)
                ),
                hint,
            );
        }
        Err(_) => {
            return Check::fail(
                "session permission",
                ErrorKind::EndpointUnreachable,
                "probe StartSession got no answer",
                "check the network and the SSM endpoint",
            );
        }
    };
    let session_id = started.session_id.clone();
    let terminated = tokio::time::timeout(CALL_LIMIT, ssm.terminate_session(&session_id)).await;
    if matches!(terminated, Ok(Ok(()))) {
        // Ended: nothing for the exit sweep (a failed call leaves it there, to try again).
        crate::transport::ledger::ended(&session_id);
    }
    match terminated {
        Ok(Ok(())) => Check::pass(
            "session permission",
            format!(
                "StartSession and TerminateSession allowed on {target} ({what}): probed with a \
                 real session, {session_id}, terminated at once"
            ),
        ),
        Ok(Err(e)) => Check::fail(
            "session permission",
            if e.kind == AwsErrorKind::AccessDenied {
                ErrorKind::AccessDenied
            } else {
                ErrorKind::AwsRequest
            },
            format!(
                "StartSession is allowed, but TerminateSession of the probe {session_id} failed: \
                 {}",
                crate::report::error_chain(&e)
            ),
            "grant ssm:TerminateSession on your own sessions (arn:aws:ssm:*:*:session/${aws:userid}-*); \
             the probe session times out by itself",
        ),
        Err(_) => Check::fail(
            "session permission",
            ErrorKind::EndpointUnreachable,
            format!("TerminateSession of the probe {session_id} got no answer"),
            "check the network; the probe session times out by itself",
        ),
    }
}

/// The account's Session Manager preferences (the SSM-SessionManagerRunShell document): a KMS
/// key there means shells are encrypted.
pub async fn kms(context: &AwsContext, sdk: &SdkConfig) -> Check {
    let ssm = aws::ssm_client(sdk, context.ssm_endpoint.as_deref());
    let sent = tokio::time::timeout(
        CALL_LIMIT,
        ssm.get_document().name(PREFERENCES_DOCUMENT).send(),
    )
    .await;
    match sent {
        Ok(Ok(output)) => kms_preference(kms_key_of(output.content().unwrap_or_default())),
        Ok(Err(e)) => {
            let e = AwsError::from_sdk(
                "GetDocument",
                &context.region,
                context.profile.as_deref(),
                e,
            );
            match e.code() {
                // No preferences saved: defaults, no KMS.
                Some("InvalidDocument") => Check::pass(
                    "kms",
                    "no Session Manager preferences document: defaults, no KMS key",
                ),
                _ => Check::warn(
                    "kms",
                    format!(
                        "could not read the preferences ({PREFERENCES_DOCUMENT}): {}",
                        crate::report::error_chain(&e)
                    ),
                    "allow ssm:GetDocument on SSM-SessionManagerRunShell to know whether shells \
                     need KMS (postern's port forwarding and ssh work either way)",
                ),
            }
        }
        Err(_) => Check::warn(
            "kms",
            "GetDocument got no answer: KMS requirement unknown",
            "retry",
        ),
    }
}

/// What the preferences' KMS key means for postern: encrypted shells work (postern does the
/// KMS handshake, SPEC.md §7) as long as the caller may use the key.
fn kms_preference(key: Option<String>) -> Check {
    match key {
        Some(key) => Check::pass(
            "kms",
            format!(
                "the Session Manager preferences encrypt shells with KMS key {key}: postern \
                 encrypts them too (the role needs kms:GenerateDataKey on that key)"
            ),
        ),
        None => Check::pass("kms", "the Session Manager preferences require no KMS key"),
    }
}

/// The `inputs.kmsKeyId` of a Session Manager preferences document, when set.
pub fn kms_key_of(content: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(content).ok()?;
    value["inputs"]["kmsKeyId"]
        .as_str()
        .filter(|k| !k.trim().is_empty())
        .map(str::to_owned)
}

/// Remembers the `Date` header of the last response an SDK call received.
#[derive(Clone, Debug, Default)]
struct DateCapture(Arc<Mutex<Option<String>>>);

impl DateCapture {
    fn date(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Intercept for DateCapture {
    fn name(&self) -> &'static str {
        "postern-doctor-date"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = context.response().headers().get("date") {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(date.to_owned());
        }
        Ok(())
    }
}

/// Which endpoint answered and how.
fn endpoint_detail(endpoint: Option<&str>, region: &str) -> String {
    match endpoint {
        Some(url) if url.starts_with("http://") => {
            format!("{url} answered over plain HTTP (loopback or test endpoints only)")
        }
        Some(url) => format!("{url} answered over TLS (certificate verified)"),
        None => {
            format!("https://sts.{region}.amazonaws.com answered over TLS (certificate verified)")
        }
    }
}

/// Proxy variables other tools read and postern does not (the session-manager-plugin reads
/// only `HTTPS_PROXY` for its `wss://` dial: golang.org/x/net `http/httpproxy/proxy.go`).
const IGNORED_PROXY_VARIABLES: [&str; 4] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];
/// The Session Manager preferences document (AWS Systems Manager user guide, "Create a
/// Session Manager preferences document").
const PREFERENCES_DOCUMENT: &str = "SSM-SessionManagerRunShell";
/// AWS-StartPortForwardingSessionToRemoteHost needs SSM Agent 3.1.1374.0.
const REMOTE_HOST_MIN_AGENT: &str = "3.1.1374.0";
/// Clock skew from which requests fail: SigV4 signatures are accepted within 5 minutes of
/// the service's clock (AWS General Reference, "Signature Version 4 errors").
const SKEW_FAIL: Duration = Duration::from_secs(5 * 60);
/// Bound for each AWS call of the doctor.
const CALL_LIMIT: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::check::Status;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn clock_skew_passes_warns_and_fails() {
        // Tue, 01 Dec 2026 21:30:00 GMT
        let date = "Tue, 01 Dec 2026 21:30:00 GMT";
        let remote = 1_796_160_600;
        assert_eq!(clock(Some(date), at(remote + 1)).status, Status::Pass);
        let warn = clock(Some(date), at(remote + 90));
        assert_eq!(warn.status, Status::Warn);
        assert_eq!(
            warn.detail,
            "the local clock is 1m 30s ahead of the endpoint's"
        );
        let fail = clock(Some(date), at(remote - 600));
        assert_eq!(fail.status, Status::Fail);
        assert_eq!(fail.detail, "the local clock is 10m behind the endpoint's");
        assert_eq!(clock(None, at(remote)).status, Status::Warn);
        assert_eq!(clock(Some("yesterday"), at(remote)).status, Status::Warn);
    }

    #[test]
    fn agent_features_name_what_old_agents_lack() {
        assert_eq!(agent_features("3.3.0.0").status, Status::Pass);
        let old = agent_features("3.0.161.0");
        assert_eq!(old.status, Status::Warn);
        assert!(
            old.detail.contains("multiplexed port forwarding"),
            "{}",
            old.detail
        );
        assert!(old.detail.contains("remote hosts"), "{}", old.detail);
        assert!(
            !old.detail.contains("TerminateSession flag"),
            "{}",
            old.detail
        );
        let ancient = agent_features("2.3.672.0");
        assert!(
            ancient.detail.contains("TerminateSession flag"),
            "{}",
            ancient.detail
        );
        assert!(!ancient.detail.contains("SSH"), "{}", ancient.detail);
    }

    #[test]
    fn a_kms_key_in_the_preferences_passes_and_names_the_permission() {
        let check = kms_preference(Some("alias/ssm".to_owned()));
        assert_eq!(check.status, Status::Pass);
        assert!(
            check.detail.contains("KMS key alias/ssm"),
            "{}",
            check.detail
        );
        assert!(
            check.detail.contains("kms:GenerateDataKey"),
            "{}",
            check.detail
        );
        assert_eq!(kms_preference(None).status, Status::Pass);
    }

    #[test]
    fn kms_key_comes_from_the_preferences_inputs() {
        let with = r#"{"schemaVersion":"1.0","sessionType":"Standard_Stream","inputs":{"kmsKeyId":"alias/ssm"}}"#;
        assert_eq!(kms_key_of(with).as_deref(), Some("alias/ssm"));
        let without = r#"{"inputs":{"kmsKeyId":""}}"#;
        assert_eq!(kms_key_of(without), None);
        assert_eq!(kms_key_of("not json"), None);
    }

    #[test]
    fn network_settings_report_the_proxy_without_its_password_and_no_proxy() {
        let check = network_settings(|name| match name {
            "HTTPS_PROXY" => Some("http://bob:secret@proxy:3128".to_owned()),
            "no_proxy" => Some(".internal,10.0.0.0/8".to_owned()),
            _ => None,
        });
        assert_eq!(check.status, Status::Pass, "{}", check.detail);
        assert!(!check.detail.contains("secret"), "{}", check.detail);
        assert!(!check.detail.contains("bob"), "{}", check.detail);
        assert!(
            check.detail.contains(
                "proxy http://proxy:3128/ (HTTPS_PROXY, with its user and password); \
                 no_proxy=.internal,10.0.0.0/8; TLS trusts the system's roots (AWS_CA_BUNDLE \
                 unset)"
            ),
            "{}",
            check.detail
        );
        assert_eq!(network_settings(|_| None).status, Status::Pass);
    }

    #[test]
    fn network_settings_fail_on_an_unusable_proxy_or_bundle() {
        let check = network_settings(|name| {
            (name == "HTTPS_PROXY").then(|| "socks5://bob:secret@proxy:1080".to_owned())
        });
        assert_eq!(check.status, Status::Fail);
        assert!(!check.detail.contains("secret"), "{}", check.detail);
        let check = network_settings(|name| {
            (name == "AWS_CA_BUNDLE").then(|| "/nonexistent/ca.pem".to_owned())
        });
        assert_eq!(check.status, Status::Fail);
        assert!(
            check
                .detail
                .starts_with("AWS_CA_BUNDLE=/nonexistent/ca.pem: the CA bundle cannot be read"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn network_settings_warn_about_proxy_variables_postern_does_not_read() {
        let check =
            network_settings(|name| (name == "HTTP_PROXY").then(|| "http://proxy:3128".to_owned()));
        assert_eq!(check.status, Status::Warn, "{}", check.detail);
        assert!(
            check.detail.ends_with("HTTP_PROXY set but not used"),
            "{}",
            check.detail
        );
    }
}
