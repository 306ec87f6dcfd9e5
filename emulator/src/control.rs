//! The AWS control plane's front door (`POST /`): authenticates the request, scopes it to an
//! account and region, applies injected latency and throttling, and routes it by protocol and
//! service. JSON 1.1 requests carry `X-Amz-Target: <Prefix>.<Op>` (SSM, Organizations, KMS,
//! EC2 Instance Connect);
//! query-protocol requests (STS, EC2) carry a form body with `Action=` and `Version=`.
//!
//! A request must come through a loopback `Host` and carry a SigV4 signature that verifies
//! against a key the emulator knows ([`crate::sigv4`], [`crate::auth`]): its access key id
//! picks the principal (base credentials act in the management account, issued credentials in
//! theirs, with their session token) and its credential scope the region. Anything else gets
//! the service's AWS error. It never logs request bodies, signatures, secret keys or tokens.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::auth::{CredentialProblem, Principal, is_loopback_host};
use crate::awserror::{
    AwsError, JSON_1_1_CONTENT_TYPE, REQUEST_ID_HEADER, Service, XML_CONTENT_TYPE,
};
use crate::instances::InstanceSpec;
use crate::query::Form;
use crate::server::Shared;
use crate::sigv4::{Authorization, Received, SignatureProblem};
use crate::violations::Place;
use crate::{ec2, instance_connect, kms, organizations, ssm, sts};

/// Who a request acts as, and where.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// The identity, with its account.
    pub(crate) principal: Principal,
    /// The region the request was signed for.
    pub(crate) region: String,
}

impl Caller {
    /// Whether `instance` belongs to this caller's account and region.
    pub(crate) fn sees(&self, instance: &InstanceSpec) -> bool {
        instance.account == self.principal.account && instance.region == self.region
    }
}

/// Handles one control-plane request, at the main endpoint (`/`) or at KMS's own (`/kms`).
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let door = if uri.path().starts_with(KMS_PATH) {
        Door::Kms
    } else {
        Door::Main
    };
    serve(&shared, door, &method, &uri, &headers, &body).await
}

/// Which endpoint a request came to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Door {
    /// `/`: every service, but KMS when KMS is served apart.
    Main,
    /// `/kms`: KMS only.
    Kms,
}

impl Door {
    /// Whether this endpoint serves `service`, as AWS's endpoints do: the SSM endpoint (a VPC
    /// endpoint, say) answers no KMS call when KMS has its own.
    fn serves(self, service: Service, kms_apart: bool) -> bool {
        match self {
            Self::Main => !(kms_apart && service == Service::Kms),
            Self::Kms => service == Service::Kms,
        }
    }
}

async fn serve(
    shared: &Arc<Shared>,
    door: Door,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    if let Some(latency) = shared.config.api_latency {
        // Injected service latency, as configured (`--api-latency`), not synchronisation.
        tokio::time::sleep(latency).await;
    }
    let request = match Request::classify(headers, body) {
        Ok(request) => request,
        Err((service, err)) => return failure(err, service, &request_id),
    };
    let service = request.service();
    if !door.serves(service, shared.config.separate_kms_endpoint) {
        let operation = format!("{}:{}", service.iam_prefix(), request.operation());
        shared.violations.record(
            Place {
                session_id: "-",
                target: "control plane",
            },
            "wrong_endpoint",
            &format!(
                "{operation} sent to {}, which does not serve it",
                uri.path()
            ),
        );
        return failure(
            AwsError::unknown_operation(&operation),
            service,
            &request_id,
        );
    }
    let received = Received {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        headers,
        body,
    };
    match route(shared, &received, &request, &request_id) {
        Ok(Reply::Json(json)) => success(json.to_string(), JSON_1_1_CONTENT_TYPE, &request_id),
        Ok(Reply::Xml(xml)) => success(xml, XML_CONTENT_TYPE, &request_id),
        Err(err) => failure(err, service, &request_id),
    }
}

/// A request's protocol, service and operation.
enum Request {
    /// JSON 1.1 with `X-Amz-Target`.
    Json { service: Service, operation: String },
    /// AWS query or EC2 query with a form body.
    Query { service: Service, form: Form },
}

impl Request {
    fn classify(headers: &HeaderMap, body: &[u8]) -> Result<Self, (Service, AwsError)> {
        if let Some(target) = headers.get(AMZ_TARGET_HEADER) {
            let target = target.to_str().unwrap_or_default();
            let unknown = || (Service::Ssm, AwsError::unknown_operation(target));
            let (prefix, operation) = target.split_once('.').ok_or_else(unknown)?;
            let service = match prefix {
                SSM_TARGET_PREFIX => Service::Ssm,
                ORGANIZATIONS_TARGET_PREFIX => Service::Organizations,
                KMS_TARGET_PREFIX => Service::Kms,
                instance_connect::TARGET_PREFIX => Service::InstanceConnect,
                _ => return Err(unknown()),
            };
            return Ok(Self::Json {
                service,
                operation: operation.to_owned(),
            });
        }
        let form = Form::parse(body);
        // Without a Version the signing scope names the service; only then is the header read
        // here (authentication reads it in any case).
        let scope_service = || {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|value| Authorization::parse(value).ok())
                .map(|authorization| authorization.service)
        };
        let version = form.get("Version");
        let scope = if version.is_none() {
            scope_service()
        } else {
            None
        };
        let service = match (version, scope.as_deref()) {
            (Some(STS_VERSION), _) | (None, Some("sts")) => Service::Sts,
            (Some(EC2_VERSION), _) | (None, Some("ec2")) => Service::Ec2,
            _ => {
                return Err((
                    Service::Sts,
                    AwsError::new(
                        "InvalidAction",
                        "the request names no operation this emulator serves",
                    ),
                ));
            }
        };
        Ok(Self::Query { service, form })
    }

    fn service(&self) -> Service {
        match self {
            Self::Json { service, .. } | Self::Query { service, .. } => *service,
        }
    }

    fn operation(&self) -> &str {
        match self {
            Self::Json { operation, .. } => operation,
            Self::Query { form, .. } => form.get("Action").unwrap_or_default(),
        }
    }
}

