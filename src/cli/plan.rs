//! The validated plan: everything checked and resolved before any network call.

use std::fmt;
use std::time::Duration;

use crate::aws::AwsOptions;
use crate::cli::args::{
    Args, Command, CommonArgs, ExecArgs, ForwardArgs, SessionArgs, ShellArgs, SshArgs, SshProxyArgs,
};
use crate::cli::demo::DemoArgs;
use crate::cli::resilience::{NoticeStyle, ResilienceArgs};
use crate::forward::{ForwardOptions, ForwardSpec, SessionCount};
use crate::report::{ErrorKind, ExpectedError};
use crate::stdio::ProxyOptions;
use postern_emulator::EmulatorArgs;

/// What the invocation will do.
#[derive(Debug)]
pub enum Plan {
    /// `postern shell TARGET`.
    Shell(SessionPlan),
    /// `postern exec TARGET -- COMMAND…`.
    Exec(ExecPlan),
    /// `postern forward TARGET -L …`.
    Forward(ForwardPlan),
    /// `postern ssh-proxy TARGET [PORT]`.
    SshProxy(ProxyPlan),
    /// `postern ssh [USER@]TARGET [-- ARGS]`.
    Ssh(SshPlan),
    /// `postern ssh-config`.
    SshConfig(AwsOptions),
    /// `postern list`.
    List(crate::cli::index::ListPlan),
    /// `postern creds`, `whoami`, `accounts`.
    Broker(crate::cli::broker::BrokerPlan),
    /// `postern completions`.
    Completions(crate::cli::completions::CompletionsArgs),
    /// `postern doctor`.
    Doctor(crate::cli::doctor::DoctorPlan),
    /// `postern history`.
    History(crate::cli::HistoryArgs),
    /// `postern install-plugin`.
    InstallPlugin(crate::cli::InstallPluginArgs),
    /// `postern emulator`.
    Emulator(EmulatorArgs),
    /// `postern demo`.
    Demo(DemoArgs),
}

/// Port forwards to run.
#[derive(Clone, Debug)]
pub struct ForwardPlan {
    /// AWS configuration choices.
    pub aws: AwsOptions,
    /// What to forward.
    pub options: ForwardOptions,
    /// `--json` ready lines.
    pub json: bool,
}

/// An SSH proxy to run.
#[derive(Clone, Debug)]
pub struct ProxyPlan {
    /// AWS configuration choices.
    pub aws: AwsOptions,
    /// What to connect to.
    pub options: ProxyOptions,
}

/// An ssh invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshPlan {
    /// AWS configuration choices, passed on to the ProxyCommand.
    pub aws: AwsOptions,
    /// The remote user, if given.
    pub user: Option<String>,
    /// The instance.
    pub target: Target,
    /// Further ssh arguments.
    pub ssh_args: Vec<String>,
    /// The ssh program.
    pub ssh_program: String,
    /// StartSession reason for the proxy.
    pub reason: Option<String>,
    /// Role broker flags passed on to the ProxyCommand (`--config`, `--source`, …).
    pub broker_flags: Vec<String>,
}

/// A session to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPlan {
    /// The instance.
    pub target: Target,
    /// AWS configuration choices.
    pub aws: AwsOptions,
    /// StartSession reason.
    pub reason: Option<String>,
    /// Limit for the agent to start the session.
    pub handshake_timeout: Duration,
    /// Escape character, `None` when disabled.
    pub escape: Option<u8>,
    /// Keepalive and reconnection.
    pub resilience: ResilienceArgs,
}

/// A command to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecPlan {
    /// The session.
    pub session: SessionPlan,
    /// The shell command line (arguments joined with spaces, as ssh does).
    pub command_line: String,
    /// Forced interactive (`Some(true)`), forced not (`Some(false)`), or decided from the
    /// standard streams (`None`).
    pub tty: Option<bool>,
    /// Session document override.
    pub document: Option<String>,
}

/// A validated SSM target: an EC2 instance id or a managed node id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target(String);

