//! [`Broker`]: resolves an account (alias, id or role ARN), picks and checks the source
//! identity, and returns credentials from the cache or from STS AssumeRole (through
//! GetSessionToken credentials when the source has an MFA device).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

use crate::aws::{self, AwsContext, AwsError, AwsErrorKind, AwsOptions};
use crate::broker::cache::{CachedCredentials, CredentialCache};
use crate::broker::guardrails::{self, Refusal};
use crate::broker::identity::is_assumed_role;
use crate::broker::{MfaError, MfaSource, Secret, role_arn, session_name};
use crate::config::{Account, AccountId, Config, Environment, Source};

/// Choices from the command line.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// `--profile` (overrides the source identity's profile), `--region`, `--endpoint-url`.
    pub aws: AwsOptions,
    /// `--source NAME`: a named source identity from the configuration.
    pub source: Option<String>,
    /// Where MFA codes come from.
    pub mfa: MfaSource,
    /// The cache directory; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

/// Who the source credentials belong to (STS GetCallerIdentity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The caller's ARN.
    pub arn: String,
    /// Its account.
    pub account: String,
    /// The label of the source in postern's terms (`default`, a source name, `profile P`).
    pub source: String,
}

/// A role to assume, with the account it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleTarget {
    /// The account (from the configuration, or made up for an unlisted id or role ARN).
    pub account: Account,
    /// The role's ARN.
    pub role_arn: String,
}

/// Credentials in a target account.
#[derive(Clone, Debug)]
pub struct AssumedCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token.
    pub session_token: Secret,
    /// When they lapse.
    pub expiration: SystemTime,
    /// Whether they came from the cache.
    pub from_cache: bool,
    /// Whether the role was assumed from an assumed-role session (IAM role chaining): such a
    /// role session lasts at most an hour, and so may a console session made from it.
    pub role_chained: bool,
}

/// Why no credentials could be had.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Not an alias, id or role ARN postern knows.
    #[error("no account `{0}` in the configuration")]
    UnknownAccount(String),
    /// Neither the account nor the configuration names a role.
    #[error("no role to assume in account {0}")]
    NoRole(String),
    /// `--source NAME` or the configuration names a source that does not exist.
    #[error("no source identity named `{0}` in the configuration")]
    UnknownSource(String),
    /// A guardrail refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// An STS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// No MFA code.
    #[error(transparent)]
    Mfa(#[from] MfaError),
}

/// The role broker of one invocation. Shared by reference (`Arc<Broker>`) between concurrent
/// discovery tasks and credential providers: source identities load once, behind a lock that
/// also keeps MFA prompts to one; AssumeRole calls run in parallel.
#[derive(Debug)]
pub struct Broker {
    config: Config,
    options: BrokerOptions,
    cache: Option<CredentialCache>,
    sources: tokio::sync::Mutex<HashMap<String, SourceSession>>,
    /// Credentials this process got, by (source ARN, role ARN): asked again (by each SDK
    /// client of a discovery scope, say), they are answered without a file read.
    held: Mutex<HashMap<(String, String), AssumedCredentials>>,
    /// Success times to record, and the accounts already recorded by this process.
    successes: Mutex<Successes>,
    /// Held by whoever writes the pending success times.
    success_writer: tokio::sync::Mutex<()>,
}

/// Success times of accounts, by [`Broker::record_success`].
#[derive(Debug, Default)]
struct Successes {
    /// Accounts recorded (or pending) in this process.
    recorded: HashSet<String>,
    /// Times not written yet.
    pending: Vec<(String, SystemTime)>,
}

