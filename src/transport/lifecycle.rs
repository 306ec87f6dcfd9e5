//! Every session's start-up and end, written once for shell, exec, forward links, `ssh-proxy`
//! and plugin mode: StartSession (noted in the audit trail), open the data channel behind a
//! [`Pump`] (which keeps it alive and resumes it), a client core, and a bounded
//! TerminateSession. The drivers (`transport::run` for terminals, `forward::Connector` for
//! links) sit on top and own the handshake and the data.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postern_protocol::{KmsContext, Session, SessionConfig};

use crate::aws::{AwsError, AwsErrorKind, SessionCredentials, SsmClient, StartSessionRequest};
use crate::transport::ledger;
use crate::transport::{
    CLIENT_VERSION, Finished, OpenError, Pump, Resilience, ResumeTarget, SessionEnd,
};

/// Dial limit for the websocket, as the official client's 45 s handshake timeout (SPEC.md §2.1).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(45);
/// How long TerminateSession may take when a session ends.
pub const TERMINATE_TIMEOUT: Duration = Duration::from_secs(3);

/// Calls StartSession for `request` and notes the session in the audit trail. The call runs
/// in a task of its own and lands in the process's [`ledger`]: when the caller has given up by
/// the time the answer comes (Ctrl-C while sessions start, a pool shut down), or before it
/// reads the answer, the session is ended at once, and [`ledger::end_unfinished`] covers a
/// process that exits first.
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
    let (answer, answered) = tokio::sync::oneshot::channel();
    {
        let (ssm, request) = (ssm.clone(), request.clone());
        tokio::spawn(async move {
            let result = ssm.start_session(&request).await;
            let started = result.as_ref().ok().map(|c| c.session_id.clone());
            if let Some(session_id) = &started {
                // The StreamUrl's query and the token are secrets: only the id is logged.
                tracing::info!(%session_id, "session started");
                crate::audit_trail::note_session(session_id);
            }
            if answer.is_closed()
                && let Some(session_id) = started
            {
                let _ending = in_flight.answered_abandoned();
                tracing::info!(%session_id, "the caller gave up: ending the session it started");
                terminate(&ssm, &session_id).await;
                return;
            }
            in_flight.answered(started.as_deref());
            // The session goes with a guard: an answer its caller never reads (it gave up
            // just now, or after this send and before its next poll) ends the session when
            // the channel drops it.
            let _ = answer.send(result.map(|credentials| {
                let guard = Unclaimed::new(&ssm, &credentials.session_id);
                (credentials, guard)
            }));
        });
    }
    let answer = answered.await.unwrap_or_else(|_| {
        // The task panicked (reported by the panic hook) or the runtime is shutting down.
        Err(AwsError::local(
            AwsErrorKind::Service,
            "StartSession",
            Some(ssm.region().to_owned()),
            ssm.profile().map(str::to_owned),
            "the call ended without an answer",
        ))
    });
    answer.map(|(credentials, guard)| {
        guard.claim();
        credentials
    })
}

/// A session started and not yet handed on by its starter (an answer to StartSession not yet
/// read, a data channel opening, a handshake running): dropped before [`Unclaimed::claim`],
/// because the starter gave up, it ends the session in a task of its own. Dropped where no
/// runtime runs any more, it leaves the session to the exit sweep ([`ledger`]).
#[must_use = "dropping it ends the session"]
pub struct Unclaimed {
    ssm: SsmClient,
    session_id: Option<String>,
}

impl Unclaimed {
    /// Watches `session_id`, started through `ssm`.
    pub fn new(ssm: &SsmClient, session_id: &str) -> Self {
        Self {
            ssm: ssm.clone(),
            session_id: Some(session_id.to_owned()),
        }
    }

    /// The session is in its owner's hands (or already ended).
    pub fn claim(mut self) {
        self.session_id = None;
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        let Some(session_id) = self.session_id.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(%session_id, "start abandoned outside the runtime: left to the sweep");
            return;
        };
        // Counted at once: a sweep from now on waits for this rather than ending it too.
        let Some(ending) = ledger::abandon(&session_id) else {
            tracing::debug!(%session_id, "start abandoned: already being ended");
            return;
        };
        tracing::info!(%session_id, "start abandoned: ending the session");
        let ssm = self.ssm.clone();
        runtime.spawn(async move {
            let _ending = ending;
            terminate(&ssm, &session_id).await;
        });
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

/// Calls TerminateSession, bounded by [`TERMINATE_TIMEOUT`]; a failure is a warning (the
/// session may stay open at the service until its idle timeout), never an error.
pub async fn terminate(ssm: &SsmClient, session_id: &str) {
    end_at_service(ssm, session_id, AtService::MaybeOpen).await;
}

/// [`terminate`] for a session the service closed itself (channel_closed): the call only
/// makes sure, so its failure (the service unreachable by now, say) is logged at debug.
pub async fn terminate_closed(ssm: &SsmClient, session_id: &str) {
    end_at_service(ssm, session_id, AtService::Closed).await;
}

/// TerminateSession at the end of a driven session: as [`terminate_closed`] when `finished`
/// says the service closed the channel, as [`terminate`] otherwise (a failure, a signal, `~.`).
pub async fn terminate_driven(ssm: &SsmClient, session_id: &str, finished: Option<&Finished>) {
    let known = match finished.map(|f| &f.end) {
        Some(SessionEnd::ChannelClosed { .. }) => AtService::Closed,
        _ => AtService::MaybeOpen,
    };
    end_at_service(ssm, session_id, known).await;
}

async fn end_at_service(ssm: &SsmClient, session_id: &str, known: AtService) {
    let failure =
        match tokio::time::timeout(TERMINATE_TIMEOUT, ssm.terminate_session(session_id)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(crate::report::error_chain(&e)),
            Err(_) => Some(format!(
                "no answer within {} s",
                TERMINATE_TIMEOUT.as_secs()
            )),
        };
    match failure {
        None => tracing::debug!(session_id, "session terminated"),
        Some(reason) if known == AtService::Closed => tracing::debug!(
            session_id,
            %reason,
            "TerminateSession after the service closed the session failed"
        ),
        Some(reason) => tracing::warn!(
            session_id,
            %reason,
            "could not end the session at the service; it may stay open until its idle timeout"
        ),
    }
    // Only now: a call cancelled half-way leaves the session to the ledger's sweep.
    ledger::ended(session_id);
}

/// What a session's driver knows of it at the service when it terminates it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AtService {
    /// Possibly still open: TerminateSession is what ends it.
    MaybeOpen,
    /// Closed by the service itself (channel_closed): TerminateSession only makes sure.
    Closed,
}
