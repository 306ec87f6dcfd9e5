//! The sessions a copy runs on the instance: a command through `Postern-Command` (its stdout
//! to a sink, stderr captured, the status from the agent's ExitCode message) or, where that
//! document may not be used, in AWS-StartInteractiveCommand's PTY; or a command in
//! AWS-StartInteractiveCommand's PTY fed from a channel (uploads: the agent never paces input,
//! and the driver sends only what the session's window allows, so acknowledgements pace it).
//! It starts, drives and terminates sessions; what the commands do is the caller's.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use postern_protocol::KmsContext;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

use crate::aws::{KmsClient, SessionCredentials, SsmClient, StartSessionRequest};
use crate::cli::aws_context::load_aws;
use crate::cli::commands::command_document;
use crate::cli::commands::cp::interrupt::{Interrupt, Interrupted};
use crate::cli::commands::session::{INTERACTIVE_COMMAND_DOCUMENT, SessionPlan};
use crate::cli::commands::setup::POSTERN_COMMAND_DOCUMENT;
use crate::cli::errors::{SessionFailure, aws_failure, session_failure};
use crate::cli::resilience::NoticeStyle;
use crate::term::TerminalGuard;
use crate::transport::{self, DriverConfig, ExitMarker, Input, Local, Outputs, lifecycle};

/// Where a session's stdout goes.
pub(crate) type Sink = Box<dyn AsyncWrite + Send + Unpin>;

/// The instance a copy talks to, with its clients.
#[derive(Debug)]
pub(crate) struct Remote {
    ssm: SsmClient,
    kms: KmsClient,
    plan: SessionPlan,
    /// `Postern-Command` was found missing: [`Remote::capture`] goes straight to the PTY.
    no_document: AtomicBool,
    /// Ends every session when a signal arrives.
    interrupt: Interrupt,
    /// The target as errors name it (instance, region, profile).
    pub(crate) described: String,
}

/// How a remote command ended.
#[derive(Debug)]
pub(crate) struct Ran {
    /// Its exit status, when the session reported one.
    pub(crate) status: Option<i32>,
    /// Its stderr (the first [`STDERR_CAP`] bytes; for PTY sessions, nothing).
    pub(crate) stderr: Vec<u8>,
}

impl Ran {
    /// The status is 0.
    pub(crate) fn succeeded(&self) -> bool {
        self.status == Some(0)
    }

    /// The captured stderr as text, trimmed.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }
}

impl Remote {
    /// Loads the AWS configuration for `plan`'s (resolved) target; its sessions end when
    /// `interrupt` fires.
    pub(crate) async fn connect(plan: &SessionPlan, interrupt: Interrupt) -> anyhow::Result<Self> {
        let (context, described) = load_aws(&plan.aws, plan.target.as_str()).await?;
        Ok(Self {
            ssm: SsmClient::new(&context),
            kms: KmsClient::new(&context),
            plan: plan.clone(),
            no_document: AtomicBool::new(false),
            interrupt,
            described,
        })
    }

    /// Runs `command` through `Postern-Command` where it may be used, else (the document is
    /// not there, or the role may not start it: as `postern exec` falls back) in
    /// AWS-StartInteractiveCommand's PTY with no input; its stdout into `stdout`. Once the
    /// document was refused, every later command goes straight to the PTY.
    pub(crate) async fn capture(&self, command: &str, stdout: Sink) -> anyhow::Result<Ran> {
        self.capture_until(command, stdout, &self.interrupt).await
    }