impl Broker {
    /// A broker over `config`.
    pub fn new(config: Config, options: BrokerOptions) -> Self {
        let cache = options.cache_dir.as_deref().map(CredentialCache::new);
        Self {
            config,
            options,
            cache,
            sources: tokio::sync::Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            successes: Mutex::new(Successes::default()),
            success_writer: tokio::sync::Mutex::new(()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The cache, when enabled.
    pub fn cache(&self) -> Option<&CredentialCache> {
        self.cache.as_ref()
    }

    /// Resolves an account alias, an account id or a role ARN.
    pub fn resolve(&self, query: &str) -> Result<RoleTarget, BrokerError> {
        self.resolve_with(query, Config::role_for)
    }

    /// Resolves an account as [`Broker::resolve`] does, to the role discovery and `whoami`
    /// assume there: its `list_role` where one is configured, else the session role.
    pub fn resolve_for_listing(&self, query: &str) -> Result<RoleTarget, BrokerError> {
        self.resolve_with(query, Config::list_role_for)
    }

    fn resolve_with(
        &self,
        query: &str,
        role_of: for<'a> fn(&'a Config, &'a Account) -> Option<&'a str>,
    ) -> Result<RoleTarget, BrokerError> {
        if let Some(rest) = query.strip_prefix("arn:aws:iam::")
            && let Some((id, _)) = rest.split_once(":role/")
            && let Some(id) = AccountId::parse(id)
        {
            let account = self
                .config
                .account(id.as_str())
                .cloned()
                .unwrap_or_else(|| unlisted(id));
            return Ok(RoleTarget {
                account,
                role_arn: query.to_owned(),
            });
        }
        let account = match (self.config.account(query), AccountId::parse(query)) {
            (Some(account), _) => account.clone(),
            (None, Some(id)) => unlisted(id),
            (None, None) => return Err(BrokerError::UnknownAccount(query.to_owned())),
        };
        let role = role_of(&self.config, &account)
            .ok_or_else(|| BrokerError::NoRole(account.alias.clone()))?;
        Ok(RoleTarget {
            role_arn: role_arn(account.id.as_str(), role),
            account,
        })
    }

    /// The environment settings of `target`.
    pub fn environment(&self, target: &RoleTarget) -> Environment {
        self.config.environment(&target.account.env)
    }

    /// The label of the source identity `target` is reached from, after the guardrail check.
    pub fn source_for(&self, target: &RoleTarget) -> Result<String, BrokerError> {
        let label = self.source_label(Some(&target.account))?;
        let env = self.environment(target);
        let allowed = if label == DEFAULT_SOURCE {
            self.config.source.environments.as_slice()
        } else {
            self.config
                .sources
                .get(&label)
                .map_or(&[][..], |s| s.environments.as_slice())
        };
        guardrails::check_source(
            &target.account.alias,
            &target.account.env,
            &env,
            &label,
            allowed,
        )?;
        Ok(label)
    }

    /// The AWS options the source identity `target` is reached from (or the default source,
    /// with no target) is loaded with: its profile, the command line's region, else its own,
    /// else the configuration's first. What `postern doctor` checks the credentials of.
    pub fn source_options(&self, target: Option<&RoleTarget>) -> Result<AwsOptions, BrokerError> {
        let label = self.source_label(target.map(|t| &t.account))?;
        Ok(source_options(
            &self.source_spec(&label),
            &self.options.aws,
            &self.config,
        ))
    }

    /// The identity of the source `target` would use, or of the default source.
    pub async fn identity(
        &self,
        target: Option<&RoleTarget>,
    ) -> Result<CallerIdentity, BrokerError> {
        let label = self.source_label(target.map(|t| &t.account))?;
        let mut sources = self.sources.lock().await;
        Ok(self.session(&mut sources, &label).await?.identity.clone())
    }

    /// The AWS context of the source identity itself (`--source`, `--profile`, else the
    /// default source), for calls made as the source (Organizations ListAccounts).
    pub async fn source_context(&self) -> Result<(AwsContext, CallerIdentity), BrokerError> {
        let label = self.source_label(None)?;
        let mut sources = self.sources.lock().await;
        let session = self.session(&mut sources, &label).await?;
        Ok((session.context.clone(), session.identity.clone()))
    }

    /// Credentials for `target`: from this process's copy or the cache when still valid for
    /// the refresh margin, else from AssumeRole (asking for one MFA code when the source has a
    /// device and no valid GetSessionToken session is cached).
    ///
    /// Many accounts ask at once (discovery): the source lock is held only to load the source
    /// and to get the STS client, never across a file read or write, and the cache files are
    /// read and written off the async workers. An account's success time is recorded once
    /// per process.
    pub async fn credentials(
        &self,
        target: &RoleTarget,
    ) -> Result<AssumedCredentials, BrokerError> {
        let label = self.source_for(target)?;
        let requested = self.config.duration;
        let now = SystemTime::now();
        let source_arn = {
            let mut sources = self.sources.lock().await;
            self.session(&mut sources, &label)
                .await?
                .identity
                .arn
                .clone()
        };
        let key = (source_arn.clone(), target.role_arn.clone());
        if let Some(held) = self.held_copy(&key, now) {
            return Ok(held);
        }
        if let Some(cached) = self.load_cached(&source_arn, &target.role_arn, now).await {
            tracing::debug!(role = %target.role_arn, "credentials cache hit");
            self.record_success(&target.account, now).await;
            return Ok(self.keep(key, cached, true, is_assumed_role(&source_arn)));
        }
        // Under the lock: the STS client (asking for at most one MFA code). The AssumeRole
        // call itself runs unlocked.
        let (client, region, profile) = {
            let mut sources = self.sources.lock().await;
            let session = self.session(&mut sources, &label).await?;
            let client = session
                .sts_client(self.cache.as_ref(), &self.options.mfa)
                .await?;
            (
                client,
                session.context.region.clone(),
                session.context.profile.clone(),
            )
        };
        tracing::debug!(role = %target.role_arn, "credentials cache miss");
        let chained = is_assumed_role(&source_arn);
        let duration = if chained && requested > CHAINING_CAP {
            tracing::info!(
                requested = requested.as_secs(),
                "role chaining: AssumeRole duration capped at one hour"
            );
            CHAINING_CAP
        } else {
            requested
        };
        let output = client
            .assume_role()
            .role_arn(&target.role_arn)
            .role_session_name(session_name(&source_arn))
            .duration_seconds(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX))
            .set_external_id(target.account.external_id.clone())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("AssumeRole", &region, profile.as_deref(), e))?;
        let issued = convert(
            output.credentials,
            "AssumeRole",
            &region,
            profile.as_deref(),
        )?;
        self.store_cached(&source_arn, &target.role_arn, &issued)
            .await;
        self.record_success(&target.account, now).await;
        Ok(self.keep(key, issued, false, chained))
    }

    /// This process's copy of the credentials of `key` (source ARN, role ARN), when still
    /// valid for the refresh margin.
    fn held_copy(&self, key: &(String, String), now: SystemTime) -> Option<AssumedCredentials> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(key)
            .filter(|c| c.expiration >= now + REFRESH_MARGIN)
            .map(|c| AssumedCredentials {
                from_cache: true,
                ..c.clone()
            })
    }