impl Plan {
    /// Validates raw arguments.
    pub fn from_args(args: Args) -> Result<Self, ExpectedError> {
        let common = args.common;
        match args.command {
            None => Err(ExpectedError::new(ErrorKind::Usage, "no command given").hint(
                "run `postern shell web-1` or `postern exec i-0123456789abcdef0 -- uptime`; on a \
                 terminal, bare `postern` opens the instance picker",
            )),
            Some(Command::Shell(ShellArgs { target, session })) => Ok(Self::Shell(
                SessionPlan::new(&common, target.as_deref().unwrap_or_default(), &session)?,
            )),
            Some(Command::Exec(exec)) => Ok(Self::Exec(ExecPlan::new(&common, exec)?)),
            Some(Command::Forward(args)) => Ok(Self::Forward(ForwardPlan::new(&common, args)?)),
            Some(Command::SshProxy(args)) => Ok(Self::SshProxy(ProxyPlan::new(&common, args)?)),
            Some(Command::Ssh(args)) => Ok(Self::Ssh(SshPlan::new(&common, args)?)),
            Some(Command::SshConfig(_)) => Ok(Self::SshConfig(aws_options(&common)?)),
            Some(Command::List(args)) => {
                aws_options(&common)?;
                Ok(Self::List(crate::cli::index::ListPlan::new(
                    crate::cli::reach::Reach::new(&common)?,
                    args,
                )?))
            }
            Some(Command::Creds(args)) => Ok(Self::Broker(
                crate::cli::broker::BrokerPlan::creds(&common, args),
            )),
            Some(Command::Whoami(args)) => Ok(Self::Broker(
                crate::cli::broker::BrokerPlan::whoami(&common, &args),
            )),
            Some(Command::Accounts(args)) => Ok(Self::Broker(
                crate::cli::broker::BrokerPlan::accounts(&common, args),
            )),
            Some(Command::Completions(args)) => Ok(Self::Completions(args)),
            Some(Command::Doctor(args)) => Ok(Self::Doctor(crate::cli::doctor::DoctorPlan::new(
                aws_options(&common)?,
                args,
            )?)),
            Some(Command::History(args)) => Ok(Self::History(args)),
            Some(Command::InstallPlugin(args)) => Ok(Self::InstallPlugin(args)),
            // `cli::run` hands it to the plugin contract before planning.
            Some(Command::Plugin(_)) => Err(ExpectedError::new(
                ErrorKind::Usage,
                "`postern plugin` takes the AWS CLI's arguments",
            )),
            Some(Command::Emulator(args)) => Ok(Self::Emulator(args)),
            Some(Command::Demo(args)) => Ok(Self::Demo(args)),
        }
    }
}

impl SessionPlan {
    fn new(
        common: &CommonArgs,
        target: &str,
        session: &SessionArgs,
    ) -> Result<Self, ExpectedError> {
        check_reason(session.reason.as_deref())?;
        Ok(Self {
            target: Target::parse(target)?,
            aws: aws_options(common)?,
            reason: session.reason.clone(),
            handshake_timeout: session.handshake_timeout,
            escape: parse_escape(&session.escape_char)?,
            resilience: session.resilience.clone(),
        })
    }
}

impl ExecPlan {
    fn new(common: &CommonArgs, exec: ExecArgs) -> Result<Self, ExpectedError> {
        let target = exec.target.as_deref().unwrap_or_default();
        let session = SessionPlan::new(common, target, &exec.session)?;
        let command_line = exec.command.join(" ");
        if command_line.trim().is_empty() {
            return Err(ExpectedError::new(ErrorKind::Usage, "the command is empty")
                .hint("put the command after `--`: postern exec TARGET -- uptime"));
        }
        let tty = match (exec.tty, exec.no_tty) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        Ok(Self {
            session,
            command_line,
            tty,
            document: exec.document,
        })
    }
}

