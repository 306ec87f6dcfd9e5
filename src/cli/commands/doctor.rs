//! `postern doctor [TARGET]`: runs the checks of [`crate::doctor`] in order, prints each line as
//! it is known (or one JSON object per check with `--json`), and exits 0 only when nothing
//! needed failed; otherwise with the first failure's documented code.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::aws::{AwsOptions, SsmClient, service_endpoint_from_env};
use crate::broker::{Broker, BrokerError, BrokerOptions};
use crate::cli::common::{CommonArgs, Target};
use crate::cli::errors::broker_kind;
use crate::cli::reach::{broker_options, load_config};
use crate::doctor::{self, Check, Status};
use crate::report::{ErrorKind, ExpectedError};

/// `postern doctor`.
#[derive(clap::Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Instance id (i-…, mi-…) to check; without one only credentials, endpoint and clock are
    /// checked.
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,

    /// Check role assumption into this account (alias, id or role ARN from the postern
    /// configuration) and run the remaining checks with its credentials.
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,

    /// Do not probe StartSession permission with a real session (StartSession followed at
    /// once by TerminateSession).
    #[arg(long)]
    pub no_probe: bool,

    /// The session document to probe with (default: the shell).
    #[arg(long, value_name = "NAME")]
    pub document: Option<String>,

    /// Print one JSON object per check instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// A validated `postern doctor`.
#[derive(Clone, Debug)]
pub struct DoctorPlan {
    aws: AwsOptions,
    /// The role broker's options (`--source`, `--mfa-command`, `--no-cache`), as every
    /// command that assumes roles takes them.
    broker: BrokerOptions,
    /// `--config`.
    config: Option<PathBuf>,
    target: Option<Target>,
    account: Option<String>,
    probe: bool,
    document: Option<String>,
    json: bool,
}

impl DoctorPlan {
    /// Validates the arguments.
    pub(crate) fn new(
        aws: AwsOptions,
        common: &CommonArgs,
        args: DoctorArgs,
    ) -> Result<Self, ExpectedError> {
        Ok(Self {
            aws,
            broker: broker_options(common),
            config: common.broker.config.clone(),
            target: args.target.as_deref().map(Target::parse).transpose()?,
            account: args.account,
            probe: !args.no_probe,
            document: args.document,
            json: args.json,
        })
    }
}

/// Runs the checks.
pub(crate) async fn run(plan: &DoctorPlan) -> anyhow::Result<ExitCode> {
    let mut out = Output::new(plan.json);
    if !plan.json {
        match &plan.target {
            Some(target) => {
                out.line(&format!("postern doctor: can this machine reach {target}?"))?
            }
            None => out.line("postern doctor: can this machine reach AWS Systems Manager?")?,
        }
    }
    // With configured accounts, the credentials that matter are the source identity's, which
    // every role is assumed from (`--profile` and `--source` still choose it).
    let broker = match load_config(plan.config.as_deref()) {
        Ok(config) if !config.accounts.is_empty() => Some(Broker::new(config, plan.broker.clone())),
        Ok(_) => None,
        Err(e) => {
            out.check(Check::fail(
                "configuration",
                ErrorKind::Config,
                crate::report::error_chain(&e),
                "fix the file named above (see the README's \"Accounts and roles\")",
            ))?;
            out.skip_rest(plan, "needs a valid configuration")?;
            return out.finish(plan);
        }
    };
    let options = match &broker {
        Some(broker) => {
            source_options(broker, plan.account.as_deref()).unwrap_or_else(|| plan.aws.clone())
        }
        None => plan.aws.clone(),
    };
    let (mut context, check) = match doctor::configuration(&options).await {
        Ok(found) => found,
        Err(check) => {
            out.check(check)?;
            return out.finish(plan);
        }
    };
    out.check(check)?;
    out.check(doctor::network_settings(|name| std::env::var(name).ok()))?;
    // The endpoint STS was sent to: the SDK's environment overrides (--endpoint-url is SSM's).
    let sts_endpoint = service_endpoint_from_env("STS");
    let (checks, identity) =
        doctor::credentials(&context, &context.sdk, sts_endpoint.as_deref()).await;
    for check in checks {
        out.check(check)?;
    }
    let Some(identity) = identity else {
        out.skip_rest(plan, "needs working credentials")?;
        return out.finish(plan);
    };
    let mut account = identity.account.clone();
    match &plan.account {
        None => out.check(Check::skip(
            "role assumption",
            "no --account given: the remaining checks use these credentials directly",
        ))?,
        Some(query) => match assume(broker.as_ref(), query).await {
            Ok((credentials, role_arn, role_account, cached)) => {
                context.sdk = context
                    .sdk
                    .to_builder()
                    .credentials_provider(SharedCredentialsProvider::new(credentials))
                    .build();
                account = role_account;
                out.check(Check::pass(
                    "role assumption",
                    format!(
                        "assumed {role_arn}{}",
                        if cached { " (cached credentials)" } else { "" }
                    ),
                ))?;
            }
            Err(check) => {
                out.check(check)?;
                out.skip_rest(plan, "needs the role's credentials")?;
                return out.finish(plan);
            }
        },
    }
    let Some(target) = &plan.target else {
        return out.finish(plan);
    };
    let (check, facts) =
        doctor::instance(&context, &context.sdk, target.as_str(), Some(&account)).await;
    let online = check.status == Status::Pass;
    out.check(check)?;
    match &facts {
        Some(facts) => out.check(doctor::agent_features(&facts.agent_version))?,
        None => out.check(Check::skip(
            "agent features",
            "the agent's version is unknown",
        ))?,
    }
    if !plan.probe {
        out.check(Check::skip(
            "session permission",
            "--no-probe: StartSession permission not tested",
        ))?;
    } else if !online {
        out.check(Check::skip(
            "session permission",
            "needs an online instance (a probe would only fail with TargetNotConnected)",
        ))?;
    } else {
        let ssm = SsmClient::new(&context);
        out.check(
            doctor::session_permission(&ssm, target.as_str(), plan.document.as_deref()).await,
        )?;
    }
    out.check(doctor::kms(&context, &context.sdk).await)?;
    out.finish(plan)
}