    /// Keeps `credentials` for `key` in this process and returns them.
    fn keep(
        &self,
        key: (String, String),
        credentials: CachedCredentials,
        from_cache: bool,
        role_chained: bool,
    ) -> AssumedCredentials {
        let assumed = AssumedCredentials {
            access_key_id: credentials.access_key_id,
            secret_access_key: credentials.secret_access_key,
            session_token: credentials.session_token,
            expiration: credentials.expiration,
            from_cache,
            role_chained,
        };
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, assumed.clone());
        assumed
    }

    /// The cached credentials of `role_arn` from `source_arn`, read off the async workers.
    async fn load_cached(
        &self,
        source_arn: &str,
        role_arn: &str,
        now: SystemTime,
    ) -> Option<CachedCredentials> {
        let cache = self.cache.clone()?;
        let (source, role) = (source_arn.to_owned(), role_arn.to_owned());
        tokio::task::spawn_blocking(move || cache.load(&source, &role, now, REFRESH_MARGIN))
            .await
            .ok()
            .flatten()
    }

    /// Writes `issued` to the cache, off the async workers; a failure is a warning.
    async fn store_cached(&self, source_arn: &str, role_arn: &str, issued: &CachedCredentials) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        let (source, role, issued) = (source_arn.to_owned(), role_arn.to_owned(), issued.clone());
        let stored =
            tokio::task::spawn_blocking(move || cache.store(&source, &role, &issued)).await;
        if let Ok(Err(e)) = stored {
            tracing::warn!(error = %e, "could not write the credentials cache");
        }
    }

    /// Records that `account` gave credentials at `now`, once per process, off the async
    /// workers. Each write is a locked, synced read-modify-write of one file every account
    /// shares: accounts that succeed while one is written are written together by the next,
    /// rather than one after the other. Returns once `account`'s time is written.
    async fn record_success(&self, account: &Account, now: SystemTime) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        {
            let mut successes = self
                .successes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !successes.recorded.insert(account.id.as_str().to_owned()) {
                return;
            }
            successes
                .pending
                .push((account.id.as_str().to_owned(), now));
        }
        // Whoever holds the writer writes every pending time, ours too when it was pending
        // then; the queue is empty for those that come after.
        let _writer = self.success_writer.lock().await;
        let batch = std::mem::take(
            &mut self
                .successes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pending,
        );
        if batch.is_empty() {
            return;
        }
        let written = tokio::task::spawn_blocking(move || cache.record_successes(&batch)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "could not record the last success time");
        }
    }

    /// `default`, a source name, or `profile NAME` for an explicit `--profile`.
    fn source_label(&self, account: Option<&Account>) -> Result<String, BrokerError> {
        if let Some(name) = &self.options.source {
            if !self.config.sources.contains_key(name) {
                return Err(BrokerError::UnknownSource(name.clone()));
            }
            return Ok(name.clone());
        }
        if let Some(profile) = &self.options.aws.profile {
            // A named source with that profile is that source.
            let named = self
                .config
                .sources
                .iter()
                .find(|(_, s)| s.profile.as_deref() == Some(profile));
            return Ok(match named {
                Some((name, _)) => name.clone(),
                None => format!("profile {profile}"),
            });
        }
        match account.and_then(|a| self.config.source_name_for(a)) {
            Some(name) if self.config.sources.contains_key(&name) => Ok(name),
            Some(name) => Err(BrokerError::UnknownSource(name)),
            None => Ok(DEFAULT_SOURCE.to_owned()),
        }
    }

    /// The loaded source `label`, resolving its identity on first use.
    async fn session<'s>(
        &self,
        sources: &'s mut HashMap<String, SourceSession>,
        label: &str,
    ) -> Result<&'s mut SourceSession, BrokerError> {
        if !sources.contains_key(label) {
            let spec = self.source_spec(label);
            let session = SourceSession::load(label, spec, &self.options.aws, &self.config).await?;
            sources.insert(label.to_owned(), session);
        }
        // Inserted just above when missing.
        Ok(sources
            .get_mut(label)
            .expect("the source session was just inserted"))
    }

    fn source_spec(&self, label: &str) -> Source {
        if label == DEFAULT_SOURCE {
            let mut source = self.config.source.clone();
            if self.options.aws.profile.is_some() {
                source.profile.clone_from(&self.options.aws.profile);
            }
            return source;
        }
        if let Some(source) = self.config.sources.get(label) {
            return source.clone();
        }
        Source {
            profile: self.options.aws.profile.clone(),
            ..self.config.source.clone()
        }
    }
}

