//! How a command reaches AWS: one identity (`--profile`, the default chain), or the role broker
//! over the configured accounts. It builds the discovery scopes (account x region), gives each
//! scope its account's credentials, and, for a session on an instance of a configured account,
//! applies that account's guardrails and hands the session the assumed-role credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::retry::RetryConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;
use tokio::sync::OnceCell;

use crate::aws::{AwsContext, AwsErrorKind, AwsOptions, CredentialsOverride};
use crate::broker::guardrails::{self, Confirmation};
use crate::broker::{Broker, BrokerCredentials, BrokerError, BrokerOptions, MfaSource};
use crate::cli::common::CommonArgs;
use crate::config;
use crate::discovery::{Scope, ScopeConfigs, SourceError};
use crate::report::{ErrorKind, ExpectedError};

/// The identities a command may use.
#[derive(Clone, Debug)]
pub(crate) struct Reach {
    /// The command line's AWS choices.
    pub aws: AwsOptions,
    /// The broker, when the configuration lists accounts.
    pub broker: Option<Arc<Broker>>,
    /// `--yes`.
    pub yes: bool,
}

/// Discovery scopes and the accounts left out of them.
#[derive(Debug, Default)]
pub(crate) struct Scopes {
    /// What to list.
    pub scopes: Vec<Scope>,
    /// Accounts skipped because the source identity in use may not reach them (alias, why).
    pub skipped: Vec<(String, String)>,
}

/// [`ScopeConfigs`] through the broker: each scope runs with its account's role credentials,
/// assumed once per account however many regions list at once.
#[derive(Debug)]
pub(crate) struct BrokerScopes {
    broker: Arc<Broker>,
    base: SdkConfig,
    providers: Mutex<HashMap<String, Arc<ProviderCell>>>,
}

type ProviderCell = OnceCell<Result<SharedCredentialsProvider, (AwsErrorKind, String)>>;

impl Reach {
    /// Loads the configuration; the broker exists only when it lists accounts.
    pub(crate) fn new(common: &CommonArgs) -> Result<Self, ExpectedError> {
        let config = load_config(common.broker.config.as_deref())?;
        let options = broker_options(common);
        let aws = options.aws.clone();
        let broker = (!config.accounts.is_empty()).then(|| Arc::new(Broker::new(config, options)));
        Ok(Self {
            aws,
            broker,
            yes: common.broker.yes,
        })
    }

    /// The scopes over `regions`: with a broker, every configured account (or only `account`,
    /// an alias or id) in the regions given, else the account's, else the configuration's,
    /// else `default_region`.
    pub(crate) fn scopes(
        &self,
        context: &AwsContext,
        regions: &[String],
        account: Option<&str>,
    ) -> Scopes {
        // With the SDK's region given, no scope lacks a region.
        self.scopes_before_sdk(
            context.profile.as_deref(),
            Some(&context.region),
            regions,
            account,
        )
        .unwrap_or_default()
    }

