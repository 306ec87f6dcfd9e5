//! Runs `postern exec` on several instances: selects them (the index and `postern list`'s
//! filters, or the picker's rows), checks each account's guardrails once, gets each account's
//! role credentials, then runs at most `--parallel` sessions at once through the same
//! start-up, driver and TerminateSession as a single `postern exec`. Ctrl-C (or SIGTERM,
//! SIGHUP) terminates every open session, starts no more, and the summary tells what finished.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use postern_protocol::KmsContext;
use tokio::sync::{OnceCell, mpsc, watch};
use tokio::task::JoinSet;

use crate::audit_trail::{self, SessionRecord};
use crate::aws::{
    self, AwsError, AwsOptions, CredentialsOverride, KmsClient, SessionCredentials, SsmClient,
    StartSessionRequest,
};
use crate::cli::commands::command_document;
use crate::cli::commands::exec_many::output::{
    self, Captured, Look, PrintHandle, Printer, Sink, json_line,
};
use crate::cli::commands::exec_many::plan::{ExecManyPlan, OutputMode, Selection};
use crate::cli::commands::exec_many::summary::{Outcome, Status, Summary};
use crate::cli::commands::list::{filter, in_scope, load_index};
use crate::cli::commands::session::{ExecPlan, INTERACTIVE_COMMAND_DOCUMENT};
use crate::cli::commands::setup::POSTERN_COMMAND_DOCUMENT;
use crate::cli::errors::broker_failure;
use crate::cli::reach::Reach;
use crate::cli::resilience::NoticeStyle;
use crate::discovery::Instance;
use crate::report::{self, ErrorKind, ExpectedError, error_chain, exit_codes};
use crate::term::{LocalSignal, Signals, TerminalGuard, colour_on};
use crate::transport::{
    self, DriverConfig, DriverError, ExitMarker, Finished, Input, Local, Outputs,
};

/// Runs the plan to its exit code.
pub(crate) async fn run(plan: ExecManyPlan) -> anyhow::Result<ExitCode> {
    let ExecManyPlan {
        reach,
        exec,
        selection,
        parallel,
        output,
    } = plan;
    let instances = select(&reach, selection).await?;
    let total = instances.len();
    let (online, offline): (Vec<Instance>, Vec<Instance>) =
        instances.into_iter().partition(Instance::is_online);

    // Every account's guardrails before any session, once per account.
    let accounts = accounts_of(&online);
    for (account, alias, count) in &accounts {
        reach
            .check_guardrails(account, exec.session.reason.as_deref(), Some(*count))
            .map_err(|refused| {
                broker_failure(
                    refused.error,
                    &format!(
                        "could not run the command on {count} instance{} of account {alias}",
                        if *count == 1 { "" } else { "s" }
                    ),
                    &refused.target,
                )
            })?;
    }
    let credentials = account_credentials(&reach, &accounts).await;

    let stdout = std::io::stdout();
    let labels = output::labels(&online);
    let look = Look {
        tty: stdout.is_terminal(),
        colour: colour_on(&stdout),
        width: output::label_width(&labels),
    };
    let printer = Printer::start().map_err(|e| {
        ExpectedError::new(ErrorKind::Usage, "could not start the output thread").source(e)
    })?;
    let mut signals = Signals::install(true).map_err(|e| {
        ExpectedError::new(ErrorKind::Usage, "could not install the signal handlers").source(e)
    })?;
    let (cancel, cancelled) = watch::channel(false);
    let shared = Arc::new(Shared {
        aws: reach.aws.clone(),
        exec,
        output,
        look,
        printer: printer.handle(),
        credentials,
        clients: Mutex::new(HashMap::new()),
        without_command_document: Mutex::new(HashSet::new()),
        cancelled,
    });

    let mut summary = Summary::new(total);
    for instance in offline {
        let why = format!("the agent is not online ({})", instance.agent_status());
        let outcome = outcome_of(&instance, Status::NotStarted(why), Instant::now());
        if output == OutputMode::Json {
            shared
                .printer
                .out(json_line(&outcome, &Captured::default()))
                .await;
        }
        summary.record(&outcome);
    }

    // At most `parallel` instances have a task (and so a session) at any time; the next one
    // starts when one has ended, TerminateSession included.
    let mut running = JoinSet::new();
    let mut waiting = online.into_iter().zip(labels).enumerate();
    let mut interrupted = None;
    loop {
        while interrupted.is_none() && running.len() < parallel {
            let Some((n, (instance, label))) = waiting.next() else {
                break;
            };
            running.spawn(run_one(Arc::clone(&shared), n, instance, label));
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => match joined {
                Some(Ok(outcome)) => summary.record(&outcome),
                Some(Err(e)) => summary.record_lost(&e.to_string()),
                None => {}
            },
            signal = signals.recv(), if interrupted.is_none() => match signal {
                LocalSignal::Interrupt => interrupted = Some(libc::SIGINT),
                LocalSignal::Terminate(n) => interrupted = Some(n),
                LocalSignal::Suspend => {
                    if let Err(e) = crate::term::suspend(&mut TerminalGuard::noop()) {
                        tracing::warn!(error = %e, "could not suspend");
                    }
                }
                LocalSignal::Continue | LocalSignal::Resize => {}
            },
        }
        if interrupted.is_some() {
            // Every task sees it: open sessions are terminated, unopened ones not started.
            let _ = cancel.send(true);
        }
    }
    summary.not_run = waiting.count();
    // The sessions were recorded one by one; nothing is left for a single record.
    drop(audit_trail::take_sessions());
    drop(shared);
    let stdout_closed = printer.finish().await;
    report::notice(&summary.render());
    if stdout_closed && interrupted.is_none() {
        return Ok(ExitCode::from(exit_codes::OUTPUT_CLOSED));
    }
    Ok(ExitCode::from(summary.exit_code(interrupted)))
}

