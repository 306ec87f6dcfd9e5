//! Runs the command line: the plan, the resolution of its target, then the command, with the
//! audit trail around session commands. Dispatch only; each command's work is in its file.

use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::args::{Args, Command};
use crate::cli::audit::{Audit, AuditStart};
use crate::cli::commands::cp;
use crate::cli::commands::session::{INTERACTIVE_COMMAND_DOCUMENT, Mode};
use crate::cli::commands::setup;
use crate::cli::commands::ssh::SSH_DOCUMENT;
use crate::cli::commands::{
    broker, completions, console, demo, doctor, exec_many, forward, history, install, list, plugin,
    session, ssh, ssh_push_key, tunnel,
};
use crate::cli::plan::Plan;
use crate::cli::{logging, resolve};
use crate::{report, term};

/// Runs the command line; errors are for [`crate::report::error`].
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(Command::Plugin(plugin)) = &args.command {
        return plugin::run_plugin(&plugin.args);
    }
    let verbose = args.common.verbose;
    let log_file = args.common.log_file.clone();
    let supervisor_log = log_file.clone();
    let common = args.common.clone();
    let plan = Plan::from_args(args)?;
    let one_session = runs_one_session(&plan);
    if one_session {
        crate::setup_memory::between_steps("arguments");
    }
    let runtime = runtime_for(&plan).context("could not start the async runtime")?;
    let stdin_tty = term::is_terminal(std::io::stdin().as_raw_fd());
    let stdout_tty = term::is_terminal(std::io::stdout().as_raw_fd());
    let raw = match &plan {
        Plan::Shell(_) => stdin_tty,
        Plan::Exec(exec) => stdin_tty && exec.tty.unwrap_or(stdout_tty),
        Plan::ExecMany(_) => false,
        Plan::Cp(_) => false,
        Plan::Forward(_) | Plan::Ssh(_) | Plan::SshConfig(_) | Plan::Emulator(_) => false,
        Plan::Broker(_) | Plan::Console(_) | Plan::Completions(_) => false,
        Plan::List(_) => false,
        Plan::Doctor(_) | Plan::History(_) | Plan::InstallPlugin(_) | Plan::Setup(_) => false,
        Plan::Up(_) | Plan::Status(_) | Plan::Down(_) | Plan::Supervise => false,
        // The demo's shell is a child `postern shell`, which takes the terminal itself.
        Plan::Demo(_) => false,
        // stdout carries the stream and stderr is ssh's screen: logs only to a file.
        Plan::SshProxy(_) => true,
    };
    logging::init(verbose, log_file, raw)?;
    // Resolution runs on the runtime the session uses: the broker's credential providers and
    // their HTTP connections live on it.
    let plan = runtime.block_on(resolve::resolve(plan, &common))?;
    if one_session {
        crate::setup_memory::between_steps("resolution");
    }
    match &plan {
        Plan::Ssh(ssh) if ssh::wants_pushed_key(ssh)? => {
            return runtime.block_on(ssh_push_key::run(ssh));
        }
        Plan::Ssh(ssh) => return ssh::ssh(ssh),
        Plan::SshConfig(config) => return ssh::config(config),
        Plan::Completions(args) => return completions::print(args),
        Plan::History(history) => return history::show(history),
        Plan::InstallPlugin(install) => return install::run(install),
        Plan::Status(args) => return tunnel::status(args),
        Plan::Down(args) => return tunnel::down(args),
        _ => {}
    }
    let audit = audit_start(&plan);
    let result = runtime.block_on(async {
        let audit = audit.map(Audit::begin);
        let result = match plan {
            Plan::Emulator(args) => postern_emulator::run_from_cli(args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Plan::Demo(args) => demo::run(args).await,
            Plan::Broker(plan) => broker::run(plan).await,
            Plan::Console(plan) => console::run(plan).await,
            Plan::List(list) => list::list(&list).await,
            Plan::Cp(copy) => cp::run(&copy).await,
            Plan::Forward(forward) => forward::run(&forward).await,
            Plan::SshProxy(proxy) => ssh::proxy(&proxy).await,
            // Handled before the runtime starts.
            Plan::Ssh(_) | Plan::SshConfig(_) | Plan::Completions(_) => Ok(ExitCode::SUCCESS),
            Plan::Shell(session) => {
                let mode = Mode::Shell { raw };
                session::run(&session, &mode).await
            }
            Plan::Exec(exec) => {
                let tty = exec.tty.unwrap_or(stdin_tty && stdout_tty);
                let mode = Mode::Exec {
                    raw,
                    tty,
                    plan: Box::new(exec.clone()),
                };
                session::run(&exec.session, &mode).await
            }
            // Each instance's session is recorded in the history as it ends.
            Plan::ExecMany(many) => exec_many::run(many).await,
            Plan::Doctor(doctor) => doctor::run(&doctor).await,
            Plan::Setup(setup) => setup::run(&setup).await,
            Plan::Up(up) => tunnel::up(&up, &common).await,
            Plan::Supervise => tunnel::supervise(supervisor_log).await,
            // Handled before the runtime starts.
            Plan::History(_) | Plan::InstallPlugin(_) | Plan::Status(_) | Plan::Down(_) => {
                Ok(ExitCode::SUCCESS)
            }
        };
        // Whatever stopped the command half-way (Ctrl-C while sessions started, an error
        // beside running sessions), nothing it started stays open at the service.
        end_unfinished().await;
        if let Some(audit) = audit {
            audit.finish(&result).await;
        }
        result
    });
    // Standard-stream writes may still sit in blocking threads; give them a moment, never
    // hang on them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// [`ledger::end_unfinished`](crate::transport::ledger::end_unfinished), bounded by the user:
/// another Ctrl-C (or SIGTERM, SIGHUP) leaves at once, naming what may stay open. Prints how
/// many sessions it ended (`postern: ended 1 session left open by the stopped command`).
pub(crate) async fn end_unfinished() {
    use crate::transport::ledger;
    if !ledger::has_unfinished() {
        return;
    }
    let ended = match term::Signals::install(true) {
        Ok(mut signals) => tokio::select! {
            ended = ledger::end_unfinished(UNANSWERED_START_GRACE) => ended,
            _ = signals.ending() => {
                report::notice(
                    "left without ending the sessions being started or ended: they stay open \
                     until the service's idle timeout (`aws ssm terminate-session` ends one now)",
                );
                0
            }
        },
        Err(_) => ledger::end_unfinished(UNANSWERED_START_GRACE).await,
    };
    if ended > 0 {
        report::notice(&format!(
            "ended {ended} session{} left open by the stopped command",
            if ended == 1 { "" } else { "s" }
        ));
    }
}

/// The async runtime of `plan`. One session's command (shell, exec, forward, ssh-proxy) runs on
/// the calling thread alone: with two workers, a message allocated on one and freed on the
/// other left free pages cached in both threads' mimalloc heaps (a 100 MB forward peaked 2-4
/// MiB higher), and even one worker beside the calling thread costs a thread and the
/// multi-thread scheduler's per-wake-up bookkeeping (its poll-time average calls libm's `pow`,
/// whose code and tables were 360 KiB of a shell's RSS; issue 22). Commands that fan out
/// (discovery, exec on many instances, cp's hashing beside the transfer) get two workers.
fn runtime_for(plan: &Plan) -> std::io::Result<tokio::runtime::Runtime> {
    if runs_one_session(plan) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
}

/// Whether `plan` is one session's command (shell, exec, forward, ssh-proxy).
fn runs_one_session(plan: &Plan) -> bool {
    matches!(
        plan,
        Plan::Shell(_) | Plan::Exec(_) | Plan::Forward(_) | Plan::SshProxy(_)
    )
}

/// The audit-trail facts of a session command; `None` for other commands.
fn audit_start(plan: &Plan) -> Option<AuditStart> {
    let (kind, target, aws, document, reason) = match plan {
        Plan::Shell(p) => ("shell", p.target.to_string(), &p.aws, None, &p.reason),
        Plan::Exec(p) => (
            "exec",
            p.session.target.to_string(),
            &p.session.aws,
            Some(
                p.document
                    .clone()
                    .unwrap_or_else(|| INTERACTIVE_COMMAND_DOCUMENT.to_owned()),
            ),
            &p.session.reason,
        ),
        Plan::Cp(p) => (
            "cp",
            p.session.target.to_string(),
            &p.session.aws,
            None,
            &p.session.reason,
        ),
        Plan::Forward(p) => (
            "forward",
            p.options.target.clone(),
            &p.aws,
            None,
            &p.options.reason,
        ),
        Plan::SshProxy(p) => (
            "ssh",
            p.options.target.clone(),
            &p.aws,
            Some(SSH_DOCUMENT.to_owned()),
            &p.options.reason,
        ),
        _ => return None,
    };
    Some(AuditStart {
        kind,
        target,
        aws: aws.clone(),
        document,
        reason: reason.clone(),
    })
}

/// How long a stopped command waits for StartSession calls still unanswered, to end the
/// sessions they start.
const UNANSWERED_START_GRACE: Duration = Duration::from_secs(3);
