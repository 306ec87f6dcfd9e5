//! What every command shares: the global options, the options of commands that connect, the
//! validated target, and the checks every plan makes (no network).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::aws::AwsOptions;
use crate::report::{ErrorKind, ExpectedError};

/// Options shared by every command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// AWS profile from the shared config files (default: AWS_PROFILE, else the default
    /// profile).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, or the profile's).
    #[arg(long, global = true, value_name = "REGION", value_parser = parse_region)]
    pub region: Option<String>,

    /// SSM's endpoint URL (a VPC endpoint), as `aws ssm --endpoint-url`: STS, EC2, KMS and
    /// Organizations follow AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_`SERVICE`, as in the AWS CLI.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// More logging: -v info, -vv debug, -vvv trace. POSTERN_LOG (a tracing filter such as
    /// `postern=debug`) overrides it. Inside a raw-mode session logs go to --log-file.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// File for logs (default inside a raw-mode session: postern.log in the temp directory).
    #[arg(long, global = true, value_name = "FILE", env = "POSTERN_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Role broker options.
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// Pre-fill the instance picker's query (bare `postern`, or a command without TARGET).
    #[arg(long, global = true, value_name = "TEXT")]
    pub query: Option<String>,

    /// With the picker: take the only online match of --query without showing the picker.
    #[arg(long = "select-1", global = true)]
    pub select_one: bool,

    /// The account (alias or id from the configuration) of the target: `list` shows only its
    /// instances; a session looks its TARGET up there only, and on an instance id the index
    /// does not know, opens it with this account's role.
    #[arg(long, global = true, value_name = "ACCOUNT")]
    pub account: Option<String>,

    /// The target account's credentials, chosen by target resolution (not a flag).
    #[arg(skip)]
    pub credentials: Option<crate::aws::CredentialsOverride>,
}

/// Options of commands that start port or SSH sessions.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Reason recorded with the session (StartSession `Reason`, 1-256 characters).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Give up when the agent has not started a session after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::cli::common::parse_flag_duration)]
    pub handshake_timeout: Duration,

    /// Keepalive and reconnection.
    #[command(flatten)]
    pub resilience: crate::cli::resilience::ResilienceArgs,
}

/// Parses a duration flag, clamping it to [`MAX_FLAG_DURATION`]: an absurd value
/// (`--handshake-timeout 1000000000y`) must neither overflow a deadline nor hang postern
/// forever.
pub(crate) fn parse_flag_duration(raw: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(raw).map(|d| d.min(MAX_FLAG_DURATION))
}

/// The longest duration a flag takes: a day.
pub(crate) const MAX_FLAG_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Options of the role broker, shared by every command that reaches an account.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BrokerArgs {
    /// Configuration file (default: ~/.config/postern/config.toml).
    #[arg(long, global = true, value_name = "FILE", env = "POSTERN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Named source identity from the configuration (`[sources.NAME]`).
    #[arg(long, global = true, value_name = "NAME")]
    pub source: Option<String>,

    /// Command printing an MFA code (run with `sh -c`, POSTERN_MFA_SERIAL set), instead of
    /// asking on the terminal.
    #[arg(
        long,
        global = true,
        value_name = "COMMAND",
        env = "POSTERN_MFA_COMMAND"
    )]
    pub mfa_command: Option<String>,

    /// Neither read nor write the credentials cache.
    #[arg(long, global = true)]
    pub no_cache: bool,

    /// Confirm access to a production account without asking.
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
}

/// A validated SSM target: an EC2 instance id or a managed node id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target(String);

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
            Err(Self::missing())
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

    /// The error for a session command without TARGET where no picker can run.
    pub(crate) fn missing() -> ExpectedError {
        ExpectedError::new(ErrorKind::Usage, "no TARGET given").hint(
            "name the instance (an id, Name tag, NAME@ACCOUNT-ALIAS, private IP or DNS name); on \
             a terminal, leaving it out opens the instance picker",
        )
    }

    /// The text, for resolution to replace.
    pub(crate) fn raw_mut(&mut self) -> &mut String {
        &mut self.0
    }

    /// A target taken as given, unvalidated: what the user typed, before resolution (a Name, an
    /// IP, nothing at all), or what the service or the AWS CLI named (`session-manager-plugin`
    /// mode: any SSM target form, an ECS task say).
    pub fn given(raw: &str) -> Self {
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

/// The host-name suffix `postern ssh-config` routes through postern.
pub(crate) const SSH_HOST_SUFFIX: &str = ".postern";

/// A region name as AWS spells them (`eu-west-1`, `us-gov-west-1`, `cn-north-1`): lowercase
/// letters, digits and dashes. Anything else would reach the SDK's endpoint rules as an opaque
/// failure per account.
pub(crate) fn parse_region(raw: &str) -> Result<String, String> {
    let valid = (1..=32).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !raw.starts_with('-')
        && !raw.ends_with('-');
    if valid {
        Ok(raw.to_owned())
    } else {
        Err("not a region name (for example eu-west-1 or us-east-1)".to_owned())
    }
}

pub(crate) fn check_reason(reason: Option<&str>) -> Result<(), ExpectedError> {
    match reason {
        Some(reason) if !(1..=256).contains(&reason.chars().count()) => Err(ExpectedError::new(
            ErrorKind::Usage,
            "--reason must be 1 to 256 characters long",
        )),
        _ => Ok(()),
    }
}

pub(crate) fn aws_options(common: &CommonArgs) -> Result<AwsOptions, ExpectedError> {
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
pub(crate) fn broker_flags(common: &CommonArgs) -> Vec<String> {
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
    if let Some(account) = &common.account {
        flags.extend(["--account".to_owned(), account.clone()]);
    }
    // Resolution confirmed the account's guardrails already.
    if broker.yes || common.credentials.is_some() {
        flags.push("--yes".to_owned());
    }
    flags
}