/// A loaded source identity.
#[derive(Debug)]
struct SourceSession {
    context: AwsContext,
    identity: CallerIdentity,
    mfa_serial: Option<String>,
    /// GetSessionToken credentials, once obtained.
    session_credentials: Option<CachedCredentials>,
}

/// The options a source identity of `spec` is loaded with: see [`Broker::source_options`].
fn source_options(spec: &Source, cli: &AwsOptions, config: &Config) -> AwsOptions {
    AwsOptions {
        profile: spec.profile.clone(),
        region: cli
            .region
            .clone()
            .or(spec.region.clone())
            .or_else(|| config.regions.first().cloned()),
        endpoint_url: cli.endpoint_url.clone(),
        credentials: None,
    }
}

impl SourceSession {
    async fn load(
        label: &str,
        spec: Source,
        cli: &AwsOptions,
        config: &Config,
    ) -> Result<Self, BrokerError> {
        let mut options = source_options(&spec, cli, config);
        let context = match aws::load(&options).await {
            Ok(context) => context,
            Err(e) if e.kind == AwsErrorKind::Configuration => {
                // STS answers in every region; the source needs none of its own.
                options.region = Some(FALLBACK_REGION.to_owned());
                aws::load(&options).await?
            }
            Err(e) => return Err(e.into()),
        };
        let output = aws_sdk_sts::Client::new(&context.sdk)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk(
                    "GetCallerIdentity",
                    &context.region,
                    context.profile.as_deref(),
                    e,
                )
            })?;
        let identity = CallerIdentity {
            arn: output.arn.unwrap_or_default(),
            account: output.account.unwrap_or_default(),
            source: label.to_owned(),
        };
        tracing::debug!(source = label, arn = %identity.arn, "source identity");
        Ok(Self {
            context,
            identity,
            mfa_serial: spec.mfa_serial,
            session_credentials: None,
        })
    }

    /// The STS client AssumeRole goes through: the source's own credentials, or MFA-backed
    /// GetSessionToken credentials (cached, asking for a code only when none are valid).
    async fn sts_client(
        &mut self,
        cache: Option<&CredentialCache>,
        mfa: &MfaSource,
    ) -> Result<aws_sdk_sts::Client, BrokerError> {
        let Some(serial) = self.mfa_serial.clone() else {
            return Ok(aws_sdk_sts::Client::new(&self.context.sdk));
        };
        let key = format!("{SESSION_TOKEN_KEY}{serial}");
        let now = SystemTime::now();
        let valid = self
            .session_credentials
            .clone()
            .filter(|c| c.expiration > now + REFRESH_MARGIN)
            .or_else(|| cache.and_then(|c| c.load(&self.identity.arn, &key, now, REFRESH_MARGIN)));
        let credentials = match valid {
            Some(credentials) => credentials,
            None => {
                let code = mfa.code(&serial).await?;
                let output = aws_sdk_sts::Client::new(&self.context.sdk)
                    .get_session_token()
                    .serial_number(&serial)
                    .token_code(code.expose())
                    .send()
                    .await
                    .map_err(|e| self.aws_error("GetSessionToken", e))?;
                let issued = convert(
                    output.credentials,
                    "GetSessionToken",
                    &self.context.region,
                    self.context.profile.as_deref(),
                )?;
                if let Some(cache) = cache
                    && let Err(e) = cache.store(&self.identity.arn, &key, &issued)
                {
                    tracing::warn!(error = %e, "could not write the credentials cache");
                }
                issued
            }
        };
        self.session_credentials = Some(credentials.clone());
        let provider = Credentials::new(
            credentials.access_key_id,
            credentials.secret_access_key.expose(),
            Some(credentials.session_token.expose().to_owned()),
            Some(credentials.expiration),
            "postern-mfa-session",
        );
        let config = aws_sdk_sts::config::Builder::from(&self.context.sdk)
            .credentials_provider(provider)
            .build();
        Ok(aws_sdk_sts::Client::from_conf(config))
    }

    fn aws_error<E, R>(
        &self,
        operation: &'static str,
        err: aws_sdk_sts::error::SdkError<E, R>,
    ) -> AwsError
    where
        E: aws_sdk_sts::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
        aws_sdk_sts::error::SdkError<E, R>: aws_types::request_id::RequestId,
    {
        AwsError::from_sdk(
            operation,
            &self.context.region,
            self.context.profile.as_deref(),
            err,
        )
    }
}