/// What every instance's task shares.
struct Shared {
    /// The command line's AWS choices (profile, endpoint).
    aws: AwsOptions,
    /// The command and its session options.
    exec: ExecPlan,
    output: OutputMode,
    look: Look,
    printer: PrintHandle,
    /// Each account's role credentials (`None` outside the broker), or why there are none.
    credentials: HashMap<String, Result<Option<CredentialsOverride>, String>>,
    /// SSM and KMS clients per account and region, made by the first instance there.
    clients: Mutex<HashMap<(String, String), Arc<ClientCell>>>,
    /// Accounts and regions where `Postern-Command` is absent (or not allowed): their other
    /// instances start AWS-StartInteractiveCommand at once.
    without_command_document: Mutex<HashSet<(String, String)>>,
    /// Becomes true on Ctrl-C.
    cancelled: watch::Receiver<bool>,
}

type ClientCell = OnceCell<Result<(SsmClient, KmsClient), String>>;

/// The instances of the selection, in `postern list`'s order.
async fn select(reach: &Reach, selection: Selection) -> anyhow::Result<Vec<Instance>> {
    let (query, account, env, tags) = match selection {
        Selection::Chosen(instances) => return Ok(instances),
        Selection::Query {
            query,
            account,
            env,
            tags,
        } => (query, account, env, tags),
    };
    let index = load_index(reach, &[], false, account.as_deref()).await?;
    let scoped = in_scope(index.instances, account.as_deref(), env.as_deref());
    let chosen: Vec<Instance> = filter(&scoped, &query, &tags)
        .into_iter()
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(ExpectedError::new(
            ErrorKind::TargetUnresolved,
            format!("no instance matches --all `{query}`"),
        )
        .target(crate::cli::commands::list::describe_reach(reach))
        .hint("`postern list QUERY` with the same --account, --env, --region and --tag shows what matches")
        .into());
    }
    Ok(chosen)
}

/// The accounts of `instances` (id, alias, how many), in order of first appearance.
fn accounts_of(instances: &[Instance]) -> Vec<(String, String, usize)> {
    let mut accounts: Vec<(String, String, usize)> = Vec::new();
    for instance in instances {
        let id = account_id(instance);
        match accounts.iter_mut().find(|(a, _, _)| *a == id) {
            Some((_, _, count)) => *count += 1,
            None => accounts.push((id.to_owned(), instance.alias.clone(), 1)),
        }
    }
    accounts
}