    /// [`Self::scopes`] without the loaded SDK configuration: `profile` as in effect
    /// ([`crate::aws::profile_in_effect`]) and the SDK's region when known. `None` when some
    /// scope would take the SDK's region and it is not given (neither the command line nor
    /// the configuration names one): the caller loads the configuration then.
    pub(crate) fn scopes_before_sdk(
        &self,
        profile: Option<&str>,
        sdk_region: Option<&str>,
        regions: &[String],
        account: Option<&str>,
    ) -> Option<Scopes> {
        let explicit: Vec<String> = if regions.is_empty() {
            self.aws.region.iter().cloned().collect()
        } else {
            regions.to_vec()
        };
        // Listings are cached per endpoint: the emulator and AWS never share one.
        let endpoints = crate::aws::endpoint_overrides(self.aws.endpoint_url.as_deref());
        let Some(broker) = &self.broker else {
            let label = profile_label(profile, endpoints.as_deref());
            let regions = if explicit.is_empty() {
                vec![sdk_region?.to_owned()]
            } else {
                explicit
            };
            return Some(Scopes {
                scopes: regions
                    .into_iter()
                    .map(|region| Scope {
                        account: label.clone(),
                        alias: profile.unwrap_or("default").to_owned(),
                        env: None,
                        region,
                    })
                    .collect(),
                skipped: Vec::new(),
            });
        };
        let config = broker.config();
        let mut out = Scopes::default();
        for entry in &config.accounts {
            if account.is_some_and(|a| a != entry.alias && a != entry.id.as_str()) {
                continue;
            }
            let reachable = broker
                .resolve(entry.id.as_str())
                .and_then(|target| broker.source_for(&target));
            if let Err(e) = reachable {
                out.skipped.push((entry.alias.clone(), e.to_string()));
                continue;
            }
            let regions = if !explicit.is_empty() {
                explicit.clone()
            } else if !entry.regions.is_empty() {
                entry.regions.clone()
            } else if !config.regions.is_empty() {
                config.regions.clone()
            } else {
                vec![sdk_region?.to_owned()]
            };
            for region in regions {
                out.scopes.push(Scope {
                    account: account_key(entry.id.as_str(), endpoints.as_deref()),
                    alias: entry.alias.clone(),
                    env: Some(entry.env.clone()),
                    region,
                });
            }
        }
        Some(out)
    }

    /// The credentials a session on an instance of `account` (an id or alias) runs with: `None`
    /// outside the broker (the command line's identity then), else the role's, after the
    /// account's guardrails (confirmation, `--reason`, source identity). With a broker, an
    /// account it does not list is refused: never the command line's identity instead.
    pub(crate) async fn session_credentials(
        &self,
        account: &str,
        reason: Option<&str>,
    ) -> Result<Option<CredentialsOverride>, SessionRefused> {
        self.check_guardrails(account, reason, None)
            .map_err(|refused| *refused)?;
        self.account_credentials(account).await
    }

    /// The account's guardrails (confirmation, `--reason`, source identity) for sessions on
    /// `instances` of its instances (`None`: one session, the prompt names no count). Nothing
    /// to check outside the broker; an account the broker does not list is refused.
    pub(crate) fn check_guardrails(
        &self,
        account: &str,
        reason: Option<&str>,
        instances: Option<usize>,
    ) -> Result<(), Box<SessionRefused>> {
        let Some(broker) = &self.broker else {
            return Ok(());
        };
        let (target, described) = self.session_target(broker, account)?;
        let env = broker.environment(&target);
        let confirmation = Confirmation::from_terminal(self.yes);
        let check = || {
            guardrails::check_sessions(
                &target.account.alias,
                &target.account.env,
                &env,
                confirmation,
                reason,
                instances,
            )
        };
        // The confirmation may read the terminal. A multi-thread runtime's worker hands its
        // tasks on first; a one-session command's runtime has nothing that must run meanwhile.
        let on_workers = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if on_workers {
            tokio::task::block_in_place(check)
        } else {
            check()
        }
        .map_err(|e| {
            Box::new(SessionRefused {
                target: described,
                error: e.into(),
            })
        })
    }

    /// The role credentials for sessions in `account` once its guardrails passed ([`Self::check_guardrails`]):
    /// `None` outside the broker. Asked now, so that an MFA prompt or a refusal comes before
    /// StartSession.
    pub(crate) async fn account_credentials(
        &self,
        account: &str,
    ) -> Result<Option<CredentialsOverride>, SessionRefused> {
        let Some(broker) = &self.broker else {
            return Ok(None);
        };
        let (target, described) = self
            .session_target(broker, account)
            .map_err(|refused| *refused)?;
        broker
            .credentials(&target)
            .await
            .map_err(|error| SessionRefused {
                target: described,
                error,
            })?;
        Ok(Some(
            BrokerCredentials::new(Arc::clone(broker), target).into_override(),
        ))
    }

