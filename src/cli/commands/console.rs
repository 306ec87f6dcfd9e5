//! `postern console ACCOUNT`: the AWS console, signed in to an account with the broker's role
//! (its credentials as `postern creds` gets them, the account's guardrails first), through the
//! federation endpoint ([`crate::broker::federation`]); the login URL opens in the browser, or
//! is printed with `--print-url`.
//!
//! The login URL signs whoever opens it in: it is never logged, and is printed only on stdout
//! with `--print-url`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::broker::federation::{self, Destination, FederationEndpoint, FederationError};
use crate::broker::guardrails::{self, Confirmation};
use crate::broker::{Broker, BrokerOptions, Secret};
use crate::cli::common::CommonArgs;
use crate::cli::errors::broker_failure;
use crate::cli::reach::{broker_options, load_config};
use crate::report::{ErrorKind, ExpectedError};

/// `postern console`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConsoleArgs {
    /// Account alias, account id, or role ARN.
    #[arg(value_name = "ACCOUNT|ROLE_ARN")]
    pub target: String,

    /// The service page to land on, as in the console's URLs (`ec2`, `s3`, `cloudwatch`,
    /// `systems-manager`); `--region` picks the region.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,

    /// Print the sign-in URL on stdout instead of opening a browser. The URL signs in whoever
    /// opens it within 15 minutes: keep it to yourself.
    #[arg(long)]
    pub print_url: bool,

    /// Why (required by environments with `require_reason`).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// A validated `postern console`.
#[derive(Clone, Debug)]
pub struct ConsolePlan {
    config: Option<PathBuf>,
    options: BrokerOptions,
    target: String,
    destination: Destination,
    endpoint: FederationEndpoint,
    print_url: bool,
    yes: bool,
    reason: Option<String>,
}

impl ConsolePlan {
    /// Checks the arguments and the federation endpoint (`POSTERN_FEDERATION_ENDPOINT`).
    pub fn new(common: &CommonArgs, args: ConsoleArgs) -> Result<Self, ExpectedError> {
        if let Some(service) = &args.service
            && (service.is_empty()
                || !service
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(ExpectedError::new(
                ErrorKind::Usage,
                format!(
                    "--service {}: not a console service name",
                    service.escape_debug()
                ),
            )
            .hint("name the service as the console's URLs do: ec2, s3, cloudwatch, iam"));
        }
        let endpoint = FederationEndpoint::from_env().map_err(|e| {
            ExpectedError::new(ErrorKind::Usage, "the federation endpoint is not usable")
                .hint(format!(
                    "unset {} to use AWS's, or name an https:// URL",
                    federation::ENDPOINT_VARIABLE
                ))
                .source(e)
        })?;
        Ok(Self {
            config: common.broker.config.clone(),
            options: broker_options(common),
            target: args.target,
            destination: Destination {
                service: args.service,
                region: common.region.clone(),
            },
            endpoint,
            print_url: args.print_url,
            yes: common.broker.yes,
            reason: args.reason,
        })
    }
}

/// Runs `postern console`.
pub(crate) async fn run(plan: ConsolePlan) -> anyhow::Result<ExitCode> {
    let config = load_config(plan.config.as_deref())?;
    let broker = Broker::new(config, plan.options.clone());
    let what = "could not open the AWS console";
    let target = broker
        .resolve(&plan.target)
        .map_err(|e| broker_failure(e, what, &plan.target))?;
    let described = format!("account {}, role {}", target.account.alias, target.role_arn);
    let env = broker.environment(&target);
    guardrails::check_session(
        &target.account.alias,
        &target.account.env,
        &env,
        Confirmation::from_terminal(plan.yes),
        plan.reason.as_deref(),
    )
    .map_err(|e| broker_failure(e.into(), what, &described))?;
    if let Some(reason) = &plan.reason {
        tracing::info!(account = %target.account.alias, reason, "console requested");
    }
    let credentials = broker
        .credentials(&target)
        .await
        .map_err(|e| broker_failure(e, what, &described))?;
    let duration = federation::session_duration(broker.config().duration, credentials.role_chained);
    let token = plan
        .endpoint
        .signin_token(&credentials, duration, FEDERATION_TIMEOUT)
        .await
        .map_err(|e| federation_failure(e, what, &described))?;
    let url = plan.endpoint.login_url(&plan.destination, &token);
    if plan.print_url {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(format!("{}\n", url.expose()).as_bytes())
            .and_then(|()| stdout.flush())
            .context("could not write the sign-in URL to stdout")?;
        return Ok(ExitCode::SUCCESS);
    }
    open_in_browser(&url)
        .await
        .map_err(|e| anyhow::Error::from(e.target(described.clone())))?;
    crate::report::notice(&format!(
        "opened the AWS console in {} as {}",
        target.account.alias, target.role_arn
    ));
    Ok(ExitCode::SUCCESS)
}

/// Hands `url` to the desktop's opener (`open` on macOS, `xdg-open` elsewhere), its output
/// discarded (an opener may echo the URL). The URL is on the opener's command line for the
/// moment it runs, as with any browser launch.
async fn open_in_browser(url: &Secret) -> Result<(), ExpectedError> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let not_opened = || ExpectedError::new(ErrorKind::Unsupported, "could not open a browser");
    let Some(program) = find_in_path(opener) else {
        return Err(not_opened().hint(format!(
            "no `{opener}` on PATH: run again with --print-url and open the URL yourself"
        )));
    };
    let mut child = tokio::process::Command::new(&program)
        .arg(url.expose())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            not_opened()
                .hint("run again with --print-url and open the URL yourself")
                .source(e)
        })?;
    // Openers return at once; one that runs the browser in the foreground is left running.
    match tokio::time::timeout(OPENER_WAIT, child.wait()).await {
        Ok(Ok(status)) if !status.success() => Err(not_opened().hint(format!(
            "`{opener}` exited with {status}: run again with --print-url and open the URL \
             yourself"
        ))),
        Ok(Err(e)) => Err(not_opened()
            .hint("run again with --print-url and open the URL yourself")
            .source(e)),
        Ok(Ok(_)) | Err(_) => Ok(()),
    }
}

/// The executable `name` in a directory of `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A federation failure as the user sees it.
fn federation_failure(err: FederationError, what: &str, described: &str) -> anyhow::Error {
    let (kind, hint) = match &err {
        FederationError::InvalidEndpoint { .. } => (
            ErrorKind::Usage,
            format!(
                "unset {} to use AWS's, or name an https:// URL",
                federation::ENDPOINT_VARIABLE
            ),
        ),
        FederationError::Settings(_) => (
            ErrorKind::AwsConfig,
            "check HTTPS_PROXY, NO_PROXY and AWS_CA_BUNDLE".to_owned(),
        ),
        FederationError::Connect { .. } | FederationError::Timeout { .. } => (
            ErrorKind::EndpointUnreachable,
            "check the network (and HTTPS_PROXY); `postern doctor` explains what it can reach"
                .to_owned(),
        ),
        FederationError::Refused { .. } | FederationError::Malformed { .. } => (
            ErrorKind::AwsRequest,
            "the role's credentials were refused for console sign-in: check that they still \
             work with `postern creds`, and that the role may sign in to the console"
                .to_owned(),
        ),
    };
    ExpectedError::new(kind, what)
        .target(described.to_owned())
        .hint(hint)
        .source(err)
        .into()
}

/// How long the federation endpoint may take to answer.
const FEDERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the opener to return.
const OPENER_WAIT: Duration = Duration::from_secs(10);