/// The account id of `instance`: a managed node's listing key carries an endpoint digest
/// after the id.
fn account_id(instance: &Instance) -> &str {
    instance
        .account
        .split('-')
        .next()
        .unwrap_or(&instance.account)
}

/// Each account's role credentials, asked for all accounts at once (an MFA prompt, if any,
/// comes before). An account whose role cannot be assumed keeps the reason: its instances
/// are reported as not started, the others run.
async fn account_credentials(
    reach: &Reach,
    accounts: &[(String, String, usize)],
) -> HashMap<String, Result<Option<CredentialsOverride>, String>> {
    let mut asked = JoinSet::new();
    for (account, _, _) in accounts {
        let (reach, account) = (reach.clone(), account.clone());
        asked.spawn(async move {
            let result = reach
                .account_credentials(&account)
                .await
                .map_err(|refused| {
                    format!(
                        "could not get credentials ({}): {}",
                        refused.target,
                        error_chain(&refused.error)
                    )
                });
            (account, result)
        });
    }
    let mut credentials = HashMap::new();
    while let Some(joined) = asked.join_next().await {
        if let Ok((account, result)) = joined {
            credentials.insert(account, result);
        }
    }
    credentials
}

/// Runs the command on the `n`th instance, prints its block or JSON line when it ends, and
/// records its session in the history.
async fn run_one(shared: Arc<Shared>, n: usize, instance: Instance, label: String) -> Outcome {
    let clock = Instant::now();
    let time = SystemTime::now();
    let prefix = shared.look.prefix(&label, n);
    let sink = match shared.output {
        OutputMode::Stream => Sink::Lines {
            printer: shared.printer.clone(),
            prefix: prefix.clone(),
            look: shared.look,
        },
        OutputMode::Group | OutputMode::Json => Sink::Capture,
    };
    let (status, started, captured) = session(&shared, &instance, sink).await;
    let outcome = outcome_of(&instance, status, clock);
    match shared.output {
        OutputMode::Stream => {
            if let Status::Failed(e) | Status::NotStarted(e) = &outcome.status {
                let line = shared
                    .look
                    .line(&prefix, format!("postern: {e}").as_bytes());
                shared.printer.err(line).await;
            }
        }
        OutputMode::Group => {
            let header = format!("{label} ({}, {}): {}", instance.alias, instance.region, {
                match &outcome.status {
                    Status::Exited(s) => format!("exit status {s}"),
                    other => other.error().unwrap_or_default().to_owned(),
                }
            });
            shared
                .printer
                .out(shared.look.block(&header, n, &captured))
                .await;
        }
        OutputMode::Json => shared.printer.out(json_line(&outcome, &captured)).await,
    }
    if let Some((session_id, document)) = started {
        record(&shared, &outcome, time, session_id, document);
    }
    outcome
}

/// One instance's session: its status, its session id and document once started, and its
/// captured output.
async fn session(
    shared: &Shared,
    instance: &Instance,
    sink: Sink,
) -> (Status, Option<(String, String)>, Captured) {
    let not_started = |why: String| (Status::NotStarted(why), None, Captured::default());
    if *shared.cancelled.borrow() {
        return (Status::Interrupted, None, Captured::default());
    }
    let (ssm, kms) = match clients(shared, instance).await {
        Ok(clients) => clients,
        Err(why) => return not_started(why),
    };
    let marker = ExitMarker::new(rand::random());
    // Not raced with Ctrl-C: a start cancelled half-way is ended by the ledger, but its
    // instance would then be reported as not started rather than interrupted.
    let (started, document) = match start(shared, instance, &ssm, &marker).await {
        Ok(started) => started,
        Err(e) => return not_started(error_chain(&e)),
    };
    let session_id = started.session_id.clone();
    // The wrapper's exit record, unless a document reports the status itself.
    let marker = document.is_none().then_some(&marker);
    let (status, captured, finished) =
        carry(shared, instance, (&ssm, &kms), &started, marker, sink).await;
    // Leave nothing open on the service, whatever happened.
    transport::lifecycle::terminate_driven(&ssm, &session_id, finished.as_ref()).await;
    let document = document.unwrap_or_else(|| INTERACTIVE_COMMAND_DOCUMENT.to_owned());
    (status, Some((session_id, document)), captured)
}