/// A successful answer in the service's format.
enum Reply {
    Json(serde_json::Value),
    Xml(String),
}

fn route(
    shared: &Arc<Shared>,
    received: &Received<'_>,
    request: &Request,
    request_id: &str,
) -> Result<Reply, AwsError> {
    let service = request.service();
    let host = received
        .headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    if !is_loopback_host(host) {
        tracing::info!("control plane request through a non-loopback Host refused");
        return Err(AwsError::not_loopback_host());
    }
    let authorization = received
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .ok_or_else(AwsError::missing_authentication)?;
    let caller = authenticate(shared, received, authorization, SystemTime::now())
        .map_err(|problem| service.credential_error(problem))?;
    let body = received.body;
    tracing::debug!(
        service = service.iam_prefix(),
        operation = request.operation(),
        account = %caller.principal.account,
        region = %caller.region,
        "control plane request"
    );
    if let Some(throttle) = &shared.throttle {
        let now = tokio::time::Instant::now();
        if !throttle.admit(&caller.principal.account, service.iam_prefix(), now) {
            tracing::info!(service = service.iam_prefix(), "request throttled");
            return Err(service.throttled());
        }
    }
    match request {
        Request::Json {
            service: Service::Ssm,
            operation,
        } => ssm::handle(shared, &caller, operation, body).map(Reply::Json),
        Request::Json {
            service: Service::Kms,
            operation,
        } => kms::handle(shared, &caller, operation, body).map(Reply::Json),
        Request::Json {
            service: Service::InstanceConnect,
            operation,
        } => instance_connect::handle(shared, &caller, operation, body).map(Reply::Json),
        Request::Json { operation, .. } => {
            organizations::handle(shared, &caller, operation, body).map(Reply::Json)
        }
        Request::Query {
            service: Service::Sts,
            form,
        } => sts::handle(shared, &caller, form, request_id).map(Reply::Xml),
        Request::Query { form, .. } => {
            ec2::handle(shared, &caller, form, request_id).map(Reply::Xml)
        }
    }
}

/// The caller of a request with an `Authorization` header: a key the emulator knows, whose
/// secret signed exactly this request within 15 minutes of `now`, with its session token and
/// not expired.
fn authenticate(
    shared: &Shared,
    received: &Received<'_>,
    authorization: &str,
    now: SystemTime,
) -> Result<Caller, CredentialProblem> {
    let authorization = Authorization::parse(authorization).map_err(refused)?;
    let access_key_id = authorization.access_key_id.as_str();
    let Some(key) = shared.credentials.lookup(access_key_id) else {
        tracing::info!(%access_key_id, "unknown access key refused");
        return Err(CredentialProblem::UnknownAccessKey);
    };
    authorization
        .verify(key.secret(), received, now)
        .map_err(|problem| {
            tracing::info!(%access_key_id, ?problem, "signature refused");
            refused(problem)
        })?;
    let token = received
        .headers
        .get(SECURITY_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    let principal = key.admit(token, now).map_err(|problem| {
        tracing::info!(%access_key_id, ?problem, "credentials refused");
        problem
    })?;
    Ok(Caller {
        principal,
        region: authorization.region,
    })
}

fn refused(problem: SignatureProblem) -> CredentialProblem {
    match problem {
        SignatureProblem::Incomplete(what) => CredentialProblem::IncompleteSignature(what),
        SignatureProblem::Mismatch => CredentialProblem::BadSignature,
        SignatureProblem::Skewed { signed_at } => CredentialProblem::SignatureExpired { signed_at },
    }
}

fn success(body: String, content_type: &'static str, request_id: &str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    response
}

fn failure(err: AwsError, service: Service, request_id: &str) -> Response {
    tracing::info!(code = %err.code, %request_id, "control plane request failed");
    err.into_response(service, request_id)
}

const AMZ_TARGET_HEADER: &str = "x-amz-target";
/// The path of KMS's own endpoint (`--separate-kms-endpoint`).
pub(crate) const KMS_PATH: &str = "/kms";
const SECURITY_TOKEN_HEADER: &str = "x-amz-security-token";
/// `X-Amz-Target` prefix of SSM operations.
const SSM_TARGET_PREFIX: &str = "AmazonSSM";
/// `X-Amz-Target` prefix of KMS operations.
const KMS_TARGET_PREFIX: &str = "TrentService";
/// `X-Amz-Target` prefix of Organizations operations.
const ORGANIZATIONS_TARGET_PREFIX: &str = "AWSOrganizationsV20161128";
/// API versions named by query-protocol requests.
const STS_VERSION: &str = "2011-06-15";
const EC2_VERSION: &str = "2016-11-15";
