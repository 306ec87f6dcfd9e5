//! The federation endpoint's `getSigninToken` (`GET /federation`), as a custom identity broker
//! calls it (IAM User Guide, "Enable custom identity broker access to the AWS console"): the
//! `Session` parameter's role credentials must be ones the emulator issued by AssumeRole, whole
//! and unexpired; the answer is `{"SigninToken":"..."}`. Each token is recorded with the
//! credentials it was issued for, so a test can check which role a login URL signs in as.
//!
//! Anything else is refused with 400, as the endpoint refuses it, with a JSON error. It never
//! logs the query, the credentials or the token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::{BASE64ISH, CredentialProblem, PrincipalKind, is_loopback_host, random_text};
use crate::server::Shared;

/// A sign-in token the emulator issued, with what it was issued for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigninGrant {
    /// The token.
    pub token: String,
    /// The role session's ARN (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`).
    pub arn: String,
    /// The `SessionDuration` asked for, in seconds, if any.
    pub session_duration: Option<u64>,
}

/// The tokens issued, by the access key id of the credentials they were issued for (the latest
/// per key).
#[derive(Debug, Default)]
pub(crate) struct SigninTokens {
    grants: Mutex<HashMap<String, SigninGrant>>,
}

impl SigninTokens {
    /// The latest grant for credentials `access_key_id`.
    pub(crate) fn grant_for(&self, access_key_id: &str) -> Option<SigninGrant> {
        self.lock().get(access_key_id).cloned()
    }

    fn record(&self, access_key_id: &str, grant: SigninGrant) {
        self.lock().insert(access_key_id.to_owned(), grant);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SigninGrant>> {
        // Inserts and lookups are single operations: a poisoned map is still consistent.
        self.grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The query of `GET /federation`.
#[derive(Debug, Deserialize)]
pub(crate) struct FederationQuery {
    #[serde(rename = "Action")]
    action: Option<String>,
    #[serde(rename = "Session")]
    session: Option<String>,
    #[serde(rename = "SessionDuration")]
    session_duration: Option<String>,
}

/// The `Session` parameter's JSON.
#[derive(Deserialize)]
struct Session {
    #[serde(rename = "sessionId")]
    session_id: String,
    #[serde(rename = "sessionKey")]
    session_key: String,
    #[serde(rename = "sessionToken")]
    session_token: String,
}

/// `GET /federation?Action=getSigninToken&Session=...[&SessionDuration=N]`.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<FederationQuery>,
) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !is_loopback_host(host) {
        return refuse("InvalidRequest", "the emulator answers loopback hosts only");
    }
    if query.action.as_deref() != Some("getSigninToken") {
        return refuse(
            "InvalidAction",
            "the emulator implements Action=getSigninToken only",
        );
    }
    let session_duration = match query.session_duration.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(seconds)) if (MIN_SESSION..=MAX_SESSION).contains(&seconds) => Some(seconds),
        Some(_) => {
            return refuse(
                "InvalidSessionDuration",
                "SessionDuration must be 900 to 43200 seconds",
            );
        }
    };
    let Some(session) = query
        .session
        .as_deref()
        .and_then(|s| serde_json::from_str::<Session>(s).ok())
    else {
        return refuse(
            "InvalidSession",
            "Session must be a JSON object with sessionId, sessionKey and sessionToken",
        );
    };
    let principal = match shared.credentials.session_principal(
        &session.session_id,
        &session.session_key,
        &session.session_token,
        SystemTime::now(),
    ) {
        Ok(principal) => principal,
        Err(problem) => {
            tracing::debug!(?problem, "getSigninToken refused");
            return refuse("InvalidSession", describe(&problem));
        }
    };
    if !matches!(principal.kind, PrincipalKind::AssumedRole { .. }) {
        return refuse(
            "InvalidSession",
            "sign-in tokens are issued for role credentials only",
        );
    }
    let token = random_text(&mut rand::rng(), TOKEN_LEN, BASE64ISH);
    tracing::debug!(access_key_id = %session.session_id, arn = %principal.arn, "sign-in token issued");
    shared.signin_tokens.record(
        &session.session_id,
        SigninGrant {
            token: token.clone(),
            arn: principal.arn,
            session_duration,
        },
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "SigninToken": token }).to_string(),
    )
        .into_response()
}

fn refuse(code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": code, "message": message }).to_string(),
    )
        .into_response()
}

fn describe(problem: &CredentialProblem) -> &'static str {
    match problem {
        CredentialProblem::Expired => "the session credentials have expired",
        CredentialProblem::InvalidToken => "the session token does not match the credentials",
        CredentialProblem::UnknownAccessKey => {
            "the session credentials are not temporary credentials the emulator issued"
        }
        _ => "the session credentials are not valid",
    }
}

/// The route.
pub(crate) const FEDERATION_PATH: &str = "/federation";
/// SessionDuration bounds (IAM User Guide, "Enable custom identity broker access").
const MIN_SESSION: u64 = 900;
const MAX_SESSION: u64 = 43_200;
/// AWS's tokens are long opaque strings; the length is not significant.
const TOKEN_LEN: usize = 256;