/// Starts `instance`'s session: through the user's `--document`, else `Postern-Command` where
/// `postern setup` created it (stdout and stderr apart, the exit status from the agent, as a
/// single `exec` without input), else AWS-StartInteractiveCommand with `marker`'s wrapper.
/// Returns the document that reports the exit status (`None`: the wrapper does).
async fn start(
    shared: &Shared,
    instance: &Instance,
    ssm: &SsmClient,
    marker: &ExitMarker,
) -> Result<(SessionCredentials, Option<String>), AwsError> {
    let exec = &shared.exec;
    let request = |document: &str, command: String| StartSessionRequest {
        target: instance.id.clone(),
        document_name: Some(document.to_owned()),
        parameters: HashMap::from([("command".to_owned(), vec![command])]),
        reason: exec.session.reason.clone(),
    };
    if let Some(document) = &exec.document {
        let started =
            transport::lifecycle::start(ssm, &request(document, exec.command_line.clone())).await?;
        return Ok((started, Some(document.clone())));
    }
    let scope = (account_id(instance).to_owned(), instance.region.clone());
    let known_absent = shared
        .without_command_document
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&scope);
    if !known_absent {
        let command = command_document::request(
            &instance.id,
            &exec.command_line,
            exec.session.reason.as_deref(),
        );
        match transport::lifecycle::start(ssm, &command).await {
            Ok(started) => return Ok((started, Some(POSTERN_COMMAND_DOCUMENT.to_owned()))),
            Err(e) if command_document::falls_back(&e) => {
                shared
                    .without_command_document
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(scope);
            }
            Err(e) => return Err(e),
        }
    }
    let wrapped = request(
        INTERACTIVE_COMMAND_DOCUMENT,
        marker.wrap(&exec.command_line, false),
    );
    Ok((transport::lifecycle::start(ssm, &wrapped).await?, None))
}

/// Opens the started session's data channel and runs the command to its end, or until Ctrl-C;
/// what the driver learnt when it ran to the end.
async fn carry(
    shared: &Shared,
    instance: &Instance,
    (ssm, kms): (&SsmClient, &KmsClient),
    started: &SessionCredentials,
    marker: Option<&ExitMarker>,
    sink: Sink,
) -> (Status, Captured, Option<Finished>) {
    let exec = &shared.exec;
    let mut cancelled = shared.cancelled.clone();
    let resilience = exec.session.resilience.resilience(NoticeStyle::Line);
    let opened = tokio::select! {
        opened = transport::lifecycle::open(ssm, started, resilience) => opened,
        _ = cancelled.wait_for(|c| *c) => return (Status::Interrupted, Captured::default(), None),
    };
    let pump = match opened {
        Ok(pump) => pump,
        Err(e) => {
            return (
                Status::NotStarted(format!(
                    "could not open the data channel: {}",
                    error_chain(&e)
                )),
                Captured::default(),
                None,
            );
        }
    };
    let (stdout_rx, stdout_tx) = tokio::io::duplex(PIPE_CAPACITY);
    let (stderr_rx, stderr_tx) = tokio::io::duplex(PIPE_CAPACITY);
    // No input: the command sees end of file at once, as `postern exec … < /dev/null`.
    let (input_tx, input) = mpsc::channel(1);
    let _ = input_tx.try_send(Input::Eof);
    let local = Local {
        input: input.into(),
        outputs: Outputs {
            stdout: Box::new(stdout_tx),
            stderr: Box::new(stderr_tx),
        },
        terminal: TerminalGuard::noop(),
        signals: None,
    };
    let config = DriverConfig {
        handshake_timeout: exec.session.handshake_timeout,
        escape: None,
        send_size: false,
        eof_sends_ctrl_d: true,
        input_as_base64_lines: false,
        exit_marker: marker.map(ExitMarker::scanner),
        kms: Some(kms.clone()),
    };
    // The encryption context names the session and the target as started (SPEC.md §7.2).
    let core = transport::lifecycle::client_core(
        transport::now(),
        Some(KmsContext {
            session_id: started.session_id.clone(),
            target_id: instance.id.clone(),
        }),
    );
    let driven = async {
        tokio::select! {
            result = transport::run(pump, core, local, config) => Some(result),
            // Dropping the driver closes the websocket and the output pipes.
            _ = cancelled.wait_for(|c| *c) => None,
        }
    };
    let (driven, captured) = tokio::join!(driven, output::drain(stdout_rx, stderr_rx, sink));
    let status = match &driven {
        None => Status::Interrupted,
        Some(Ok(finished)) => match finished.exit_status {
            Some(status) => Status::Exited(status),
            None => Status::Failed(
                "the session ended before the command reported its exit status".to_owned(),
            ),
        },
        Some(Err(e @ DriverError::HandshakeTimeout(_))) => Status::NotStarted(error_chain(e)),
        Some(Err(e)) => Status::Failed(error_chain(e)),
    };
    (status, captured, driven.and_then(Result::ok))
}

