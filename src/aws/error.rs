//! AWS call failures, classified for exit codes and hints, keeping what a user needs to act:
//! operation, region, profile, service error code, message and request id.

use std::error::Error as StdError;
use std::fmt;

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_types::request_id::RequestId;

/// What kind of failure an [`AwsError`] is; decides the exit code and the hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// The target's agent is not connected to Session Manager (or the target does not exist).
    TargetNotConnected,
    /// The caller lacks an IAM permission.
    AccessDenied,
    /// No credentials, expired or invalid credentials, unknown profile.
    Credentials,
    /// Local configuration problem (no region).
    Configuration,
    /// The endpoint could not be reached (connection refused, DNS, TLS, timeout).
    Unreachable,
    /// The target cannot serve the call: an instance type, platform or state EC2 Instance
    /// Connect does not support.
    Unsupported,
    /// Any other service error (throttling, invalid document, server error).
    Service,
}

/// One failed AWS call (or configuration step), with its context. Never holds a secret.
#[derive(Debug)]
pub struct AwsError {
    /// Classification.
    pub kind: AwsErrorKind,
    /// The operation, e.g. `StartSession`.
    pub operation: &'static str,
    detail: Box<Detail>,
}

/// The rest of an [`AwsError`], boxed to keep `Result`s small.
#[derive(Debug, Default)]
struct Detail {
    region: Option<String>,
    profile: Option<String>,
    code: Option<String>,
    message: Option<String>,
    request_id: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl AwsError {
    /// A failure detected locally, before any request.
    pub fn local(
        kind: AwsErrorKind,
        operation: &'static str,
        region: Option<String>,
        profile: Option<String>,
        message: &str,
    ) -> Self {
        Self {
            kind,
            operation,
            detail: Box::new(Detail {
                region,
                profile,
                message: Some(message.to_owned()),
                ..Detail::default()
            }),
        }
    }

    /// Region the call went to, when known.
    pub fn region(&self) -> Option<&str> {
        self.detail.region.as_deref()
    }

    /// Profile in use, when one was named.
    pub fn profile(&self) -> Option<&str> {
        self.detail.profile.as_deref()
    }

    /// Service error code, e.g. `TargetNotConnected`.
    pub fn code(&self) -> Option<&str> {
        self.detail.code.as_deref()
    }

    /// Request id, for AWS support.
    pub fn request_id(&self) -> Option<&str> {
        self.detail.request_id.as_deref()
    }

    /// Classifies an SDK error of `operation`.
    pub(crate) fn from_sdk<E, R>(
        operation: &'static str,
        region: &str,
        profile: Option<&str>,
        err: SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
        SdkError<E, R>: RequestId,
    {
        let request_id = err.request_id().map(str::to_owned);
        let kind = classify(&err);
        let mut this = Detail {
            region: Some(region.to_owned()),
            profile: profile.map(str::to_owned),
            request_id,
            ..Detail::default()
        };
        match err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                this.code = inner.code().map(str::to_owned);
                this.message = inner.message().map(str::to_owned);
            }
            SdkError::DispatchFailure(failure) => {
                this.source = failure
                    .as_connector_error()
                    .map(|c| Box::new(ChainOnly::of(c)) as Box<dyn StdError + Send + Sync>);
                if this.source.is_none() {
                    this.message = Some("the request could not be sent".to_owned());
                }
            }
            SdkError::TimeoutError(_) => {
                this.message = Some("the request timed out".to_owned());
            }
            other => {
                // Construction failures (e.g. no credentials) and unparsable responses.
                this.source = Some(Box::new(ChainOnly::of(&other)));
            }
        }
        Self {
            kind,
            operation,
            detail: Box::new(this),
        }
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.operation)?;
        let detail = &self.detail;
        match (&detail.code, &detail.message) {
            (Some(code), Some(message)) => write!(f, ": {code}: {message}")?,
            (Some(code), None) => write!(f, ": {code}")?,
            (None, Some(message)) => write!(f, ": {message}")?,
            (None, None) => {}
        }
        if let Some(id) = &detail.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl StdError for AwsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.detail
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Classifies a failed SDK call: by the service's error code, or by how the request failed
/// (not sent, no answer, no credentials).
pub fn classify<E, R>(err: &SdkError<E, R>) -> AwsErrorKind
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: fmt::Debug + 'static,
{
    let names_identity = |text: &str| text.contains("credential") || text.contains("identity");
    match err {
        SdkError::ServiceError(service) => kind_for_code(service.err().code().unwrap_or_default()),
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            AwsErrorKind::Unreachable
        }
        // Identity resolution failures arrive as dispatch failures of kind "other" in some SDK
        // versions; the cause's text says which.
        SdkError::DispatchFailure(failure) => match failure.as_connector_error() {
            Some(cause) => {
                let text = ChainOnly::of(cause).text;
                if names_identity(&text) || text.contains("profile") {
                    AwsErrorKind::Credentials
                } else {
                    AwsErrorKind::Unreachable
                }
            }
            None => AwsErrorKind::Credentials,
        },
        SdkError::TimeoutError(_) => AwsErrorKind::Unreachable,
        // Construction failures (e.g. no credentials) and unparsable responses.
        other => {
            if names_identity(&ChainOnly::of(other).text) {
                AwsErrorKind::Credentials
            } else {
                AwsErrorKind::Service
            }
        }
    }
}

