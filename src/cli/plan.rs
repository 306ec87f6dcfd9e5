//! The validated plan: everything checked and resolved before any network call.

use std::fmt;
use std::time::Duration;

use crate::aws::AwsOptions;
use crate::cli::args::{Args, Command, CommonArgs, ExecArgs, SessionArgs, ShellArgs};
use crate::emulator::EmulatorArgs;
use crate::report::{ErrorKind, ExpectedError};

/// What the invocation will do.
#[derive(Debug)]
pub enum Plan {
    /// `postern shell TARGET`.
    Shell(SessionPlan),
    /// `postern exec TARGET -- COMMAND…`.
    Exec(ExecPlan),
    /// `postern emulator`.
    Emulator(EmulatorArgs),
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
                "run `postern shell i-0123456789abcdef0` or `postern exec i-0123456789abcdef0 -- \
                 uptime`; the instance picker arrives with instance discovery",
            )),
            Some(Command::Shell(ShellArgs { target, session })) => {
                Ok(Self::Shell(SessionPlan::new(&common, &target, &session)?))
            }
            Some(Command::Exec(exec)) => Ok(Self::Exec(ExecPlan::new(&common, exec)?)),
            Some(Command::Emulator(args)) => Ok(Self::Emulator(args)),
        }
    }
}

impl SessionPlan {
    fn new(
        common: &CommonArgs,
        target: &str,
        session: &SessionArgs,
    ) -> Result<Self, ExpectedError> {
        if let Some(reason) = &session.reason
            && !(1..=256).contains(&reason.chars().count())
        {
            return Err(ExpectedError::new(
                ErrorKind::Usage,
                "--reason must be 1 to 256 characters long",
            ));
        }
        if let Some(url) = &common.endpoint_url
            && url::Url::parse(url).is_err()
        {
            return Err(ExpectedError::new(
                ErrorKind::Usage,
                format!("--endpoint-url {url} is not a URL"),
            )
            .hint("give a full URL such as http://127.0.0.1:4566"));
        }
        Ok(Self {
            target: Target::parse(target)?,
            aws: AwsOptions {
                profile: common.profile.clone(),
                region: common.region.clone(),
                endpoint_url: common.endpoint_url.clone(),
            },
            reason: session.reason.clone(),
            handshake_timeout: session.handshake_timeout,
            escape: parse_escape(&session.escape_char)?,
        })
    }
}

impl ExecPlan {
    fn new(common: &CommonArgs, exec: ExecArgs) -> Result<Self, ExpectedError> {
        let session = SessionPlan::new(common, &exec.target, &exec.session)?;
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
        } else {
            Err(
                ExpectedError::new(ErrorKind::Usage, format!("`{raw}` is not an instance id"))
                    .hint(
                        "give an EC2 instance id (i-0123456789abcdef0) or a managed node id \
                 (mi-0123456789abcdef0); names and tags arrive with instance discovery",
                    ),
            )
        }
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
    fn reason_too_long_is_rejected() {
        let long = "x".repeat(257);
        let err = plan(&["shell", "i-0123456789abcdef0", "--reason", &long]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
    }
}
