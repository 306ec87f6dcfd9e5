//! Every session's start-up and end, written once for shell, exec, forward links, `ssh-proxy`
//! and plugin mode: StartSession (noted in the audit trail), open the data channel behind a
//! [`Pump`] (which keeps it alive and resumes it), a client core, and a bounded
//! TerminateSession. The drivers (`transport::run` for terminals, `forward::Connector` for
//! links) sit on top and own the handshake and the data.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postern_protocol::{KmsContext, Session, SessionConfig};

use crate::aws::{AwsError, AwsErrorKind, SessionCredentials, SsmClient, StartSessionRequest};
use crate::transport::ledger;
use crate::transport::{CLIENT_VERSION, OpenError, Pump, Resilience, ResumeTarget};

/// Dial limit for the websocket, as the official client's 45 s handshake timeout (SPEC.md §2.1).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(45);
/// How long TerminateSession may take when a session ends.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(3);

/// Calls StartSession for `request` and notes the session in the audit trail. The call runs
/// in a task of its own and lands in the process's [`ledger`]: a caller that gives up half-way
/// (Ctrl-C while sessions start) leaves no session that nobody knows of, since
/// [`ledger::end_unfinished`] waits for the answer and ends it.
pub async fn start(
    ssm: &SsmClient,
    request: &StartSessionRequest,
) -> Result<SessionCredentials, AwsError> {
    tracing::info!(
        target = %request.target,
        document = request.document_name.as_deref().unwrap_or("(default)"),
        "StartSession"
    );
    let in_flight = ledger::starting(ssm);
    let call = {
        let (ssm, request) = (ssm.clone(), request.clone());
        tokio::spawn(async move {
            let result = ssm.start_session(&request).await;
            match &result {
                Ok(credentials) => {
                    in_flight.answered(Some(&credentials.session_id));
                    // The StreamUrl's query and the token are secrets: only the id is logged.
                    tracing::info!(session_id = %credentials.session_id, "session started");
                    crate::audit_trail::note_session(&credentials.session_id);
                }
                Err(_) => in_flight.answered(None),
            }
            result
        })
    };
    match call.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels the task, and it drops this caller too.
        Err(_) => Err(AwsError::local(
            AwsErrorKind::Service,
            "StartSession",
            Some(ssm.region().to_owned()),
            ssm.profile().map(str::to_owned),
            "the call was cancelled: postern is shutting down",
        )),
    }
}

/// Opens the data channel of the started session `credentials` and puts it behind a pump that
/// keeps it alive and resumes it (ResumeSession through `ssm`) as `resilience` says.
pub async fn open(
    ssm: &SsmClient,
    credentials: &SessionCredentials,
    resilience: Resilience,
) -> Result<Pump, OpenError> {
    let ws = crate::transport::open(
        credentials.stream_url.expose(),
        credentials.token.expose(),
        OPEN_TIMEOUT,
    )
    .await?;
    let target = ResumeTarget {
        ssm: ssm.clone(),
        session_id: credentials.session_id.clone(),
        stream_url: credentials.stream_url.clone(),
    };
    // The SDK, the config and the picker have done their part: hand back their code pages.
    crate::setup_memory::release();
    Ok(Pump::new(ws, target, resilience, rand::random()))
}

/// A client-role core starting at `now`; `kms` names the session and target for a
/// KMS-encrypted session's encryption context (SPEC.md §7.2).
pub fn client_core(now: Instant, kms: Option<KmsContext>) -> Session {
    let epoch_millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut config = SessionConfig::client(CLIENT_VERSION, rand::random(), epoch_millis);
    config.kms_context = kms;
    Session::new(config, now)
}

/// Calls TerminateSession, bounded by [`TERMINATE_TIMEOUT`]; failures are logged only (the
/// session may already be gone).
pub async fn terminate(ssm: &SsmClient, session_id: &str) {
    ledger::ended(session_id);
    match tokio::time::timeout(TERMINATE_TIMEOUT, ssm.terminate_session(session_id)).await {
        Ok(Ok(())) => tracing::debug!(session_id, "session terminated"),
        Ok(Err(e)) => tracing::warn!(session_id, error = %e, "TerminateSession failed"),
        Err(_) => tracing::warn!(session_id, "TerminateSession timed out"),
    }
}