fn convert(
    credentials: Option<aws_sdk_sts::types::Credentials>,
    operation: &'static str,
    region: &str,
    profile: Option<&str>,
) -> Result<CachedCredentials, BrokerError> {
    let missing = || {
        AwsError::local(
            AwsErrorKind::Service,
            operation,
            Some(region.to_owned()),
            profile.map(str::to_owned),
            "the response carried no usable credentials",
        )
    };
    let credentials = credentials.ok_or_else(missing)?;
    let expiration = SystemTime::try_from(credentials.expiration).map_err(|_| missing())?;
    Ok(CachedCredentials {
        access_key_id: credentials.access_key_id,
        secret_access_key: Secret::new(credentials.secret_access_key),
        session_token: Secret::new(credentials.session_token),
        expiration,
    })
}

/// An account the configuration does not list: known by id, environment unknown.
fn unlisted(id: AccountId) -> Account {
    Account {
        alias: id.as_str().to_owned(),
        id,
        env: UNKNOWN_ENV.to_owned(),
        role: None,
        list_role: None,
        regions: Vec::new(),
        source: None,
        external_id: None,
        push_key: None,
    }
}

/// Credentials expiring sooner than this are refreshed first (botocore refreshes 10-15 min
/// early).
const REFRESH_MARGIN: Duration = Duration::from_secs(600);
/// AssumeRole from an assumed-role session lasts at most one hour (IAM "role chaining").
const CHAINING_CAP: Duration = Duration::from_secs(3600);
const DEFAULT_SOURCE: &str = "default";
const UNKNOWN_ENV: &str = "unknown";
const SESSION_TOKEN_KEY: &str = "session-token:";
const FALLBACK_REGION: &str = "us-east-1";
