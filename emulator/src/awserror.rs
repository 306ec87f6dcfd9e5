//! AWS-shaped error responses, as the SDKs parse them: for JSON 1.1 services (SSM,
//! Organizations, KMS) an HTTP 4xx/5xx with `{"__type": code, "message": text}` and an
//! `x-amzn-RequestId` header; for STS (AWS query) an `<ErrorResponse>` document; for EC2 (EC2
//! query) a `<Response><Errors>` document. Also the per-service wording of the failures every
//! service shares (expired or invalid credentials, throttling).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::CredentialProblem;
use crate::query::Xml;

/// One AWS service error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AwsError {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl AwsError {
    /// An error with the status AWS uses for `code`.
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            status: status_for(code),
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The request carried no `Authorization` header.
    pub(crate) fn missing_authentication() -> Self {
        Self::new(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    }

    /// The `Host` header is not a loopback name: the emulator answers loopback callers only
    /// (a page that rebinds its DNS name to 127.0.0.1 sends its own name).
    pub(crate) fn not_loopback_host() -> Self {
        Self::new(
            "MisdirectedRequest",
            "the emulator serves loopback hosts only (127.0.0.0/8, [::1], localhost)",
        )
    }

    /// The `X-Amz-Target` names no operation we serve.
    pub(crate) fn unknown_operation(target: &str) -> Self {
        Self::new(
            "UnknownOperationException",
            format!("unknown operation {target}"),
        )
    }

    /// A request body that is not the expected JSON.
    pub(crate) fn serialization(detail: impl Into<String>) -> Self {
        Self::new("SerializationException", detail)
    }

    /// The response `service` sends for this error.
    pub(crate) fn into_response(self, service: Service, request_id: &str) -> Response {
        match service {
            Service::Ssm | Service::Organizations | Service::Kms | Service::InstanceConnect => {
                self.into_json_response(request_id)
            }
            Service::Sts => self.into_sts_response(request_id),
            Service::Ec2 => self.into_ec2_response(request_id),
        }
    }

    /// An AWS query (STS) error response.
    fn into_sts_response(self, request_id: &str) -> Response {
        let fault = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        let mut xml = Xml::document("ErrorResponse", STS_XMLNS);
        xml.start("Error")
            .leaf("Type", fault)
            .leaf("Code", &self.code)
            .leaf("Message", &self.message)
            .end()
            .leaf("RequestId", request_id);
        xml_response(self.status, xml.finish(), request_id)
    }

    /// An EC2 query error response.
    fn into_ec2_response(self, request_id: &str) -> Response {
        let mut xml = Xml::bare("Response");
        xml.start("Errors")
            .start("Error")
            .leaf("Code", &self.code)
            .leaf("Message", &self.message)
            .end()
            .end()
            .leaf("RequestID", request_id);
        xml_response(self.status, xml.finish(), request_id)
    }

    /// A JSON 1.1 error response.
    pub(crate) fn into_json_response(self, request_id: &str) -> Response {
        let body = json!({ "__type": self.code, "message": self.message }).to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_1_1_CONTENT_TYPE),
        );
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert(REQUEST_ID_HEADER, value);
        }
        response
    }
}

/// The services of the control plane, each with its protocol and wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    /// SSM (JSON 1.1, `AmazonSSM.*`).
    Ssm,
    /// Organizations (JSON 1.1, `AWSOrganizationsV20161128.*`).
    Organizations,
    /// STS (AWS query, XML).
    Sts,
    /// EC2 (EC2 query, XML).
    Ec2,
    /// KMS (JSON 1.1, `TrentService.*`).
    Kms,
    /// EC2 Instance Connect (JSON 1.1, `AWSEC2InstanceConnectService.*`).
    InstanceConnect,
}

