//! Every failure a command meets, mapped once to an [`ExpectedError`]: its kind (hence its
//! documented exit code), what failed, for which target, and the hint that says what to do.
//!
//! An AWS error maps to the same kind whichever command meets it ([`aws_kind`]); only the hint
//! depends on the operation, since the next step differs (an IAM permission for StartSession,
//! a trust policy for AssumeRole, the management account for ListAccounts).

use crate::aws::{self, AwsError, AwsErrorKind};
use crate::broker::guardrails::Refusal;
use crate::broker::{BrokerError, MfaError};
use crate::forward::stdio::ProxyError;
use crate::forward::{BindError, ConnectError, ForwardError};
use crate::report::{ErrorKind, ExpectedError};
use crate::transport::{DriverError, OpenError};

/// The one classification of AWS errors into exit-code kinds.
pub(crate) fn aws_kind(kind: AwsErrorKind) -> ErrorKind {
    match kind {
        AwsErrorKind::TargetNotConnected => ErrorKind::TargetNotConnected,
        AwsErrorKind::AccessDenied => ErrorKind::AccessDenied,
        AwsErrorKind::Credentials | AwsErrorKind::Configuration => ErrorKind::AwsConfig,
        AwsErrorKind::Unreachable => ErrorKind::EndpointUnreachable,
        AwsErrorKind::Unsupported => ErrorKind::Unsupported,
        AwsErrorKind::Service => ErrorKind::AwsRequest,
    }
}

/// What to do about `err`, by its kind and operation.
pub(crate) fn aws_hint(err: &AwsError) -> String {
    let sts = matches!(err.operation, "AssumeRole" | "GetSessionToken");
    let organizations = err.operation == "ListAccounts";
    let instance_connect = err.operation == aws::SEND_SSH_PUBLIC_KEY;
    match err.kind {
        _ if err.code() == Some("AWSOrganizationsNotInUseException") => {
            "this account is not in an organization: list accounts in the configuration file"
                .to_owned()
        }
        AwsErrorKind::TargetNotConnected if instance_connect => "EC2 Instance Connect reaches \
                                                                 running EC2 instances of this \
                                                                 account and region (not \
                                                                 hybrid mi- nodes): check the \
                                                                 instance, or retry if it is \
                                                                 starting"
            .to_owned(),
        AwsErrorKind::TargetNotConnected if err.operation == aws::DESCRIBE_INSTANCES => {
            "EC2 Instance Connect needs an EC2 instance of this account and region (EC2 \
             DescribeInstances must find it); hybrid mi- nodes have none: use `postern ssh` \
             without --push-key and a key installed on the instance"
                .to_owned()
        }
        AwsErrorKind::Unsupported => "this instance cannot take pushed keys (EC2 Instance \
                                      Connect serves running Linux instances of the types it \
                                      supports): use `postern ssh` without --push-key and a key \
                                      installed on the instance"
            .to_owned(),
        AwsErrorKind::AccessDenied if instance_connect => "the role needs \
                                                           ec2-instance-connect:SendSSHPublicKey \
                                                           on the instance (`postern setup \
                                                           --print-policy` shows a policy); \
                                                           a condition on ec2:osuser may allow \
                                                           only some OS users"
            .to_owned(),
        AwsErrorKind::Service if err.code() == Some("InvalidArgsException") => "check the OS \
                                                                                user name (-l, \
                                                                                USER@): letters, \
                                                                                digits, . _ - \
                                                                                and at most 32 \
                                                                                characters"
            .to_owned(),
        AwsErrorKind::TargetNotConnected => "check that the instance exists in this account and \
                                             region, is running, and that its SSM agent is \
                                             online (`aws ssm describe-instance-information`)"
            .to_owned(),
        // GetSessionToken refuses a wrong or reused MFA code as access denied.
        AwsErrorKind::AccessDenied if err.operation == "GetSessionToken" => {
            "check the MFA code (a fresh one: a code works once) and that the device's clock is \
             right; the source identity needs sts:GetSessionToken and the mfa_serial of its MFA \
             device"
                .to_owned()
        }
        AwsErrorKind::AccessDenied if sts => "the role's trust policy must allow the source \
                                              identity to call sts:AssumeRole, and the role must \
                                              exist in that account"
            .to_owned(),
        AwsErrorKind::AccessDenied if organizations => "ListAccounts works from the \
                                                        organization's management account or a \
                                                        delegated administrator: pick that \
                                                        source identity (--source, --profile)"
            .to_owned(),
        AwsErrorKind::AccessDenied if err.operation.starts_with("GenerateDataKey") => {
            "the caller needs kms:GenerateDataKey on the key named in the account's Session \
             Manager preferences"
                .to_owned()
        }
        AwsErrorKind::AccessDenied => format!(
            "the caller needs IAM permission for {}:{} (for sessions: ssm:StartSession on the \
             instance and the session document, ssm:TerminateSession on its own sessions)",
            service_prefix(err.operation),
            err.operation
        ),
        AwsErrorKind::Credentials if sts || organizations => "check the source identity's \
                                                              credentials (e.g. `aws sso \
                                                              login`) or pick another --profile"
            .to_owned(),
        AwsErrorKind::Credentials => "check the credentials: refresh them (e.g. `aws sso \
                                      login`), or pick another --profile"
            .to_owned(),
        AwsErrorKind::Configuration if err.operation == aws::NETWORK_SETTINGS => {
            format!("{PROXY_SETTINGS_HINT}; {CA_BUNDLE_HINT}")
        }
        AwsErrorKind::Configuration if err.operation == aws::ENDPOINT_SETTINGS => {
            "fix --endpoint-url, AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_<SERVICE>: https://, or a \
             loopback address for a local emulator"
                .to_owned()
        }
        AwsErrorKind::Configuration => "pass --region or set AWS_REGION".to_owned(),
        AwsErrorKind::Unreachable => "check the network, --endpoint-url and AWS_ENDPOINT_URL \
                                      (or the service's AWS_ENDPOINT_URL_<SERVICE>), and any \
                                      proxy (HTTPS_PROXY, NO_PROXY) or TLS-inspecting firewall \
                                      (AWS_CA_BUNDLE)"
            .to_owned(),
        AwsErrorKind::Service => {
            "retry later; if it persists, quote the request id to AWS support".to_owned()
        }
    }
}

