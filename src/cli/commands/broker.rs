//! `postern creds`, `postern whoami` and `postern accounts`: the role broker on the command
//! line. Arguments, plan and run live together here; output goes to stdout, errors to
//! `report`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::broker::guardrails::{self, Confirmation};
use crate::broker::{AssumedCredentials, Broker, BrokerError, BrokerOptions};
use crate::cli::common::CommonArgs;
use crate::cli::errors::broker_failure;
use crate::cli::reach::{broker_options, load_config};
use crate::config;
use crate::term::colour_on;

/// `postern creds`.
#[derive(clap::Args, Debug, Clone)]
pub struct CredsArgs {
    /// Account alias, account id, or role ARN.
    #[arg(value_name = "ACCOUNT|ROLE_ARN")]
    pub target: String,

    /// Output: `process` (credential_process JSON) or `env` (shell exports).
    #[arg(long, value_name = "FORMAT", default_value = "process", value_parser = ["process", "env"])]
    pub format: String,

    /// Why (required by environments with `require_reason`).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `postern whoami`.
#[derive(clap::Args, Debug, Clone)]
pub struct WhoamiArgs {}

/// `postern accounts [sync]`.
#[derive(clap::Args, Debug, Clone)]
pub struct AccountsArgs {
    /// Without a subcommand: list the configured accounts.
    #[command(subcommand)]
    pub command: Option<AccountsCommand>,
}

/// `postern accounts` subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum AccountsCommand {
    /// Record the organization's accounts (Organizations ListAccounts) in the accounts file
    /// beside the configuration, so every account is reachable with no per-account setup.
    Sync(crate::cli::commands::sync::SyncArgs),
}

/// A validated broker command.
#[derive(Clone, Debug)]
pub struct BrokerPlan {
    config: Option<PathBuf>,
    options: BrokerOptions,
    action: Action,
}

#[derive(Clone, Debug)]
enum Action {
    Creds {
        target: String,
        env_format: bool,
        yes: bool,
        reason: Option<String>,
    },
    Whoami,
    Accounts,
    Sync(crate::cli::commands::sync::SyncArgs),
}

impl BrokerPlan {
    /// `postern creds`.
    pub fn creds(common: &CommonArgs, args: CredsArgs) -> Self {
        Self::new(
            common,
            Action::Creds {
                target: args.target,
                env_format: args.format == "env",
                yes: common.broker.yes,
                reason: args.reason,
            },
        )
    }

    /// `postern whoami`.
    pub fn whoami(common: &CommonArgs, _args: &WhoamiArgs) -> Self {
        Self::new(common, Action::Whoami)
    }

    /// `postern accounts`.
    pub fn accounts(common: &CommonArgs, args: AccountsArgs) -> Self {
        let action = match args.command {
            None => Action::Accounts,
            Some(AccountsCommand::Sync(sync)) => Action::Sync(sync),
        };
        Self::new(common, action)
    }

    fn new(common: &CommonArgs, action: Action) -> Self {
        Self {
            config: common.broker.config.clone(),
            options: broker_options(common),
            action,
        }
    }
}

/// Runs a broker command.
pub(crate) async fn run(plan: BrokerPlan) -> anyhow::Result<ExitCode> {
    let config = load_config(plan.config.as_deref())?;
    let broker = Broker::new(config, plan.options);
    match plan.action {
        Action::Creds {
            target,
            env_format,
            yes,
            reason,
        } => creds(&broker, &target, env_format, yes, reason.as_deref()).await,
        Action::Whoami => whoami(&broker).await,
        Action::Accounts => accounts(&broker),
        Action::Sync(sync) => crate::cli::commands::sync::run(&broker, &sync).await,
    }
}