impl ForwardPlan {
    fn new(common: &CommonArgs, args: ForwardArgs) -> Result<Self, ExpectedError> {
        check_reason(args.connect.reason.as_deref())?;
        let target = Target::parse(args.target.as_deref().unwrap_or_default())?;
        let forwards = args
            .forwards
            .iter()
            .map(|raw| {
                raw.parse::<ForwardSpec>().map_err(|e| {
                    ExpectedError::new(ErrorKind::Usage, e.to_string()).hint(
                        "write -L 8080:80 (local 8080 to port 80 on the instance) or \
                         -L 0:db.internal:5432 (a free local port to db.internal:5432 as the \
                         instance reaches it)",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            aws: aws_options(common)?,
            options: ForwardOptions {
                target: target.as_str().to_owned(),
                forwards,
                sessions: parse_sessions(&args.sessions)?,
                reason: args.connect.reason,
                handshake_timeout: args.connect.handshake_timeout,
                resilience: args.connect.resilience.resilience(NoticeStyle::WithSession),
            },
            json: args.json,
        })
    }
}

impl ProxyPlan {
    fn new(common: &CommonArgs, args: SshProxyArgs) -> Result<Self, ExpectedError> {
        check_reason(args.connect.reason.as_deref())?;
        let raw = args
            .target
            .strip_suffix(SSH_HOST_SUFFIX)
            .unwrap_or(&args.target);
        let target = Target::parse(raw)?;
        Ok(Self {
            aws: aws_options(common)?,
            options: ProxyOptions {
                target: target.as_str().to_owned(),
                port: args.port,
                reason: args.connect.reason,
                handshake_timeout: args.connect.handshake_timeout,
                resilience: args.connect.resilience.resilience(NoticeStyle::Line),
            },
        })
    }
}

impl SshPlan {
    fn new(common: &CommonArgs, args: SshArgs) -> Result<Self, ExpectedError> {
        check_reason(args.reason.as_deref())?;
        let (user, host) = match args.destination.rsplit_once('@') {
            Some((user, host)) if !user.is_empty() => (Some(user.to_owned()), host),
            _ => (None, args.destination.as_str()),
        };
        let host = host.strip_suffix(SSH_HOST_SUFFIX).unwrap_or(host);
        Ok(Self {
            aws: aws_options(common)?,
            broker_flags: broker_flags(common),
            user,
            target: Target::parse(host)?,
            ssh_args: args.ssh_args,
            ssh_program: args.ssh_program,
            reason: args.reason,
        })
    }
}

/// The host-name suffix `postern ssh-config` routes through postern.
pub(crate) const SSH_HOST_SUFFIX: &str = ".postern";

fn check_reason(reason: Option<&str>) -> Result<(), ExpectedError> {
    match reason {
        Some(reason) if !(1..=256).contains(&reason.chars().count()) => Err(ExpectedError::new(
            ErrorKind::Usage,
            "--reason must be 1 to 256 characters long",
        )),
        _ => Ok(()),
    }
}

fn aws_options(common: &CommonArgs) -> Result<AwsOptions, ExpectedError> {
    if let Some(url) = &common.endpoint_url
        && url::Url::parse(url).is_err()
    {
        return Err(ExpectedError::new(
            ErrorKind::Usage,
            format!("--endpoint-url {url} is not a URL"),
        )
        .hint("give a full URL such as http://127.0.0.1:4566"));
    }
    Ok(AwsOptions {
        profile: common.profile.clone(),
        region: common.region.clone(),
        endpoint_url: common.endpoint_url.clone(),
        credentials: common.credentials.clone(),
    })
}

/// The role broker flags of `common`, as arguments for a child postern.
fn broker_flags(common: &CommonArgs) -> Vec<String> {
    let broker = &common.broker;
    let mut flags = Vec::new();
    if let Some(config) = &broker.config {
        flags.extend(["--config".to_owned(), config.display().to_string()]);
    }
    if let Some(source) = &broker.source {
        flags.extend(["--source".to_owned(), source.clone()]);
    }
    if let Some(command) = &broker.mfa_command {
        flags.extend(["--mfa-command".to_owned(), command.clone()]);
    }
    if broker.no_cache {
        flags.push("--no-cache".to_owned());
    }
    // Resolution confirmed the account's guardrails already.
    if broker.yes || common.credentials.is_some() {
        flags.push("--yes".to_owned());
    }
    flags
}

fn parse_sessions(raw: &str) -> Result<SessionCount, ExpectedError> {
    if raw == "auto" {
        return Ok(SessionCount::Auto);
    }
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_SESSIONS).contains(&n) => Ok(SessionCount::Fixed(n)),
        _ => Err(ExpectedError::new(
            ErrorKind::Usage,
            format!("--sessions `{raw}` must be `auto` or a number from 1 to {MAX_SESSIONS}"),
        )),
    }
}

/// Upper bound for `--sessions`: each session is a StartSession call and an agent process.
const MAX_SESSIONS: usize = 32;

impl Target {
    /// Accepts `i-` followed by 8 or 17 hex digits and `mi-` followed by 17.
    pub fn parse(raw: &str) -> Result<Self, ExpectedError> {
        let valid = |hex: &str, lens: &[usize]| {
            lens.contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
        };
        let ok = match raw.split_once('-') {
            Some(("i", hex)) => valid(hex, &[8, 17]),
            Some(("mi", hex)) => valid(hex, &[17]),
            _ => false,
        };
        if ok {
            Ok(Self(raw.to_ascii_lowercase()))
        } else if raw.is_empty() {
            Err(
                ExpectedError::new(ErrorKind::Usage, "no TARGET given").hint(
                    "name the instance (an id, Name tag, NAME@ACCOUNT-ALIAS, private IP or DNS \
                 name); on a terminal, leaving it out opens the instance picker",
                ),
            )
        } else {
            Err(
                ExpectedError::new(ErrorKind::Usage, format!("`{raw}` is not an instance id"))
                    .hint(
                        "give an EC2 instance id (i-0123456789abcdef0) or a managed node id \
                 (mi-0123456789abcdef0), or a Name tag, NAME@ACCOUNT-ALIAS, private IP or DNS \
                 name",
                    ),
            )
        }
    }