fn service_prefix(operation: &str) -> &'static str {
    match operation {
        "AssumeRole" | "GetSessionToken" | "GetCallerIdentity" => "sts",
        "ListAccounts" | "ListParents" | "DescribeOrganizationalUnit" | "ListTagsForResource" => {
            "organizations"
        }
        "DescribeInstances" => "ec2",
        "SendSSHPublicKey" => "ec2-instance-connect",
        op if op.starts_with("GenerateDataKey") || op == "Decrypt" => "kms",
        _ => "ssm",
    }
}

/// An AWS call (or loading the AWS configuration) that failed while doing `what` on
/// `described`.
pub(crate) fn aws_failure(err: AwsError, what: &str, described: &str) -> anyhow::Error {
    ExpectedError::new(aws_kind(err.kind), what)
        .target(described.to_owned())
        .hint(aws_hint(&err))
        .source(err)
        .into()
}

/// The kind and hint of a role broker failure.
pub(crate) fn broker_kind(err: &BrokerError) -> (ErrorKind, String) {
    match err {
        BrokerError::UnknownAccount(_) => (
            ErrorKind::Usage,
            "name an account alias or id from `postern accounts`, or a role ARN".to_owned(),
        ),
        BrokerError::NoRole(_) => (
            ErrorKind::Config,
            "set `role` in the configuration or on the account".to_owned(),
        ),
        BrokerError::UnknownSource(_) => (
            ErrorKind::Config,
            "define the source in a [sources.NAME] table".to_owned(),
        ),
        BrokerError::Refused(refusal) => (ErrorKind::Guardrail, refusal_hint(refusal)),
        BrokerError::Mfa(mfa) => (ErrorKind::AwsConfig, mfa_hint(mfa).to_owned()),
        BrokerError::Aws(e) => (aws_kind(e.kind), aws_hint(e)),
    }
}

