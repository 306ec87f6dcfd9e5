//! The validated plan: every argument checked before any network call. Session targets stay
//! as given; [`crate::cli::resolve`] turns them into instance ids as the next, explicit step.

use crate::aws::AwsOptions;
use crate::cli::args::{Args, Command};
use crate::cli::commands::broker::BrokerPlan;
use crate::cli::commands::completions::CompletionsArgs;
use crate::cli::commands::console::ConsolePlan;
use crate::cli::commands::cp::CpPlan;
use crate::cli::commands::demo::DemoArgs;
use crate::cli::commands::doctor::DoctorPlan;
use crate::cli::commands::exec_many::ExecManyPlan;
use crate::cli::commands::forward::ForwardPlan;
use crate::cli::commands::history::HistoryArgs;
use crate::cli::commands::install::InstallPluginArgs;
use crate::cli::commands::list::ListPlan;
use crate::cli::commands::session::{ExecPlan, SessionPlan, ShellArgs};
use crate::cli::commands::setup::SetupPlan;
use crate::cli::commands::ssh::{ProxyPlan, SshConfigPlan, SshPlan};
use crate::cli::commands::tunnel::{DownArgs, StatusArgs, UpPlan};
use crate::cli::common::aws_options;
use crate::cli::reach::Reach;
use crate::report::{ErrorKind, ExpectedError};
use postern_emulator::EmulatorArgs;

/// What the invocation will do.
#[derive(Debug)]
pub enum Plan {
    /// `postern shell TARGET`.
    Shell(SessionPlan),
    /// `postern exec TARGET -- COMMAND…`.
    Exec(ExecPlan),
    /// `postern exec --all QUERY -- COMMAND…`, or several instances chosen in the picker.
    ExecMany(ExecManyPlan),
    /// `postern cp SOURCE DEST`.
    Cp(CpPlan),
    /// `postern forward TARGET -L …`.
    Forward(ForwardPlan),
    /// `postern up NAME...`.
    Up(UpPlan),
    /// `postern status`.
    Status(StatusArgs),
    /// `postern down NAME...|--all`.
    Down(DownArgs),
    /// `postern tunnel-supervisor` (started by `postern up`).
    Supervise,
    /// `postern ssh-proxy TARGET [PORT]`.
    SshProxy(ProxyPlan),
    /// `postern ssh [USER@]TARGET [-- ARGS]`.
    Ssh(SshPlan),
    /// `postern ssh-config`.
    SshConfig(SshConfigPlan),
    /// `postern list`.
    List(ListPlan),
    /// `postern creds`, `whoami`, `accounts`.
    Broker(BrokerPlan),
    /// `postern console`.
    Console(ConsolePlan),
    /// `postern completions`.
    Completions(CompletionsArgs),
    /// `postern doctor`.
    Doctor(DoctorPlan),
    /// `postern history`.
    History(HistoryArgs),
    /// `postern setup`.
    Setup(SetupPlan),
    /// `postern install-plugin`.
    InstallPlugin(InstallPluginArgs),
    /// `postern emulator`.
    Emulator(EmulatorArgs),
    /// `postern demo`.
    Demo(DemoArgs),
}