    /// Runs `command` as [`Remote::capture`] does, whatever signal arrived (removing
    /// temporary files after a failure or a signal), for at most [`CLEANUP_LIMIT`].
    pub(crate) async fn cleanup(&self, command: &str) {
        let (sink, _) = capture();
        let never = Interrupt::never();
        let run = self.capture_until(command, sink, &never);
        match tokio::time::timeout(CLEANUP_LIMIT, run).await {
            Ok(Ok(ran)) if ran.succeeded() => {}
            Ok(Ok(ran)) => tracing::warn!(status = ?ran.status, "a clean-up command failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "a clean-up command failed"),
            Err(_) => tracing::warn!("a clean-up command timed out"),
        }
    }

    async fn capture_until(
        &self,
        command: &str,
        stdout: Sink,
        interrupt: &Interrupt,
    ) -> anyhow::Result<Ran> {
        if !self.no_document.load(Ordering::Relaxed) {
            match self.start_command(command).await? {
                Some(credentials) => {
                    return self.command_session(&credentials, stdout, interrupt).await;
                }
                None => {
                    if !self.no_document.swap(true, Ordering::Relaxed) {
                        tracing::info!(
                            "no usable {POSTERN_COMMAND_DOCUMENT} for {}: copying through \
                             {INTERACTIVE_COMMAND_DOCUMENT} (slower; `postern setup` once for \
                             this account and region makes it faster)",
                            self.described
                        );
                    }
                }
            }
        }
        let (tx, input) = mpsc::channel(1);
        drop(tx);
        self.interactive_until(command, input, stdout, interrupt)
            .await
    }

    /// StartSession on `Postern-Command`; `None` when it may not be used here.
    async fn start_command(&self, command: &str) -> anyhow::Result<Option<SessionCredentials>> {
        let request = self.request(POSTERN_COMMAND_DOCUMENT, command.to_owned());
        match lifecycle::start(&self.ssm, &request).await {
            Ok(credentials) => Ok(Some(credentials)),
            Err(e) if command_document::falls_back(&e) => {
                tracing::debug!(
                    code = e.code().unwrap_or_default(),
                    "no {POSTERN_COMMAND_DOCUMENT}"
                );
                Ok(None)
            }
            Err(e) => Err(aws_failure(e, "could not start a session", &self.described)),
        }
    }

    async fn command_session(
        &self,
        credentials: &SessionCredentials,
        stdout: Sink,
        interrupt: &Interrupt,
    ) -> anyhow::Result<Ran> {
        let (stderr, captured) = Capture::new();
        let (tx, input) = mpsc::channel(1);
        // NonInteractiveCommands has no input: end of input from the start.
        drop(tx);
        let outputs = Outputs {
            stdout,
            stderr: Box::new(stderr),
        };
        let status = self
            .drive(credentials, input, outputs, None, interrupt)
            .await?;
        Ok(Ran {
            status,
            stderr: captured.take(),
        })
    }

    /// Runs `command` in AWS-StartInteractiveCommand's PTY behind the exit-status wrapper
    /// (echo and output processing off), feeding it `input`; its output into `stdout`.
    pub(crate) async fn interactive(
        &self,
        command: &str,
        input: mpsc::Receiver<Input>,
        stdout: Sink,
    ) -> anyhow::Result<Ran> {
        self.interactive_until(command, input, stdout, &self.interrupt)
            .await
    }

    async fn interactive_until(
        &self,
        command: &str,
        input: mpsc::Receiver<Input>,
        stdout: Sink,
        interrupt: &Interrupt,
    ) -> anyhow::Result<Ran> {
        let marker = ExitMarker::new(rand::random());
        let request = self.request(INTERACTIVE_COMMAND_DOCUMENT, marker.wrap(command, false));
        let credentials = lifecycle::start(&self.ssm, &request)
            .await
            .map_err(|e| aws_failure(e, "could not start a session", &self.described))?;
        let (stderr, captured) = Capture::new();
        let outputs = Outputs {
            stdout,
            stderr: Box::new(stderr),
        };
        let status = self
            .drive(&credentials, input, outputs, Some(marker), interrupt)
            .await?;
        Ok(Ran {
            status,
            stderr: captured.take(),
        })
    }

    fn request(&self, document: &str, command: String) -> StartSessionRequest {
        StartSessionRequest {
            target: self.plan.target.as_str().to_owned(),
            document_name: Some(document.to_owned()),
            parameters: HashMap::from([("command".to_owned(), vec![command])]),
            reason: self.plan.reason.clone(),
        }
    }

    /// Drives a started session to its end (or until `interrupt` fires) and terminates it;
    /// its exit status.
    async fn drive(
        &self,
        credentials: &SessionCredentials,
        input: mpsc::Receiver<Input>,
        outputs: Outputs,
        marker: Option<ExitMarker>,
        interrupt: &Interrupt,
    ) -> anyhow::Result<Option<i32>> {
        let outcome = async {
            let pump = lifecycle::open(
                &self.ssm,
                credentials,
                self.plan.resilience.resilience(NoticeStyle::Line),
            )
            .await
            .map_err(SessionFailure::Open)?;
            let config = DriverConfig {
                handshake_timeout: self.plan.handshake_timeout,
                escape: None,
                send_size: false,
                eof_sends_ctrl_d: false,
                input_as_base64_lines: false,
                exit_marker: marker.as_ref().map(ExitMarker::scanner),
                kms: Some(self.kms.clone()),
            };
            // The encryption context names the session and the target (SPEC.md §7.2).
            let session = lifecycle::client_core(
                transport::now(),
                Some(KmsContext {
                    session_id: credentials.session_id.clone(),
                    target_id: self.plan.target.as_str().to_owned(),
                }),
            );
            let local = Local {
                input: input.into(),
                outputs,
                terminal: TerminalGuard::noop(),
                signals: None,
            };
            transport::run(pump, session, local, config)
                .await
                .map_err(SessionFailure::Driver)
        };
        let outcome = tokio::select! {
            outcome = outcome => Ok(outcome),
            signal = interrupt.fired() => Err(Interrupted(signal)),
        };
        // Leave nothing open on the service, whatever happened.
        let finished = outcome
            .as_ref()
            .ok()
            .and_then(|driven| driven.as_ref().ok());
        lifecycle::terminate_driven(&self.ssm, &credentials.session_id, finished).await;
        let finished =
            outcome?.map_err(|e| session_failure(e, &self.described, &credentials.session_id))?;
        Ok(finished.exit_status)
    }
}

/// An in-memory writer keeping the first [`STDERR_CAP`] bytes.
#[derive(Debug)]
struct Capture(Arc<Mutex<Vec<u8>>>);

/// What a [`Capture`] kept, readable after the session.
#[derive(Debug)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn new() -> (Self, Captured) {
        let shared = Arc::new(Mutex::new(Vec::new()));
        (Self(Arc::clone(&shared)), Captured(shared))
    }
}

impl Captured {
    fn take(&self) -> Vec<u8> {
        // A poisoned lock only means a writer panicked; its bytes are still good.
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = STDERR_CAP.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..buf.len().min(room)]);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A public constructor for a capturing sink, for small outputs (probes, hashes).
pub(crate) fn capture() -> (Sink, impl Fn() -> Vec<u8>) {
    let (sink, captured) = Capture::new();
    (Box::new(sink) as Sink, move || captured.take())
}

/// How long a clean-up command may take.
const CLEANUP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Stderr kept per session: enough for any error message, bounded.
const STDERR_CAP: usize = 64 * 1024;