fn mfa_hint(err: &MfaError) -> &'static str {
    match err {
        MfaError::NoTerminal(_) => {
            "run on a terminal, or pass --mfa-command to read codes from a program"
        }
        MfaError::Command { .. } => {
            "check the --mfa-command (POSTERN_MFA_COMMAND): it must print the six-digit code and \
             exit 0"
        }
        MfaError::Malformed => "enter the six digits the MFA device shows",
    }
}

fn refusal_hint(refusal: &Refusal) -> String {
    match refusal {
        Refusal::NeedsConfirmation { .. } => {
            "pass --yes to confirm, or run on a terminal to be asked".to_owned()
        }
        Refusal::Declined { .. } => "type the account alias exactly to confirm".to_owned(),
        Refusal::NeedsReason { .. } => "pass --reason TEXT (e.g. a ticket id)".to_owned(),
        Refusal::SourceNotForEnv { used, .. } => format!(
            "{used} is limited to other environments by its [sources.{used}] table: use the \
             source identity configured for this environment (--source NAME)"
        ),
        Refusal::WrongSource { required, .. } => format!(
            "use the source identity {required} (--source {required}), or drop --profile / \
             --source"
        ),
    }
}

/// A role broker failure while doing `what` for `target`.
pub(crate) fn broker_failure(err: BrokerError, what: &str, target: &str) -> anyhow::Error {
    let (kind, hint) = broker_kind(&err);
    ExpectedError::new(kind, what)
        .target(target.to_owned())
        .hint(hint)
        .source(err)
        .into()
}

/// A port or SSH session that did not start. `ended_hint` applies when the agent ended it
/// (typically: nothing listens at the destination).
pub(crate) fn connect_failure(
    err: ConnectError,
    what: &str,
    described: &str,
    ended_hint: &str,
) -> anyhow::Error {
    let (kind, hint) = match err {
        ConnectError::Start(e) => return aws_failure(e, what, described),
        ConnectError::Open(ref e) => (ErrorKind::EndpointUnreachable, open_hint(e)),
        ConnectError::HandshakeTimeout { .. } => (ErrorKind::HandshakeTimeout, AGENT_SLOW_HINT),
        ConnectError::Lost { .. } => (
            ErrorKind::ConnectionLost,
            "check the network; run the command again",
        ),
        ConnectError::Ended { .. } => (ErrorKind::ConnectionLost, ended_hint),
    };
    ExpectedError::new(kind, what)
        .target(described.to_owned())
        .hint(hint)
        .source(err)
        .into()
}

/// How a command names its local port, for the hints of a port that cannot be listened on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalPortWords {
    /// What to do when the port is in use.
    pub(crate) another: &'static str,
    /// What to do when it may not be opened.
    pub(crate) unusable: &'static str,
}

/// `postern forward`'s words for its local ports.
pub(crate) const FORWARD_PORT_WORDS: LocalPortWords = LocalPortWords {
    another: "pick another LOCAL port",
    unusable: "use an address of this machine (the default is 127.0.0.1) and a port you may \
               open (ports below 1024 need privileges)",
};

/// A forward that could not start.
/// A local address that could not be listened on, with what to pick instead.
pub(crate) fn bind_failure(bind: BindError, words: LocalPortWords) -> ExpectedError {
    let hint = if bind.in_use() {
        format!(
            "another program listens on {}; {}, or 0 for a free one",
            bind.addr, words.another
        )
    } else {
        words.unusable.to_owned()
    };
    ExpectedError::new(
        ErrorKind::LocalPort,
        format!("could not listen on {}", bind.addr),
    )
    .hint(hint)
    .source(bind.source)
}