    /// The broker's session target in `account`, with its description for messages.
    fn session_target(
        &self,
        broker: &Broker,
        account: &str,
    ) -> Result<(crate::broker::RoleTarget, String), Box<SessionRefused>> {
        if broker.config().account(account).is_none() {
            return Err(Box::new(SessionRefused {
                target: format!("account {account}"),
                error: BrokerError::UnknownAccount(account.to_owned()),
            }));
        }
        let target = broker.resolve(account).map_err(|e| {
            Box::new(SessionRefused {
                target: account.to_owned(),
                error: e,
            })
        })?;
        let described = format!("account {}, role {}", target.account.alias, target.role_arn);
        Ok((target, described))
    }
}

/// A session the broker would not give credentials for.
#[derive(Debug)]
pub(crate) struct SessionRefused {
    /// The account and role, as messages name them.
    pub target: String,
    /// Why.
    pub error: BrokerError,
}

impl BrokerScopes {
    /// Scopes through `broker`, on top of `base` (endpoint, retry and timeout settings).
    pub(crate) fn new(broker: Arc<Broker>, base: SdkConfig) -> Self {
        Self {
            broker,
            base,
            providers: Mutex::new(HashMap::new()),
        }
    }

    async fn provider(
        &self,
        scope: &Scope,
    ) -> Result<SharedCredentialsProvider, (AwsErrorKind, String)> {
        let id = scope
            .account
            .split('-')
            .next()
            .unwrap_or_default()
            .to_owned();
        let cell = {
            // Held only to find or insert the cell; never across an await.
            let mut providers = self.providers.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(providers.entry(id.clone()).or_default())
        };
        cell.get_or_init(|| async {
            let target = self
                .broker
                .resolve_for_listing(&id)
                .map_err(|e| (AwsErrorKind::Configuration, e.to_string()))?;
            self.broker
                .credentials(&target)
                .await
                .map_err(|e| (broker_error_kind(&e), describe_broker_error(&e)))?;
            Ok(SharedCredentialsProvider::new(BrokerCredentials::new(
                Arc::clone(&self.broker),
                target,
            )))
        })
        .await
        .clone()
    }
}

impl ScopeConfigs for BrokerScopes {
    async fn config(&self, scope: &Scope) -> Result<SdkConfig, SourceError> {
        let provider = self
            .provider(scope)
            .await
            .map_err(|(kind, message)| SourceError {
                kind,
                ..SourceError::local(scope, "AssumeRole", message)
            })?;
        Ok(self
            .base
            .to_builder()
            .region(Region::new(scope.region.clone()))
            .credentials_provider(provider)
            .retry_config(RetryConfig::disabled())
            .build())
    }
}

/// What kind of failure a broker error is, as an AWS call's would be classified.
fn broker_error_kind(err: &BrokerError) -> AwsErrorKind {
    match err {
        BrokerError::Aws(e) => e.kind,
        BrokerError::Mfa(_) => AwsErrorKind::Credentials,
        BrokerError::UnknownAccount(_)
        | BrokerError::NoRole(_)
        | BrokerError::UnknownSource(_)
        | BrokerError::Refused(_) => AwsErrorKind::Configuration,
    }
}

/// A broker error in one line for a warning: the AWS code and message when there is one.
fn describe_broker_error(err: &BrokerError) -> String {
    match err {
        BrokerError::Aws(e) => match (e.code(), std::error::Error::source(e)) {
            (Some(code), _) => format!("{code}: {e}"),
            (None, Some(cause)) => format!("{e}: {cause}"),
            (None, None) => e.to_string(),
        },
        other => other.to_string(),
    }
}

/// The cache key of an account's scopes: its id, plus a digest of the endpoint when one is set
/// (the emulator and AWS must not share a listing). The id comes first, up to the first `-`.
pub(crate) fn account_key(id: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(endpoint) => format!("{id}-{}", endpoint_digest(endpoint)),
        None => id.to_owned(),
    }
}

/// The cache key of the single-profile identity: the profile name, plus a digest of the
/// endpoint when one is set.
pub(crate) fn profile_label(profile: Option<&str>, endpoint: Option<&str>) -> String {
    let profile = profile.unwrap_or("default");
    match endpoint {
        Some(endpoint) => format!("profile-{profile}-{}", endpoint_digest(endpoint)),
        None => format!("profile-{profile}"),
    }
}