/// The options of the source identity `account`'s role is assumed from (the default source
/// without one, or when `account` is unknown: the role assumption check says why); `None` when
/// the source itself is unknown (`--source` names none), and the command line's then apply.
fn source_options(broker: &Broker, account: Option<&str>) -> Option<AwsOptions> {
    let target = account.and_then(|a| broker.resolve(a).ok());
    broker
        .source_options(target.as_ref())
        .or_else(|_| broker.source_options(None))
        .ok()
}

/// The role broker's credentials for `query`: (credentials, role ARN, account id, cached).
async fn assume(
    broker: Option<&Broker>,
    query: &str,
) -> Result<(Credentials, String, String, bool), Check> {
    let Some(broker) = broker else {
        return Err(Check::fail(
            "role assumption",
            ErrorKind::Config,
            format!("--account {query}: the configuration lists no accounts"),
            "list the account in the configuration file (see `postern accounts sync`)",
        ));
    };
    let fail = |e: BrokerError| {
        let (kind, hint) = broker_kind(&e);
        Check::fail(
            "role assumption",
            kind,
            crate::report::error_chain(&e),
            &hint,
        )
    };
    let target = broker.resolve(query).map_err(fail)?;
    let assumed = broker.credentials(&target).await.map_err(fail)?;
    let credentials = Credentials::new(
        assumed.access_key_id.clone(),
        assumed.secret_access_key.expose().to_owned(),
        Some(assumed.session_token.expose().to_owned()),
        Some(assumed.expiration),
        "postern-broker",
    );
    Ok((
        credentials,
        target.role_arn.clone(),
        target.account.id.as_str().to_owned(),
        assumed.from_cache,
    ))
}

/// Where the lines go, and what they add up to.
struct Output {
    json: bool,
    checks: Vec<Check>,
}

impl Output {
    fn new(json: bool) -> Self {
        Self {
            json,
            checks: Vec::new(),
        }
    }

    fn line(&self, text: &str) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}")?;
        stdout.flush()
    }

    fn check(&mut self, check: Check) -> anyhow::Result<()> {
        if self.json {
            self.line(&serde_json::to_string(&check)?)?;
        } else {
            self.line(&check.to_string())?;
        }
        self.checks.push(check);
        Ok(())
    }

    /// Marks the target checks that cannot run.
    fn skip_rest(&mut self, plan: &DoctorPlan, why: &str) -> anyhow::Result<()> {
        let mut names = vec!["role assumption"];
        if plan.target.is_some() {
            names.extend(["instance", "agent features", "session permission", "kms"]);
        }
        for name in names {
            if !self.checks.iter().any(|c| c.name == name) {
                self.check(Check::skip(name, why))?;
            }
        }
        Ok(())
    }

    fn finish(self, plan: &DoctorPlan) -> anyhow::Result<ExitCode> {
        let code = doctor::exit_code(&self.checks);
        if !self.json {
            let subject = plan
                .target
                .as_ref()
                .map_or_else(|| "Systems Manager".to_owned(), ToString::to_string);
            let failed = self
                .checks
                .iter()
                .filter(|c| c.status == Status::Fail)
                .count();
            if failed == 0 {
                self.line(&format!("result: {subject} is reachable"))?;
            } else {
                self.line(&format!(
                    "result: {subject} is not reachable: {failed} check(s) failed (exit code \
                     {code})"
                ))?;
            }
        }
        Ok(ExitCode::from(code))
    }
}