pub(crate) fn forward_failure(
    err: ForwardError,
    described: &str,
    words: LocalPortWords,
) -> anyhow::Error {
    match err {
        ForwardError::Bind(bind) => bind_failure(bind, words).into(),
        ForwardError::Connect { remote, source } => connect_failure(
            *source,
            &format!("could not start port forwarding to {remote}"),
            described,
            &format!(
                "check that something listens on {remote} as seen from the instance, and that \
                 the instance may reach it"
            ),
        ),
        err @ ForwardError::AgentTooOld { .. } => {
            ExpectedError::new(ErrorKind::Unsupported, err.to_string())
                .target(described.to_owned())
                .hint(UPDATE_AGENT_HINT)
                .into()
        }
    }
}

/// An SSH proxy (ssh-proxy, plugin mode's SSH document) that failed; `port` is sshd's.
pub(crate) fn proxy_failure(err: ProxyError, port: u16, described: String) -> anyhow::Error {
    match err {
        ProxyError::Connect(e) => connect_failure(
            e,
            &format!("could not start an SSH session to port {port}"),
            &described,
            &format!("check that sshd listens on port {port} of the instance"),
        ),
        e @ ProxyError::AgentTooOld(_) => ExpectedError::new(ErrorKind::Unsupported, e.to_string())
            .target(described)
            .hint(UPDATE_AGENT_HINT)
            .into(),
        e @ ProxyError::Lost { .. } => {
            ExpectedError::new(ErrorKind::ConnectionLost, "the SSH session was interrupted")
                .target(described)
                .hint("check the network; reconnect with ssh")
                .source(e)
                .into()
        }
        ProxyError::Local(e) => anyhow::Error::new(e).context("ssh-proxy setup failed"),
    }
}

/// Why a started shell or exec session failed.
#[derive(Debug)]
pub(crate) enum SessionFailure {
    /// The data channel did not open.
    Open(OpenError),
    /// The session broke.
    Driver(DriverError),
    /// The local terminal could not be set up.
    Local(std::io::Error),
}

/// A shell or exec session `session_id` on `described` that failed after StartSession.
pub(crate) fn session_failure(
    err: SessionFailure,
    described: &str,
    session_id: &str,
) -> anyhow::Error {
    let target = format!("{described}, session {session_id}");
    let e = match err {
        SessionFailure::Open(e) => {
            return ExpectedError::new(
                ErrorKind::EndpointUnreachable,
                "could not open the session's data channel",
            )
            .target(target)
            .hint(open_hint(&e))
            .source(e)
            .into();
        }
        SessionFailure::Local(e) => {
            return anyhow::Error::new(e)
                .context(format!("could not set up the local terminal ({target})"));
        }
        SessionFailure::Driver(e) => e,
    };
    let (kind, what, hint) = match &e {
        DriverError::HandshakeTimeout(_) => (
            ErrorKind::HandshakeTimeout,
            "the session did not start",
            AGENT_SLOW_HINT.to_owned(),
        ),
        DriverError::ConnectionLost(_) => (
            ErrorKind::ConnectionLost,
            "the session was interrupted",
            "check the network (and --reconnect-attempts, --keepalive); run the command again \
             to start a new session"
                .to_owned(),
        ),
        DriverError::Closed(_) => (
            ErrorKind::ConnectionLost,
            "the session was interrupted",
            "check the network; run the command again to start a new session".to_owned(),
        ),
        DriverError::Encryption(_) => (
            ErrorKind::Encryption,
            "the KMS-encrypted session was closed",
            "the agent's data key does not match ours or a message was altered on the way; \
             nothing undecryptable was shown. Check the KMS key named in the Session Manager \
             preferences (the instance role needs kms:Decrypt) and retry"
                .to_owned(),
        ),
        DriverError::Kms { source, .. } => {
            let (kind, hint) = match source.kind {
                AwsErrorKind::AccessDenied | AwsErrorKind::Credentials => {
                    (aws_kind(source.kind), aws_hint(source))
                }
                _ => (
                    ErrorKind::Encryption,
                    "check that the KMS key in the Session Manager preferences exists and is \
                     enabled in this region"
                        .to_owned(),
                ),
            };
            (
                kind,
                "the session is KMS-encrypted and no data key could be made",
                hint,
            )
        }
        DriverError::Output(_) => {
            return anyhow::Error::new(e).context(format!("session output failed ({target})"));
        }
    };
    ExpectedError::new(kind, what)
        .target(target)
        .hint(hint)
        .source(e)
        .into()
}