impl Service {
    /// The IAM prefix of its actions (`ssm:StartSession`).
    pub(crate) fn iam_prefix(self) -> &'static str {
        match self {
            Self::Ssm => "ssm",
            Self::Organizations => "organizations",
            Self::Sts => "sts",
            Self::Ec2 => "ec2",
            Self::Kms => "kms",
            Self::InstanceConnect => "ec2-instance-connect",
        }
    }

    /// The error this service gives for refused credentials or signatures, with the codes
    /// each protocol uses: JSON services `UnrecognizedClientException` /
    /// `InvalidSignatureException`, STS `InvalidClientTokenId` / `SignatureDoesNotMatch`, EC2
    /// `AuthFailure`.
    pub(crate) fn credential_error(self, problem: CredentialProblem) -> AwsError {
        match (self, problem) {
            (Self::Sts, CredentialProblem::Expired) => AwsError::new(
                "ExpiredToken",
                "The security token included in the request is expired",
            ),
            (Self::Ec2, CredentialProblem::Expired) => {
                AwsError::new("RequestExpired", "Request has expired.")
            }
            (_, CredentialProblem::Expired) => AwsError::new(
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ),
            (Self::Sts, CredentialProblem::InvalidToken | CredentialProblem::UnknownAccessKey) => {
                AwsError::new(
                    "InvalidClientTokenId",
                    "The security token included in the request is invalid.",
                )
            }
            (
                Self::Ec2,
                CredentialProblem::InvalidToken
                | CredentialProblem::UnknownAccessKey
                | CredentialProblem::BadSignature,
            ) => AwsError::new(
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            ),
            (_, CredentialProblem::InvalidToken | CredentialProblem::UnknownAccessKey) => {
                AwsError::new(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                )
            }
            (Self::Sts, CredentialProblem::BadSignature) => {
                AwsError::new("SignatureDoesNotMatch", SIGNATURE_MISMATCH)
            }
            (_, CredentialProblem::BadSignature) => {
                AwsError::new("InvalidSignatureException", SIGNATURE_MISMATCH)
            }
            (Self::Sts | Self::Ec2, CredentialProblem::IncompleteSignature(what)) => {
                AwsError::new("IncompleteSignature", incomplete(what))
            }
            (_, CredentialProblem::IncompleteSignature(what)) => {
                AwsError::new("IncompleteSignatureException", incomplete(what))
            }
            (Self::Ec2, CredentialProblem::SignatureExpired { signed_at }) => {
                AwsError::new("RequestExpired", signature_expired(&signed_at))
            }
            (Self::Sts, CredentialProblem::SignatureExpired { signed_at }) => {
                AwsError::new("SignatureDoesNotMatch", signature_expired(&signed_at))
            }
            (_, CredentialProblem::SignatureExpired { signed_at }) => {
                AwsError::new("InvalidSignatureException", signature_expired(&signed_at))
            }
        }
    }

    /// The error this service gives when a caller exceeds its request rate.
    pub(crate) fn throttled(self) -> AwsError {
        match self {
            Self::Ssm => AwsError::new("ThrottlingException", "Rate exceeded"),
            Self::Organizations => AwsError::new(
                "TooManyRequestsException",
                "You have sent too many requests in too short a period of time. The quota \
                 helps protect against denial-of-service attacks. Try again later.",
            ),
            Self::Sts => AwsError::new("Throttling", "Rate exceeded"),
            Self::Ec2 => AwsError::new("RequestLimitExceeded", "Request limit exceeded."),
            Self::Kms | Self::InstanceConnect => {
                AwsError::new("ThrottlingException", "Rate exceeded")
            }
        }
    }
}

/// HTTP status per AWS error code: server faults and EC2 throttling 5xx, authorization
/// failures 401/403 as STS and EC2 send them, everything else (throttling included) 400, as the
/// SSM API does.
fn status_for(code: &str) -> StatusCode {
    match code {
        "InternalServerError" | "InternalFailure" | "InternalError" => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        "ServiceUnavailable" | "RequestLimitExceeded" => StatusCode::SERVICE_UNAVAILABLE,
        "AccessDenied" | "InvalidClientTokenId" | "AccessDeniedException" => StatusCode::FORBIDDEN,
        "AuthFailure" => StatusCode::UNAUTHORIZED,
        "SignatureDoesNotMatch" => StatusCode::FORBIDDEN,
        "MisdirectedRequest" => StatusCode::MISDIRECTED_REQUEST,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn incomplete(what: &str) -> String {
    format!("Authorization header requires a valid AWS4-HMAC-SHA256 signature: {what}")
}

fn signature_expired(signed_at: &str) -> String {
    format!(
        "Signature expired: {signed_at} is more than 15 minutes away from the service's time \
         (the emulator allows 15 minutes of clock skew either way)"
    )
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(XML_CONTENT_TYPE),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Content type of AWS JSON 1.1 requests and responses.
pub(crate) const JSON_1_1_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Content type of query-protocol responses.
pub(crate) const XML_CONTENT_TYPE: &str = "text/xml";
/// Namespace of STS responses.
pub(crate) const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// Namespace of EC2 responses.
pub(crate) const EC2_XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
/// What AWS says when a signature does not verify.
const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the \
                                  signature you provided. Check your AWS Secret Access Key and \
                                  signing method. Consult the service documentation for details.";
/// Header carrying the request id, read by the SDKs into their errors.
pub(crate) const REQUEST_ID_HEADER: &str = "x-amzn-RequestId";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_faults_are_500_and_others_400() {
        assert_eq!(
            AwsError::new("InternalServerError", "x").status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            AwsError::new("TargetNotConnected", "x").status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            AwsError::missing_authentication().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            Service::Ec2.throttled().status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            AwsError::new("AccessDenied", "x").status,
            StatusCode::FORBIDDEN
        );
    }
}
