//! `postern demo`: the product's own path against an in-process emulator serving the sample
//! fleet, on a machine with no AWS account and no network.
//!
//! The demo starts the emulator, writes a throwaway home for postern in a private temporary
//! directory (a postern configuration listing the fleet's accounts with their environments and
//! role, an AWS profile holding the emulator's per-run keys, and the cache, state and history
//! locations), then runs this same executable (`postern shell`, or `postern list`) as a child
//! with only that environment. Discovery, the picker, target resolution, guardrails and the
//! session are the product's, exactly as against AWS. Nothing of the user's AWS or postern
//! configuration is read or written, and the directory is removed when the demo ends.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use nix::sys::signal::Signal;
use postern_emulator::{BaseCredentials, Emulator, EmulatorConfig, EmulatorHandle, Fleet};
use tokio::signal::unix::{SignalKind, signal as unix_signal};

use crate::private_file::write_private;

/// Try postern on a local emulated fleet: no AWS account, no network. Every instance is
/// emulated and every session runs on this machine.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct DemoArgs {
    /// Open a shell on this instance (id or Name) without the picker.
    #[arg(long, value_name = "ID|NAME", env = "POSTERN_DEMO_SELECT")]
    pub select: Option<String>,

    /// Serve this fleet file instead of the built-in sample fleet.
    #[arg(long, value_name = "FILE")]
    pub fleet: Option<PathBuf>,

    /// List the instances (`postern list`) and exit without opening a shell.
    #[arg(long)]
    pub list: bool,

    /// The global flags the demo's postern takes as given (`--yes`, `--query`, `--select-1`,
    /// `--account`, `-v`); the AWS and configuration ones are the demo's own.
    #[arg(skip)]
    pub passed_on: Vec<String>,
}

impl DemoArgs {
    /// Notes the global flags of `common` that the demo's postern takes.
    pub(crate) fn passing_on(mut self, common: &crate::cli::common::CommonArgs) -> Self {
        let flags = &mut self.passed_on;
        if common.verbose > 0 {
            flags.push(format!("-{}", "v".repeat(usize::from(common.verbose))));
        }
        if common.broker.yes {
            flags.push("--yes".to_owned());
        }
        if let Some(query) = &common.query {
            flags.extend(["--query".to_owned(), query.clone()]);
        }
        if common.select_one {
            flags.push("--select-1".to_owned());
        }
        if let Some(account) = &common.account {
            flags.extend(["--account".to_owned(), account.clone()]);
        }
        self
    }
}

/// Runs the demo; the exit code is the child postern's.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let fleet = match &args.fleet {
        Some(path) => Fleet::load(path).context("cannot read the demo fleet")?,
        None => Fleet::sample(),
    };
    let region = fleet
        .regions
        .first()
        .cloned()
        .context("the demo fleet has no region")?;
    let emulator = Emulator::start(EmulatorConfig {
        region,
        fleet,
        ..EmulatorConfig::default()
    })
    .await
    .context("cannot start the demo emulator")?;
    let result = run_child(&emulator, &args).await;
    if let Err(err) = emulator.shutdown().await {
        tracing::warn!(error = %err, "demo emulator did not stop cleanly");
    }
    result
}

async fn run_child(emulator: &EmulatorHandle, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    // Caught before the directory exists: a signal from now on still lets it be removed.
    let mut terminate = unix_signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    let mut hangup = unix_signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;
    let home = DemoHome::create(emulator).context("cannot write the demo's temporary files")?;
    eprintln!("{BANNER}");
    let exe = std::env::current_exe().context("cannot find the postern executable")?;
    let mut child = home
        .command(&exe, emulator, &child_args(args))
        .spawn()
        .context("cannot start postern for the demo")?;
    // SIGTERM or SIGHUP to the demo alone (a closed terminal, `kill`) is passed on: the child
    // restores the terminal and ends its session, then the demo removes its directory (AWS
    // keys included) and stops the emulator. Left to the default action, the demo would die at
    // once, its child would retry a vanished emulator over the user's prompt, and the directory
    // would stay behind.
    let mut kill_at = None;
    loop {
        let passed_on = tokio::select! {
            status = child.wait() => {
                let status = status.context("cannot wait for the demo's postern")?;
                return Ok(exit_code(status));
            }
            // Ctrl-C outside raw mode reaches the whole process group: the child decides, the
            // demo keeps waiting for it.
            _ = tokio::signal::ctrl_c() => None,
            _ = terminate.recv() => Some(Signal::SIGTERM),
            _ = hangup.recv() => Some(Signal::SIGHUP),
            () = crate::transport::sleep_until(kill_at), if kill_at.is_some() => {
                tracing::warn!("the demo's postern did not stop in time: killing it");
                let _ = child.start_kill();
                kill_at = None;
                None
            }
        };
        if let (Some(signal), Some(pid)) = (passed_on, child.id()) {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::kill(pid, signal);
            kill_at.get_or_insert_with(|| crate::transport::now() + CHILD_STOP_LIMIT);
        }
    }
}

/// How long the demo's postern may take to stop after a passed-on signal.
const CHILD_STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The subcommand the child runs: the picker (`shell` without TARGET), a named instance, or
/// the listing.
fn child_args(args: &DemoArgs) -> Vec<String> {
    let mut out = if args.list {
        vec!["list".to_owned()]
    } else {
        let mut shell = vec!["shell".to_owned()];
        shell.extend(args.select.clone());
        shell
    };
    out.extend(args.passed_on.iter().cloned());
    out
}

/// The demo's private temporary home: postern configuration, AWS profile, cache and state.
#[derive(Debug)]
struct DemoHome {
    dir: tempfile::TempDir,
}

