//! `postern down NAME...|--all`: stops background tunnels. A supervisor all of whose tunnels
//! go down gets SIGTERM; one that keeps others gets a stop request per tunnel and SIGUSR1.
//! Either way it ends the tunnels' sessions (TerminateSession) and removes their state; `down`
//! waits for that (bounded), and cleans up after a supervisor that is gone or does not stop.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::cli::commands::tunnel::status::{Found, survey};
use crate::cli::commands::tunnel::up::registry;
use crate::report::{self, ErrorKind, ExpectedError};
use crate::tunnel::Registry;

/// `postern down`.
#[derive(clap::Args, Debug, Clone)]
pub struct DownArgs {
    /// Tunnels to stop.
    #[arg(
        value_name = "NAME",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub names: Vec<String>,

    /// Stop every tunnel.
    #[arg(long)]
    pub all: bool,
}

/// Stops the tunnels; exits 0 when each is down.
pub(crate) fn down(args: &DownArgs) -> anyhow::Result<ExitCode> {
    let registry = registry()?;
    let found = survey(&registry);
    let mut stdout = std::io::stdout().lock();
    let wanted: Vec<String> = if args.all {
        found.iter().map(|f| record_of(f).name.clone()).collect()
    } else {
        args.names.clone()
    };
    // Running tunnels by supervisor pid.
    let mut by_pid: BTreeMap<u32, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for name in &wanted {
        match found.iter().find(|f| &record_of(f).name == name) {
            Some(Found::Running(r)) => {
                by_pid
                    .entry(r.pid)
                    .or_insert_with(|| (Vec::new(), r.siblings.clone()))
                    .0
                    .push(name.clone());
            }
            Some(Found::Failed(_)) => {
                registry.remove_stale(name);
                writeln!(stdout, "{name}: removed (it had failed)")?;
            }
            Some(Found::Gone(r)) => {
                writeln!(
                    stdout,
                    "{name}: was not running (its supervisor, pid {}, is gone); removed its \
                     state",
                    r.pid
                )?;
            }
            None => {
                return Err(ExpectedError::new(
                    ErrorKind::Usage,
                    format!("tunnel {name} is not up"),
                )
                .hint("`postern status` lists the tunnels that are up")
                .into());
            }
        }
    }
    for (pid, (names, siblings)) in by_pid {
        let everything = siblings
            .iter()
            .all(|s| names.contains(s) || !registry.is_held(s));
        let signal = if everything {
            Signal::SIGTERM
        } else {
            for name in &names {
                registry.request_stop(name)?;
            }
            Signal::SIGUSR1
        };
        send(pid, signal);
        for name in &names {
            if wait_released(&registry, name, STOP_LIMIT) {
                // The supervisor removes what it owned; a leftover stop request goes too.
                registry.remove_stale(name);
                writeln!(stdout, "{name}: stopped")?;
            } else {
                send(pid, Signal::SIGKILL);
                wait_released(&registry, name, KILL_LIMIT);
                registry.remove_stale(name);
                report::notice(&format!(
                    "warning: the supervisor of {name} (pid {pid}) did not stop within {}; it \
                     was killed, and its sessions end when the service times them out",
                    humantime::format_duration(STOP_LIMIT)
                ));
                writeln!(stdout, "{name}: killed")?;
            }
        }
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn record_of(found: &Found) -> &crate::tunnel::TunnelRecord {
    match found {
        Found::Running(r) | Found::Failed(r) | Found::Gone(r) => r,
    }
}

/// Signals the supervisor `pid`, which holds a tunnel's lock (so the pid is still its own).
fn send(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
}

/// Waits until `name`'s lock is free; false after `limit`.
fn wait_released(registry: &Registry, name: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !registry.is_held(name) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // A poll of another process's lock: nothing to wake us when it goes.
        std::thread::sleep(POLL_EVERY);
    }
}

/// How long a supervisor may take to end its sessions (each TerminateSession is bounded).
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// How long a killed supervisor's lock may take to go.
const KILL_LIMIT: Duration = Duration::from_secs(5);
/// How often `down` looks at the lock.
const POLL_EVERY: Duration = Duration::from_millis(50);