async fn creds(
    broker: &Broker,
    query: &str,
    env_format: bool,
    yes: bool,
    reason: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let what = "could not get credentials";
    let target = broker
        .resolve(query)
        .map_err(|e| broker_failure(e, what, query))?;
    let described = format!("account {}, role {}", target.account.alias, target.role_arn);
    let env = broker.environment(&target);
    let confirmation = Confirmation::from_terminal(yes);
    guardrails::check_session(
        &target.account.alias,
        &target.account.env,
        &env,
        confirmation,
        reason,
    )
    .map_err(|e| broker_failure(e.into(), what, &described))?;
    if let Some(reason) = reason {
        tracing::info!(account = %target.account.alias, reason, "credentials requested");
    }
    let credentials = broker
        .credentials(&target)
        .await
        .map_err(|e| broker_failure(e, what, &described))?;
    let text = if env_format {
        env_exports(&credentials)
    } else {
        process_json(&credentials)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("could not write the credentials to stdout")?;
    Ok(ExitCode::SUCCESS)
}

async fn whoami(broker: &Broker) -> anyhow::Result<ExitCode> {
    let identity = broker.identity(None).await.map_err(|e| {
        broker_failure(e, "could not resolve the source identity", "source default")
    })?;
    let colour = colour_on(&std::io::stdout());
    let mut out = format!(
        "source identity: {} (account {}, source {})\n",
        identity.arn, identity.account, identity.source
    );
    let accounts = broker.config().accounts.clone();
    if accounts.is_empty() {
        out.push_str("no accounts configured: add [[accounts]] to the configuration\n");
    } else {
        out.push_str(&format!(
            "{:<24} {:<12} {:<6} {:<28} REACHABLE\n",
            "ALIAS", "ACCOUNT", "ENV", "ROLE"
        ));
    }
    for account in &accounts {
        // Reachable as discovery reaches it: with the listing role where one is configured.
        let status = match broker.resolve_for_listing(account.id.as_str()) {
            Ok(target) => match broker.credentials(&target).await {
                Ok(_) => "yes".to_owned(),
                Err(e) => format!("no: {}", short_reason(&e)),
            },
            Err(e) => format!("no: {e}"),
        };
        out.push_str(&account_row(broker.config(), account, colour, &status));
    }
    print(&out)
}

fn accounts(broker: &Broker) -> anyhow::Result<ExitCode> {
    let colour = colour_on(&std::io::stdout());
    let last = broker.cache().map(|c| c.last_success()).unwrap_or_default();
    let mut out = format!(
        "{:<24} {:<12} {:<6} {:<28} LAST SUCCESS\n",
        "ALIAS", "ACCOUNT", "ENV", "ROLE"
    );
    for account in &broker.config().accounts {
        let when = last.of(account.id.as_str()).map_or_else(
            || "never".to_owned(),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        );
        out.push_str(&account_row(broker.config(), account, colour, &when));
    }
    print(&out)
}

/// One line of the `whoami` / `accounts` tables: alias (prod coloured), id, env, role, `last`.
fn account_row(
    config: &config::Config,
    account: &config::Account,
    colour: bool,
    last: &str,
) -> String {
    let env = config.environment(&account.env);
    let role = config.role_for(account).unwrap_or("-");
    let role = match config.list_role_for(account) {
        Some(listing) if listing != role => format!("{role} (lists as {listing})"),
        _ => role.to_owned(),
    };
    let alias = guardrails::paint(
        &format!("{:<24}", account.alias),
        &account.env,
        &env,
        colour,
    );
    format!(
        "{alias} {:<12} {:<6} {role:<28} {last}\n",
        account.id.as_str(),
        account.env
    )
}

fn print(text: &str) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("could not write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `credential_process` output (AWS CLI "Sourcing credentials with an external process").
fn process_json(credentials: &AssumedCredentials) -> String {
    let value = serde_json::json!({
        "Version": 1,
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key.expose(),
        "SessionToken": credentials.session_token.expose(),
        "Expiration": humantime::format_rfc3339_seconds(credentials.expiration).to_string(),
    });
    format!("{value}\n")
}

/// `export` lines for a POSIX shell; every value is quoted (a value from STS is not trusted to
/// be free of shell syntax).
fn env_exports(credentials: &AssumedCredentials) -> String {
    let quote = crate::transport::shell_quote;
    format!(
        "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\nexport \
         AWS_SESSION_TOKEN={}\nexport AWS_CREDENTIAL_EXPIRATION={}\n",
        quote(&credentials.access_key_id),
        quote(credentials.secret_access_key.expose()),
        quote(credentials.session_token.expose()),
        quote(&humantime::format_rfc3339_seconds(credentials.expiration).to_string())
    )
}

fn short_reason(err: &BrokerError) -> String {
    match err {
        BrokerError::Aws(e) => e.code().unwrap_or(e.operation).to_owned(),
        other => other.to_string(),
    }
}