/// The next step when the data channel did not open: the proxy or the CA bundle when one of
/// them is at fault, else the network.
fn open_hint(err: &OpenError) -> &'static str {
    match err {
        OpenError::ProxySettings { .. } => PROXY_SETTINGS_HINT,
        OpenError::Proxy { .. } => {
            "check HTTPS_PROXY (host, port, and the user:password in it), or list the host in \
             NO_PROXY to dial it directly"
        }
        OpenError::Trust { .. } => CA_BUNDLE_HINT,
        OpenError::Connect { source, .. } if is_tls_failure(source) => {
            "the endpoint's certificate is not trusted: if a proxy or firewall inspects TLS, \
             set AWS_CA_BUNDLE to its CA certificate (PEM)"
        }
        _ => {
            "check the network and any proxy between here and the Session Manager endpoint \
             (HTTPS_PROXY, NO_PROXY)"
        }
    }
}

/// A TLS failure of the websocket dial: tokio-tungstenite reports rustls's handshake errors
/// inside an io error.
fn is_tls_failure(err: &tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    match err {
        Error::Tls(_) => true,
        Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}

const PROXY_SETTINGS_HINT: &str =
    "set HTTPS_PROXY to http://[user:password@]host:port, or unset it";
const CA_BUNDLE_HINT: &str =
    "point AWS_CA_BUNDLE at a readable PEM file of CA certificates, or unset it";
const AGENT_SLOW_HINT: &str = "the agent may be overloaded or too old; check its logs on the \
                               instance (/var/log/amazon/ssm/amazon-ssm-agent.log)";
const UPDATE_AGENT_HINT: &str =
    "update the SSM agent on the instance (the AWS-UpdateSSMAgent document)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aws_error_kind_maps_to_one_exit_code_kind_whoever_meets_it() {
        for (operation, kind) in [
            ("StartSession", AwsErrorKind::AccessDenied),
            ("AssumeRole", AwsErrorKind::AccessDenied),
            ("ListAccounts", AwsErrorKind::AccessDenied),
            ("AssumeRole", AwsErrorKind::TargetNotConnected),
            ("StartSession", AwsErrorKind::Credentials),
            ("AssumeRole", AwsErrorKind::Configuration),
        ] {
            let direct = aws_kind(kind);
            let through_broker = broker_kind(&BrokerError::Aws(AwsError::local(
                kind, operation, None, None, "x",
            )))
            .0;
            assert_eq!(direct, through_broker, "{operation} {kind:?}");
        }
        assert_eq!(
            aws_kind(AwsErrorKind::TargetNotConnected),
            ErrorKind::TargetNotConnected
        );
        assert_eq!(aws_kind(AwsErrorKind::Configuration), ErrorKind::AwsConfig);
    }

    #[test]
    fn hints_follow_the_operation() {
        let denied = |op| {
            aws_hint(&AwsError::local(
                AwsErrorKind::AccessDenied,
                op,
                None,
                None,
                "x",
            ))
        };
        assert!(denied("AssumeRole").contains("trust policy"));
        assert!(denied("ListAccounts").contains("management account"));
        assert!(denied("StartSession").contains("ssm:StartSession"));
        assert!(denied("DescribeInstances").contains("ec2:DescribeInstances"));
        // A wrong MFA code is an access denied of GetSessionToken: the code, not a policy.
        assert!(denied("GetSessionToken").contains("check the MFA code"));
    }

    #[test]
    fn each_mfa_failure_has_its_own_next_step() {
        let hint = |err| broker_kind(&BrokerError::Mfa(err)).1;
        assert!(hint(MfaError::Malformed).contains("six digits"));
        assert!(
            hint(MfaError::Command {
                command: "pass otp".to_owned(),
                reason: "exit 1".to_owned()
            })
            .contains("--mfa-command")
        );
        let no_tty = MfaError::NoTerminal(std::io::Error::other("no tty"));
        assert!(hint(no_tty).contains("run on a terminal"));
    }
}