impl DemoHome {
    /// Creates the directory (0700) and writes the configuration for `emulator`'s fleet.
    fn create(emulator: &EmulatorHandle) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("postern-demo-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()?;
        let home = Self { dir };
        write_private(
            &home.path("config.toml"),
            postern_config(emulator.fleet()).as_bytes(),
        )?;
        write_private(
            &home.path("aws-config"),
            aws_config(emulator.fleet()).as_bytes(),
        )?;
        write_private(
            &home.path("aws-credentials"),
            aws_credentials(emulator.base_credentials()).as_bytes(),
        )?;
        Ok(home)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `postern_exe ARGS` with the demo's environment only (every inherited `AWS_*` and
    /// `POSTERN_*` variable removed): `AWS_ENDPOINT_URL` sends every service to the emulator.
    fn command(
        &self,
        postern_exe: &Path,
        emulator: &EmulatorHandle,
        args: &[String],
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(postern_exe);
        command.args(args);
        for (key, _) in std::env::vars_os() {
            if key
                .to_str()
                .is_some_and(|k| k.starts_with("AWS_") || k.starts_with("POSTERN_"))
            {
                command.env_remove(key);
            }
        }
        command
            .env("AWS_ENDPOINT_URL", emulator.endpoint())
            .env("AWS_CONFIG_FILE", self.path("aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.path("aws-credentials"))
            .env("AWS_PROFILE", PROFILE)
            .env("AWS_REGION", &emulator.fleet().regions[0])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("POSTERN_CONFIG", self.path("config.toml"))
            .env("POSTERN_CACHE_DIR", self.path("cache"))
            .env("POSTERN_STATE_DIR", self.path("state"))
            .env("POSTERN_HISTORY_FILE", self.path("state/history.jsonl"));
        command
    }
}

/// A postern configuration listing the fleet's accounts, reached with the demo role from the
/// demo's AWS profile.
fn postern_config(fleet: &Fleet) -> String {
    let regions: Vec<String> = fleet.regions.iter().map(|r| format!("{r:?}")).collect();
    let mut text = format!(
        "# Written by `postern demo` for its emulator; removed when the demo ends.\n\
         role = \"{DEMO_ROLE}\"\nregions = [{}]\n\n[source]\nprofile = \"{PROFILE}\"\nregion = {:?}\n",
        regions.join(", "),
        fleet.regions[0],
    );
    for account in &fleet.accounts {
        let _ = write!(
            text,
            "\n[[accounts]]\nid = \"{}\"\nalias = {:?}\nenv = \"{}\"\n",
            account.id,
            account.alias,
            account.env.as_str(),
        );
        if !account.roles.iter().any(|r| r == DEMO_ROLE)
            && let Some(role) = account.roles.first()
        {
            let _ = writeln!(text, "role = {role:?}");
        }
    }
    text
}

fn aws_config(fleet: &Fleet) -> String {
    format!(
        "# Written by `postern demo`; removed when the demo ends.\n[profile {PROFILE}]\nregion = {}\n",
        fleet.regions[0]
    )
}

/// The demo profile's keys: the emulator's random keys for this run, good for nothing else.
fn aws_credentials(keys: &BaseCredentials) -> String {
    format!(
        "# Written by `postern demo`: this run's keys for its emulator only.\n[{PROFILE}]\n\
         aws_access_key_id = {}\naws_secret_access_key = {}\n",
        keys.access_key_id(),
        keys.secret_access_key()
    )
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code.rem_euclid(256)).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(crate::report::exit_codes::for_signal(signal)),
        (None, None) => ExitCode::FAILURE,
    }
}

/// The one line saying what the demo is.
const BANNER: &str = "postern demo: a local demo with no AWS account and no network; the fleet \
                      is emulated in this process and every session runs on this machine, as \
                      you. Prod rows ask for confirmation, as they would against AWS.";
const PROFILE: &str = "postern-demo";
const DEMO_ROLE: &str = "PosternAccess";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_every_account_of_the_sample_fleet() {
        let fleet = Fleet::sample();
        let text = postern_config(&fleet);
        let parsed = crate::config::parse(Path::new("demo.toml"), &text).unwrap();
        assert_eq!(parsed.accounts.len(), fleet.accounts.len());
        assert_eq!(parsed.role.as_deref(), Some(DEMO_ROLE));
        assert_eq!(parsed.source.profile.as_deref(), Some(PROFILE));
        let prod = parsed.account("acme-prod").unwrap();
        assert_eq!(prod.env, "prod");
        assert!(parsed.environment(&prod.env).production);
    }

    #[test]
    fn credentials_file_holds_the_emulators_keys() {
        let keys = BaseCredentials::new("AKIARUNKEY", "run-secret");
        let text = aws_credentials(&keys);
        assert!(text.contains("[postern-demo]\n"), "{text}");
        assert!(text.contains("aws_access_key_id = AKIARUNKEY\n"), "{text}");
        assert!(
            text.contains("aws_secret_access_key = run-secret\n"),
            "{text}"
        );
    }

    #[test]
    fn child_runs_the_picker_a_named_instance_or_the_listing() {
        assert_eq!(child_args(&DemoArgs::default()), ["shell"]);
        let named = DemoArgs {
            select: Some("orders-api-dev-1".to_owned()),
            ..DemoArgs::default()
        };
        assert_eq!(child_args(&named), ["shell", "orders-api-dev-1"]);
        let list = DemoArgs {
            list: true,
            ..DemoArgs::default()
        };
        assert_eq!(child_args(&list), ["list"]);
        let confirmed = DemoArgs {
            select: Some("orders-api-prod-1".to_owned()),
            passed_on: vec!["--yes".to_owned()],
            ..DemoArgs::default()
        };
        assert_eq!(
            child_args(&confirmed),
            ["shell", "orders-api-prod-1", "--yes"]
        );
    }
}
