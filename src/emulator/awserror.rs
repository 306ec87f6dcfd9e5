//! AWS-shaped error responses, as the SDKs parse them: for JSON 1.1 services an HTTP 4xx/5xx
//! with `{"__type": code, "message": text}` and an `x-amzn-RequestId` header. Part 2 adds the
//! XML shape of query-protocol services (STS, EC2) here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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

/// HTTP status per AWS error code: server faults 5xx, everything else (throttling included)
/// 400, as the SSM API does.
fn status_for(code: &str) -> StatusCode {
    match code {
        "InternalServerError" | "InternalFailure" => StatusCode::INTERNAL_SERVER_ERROR,
        "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Content type of AWS JSON 1.1 requests and responses.
pub(crate) const JSON_1_1_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
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
    }
}