impl Plan {
    /// Validates raw arguments.
    pub fn from_args(args: Args) -> Result<Self, ExpectedError> {
        let common = args.common;
        match args.command {
            // Bare `postern` on a terminal: the picker, then a shell.
            None if crate::term::interactive() => Ok(Self::Shell(SessionPlan::new(
                &common,
                "",
                &ShellArgs::defaults()?.session,
            )?)),
            None => Err(ExpectedError::new(ErrorKind::Usage, "no command given").hint(
                "run `postern shell web-1` or `postern exec i-0123456789abcdef0 -- uptime`; on a \
                 terminal, bare `postern` opens the instance picker",
            )),
            Some(Command::Shell(ShellArgs { target, session })) => Ok(Self::Shell(
                SessionPlan::new(&common, target.as_deref().unwrap_or_default(), &session)?,
            )),
            Some(Command::Exec(exec)) => {
                let exec = ExecPlan::new(&common, exec)?;
                if exec.fleet.all.is_some() {
                    Ok(Self::ExecMany(ExecManyPlan::new(&common, exec)?))
                } else {
                    Ok(Self::Exec(exec))
                }
            }
            Some(Command::Cp(args)) => Ok(Self::Cp(CpPlan::new(&common, args)?)),
            Some(Command::Forward(args)) => Ok(Self::Forward(ForwardPlan::new(&common, args)?)),
            Some(Command::Up(args)) => Ok(Self::Up(UpPlan::new(args)?)),
            Some(Command::Status(args)) => Ok(Self::Status(args)),
            Some(Command::Down(args)) => Ok(Self::Down(args)),
            Some(Command::TunnelSupervisor(_)) => Ok(Self::Supervise),
            Some(Command::SshProxy(args)) => Ok(Self::SshProxy(ProxyPlan::new(&common, args)?)),
            Some(Command::Ssh(args)) => Ok(Self::Ssh(SshPlan::new(&common, args)?)),
            Some(Command::SshConfig(args)) => {
                Ok(Self::SshConfig(SshConfigPlan::new(&common, &args)?))
            }
            Some(Command::List(mut args)) => {
                aws_options(&common)?;
                args.account.clone_from(&common.account);
                Ok(Self::List(ListPlan::new(
                    Reach::new(&common)?,
                    args,
                )?))
            }
            Some(Command::Creds(args)) => Ok(Self::Broker(
                BrokerPlan::creds(&common, args),
            )),
            Some(Command::Console(args)) => Ok(Self::Console(ConsolePlan::new(&common, args)?)),
            Some(Command::Whoami(args)) => Ok(Self::Broker(
                BrokerPlan::whoami(&common, &args),
            )),
            Some(Command::Accounts(args)) => Ok(Self::Broker(
                BrokerPlan::accounts(&common, args),
            )),
            Some(Command::Completions(args)) => Ok(Self::Completions(args)),
            Some(Command::Doctor(args)) => Ok(Self::Doctor(DoctorPlan::new(
                aws_options(&common)?,
                &common,
                args,
            )?)),
            Some(Command::History(args)) => Ok(Self::History(args)),
            Some(Command::Setup(args)) => Ok(Self::Setup(SetupPlan::new(&common, args)?)),
            Some(Command::InstallPlugin(args)) => Ok(Self::InstallPlugin(args)),
            // `cli::run` hands it to the plugin contract before planning.
            Some(Command::Plugin(_)) => Err(ExpectedError::new(
                ErrorKind::Usage,
                "`postern plugin` takes the AWS CLI's arguments",
            )),
            Some(Command::Emulator(args)) => Ok(Self::Emulator(args)),
            Some(Command::Demo(args)) => Ok(Self::Demo(args.passing_on(&common))),
        }
    }
}

/// What target resolution fills in for a session command: the target (as given until then),
/// the AWS choices (region, the account role's credentials) and, for `postern ssh`, the flags
/// its ProxyCommand gets.
#[derive(Debug)]
pub(crate) struct TargetSlot<'a> {
    /// The target: as given, then the instance id.
    pub(crate) target: &'a mut String,
    /// AWS choices.
    pub(crate) aws: &'a mut AwsOptions,
    /// StartSession reason (the guardrails may require one).
    pub(crate) reason: Option<String>,
    /// `postern ssh`'s flags for its ProxyCommand.
    pub(crate) broker_flags: Option<&'a mut Vec<String>>,
    /// Where to note the configured account the target resolved in (`postern forward`, for
    /// a tunnel supervisor that opens it again).
    pub(crate) account: Option<&'a mut Option<String>>,
    /// Where to note the platform the index gives the instance (`postern cp`, which refuses
    /// Windows before any session).
    pub(crate) platform: Option<&'a mut Option<String>>,
}