    /// A target named by the service or the AWS CLI (`session-manager-plugin` mode), taken as
    /// given: it may be any SSM target form (an ECS task, say), not only an instance id.
    pub fn from_service(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    /// The id as SSM expects it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_escape(raw: &str) -> Result<Option<u8>, ExpectedError> {
    if raw == "none" {
        return Ok(None);
    }
    match raw.as_bytes() {
        [b] if b.is_ascii_graphic() => Ok(Some(*b)),
        _ => Err(ExpectedError::new(
            ErrorKind::Usage,
            format!("--escape-char `{raw}` must be one printable ASCII character or `none`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn plan(argv: &[&str]) -> Result<Plan, ExpectedError> {
        let mut full = vec!["postern"];
        full.extend_from_slice(argv);
        Plan::from_args(Args::try_parse_from(full).expect("clap accepts"))
    }

    #[test]
    fn shell_with_instance_id_and_common_flags() {
        let Ok(Plan::Shell(p)) = plan(&[
            "shell",
            "i-0123456789abcdef0",
            "--region",
            "eu-west-1",
            "--profile",
            "dev",
            "--reason",
            "debugging",
        ]) else {
            panic!("expected a shell plan");
        };
        assert_eq!(p.target.as_str(), "i-0123456789abcdef0");
        assert_eq!(p.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(p.aws.profile.as_deref(), Some("dev"));
        assert_eq!(p.reason.as_deref(), Some("debugging"));
        assert_eq!(p.escape, Some(b'~'));
    }

    #[test]
    fn rejects_names_as_targets_for_now() {
        let err = plan(&["shell", "web-1"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert_eq!(err.to_string(), "`web-1` is not an instance id");
    }

    #[test]
    fn exec_joins_arguments_like_ssh() {
        let Ok(Plan::Exec(p)) =
            plan(&["exec", "i-0123456789abcdef0", "--", "echo", "a b", "$HOME"])
        else {
            panic!("expected an exec plan");
        };
        assert_eq!(p.command_line, "echo a b $HOME");
        assert_eq!(p.tty, None);
    }

    #[test]
    fn exec_tty_flags() {
        let Ok(Plan::Exec(p)) = plan(&["exec", "-T", "i-0123456789abcdef0", "--", "true"]) else {
            panic!("expected an exec plan");
        };
        assert_eq!(p.tty, Some(false));
    }

    #[test]
    fn bare_postern_is_a_usage_error_until_the_picker() {
        let err = plan(&[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
    }

    #[test]
    fn escape_char_none_disables() {
        let Ok(Plan::Shell(p)) = plan(&["shell", "-e", "none", "mi-0123456789abcdef0"]) else {
            panic!("expected a shell plan");
        };
        assert_eq!(p.escape, None);
    }

    #[test]
    fn forward_parses_several_forwards_and_sessions() {
        let Ok(Plan::Forward(p)) = plan(&[
            "forward",
            "i-0123456789abcdef0",
            "-L",
            "0:80",
            "-L",
            "0.0.0.0:5432:db.internal:5432",
            "--sessions",
            "8",
            "--json",
        ]) else {
            panic!("expected a forward plan");
        };
        assert_eq!(p.options.forwards.len(), 2);
        assert_eq!(p.options.sessions, SessionCount::Fixed(8));
        assert!(p.json);
        let Ok(Plan::Forward(p)) = plan(&["forward", "i-0123456789abcdef0", "-L", "1:2"]) else {
            panic!("expected a forward plan");
        };
        assert_eq!(p.options.sessions, SessionCount::Auto);
    }

    #[test]
    fn forward_rejects_bad_specs_and_session_counts() {
        let err = plan(&["forward", "i-0123456789abcdef0", "-L", "80"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(err.to_string().starts_with("-L 80: "), "{err}");
        let err = plan(&[
            "forward",
            "i-0123456789abcdef0",
            "-L",
            "0:80",
            "--sessions",
            "0",
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--sessions `0` must be `auto` or a number from 1 to 32"
        );
    }

    #[test]
    fn ssh_proxy_strips_the_postern_suffix_and_defaults_to_port_22() {
        let Ok(Plan::SshProxy(p)) = plan(&["ssh-proxy", "i-0123456789abcdef0.postern"]) else {
            panic!("expected a proxy plan");
        };
        assert_eq!(p.options.target, "i-0123456789abcdef0");
        assert_eq!(p.options.port, 22);
    }

    #[test]
    fn ssh_splits_user_and_keeps_arguments() {
        let Ok(Plan::Ssh(p)) = plan(&["ssh", "ec2-user@i-0123456789abcdef0", "--", "-v", "uptime"])
        else {
            panic!("expected an ssh plan");
        };
        assert_eq!(p.user.as_deref(), Some("ec2-user"));
        assert_eq!(p.target.as_str(), "i-0123456789abcdef0");
        assert_eq!(p.ssh_args, ["-v", "uptime"]);
    }

    #[test]
    fn reason_too_long_is_rejected() {
        let long = "x".repeat(257);
        let err = plan(&["shell", "i-0123456789abcdef0", "--reason", &long]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
    }
}