fn endpoint_digest(endpoint: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(endpoint.as_bytes());
    hex::encode(digest)[..12].to_owned()
}

/// The broker options of `common`'s flags.
pub(crate) fn broker_options(common: &CommonArgs) -> BrokerOptions {
    let args = &common.broker;
    BrokerOptions {
        aws: AwsOptions {
            profile: common.profile.clone(),
            region: common.region.clone(),
            endpoint_url: common.endpoint_url.clone(),
            credentials: None,
        },
        source: args.source.clone(),
        mfa: args
            .mfa_command
            .clone()
            .map_or(MfaSource::Terminal, MfaSource::Command),
        cache_dir: if args.no_cache {
            None
        } else {
            config::cache_dir()
        },
    }
}

/// Loads the configuration file `path` (default when `None`), as an error for `report`.
pub(crate) fn load_config(path: Option<&std::path::Path>) -> Result<config::Config, ExpectedError> {
    config::load(path).map_err(|e| {
        let hint = match &e {
            config::ConfigError::Read { .. } => "check --config and POSTERN_CONFIG",
            config::ConfigError::Invalid { .. } => {
                "see the configuration example in the README (\"Accounts and roles\")"
            }
        };
        ExpectedError::new(ErrorKind::Config, "the configuration file is not valid")
            .hint(hint)
            .source(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_separate_endpoints() {
        assert_eq!(profile_label(None, None), "profile-default");
        let a = profile_label(Some("p"), Some("http://127.0.0.1:1"));
        let b = profile_label(Some("p"), Some("http://127.0.0.1:2"));
        assert_ne!(a, b);
        assert!(a.starts_with("profile-p-"));
        assert_eq!(account_key("318402957716", None), "318402957716");
        let key = account_key("318402957716", Some("http://127.0.0.1:1"));
        assert_eq!(key.split('-').next(), Some("318402957716"));
        assert_ne!(key, account_key("318402957716", Some("http://127.0.0.1:2")));
    }

    fn reach(config: &str) -> Reach {
        let config = config::parse(std::path::Path::new("config.toml"), config).unwrap();
        let options = BrokerOptions {
            aws: AwsOptions::default(),
            source: None,
            mfa: MfaSource::Terminal,
            cache_dir: None,
        };
        Reach {
            aws: options.aws.clone(),
            broker: (!config.accounts.is_empty()).then(|| Arc::new(Broker::new(config, options))),
            yes: false,
        }
    }

    #[test]
    fn scopes_take_the_sdk_region_only_when_nothing_names_one() {
        let regions = ["eu-west-1".to_owned()];
        let single = reach("");
        assert!(single.scopes_before_sdk(None, None, &[], None).is_none());
        let named = single
            .scopes_before_sdk(Some("ops"), None, &regions, None)
            .unwrap();
        assert_eq!(named.scopes.len(), 1);
        assert_eq!(
            (
                named.scopes[0].alias.as_str(),
                named.scopes[0].region.as_str()
            ),
            ("ops", "eu-west-1")
        );
        let sdk = single
            .scopes_before_sdk(None, Some("us-east-2"), &[], None)
            .unwrap();
        assert_eq!(sdk.scopes[0].region, "us-east-2");

        let account = "[[accounts]]\nid = \"318402957716\"\nalias = \"acme-dev\"\nenv = \"dev\"\n";
        let configured = reach(&format!(
            "role = \"PosternAccess\"\nregions = [\"ap-south-1\"]\n{account}"
        ));
        let scopes = configured.scopes_before_sdk(None, None, &[], None).unwrap();
        let regions: Vec<&str> = scopes.scopes.iter().map(|s| s.region.as_str()).collect();
        assert_eq!(regions, ["ap-south-1"]);
        let unplaced = reach(&format!("role = \"PosternAccess\"\n{account}"));
        assert!(unplaced.scopes_before_sdk(None, None, &[], None).is_none());
        let scopes = unplaced
            .scopes_before_sdk(None, Some("us-east-2"), &[], None)
            .unwrap();
        assert_eq!(scopes.scopes[0].region, "us-east-2");
    }
}