impl Plan {
    /// The session command's target to resolve; `None` for other commands.
    pub(crate) fn target_slot(&mut self) -> Option<TargetSlot<'_>> {
        let mut account = None;
        let mut platform = None;
        let (target, aws, reason, broker_flags) = match self {
            Self::Shell(p) => (p.target.raw_mut(), &mut p.aws, p.reason.clone(), None),
            Self::Exec(p) => (
                p.session.target.raw_mut(),
                &mut p.session.aws,
                p.session.reason.clone(),
                None,
            ),
            Self::Cp(p) => {
                platform = Some(&mut p.platform);
                (
                    p.session.target.raw_mut(),
                    &mut p.session.aws,
                    p.session.reason.clone(),
                    None,
                )
            }
            Self::Forward(p) => {
                account = Some(&mut p.account);
                (
                    &mut p.options.target,
                    &mut p.aws,
                    p.options.reason.clone(),
                    None,
                )
            }
            Self::SshProxy(p) => (
                &mut p.options.target,
                &mut p.aws,
                p.options.reason.clone(),
                None,
            ),
            Self::Ssh(p) => {
                account = Some(&mut p.account);
                (
                    p.target.raw_mut(),
                    &mut p.aws,
                    p.reason.clone(),
                    Some(&mut p.broker_flags),
                )
            }
            _ => return None,
        };
        Some(TargetSlot {
            target,
            aws,
            reason,
            broker_flags,
            account,
            platform,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::forward::SessionCount;

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
    fn names_are_kept_for_resolution() {
        let Ok(Plan::Shell(p)) = plan(&["shell", "web-1@acme-dev"]) else {
            panic!("expected a shell plan");
        };
        assert_eq!(p.target.as_str(), "web-1@acme-dev");
        let mut shell = Plan::Shell(p);
        let slot = shell.target_slot().unwrap();
        assert_eq!(slot.target, "web-1@acme-dev");
        let Ok(mut ssh) = plan(&["ssh", "u@web-1.postern"]) else {
            panic!("expected an ssh plan");
        };
        let Plan::Ssh(p) = &ssh else {
            panic!("expected an ssh plan");
        };
        assert_eq!(p.target.as_str(), "web-1");
        assert!(ssh.target_slot().unwrap().broker_flags.is_some());
    }

    #[test]
    fn exec_runs_one_argument_as_a_command_line_and_several_as_an_argv() {
        let Ok(Plan::Exec(p)) =
            plan(&["exec", "i-0123456789abcdef0", "--", "echo", "a b", "$HOME"])
        else {
            panic!("expected an exec plan");
        };
        assert_eq!(p.command_line, "'echo' 'a b' '$HOME'");
        assert_eq!(p.tty, None);
        let Ok(Plan::Exec(p)) = plan(&[
            "exec",
            "i-0123456789abcdef0",
            "--",
            "sh",
            "-c",
            "printf abc; exit 7",
        ]) else {
            panic!("expected an exec plan");
        };
        assert_eq!(p.command_line, "'sh' '-c' 'printf abc; exit 7'");
        let Ok(Plan::Exec(p)) = plan(&["exec", "i-0123456789abcdef0", "--", "df -h; exit 3"])
        else {
            panic!("expected an exec plan");
        };
        assert_eq!(p.command_line, "df -h; exit 3");
    }

    #[test]
    fn a_region_that_is_not_a_region_name_is_a_usage_error() {
        for bad in [
            "eu-west-1;rm",
            "EU-WEST-1",
            "",
            "-eu",
            "eu west 1",
            "eu-west-1\u{1b}[2J",
        ] {
            let flag = format!("--region={bad}");
            let parsed = Args::try_parse_from(["postern", "list", flag.as_str()]);
            let err = parsed.expect_err(bad);
            assert!(
                err.to_string().contains("not a region name"),
                "{bad}: {err}"
            );
        }
        for good in ["eu-west-1", "us-gov-west-1", "cn-north-1", "ap-southeast-5"] {
            assert!(
                Args::try_parse_from(["postern", "list", "--region", good]).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn absurd_durations_are_clamped() {
        let Ok(Plan::Shell(p)) = plan(&[
            "shell",
            "i-0123456789abcdef0",
            "--handshake-timeout",
            "1000000000years",
            "--keepalive",
            "500000000y",
        ]) else {
            panic!("expected a shell plan");
        };
        assert_eq!(p.handshake_timeout, crate::cli::common::MAX_FLAG_DURATION);
        assert_eq!(
            p.resilience.keepalive,
            crate::cli::common::MAX_FLAG_DURATION
        );
    }

    #[test]
    fn ssh_refuses_a_user_that_looks_like_an_option() {
        let mut args = Args::try_parse_from(["postern", "ssh", "u@i-0123456789abcdef0"]).unwrap();
        let Some(Command::Ssh(ssh)) = &mut args.command else {
            panic!("expected ssh");
        };
        ssh.destination = "-oProxyCommand=evil@i-0123456789abcdef0".to_owned();
        let err = Plan::from_args(args).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert!(err.to_string().contains("-oProxyCommand=evil"), "{err}");
    }

    #[test]
    fn exec_tty_flags() {
        let Ok(Plan::Exec(p)) = plan(&["exec", "-T", "i-0123456789abcdef0", "--", "true"]) else {
            panic!("expected an exec plan");
        };
        assert_eq!(p.tty, Some(false));
    }

    #[test]
    fn bare_postern_off_a_terminal_is_a_usage_error() {
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
    fn ssh_takes_the_user_from_l_and_push_key_from_its_flags() {
        let id = "i-0123456789abcdef0";
        let Ok(Plan::Ssh(p)) = plan(&["ssh", "-l", "ubuntu", "--push-key", id]) else {
            panic!("expected an ssh plan");
        };
        assert_eq!(p.user.as_deref(), Some("ubuntu"));
        assert_eq!(p.push_key, Some(true));
        let Ok(Plan::Ssh(p)) = plan(&["ssh", "--push-key", "--no-push-key", &format!("u@{id}")])
        else {
            panic!("expected an ssh plan");
        };
        assert_eq!((p.user.as_deref(), p.push_key), (Some("u"), Some(false)));
        let Ok(Plan::Ssh(p)) = plan(&["ssh", "-l", "u", &format!("u@{id}")]) else {
            panic!("the same user twice is one user");
        };
        assert_eq!((p.user.as_deref(), p.push_key), (Some("u"), None));
        let Err(err) = plan(&["ssh", "-l", "b", &format!("a@{id}")]) else {
            panic!("two users must be refused");
        };
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert_eq!(err.to_string(), "two remote users: `a@` and -l b");
        let Err(err) = plan(&["ssh", "--login-name=-oProxyCommand=x", id]) else {
            panic!("an option-like user must be refused");
        };
        assert_eq!(err.kind(), ErrorKind::Usage);
        // ssh-proxy pushes only for a named user (ssh-config passes `-l %r`).
        assert!(Args::try_parse_from(["postern", "ssh-proxy", "--push-key", id]).is_err());
        let Ok(Plan::SshProxy(p)) = plan(&["ssh-proxy", "--push-key", "-l", "ec2-user", id]) else {
            panic!("expected an ssh-proxy plan");
        };
        assert_eq!(p.push_key_for.as_deref(), Some("ec2-user"));
    }

    #[test]
    fn reason_too_long_is_rejected() {
        let long = "x".repeat(257);
        let err = plan(&["shell", "i-0123456789abcdef0", "--reason", &long]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
    }
}