/// The SSM and KMS clients for `instance`'s account and region, with the account's role.
async fn clients(shared: &Shared, instance: &Instance) -> Result<(SsmClient, KmsClient), String> {
    let account = account_id(instance);
    let credentials = match shared.credentials.get(account) {
        Some(Ok(credentials)) => credentials.clone(),
        Some(Err(why)) => return Err(why.clone()),
        // Outside the broker: the command line's identity.
        None => None,
    };
    let cell = {
        // Held only to find or insert the cell; never across an await.
        let mut clients = shared.clients.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            clients
                .entry((account.to_owned(), instance.region.clone()))
                .or_default(),
        )
    };
    let options = AwsOptions {
        region: Some(instance.region.clone()),
        credentials,
        ..shared.aws.clone()
    };
    cell.get_or_init(|| async move {
        let context = aws::load(&options)
            .await
            .map_err(|e| format!("could not load the AWS configuration: {}", error_chain(&e)))?;
        Ok((SsmClient::new(&context), KmsClient::new(&context)))
    })
    .await
    .clone()
}

fn outcome_of(instance: &Instance, status: Status, since: Instant) -> Outcome {
    Outcome {
        id: instance.id.clone(),
        name: instance.name.clone(),
        account: account_id(instance).to_owned(),
        alias: instance.alias.clone(),
        region: instance.region.clone(),
        status,
        duration: since.elapsed(),
    }
}

/// Appends the instance's session, started through `document`, to the history (best effort,
/// as every session's record).
fn record(
    shared: &Shared,
    outcome: &Outcome,
    time: SystemTime,
    session_id: String,
    document: String,
) {
    let Some(path) = audit_trail::default_path() else {
        return;
    };
    let exec = &shared.exec;
    let entry = SessionRecord {
        time: audit_trail::format_time(time),
        kind: "exec".to_owned(),
        identity: None,
        account: Some(outcome.account.clone()),
        region: Some(outcome.region.clone()),
        profile: shared.aws.profile.clone(),
        target: outcome.id.clone(),
        document: Some(document),
        session_ids: vec![session_id],
        reason: exec.session.reason.clone(),
        duration_ms: audit_trail::millis(outcome.duration),
        exit_status: outcome.status.exit_code(),
    };
    if let Err(error) = audit_trail::append(&path, &entry) {
        tracing::info!(%error, path = %path.display(), "could not append to the session history");
    }
}

/// Bytes an instance's output pipe holds before the session waits for the printer.
const PIPE_CAPACITY: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, account: &str, alias: &str) -> Instance {
        Instance {
            id: id.into(),
            account: account.into(),
            alias: alias.into(),
            ..Instance::default()
        }
    }

    #[test]
    fn accounts_are_counted_in_order_of_first_appearance() {
        let instances = [
            instance("i-1", "736250419937", "acme-prod"),
            instance("i-2", "318402957716", "acme-dev"),
            instance("mi-3", "736250419937-0123456789ab", "acme-prod"),
        ];
        assert_eq!(
            accounts_of(&instances),
            [
                ("736250419937".to_owned(), "acme-prod".to_owned(), 2),
                ("318402957716".to_owned(), "acme-dev".to_owned(), 1),
            ]
        );
    }
}