/// Classifies a service error code.
fn kind_for_code(code: &str) -> AwsErrorKind {
    match code {
        "TargetNotConnected"
        | "InvalidInstanceId"
        | "InvalidTarget"
        | "InvalidInstanceID.NotFound"
        | "InvalidInstanceID.Malformed"
        | "EC2InstanceNotFoundException"
        | "EC2InstanceUnavailableException" => AwsErrorKind::TargetNotConnected,
        "EC2InstanceTypeInvalidException" | "EC2InstanceStateInvalidException" => {
            AwsErrorKind::Unsupported
        }
        // EC2 names a missing permission UnauthorizedOperation.
        "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation" => {
            AwsErrorKind::AccessDenied
        }
        // EC2 names bad or expired credentials AuthFailure and RequestExpired.
        "AuthFailure"
        | "RequestExpired"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "MissingAuthenticationTokenException" => AwsErrorKind::Credentials,
        _ => AwsErrorKind::Service,
    }
}

/// The `Display` chain of an SDK error flattened into one error whose text is the deepest
/// useful causes joined with `: ` (SDK errors nest "dispatch failure" / "io error" wrappers
/// whose own texts say little). Keeps no reference to the original, which may hold a request.
#[derive(Debug)]
struct ChainOnly {
    text: String,
}

impl ChainOnly {
    fn of(err: &(dyn StdError + 'static)) -> Self {
        let mut parts: Vec<String> = Vec::new();
        let mut current: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(e) = current {
            let text = e.to_string();
            if !text.is_empty() && !GENERIC.contains(&text.as_str()) && !parts.contains(&text) {
                parts.push(text);
            }
            current = e.source();
        }
        Self {
            text: parts.join(": "),
        }
    }
}

impl fmt::Display for ChainOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl StdError for ChainOnly {}

/// SDK wrapper texts that carry no information of their own.
const GENERIC: &[&str] = &[
    "dispatch failure",
    "io error",
    "other",
    "service error",
    "unhandled error",
    "failed to construct request",
    "response error",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_known_codes() {
        assert_eq!(
            kind_for_code("TargetNotConnected"),
            AwsErrorKind::TargetNotConnected
        );
        assert_eq!(
            kind_for_code("AccessDeniedException"),
            AwsErrorKind::AccessDenied
        );
        assert_eq!(
            kind_for_code("ExpiredTokenException"),
            AwsErrorKind::Credentials
        );
        // EC2's own names for the same.
        assert_eq!(kind_for_code("AuthFailure"), AwsErrorKind::Credentials);
        assert_eq!(
            kind_for_code("UnauthorizedOperation"),
            AwsErrorKind::AccessDenied
        );
        assert_eq!(kind_for_code("ThrottlingException"), AwsErrorKind::Service);
        assert_eq!(
            kind_for_code("EC2InstanceNotFoundException"),
            AwsErrorKind::TargetNotConnected
        );
        assert_eq!(
            kind_for_code("EC2InstanceTypeInvalidException"),
            AwsErrorKind::Unsupported
        );
    }

    #[test]
    fn display_names_operation_code_message_and_request_id() {
        let mut err = AwsError::local(
            AwsErrorKind::TargetNotConnected,
            "StartSession",
            Some("us-east-1".into()),
            None,
            "i-0abc is not connected.",
        );
        err.detail.code = Some("TargetNotConnected".into());
        err.detail.request_id = Some("req-1".into());
        assert_eq!(
            err.to_string(),
            "StartSession failed: TargetNotConnected: i-0abc is not connected. (request id req-1)"
        );
    }
}
