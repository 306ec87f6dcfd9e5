//! The AWS control plane's front door (`POST /`): checks the request is authenticated and
//! routes it by protocol and service. JSON 1.1 requests carry `X-Amz-Target: <Prefix>.<Op>`;
//! query-protocol services (STS, EC2: part 2) carry a form body with `Action=`.
//!
//! It only checks that an `Authorization` header is present (the emulator accepts any
//! credentials); it never logs request bodies, which may hold tokens.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::emulator::awserror::{AwsError, JSON_1_1_CONTENT_TYPE, REQUEST_ID_HEADER};
use crate::emulator::server::Shared;
use crate::emulator::ssm;

/// Handles one control-plane request.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = route(&shared, &headers, &body);
    match result {
        Ok(json) => {
            let mut response = (axum::http::StatusCode::OK, json.to_string()).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(JSON_1_1_CONTENT_TYPE),
            );
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                headers.insert(REQUEST_ID_HEADER, value);
            }
            response
        }
        Err(err) => {
            tracing::info!(code = %err.code, %request_id, "control plane request failed");
            err.into_json_response(&request_id)
        }
    }
}

fn route(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, AwsError> {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|value| !value.is_empty());
    if !authorized {
        return Err(AwsError::missing_authentication());
    }
    let target = headers
        .get(AMZ_TARGET_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let (service, operation) = target
        .split_once('.')
        .ok_or_else(|| AwsError::unknown_operation(target))?;
    tracing::debug!(service, operation, "control plane request");
    match service {
        SSM_TARGET_PREFIX => ssm::handle(shared, operation, body),
        _ => Err(AwsError::unknown_operation(target)),
    }
}

const AMZ_TARGET_HEADER: &str = "x-amz-target";
/// `X-Amz-Target` prefix of SSM operations.
const SSM_TARGET_PREFIX: &str = "AmazonSSM";
