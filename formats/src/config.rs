//! The configuration schema, its parsing and validation (reading the files is the `postern`
//! package's `config::load`).
//!
//! Serde does the shape (unknown keys are errors); the spans `toml` keeps give the line, and a
//! walk over the spanned document gives the dotted key (`accounts[1].env`) of any error.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A loaded configuration. [`Config::default`] is "no configuration": the source identity is
/// whatever `--profile`, `AWS_PROFILE` or the environment give, as in the AWS CLI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    /// The default source identity.
    pub source: Source,
    /// Named source identities (`[sources.NAME]`), for accounts or environments needing another.
    pub sources: BTreeMap<String, Source>,
    /// Role name assumed in accounts that name none.
    pub role: Option<String>,
    /// Role name discovery and `whoami` assume (read-only listing), in accounts that name
    /// none; without one they use the session role.
    pub list_role: Option<String>,
    /// Default regions.
    pub regions: Vec<String>,
    /// Requested AssumeRole duration (capped at one hour when chaining roles).
    pub duration: Duration,
    /// Environment settings (`[environments.NAME]`).
    pub environments: BTreeMap<String, Environment>,
    /// Accounts: the config file's, then those of the accounts file not already listed.
    pub accounts: Vec<Account>,
    /// Named tunnel sets (`[tunnels.NAME]`): the config file's, then those of the tunnels file
    /// beside it.
    pub tunnels: BTreeMap<String, Tunnel>,
    /// `push_key = true`: `postern ssh` and `postern ssh-config` push an ephemeral key through
    /// EC2 Instance Connect, as with `--push-key`.
    pub push_key: bool,
}

/// A named tunnel set (`[tunnels.NAME]` in the configuration or in `tunnels.toml` beside it),
/// started in the background by `postern up NAME`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    /// Any TARGET `postern forward` takes (an id, a Name tag, NAME@ACCOUNT-ALIAS, …).
    pub target: String,
    /// `-L` specs (`[BIND:]LOCAL:[HOST:]PORT`).
    #[serde(default)]
    pub forward: Vec<String>,
    /// `-D` specs (`[BIND:]PORT`).
    #[serde(default)]
    pub socks: Vec<String>,
    /// StartSession reason.
    pub reason: Option<String>,
    /// `--sessions`: `auto` (the default) or a number.
    pub sessions: Option<String>,
    /// The file that defines it.
    #[serde(skip)]
    pub file: PathBuf,
}

/// Where the credentials postern starts from come from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// AWS profile (any kind aws-config understands: keys, SSO, credential_process, roles);
    /// none means `AWS_PROFILE` or environment credentials.
    pub profile: Option<String>,
    /// MFA device (ARN or serial): postern asks for one code, then reuses GetSessionToken
    /// credentials for every account until they expire.
    pub mfa_serial: Option<String>,
    /// Region for STS calls.
    pub region: Option<String>,
    /// The environments this identity may reach (empty: any); with `["prod"]` the production
    /// identity cannot open a dev account. Names compare by [`same_env`].
    #[serde(default)]
    pub environments: Vec<String>,
}

/// Guardrails of one environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// Production: shown in red, sessions need confirmation.
    pub production: bool,
    /// Require a confirmation (or `--yes`) before opening a session or issuing credentials.
    pub confirm: bool,
    /// Require `--reason`.
    pub require_reason: bool,
    /// The named source identity this environment must be reached from; postern refuses any
    /// other.
    pub source: Option<String>,
}

/// A twelve-digit AWS account id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

/// One account postern can reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Account id.
    pub id: AccountId,
    /// Short name used on the command line.
    pub alias: String,
    /// Environment name (`dev`, `stg`, `prod`, ...).
    pub env: String,
    /// Role name overriding the default.
    pub role: Option<String>,
    /// Listing role name overriding the default listing role.
    pub list_role: Option<String>,
    /// Regions overriding the default.
    pub regions: Vec<String>,
    /// Named source identity overriding the environment's and the default.
    pub source: Option<String>,
    /// External id for AssumeRole.
    pub external_id: Option<String>,
    /// `push_key` for this account, overriding the top-level setting.
    pub push_key: Option<bool>,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists (or was named explicitly) but could not be read.
    #[error("could not read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{}", invalid_text(path, *line, key.as_deref(), message))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the fault.
        line: usize,
        /// Dotted key at fault (`accounts[1].env`), when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: None,
            source: Source::default(),
            sources: BTreeMap::new(),
            role: None,
            list_role: None,
            regions: Vec::new(),
            duration: DEFAULT_DURATION,
            environments: BTreeMap::new(),
            accounts: Vec::new(),
            tunnels: BTreeMap::new(),
            push_key: false,
        }
    }
}

impl Config {
    /// The account whose alias or id is `query`.
    pub fn account(&self, query: &str) -> Option<&Account> {
        self.accounts
            .iter()
            .find(|a| a.alias == query || a.id.as_str() == query)
    }

    /// The guardrails of `env`: its `[environments.NAME]` table (the name compared without
    /// case), else the defaults (production names and `unknown` need confirmation).
    pub fn environment(&self, env: &str) -> Environment {
        self.environments
            .get(env)
            .or_else(|| {
                self.environments
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(env.trim()))
                    .map(|(_, e)| e)
            })
            .cloned()
            .unwrap_or_else(|| Environment::defaults(env))
    }

    /// Whether `postern ssh` pushes an ephemeral key to instances of `account` (an alias or
    /// id; `None` when the instance is of no configured account): the account's `push_key`,
    /// else the top-level one.
    pub fn push_key_for(&self, account: Option<&str>) -> bool {
        account
            .and_then(|query| self.account(query))
            .and_then(|a| a.push_key)
            .unwrap_or(self.push_key)
    }

    /// The role name for `account`.
    pub fn role_for<'a>(&'a self, account: &'a Account) -> Option<&'a str> {
        account.role.as_deref().or(self.role.as_deref())
    }

    /// The role name discovery and `whoami` assume in `account`: its listing role, else the
    /// default listing role, else its session role ([`Config::role_for`]).
    pub fn list_role_for<'a>(&'a self, account: &'a Account) -> Option<&'a str> {
        account
            .list_role
            .as_deref()
            .or(self.list_role.as_deref())
            .or_else(|| self.role_for(account))
    }

    /// The named source `account` must be reached from (the account's, else its
    /// environment's), `None` for the default source.
    pub fn source_name_for(&self, account: &Account) -> Option<String> {
        account
            .source
            .clone()
            .or_else(|| self.environment(&account.env).source)
    }

    /// The sibling file `postern accounts sync` writes.
    pub fn accounts_path(config_path: &Path) -> PathBuf {
        config_path.with_file_name(ACCOUNTS_FILE)
    }

    /// The sibling file a team can share its tunnel sets in.
    pub fn tunnels_path(config_path: &Path) -> PathBuf {
        config_path.with_file_name(TUNNELS_FILE)
    }

    /// Adds the accounts of the accounts file (`synced`, from [`parse_accounts`]) that the
    /// configuration does not already list.
    pub fn add_accounts(&mut self, synced: Vec<Account>) {
        let known: HashSet<AccountId> = self.accounts.iter().map(|a| a.id.clone()).collect();
        self.accounts
            .extend(synced.into_iter().filter(|a| !known.contains(&a.id)));
    }

    /// Parses the tunnels file `text` read from `path` ([`Config::tunnels_path`]) and adds
    /// its tunnel sets; a name the configuration also defines is an error.
    pub fn add_tunnels(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let raw: RawTunnelsFile = toml::from_str(text).map_err(|e| from_toml(path, text, &e))?;
        for (name, tunnel) in tunnels(path, text, raw.tunnels)? {
            if self.tunnels.contains_key(&name) {
                let offset = text.find(&name).unwrap_or(0);
                let config = self.path.as_deref().map_or_else(
                    || "the configuration".to_owned(),
                    |p| p.display().to_string(),
                );
                return Err(invalid_at(
                    path,
                    text,
                    offset,
                    format!("tunnel `{name}` is also defined in {config}"),
                ));
            }
            self.tunnels.insert(name, tunnel);
        }
        Ok(())
    }
}

impl Environment {
    /// Settings of an environment the file does not describe.
    pub fn defaults(name: &str) -> Self {
        let production = is_production_name(name);
        Self {
            production,
            // An environment nobody has named yet may be production: fail closed.
            confirm: production || env_class(name) == EnvClass::Unknown,
            require_reason: false,
            source: None,
        }
    }
}

impl AccountId {
    /// Checks that `id` is twelve digits.
    pub fn parse(id: &str) -> Option<Self> {
        (id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())).then(|| Self(id.to_owned()))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks tunnel names (they name files: letters, digits, `-`, `_`, `.`) and what each
/// tunnel forwards.
fn tunnels(
    path: &Path,
    text: &str,
    raw: BTreeMap<Spanned<String>, Spanned<Tunnel>>,
) -> Result<BTreeMap<String, Tunnel>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, tunnel) in raw {
        let span = name.span();
        let name = name.into_inner();
        let valid = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(invalid_at(
                path,
                text,
                span.start,
                format!(
                    "tunnel name `{name}` must be 1-64 letters, digits, `-`, `_` or `.` (not \
                     starting with `.`)"
                ),
            ));
        }
        let tunnel_span = tunnel.span();
        let mut tunnel = tunnel.into_inner();
        if tunnel.target.trim().is_empty() {
            return Err(invalid_at(
                path,
                text,
                tunnel_span.start,
                format!("tunnel `{name}` needs a target"),
            ));
        }
        if tunnel.forward.is_empty() && tunnel.socks.is_empty() {
            return Err(invalid_at(
                path,
                text,
                tunnel_span.start,
                format!(
                    "tunnel `{name}` forwards nothing: give `forward = [\"LOCAL:HOST:PORT\"]` \
                     or `socks = [\"PORT\"]`"
                ),
            ));
        }
        tunnel.file = path.to_owned();
        out.insert(name, tunnel);
    }
    Ok(out)
}

/// Parses and validates the text of a configuration file read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| from_toml(path, text, &e))?;
    let invalid =
        |span: std::ops::Range<usize>, message: String| invalid_at(path, text, span.start, message);
    let duration = match &raw.duration {
        None => DEFAULT_DURATION,
        Some(value) => {
            let parsed = humantime::parse_duration(value.get_ref())
                .map_err(|e| invalid(value.span(), format!("not a duration: {e}")))?;
            if !(MIN_DURATION..=MAX_DURATION).contains(&parsed) {
                return Err(invalid(
                    value.span(),
                    "must be between 15m and 12h (the AssumeRole limits)".to_owned(),
                ));
            }
            parsed
        }
    };
    let known_source = |name: &Spanned<String>| -> Result<String, ConfigError> {
        if raw.sources.contains_key(name.get_ref()) {
            Ok(name.get_ref().clone())
        } else {
            Err(invalid(
                name.span(),
                format!(
                    "unknown source `{}`: define it in a [sources.{}] table",
                    name.get_ref(),
                    name.get_ref()
                ),
            ))
        }
    };
    let mut environments = BTreeMap::new();
    for (name, env) in &raw.environments {
        let production = env.production.unwrap_or_else(|| is_production_name(name));
        let source = env.source.as_ref().map(&known_source).transpose()?;
        environments.insert(
            name.clone(),
            Environment {
                production,
                confirm: env
                    .confirm
                    .unwrap_or(production || env_class(name) == EnvClass::Unknown),
                require_reason: env.require_reason,
                source,
            },
        );
    }
    let accounts = accounts(path, text, raw.accounts, Some(&known_source))?;
    let tunnels = tunnels(path, text, raw.tunnels)?;
    Ok(Config {
        path: Some(path.to_owned()),
        source: raw.source.unwrap_or_default(),
        sources: raw.sources,
        role: raw.role,
        list_role: raw.list_role,
        regions: raw.regions,
        duration,
        environments,
        accounts,
        tunnels,
        push_key: raw.push_key,
    })
}

/// Parses an accounts file (only `[[accounts]]` tables). An empty file, or a file written by
/// `postern accounts sync` whose closing line ([`accounts_trailer`]) is missing or counts
/// other accounts, is truncated: an error, never fewer accounts (and so fewer guardrails).
pub fn parse_accounts(path: &Path, text: &str) -> Result<Vec<Account>, ConfigError> {
    let truncated = |message: &str| ConfigError::Invalid {
        path: path.to_owned(),
        line: text.lines().count().max(1),
        key: None,
        message: format!("{message}; run `postern accounts sync` again to rewrite it"),
    };
    if text.trim().is_empty() {
        return Err(truncated("the accounts file is empty"));
    }
    let raw: RawAccountsFile = toml::from_str(text).map_err(|e| from_toml(path, text, &e))?;
    let accounts = accounts(path, text, raw.accounts, None)?;
    if text.starts_with(SYNC_HEADER) && !text.ends_with(&accounts_trailer(accounts.len())) {
        return Err(truncated(
            "the accounts file is truncated (its closing line is missing or counts other \
             accounts)",
        ));
    }
    Ok(accounts)
}

/// The first words of a file `postern accounts sync` writes.
pub const SYNC_HEADER: &str = "# Written by `postern accounts sync`";

/// The closing line of a file `postern accounts sync` writes, counting its accounts.
pub fn accounts_trailer(count: usize) -> String {
    format!("# end of the accounts file: {count} accounts\n")
}

type SourceCheck<'a> = &'a dyn Fn(&Spanned<String>) -> Result<String, ConfigError>;

fn accounts(
    path: &Path,
    text: &str,
    raw: Vec<RawAccount>,
    known_source: Option<SourceCheck<'_>>,
) -> Result<Vec<Account>, ConfigError> {
    let mut ids = HashSet::new();
    let mut aliases = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for account in raw {
        let invalid = |span: std::ops::Range<usize>, message: String| {
            invalid_at(path, text, span.start, message)
        };
        let id = AccountId::parse(account.id.get_ref()).ok_or_else(|| {
            invalid(
                account.id.span(),
                format!(
                    "`{}` is not an AWS account id (twelve digits)",
                    account.id.get_ref()
                ),
            )
        })?;
        if !ids.insert(id.clone()) {
            return Err(invalid(
                account.id.span(),
                format!("account {id} is listed twice"),
            ));
        }
        let alias = account.alias.get_ref();
        if alias.is_empty() || alias.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                account.alias.span(),
                "an alias must be non-empty and not only digits (those are account ids)".to_owned(),
            ));
        }
        if !aliases.insert(alias.clone()) {
            return Err(invalid(
                account.alias.span(),
                format!("alias `{alias}` is used by two accounts"),
            ));
        }
        let source = match (&account.source, known_source) {
            (Some(name), Some(check)) => Some(check(name)?),
            (Some(name), None) => Some(name.get_ref().clone()),
            (None, _) => None,
        };
        out.push(Account {
            id,
            alias: alias.clone(),
            env: account.env,
            role: account.role,
            list_role: account.list_role,
            regions: account.regions,
            source,
            external_id: account.external_id,
            push_key: account.push_key,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    source: Option<Source>,
    #[serde(default)]
    sources: BTreeMap<String, Source>,
    role: Option<String>,
    list_role: Option<String>,
    #[serde(default)]
    regions: Vec<String>,
    duration: Option<Spanned<String>>,
    #[serde(default)]
    environments: BTreeMap<String, RawEnvironment>,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    #[serde(default)]
    tunnels: BTreeMap<Spanned<String>, Spanned<Tunnel>>,
    #[serde(default)]
    push_key: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnelsFile {
    #[serde(default)]
    tunnels: BTreeMap<Spanned<String>, Spanned<Tunnel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccountsFile {
    #[serde(default)]
    accounts: Vec<RawAccount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    production: Option<bool>,
    confirm: Option<bool>,
    #[serde(default)]
    require_reason: bool,
    source: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    id: Spanned<String>,
    alias: Spanned<String>,
    env: String,
    role: Option<String>,
    list_role: Option<String>,
    #[serde(default)]
    regions: Vec<String>,
    source: Option<Spanned<String>>,
    external_id: Option<String>,
    push_key: Option<bool>,
}

/// The environment class a name means, whatever its spelling: `prod`, `production`, `prd`
/// and `live`, or any name with such a word (`prod-eu`, an OU called `Prod Workloads`), are
/// production; `staging`, `stg`, `stage`, `preprod` staging; `dev`, `development`, `sandbox`,
/// `test` development. Production wins when words disagree (`prod-test` is production).
/// Config environments, account tags, OU names and account names all go through it.
pub fn env_class(name: &str) -> EnvClass {
    let lower = name.trim().to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |options: &[&str]| words.iter().any(|w| options.contains(w));
    if has(&["prod", "production", "prd", "live"]) {
        EnvClass::Production
    } else if has(&["staging", "stg", "stage", "preprod"]) {
        EnvClass::Staging
    } else if has(&["dev", "development", "sandbox", "test"]) {
        EnvClass::Development
    } else if words.is_empty() || lower == UNKNOWN_ENV {
        EnvClass::Unknown
    } else {
        EnvClass::Other
    }
}

/// What an environment name means; see [`env_class`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvClass {
    /// Production.
    Production,
    /// Staging.
    Staging,
    /// Development.
    Development,
    /// Not known (`unknown`, empty): treated as production by the guardrails until set.
    Unknown,
    /// A name with none of the known words; compared by name.
    Other,
}

/// Whether two environment names mean the same environment: the same class, or for names of
/// no known class, the same name (case aside).
pub fn same_env(a: &str, b: &str) -> bool {
    match (env_class(a), env_class(b)) {
        (EnvClass::Other, EnvClass::Other) => a.trim().eq_ignore_ascii_case(b.trim()),
        (x, y) => x == y,
    }
}

fn is_production_name(name: &str) -> bool {
    env_class(name) == EnvClass::Production
}

/// The environment of an account nothing describes.
pub const UNKNOWN_ENV: &str = "unknown";

fn from_toml(path: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
    let message = err.message().trim_end().to_owned();
    match err.span() {
        Some(span) => invalid_at(path, text, span.start, message),
        None => ConfigError::Invalid {
            path: path.to_owned(),
            line: 1,
            key: None,
            message,
        },
    }
}

fn invalid_at(path: &Path, text: &str, offset: usize, message: String) -> ConfigError {
    let offset = offset.min(text.len());
    let line = text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        key: key_at(text, offset),
        message,
    }
}

fn invalid_text(path: &Path, line: usize, key: Option<&str>, message: &str) -> String {
    match key {
        Some(key) => format!("{}, line {line}, key `{key}`: {message}", path.display()),
        None => format!("{}, line {line}: {message}", path.display()),
    }
}

/// The dotted key whose key or value covers byte `offset`, from the spanned document.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let document = DeTable::parse(text).ok()?;
    let mut path = String::new();
    walk_table(document.get_ref(), offset, &mut path);
    (!path.is_empty()).then_some(path)
}

fn walk_table(table: &DeTable<'_>, offset: usize, path: &mut String) {
    for (key, value) in table {
        let covers = key.span().contains(&offset) || value.span().contains(&offset);
        let inside = matches!(value.get_ref(), DeValue::Table(_) | DeValue::Array(_))
            && contains_offset(value.get_ref(), offset);
        if covers || inside {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key.get_ref());
            walk_value(value.get_ref(), offset, path);
            return;
        }
    }
}

fn walk_value(value: &DeValue<'_>, offset: usize, path: &mut String) {
    match value {
        DeValue::Table(table) => walk_table(table, offset, path),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                if item.span().contains(&offset) || contains_offset(item.get_ref(), offset) {
                    path.push_str(&format!("[{index}]"));
                    walk_value(item.get_ref(), offset, path);
                    return;
                }
            }
        }
        _ => {}
    }
}

/// Whether any key or value below `value` covers `offset` (tables from `[header]` sections
/// have no span of their own covering their body).
fn contains_offset(value: &DeValue<'_>, offset: usize) -> bool {
    match value {
        DeValue::Table(table) => table.iter().any(|(k, v)| {
            k.span().contains(&offset)
                || v.span().contains(&offset)
                || contains_offset(v.get_ref(), offset)
        }),
        DeValue::Array(items) => items
            .iter()
            .any(|i| i.span().contains(&offset) || contains_offset(i.get_ref(), offset)),
        _ => false,
    }
}

/// The config file's name for accounts written by `postern accounts sync`.
const ACCOUNTS_FILE: &str = "accounts.toml";
/// The config file's sibling holding tunnel sets a team shares.
const TUNNELS_FILE: &str = "tunnels.toml";
/// AssumeRole's default and the role-chaining cap.
const DEFAULT_DURATION: Duration = Duration::from_secs(3600);
const MIN_DURATION: Duration = Duration::from_secs(900);
const MAX_DURATION: Duration = Duration::from_secs(12 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
role = "PosternAccess"
regions = ["eu-west-1", "us-east-1"]

[source]
profile = "acme"
mfa_serial = "arn:aws:iam::402918375561:mfa/alice"

[sources.prod-admin]
profile = "acme-prod"

[environments.prod]
require_reason = true
source = "prod-admin"

[[accounts]]
id = "318402957716"
alias = "acme-dev"
env = "dev"

[[accounts]]
id = "736250419937"
alias = "acme-prod"
env = "prod"
role = "PosternReadOnly"
"#;

    fn error_text(text: &str) -> String {
        parse(Path::new("/home/a/config.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parses_a_full_file() {
        let config = parse(Path::new("c.toml"), GOOD).unwrap();
        assert_eq!(config.role.as_deref(), Some("PosternAccess"));
        assert_eq!(config.accounts.len(), 2);
        let prod = config.account("acme-prod").unwrap();
        assert_eq!(config.role_for(prod), Some("PosternReadOnly"));
        assert_eq!(config.source_name_for(prod).as_deref(), Some("prod-admin"));
        let env = config.environment("prod");
        assert!(env.production && env.confirm && env.require_reason);
        assert!(!config.environment("dev").production);
        assert_eq!(config.account("318402957716").unwrap().alias, "acme-dev");
    }

    #[test]
    fn push_key_is_per_account_over_the_top_level() {
        let accounts = "[[accounts]]\nid = \"318402957716\"\nalias = \"dev\"\nenv = \"dev\"\n\n\
                        [[accounts]]\nid = \"736250419937\"\nalias = \"prod\"\nenv = \"prod\"\n\
                        push_key = false\n";
        let off = parse(Path::new("c.toml"), accounts).unwrap();
        assert!(!off.push_key_for(Some("dev")));
        assert!(!off.push_key_for(None));
        let on = parse(Path::new("c.toml"), &format!("push_key = true\n{accounts}")).unwrap();
        assert!(on.push_key_for(Some("dev")));
        assert!(on.push_key_for(Some("318402957716")));
        assert!(on.push_key_for(None));
        assert!(!on.push_key_for(Some("prod")), "the account's false wins");
    }

    #[test]
    fn unknown_keys_name_line_and_key() {
        let text = "role = \"R\"\n\n[[accounts]]\nid = \"318402957716\"\nalias = \"a\"\nenv = \"dev\"\n\n[[accounts]]\nid = \"736250419937\"\nalias = \"b\"\nenv = \"prod\"\nroel = \"X\"\n";
        assert_eq!(
            error_text(text),
            "/home/a/config.toml, line 12, key `accounts[1].roel`: unknown field `roel`, \
             expected one of `id`, `alias`, `env`, `role`, `list_role`, `regions`, `source`, `external_id`, `push_key`"
        );
    }

    #[test]
    fn bad_account_ids_name_line_and_key() {
        let text = "[[accounts]]\nid = \"31840295771\"\nalias = \"a\"\nenv = \"dev\"\n";
        assert_eq!(
            error_text(text),
            "/home/a/config.toml, line 2, key `accounts[0].id`: `31840295771` is not an AWS \
             account id (twelve digits)"
        );
    }

    #[test]
    fn wrong_types_name_line_and_key() {
        let text = "[source]\nprofile = 3\n";
        assert_eq!(
            error_text(text),
            "/home/a/config.toml, line 2, key `source.profile`: invalid type: integer `3`, \
             expected a string"
        );
    }

    #[test]
    fn unknown_sources_are_errors() {
        let text = "[environments.prod]\nsource = \"nope\"\n";
        assert_eq!(
            error_text(text),
            "/home/a/config.toml, line 2, key `environments.prod.source`: unknown source \
             `nope`: define it in a [sources.nope] table"
        );
    }

    #[test]
    fn duplicate_aliases_and_bad_durations_are_errors() {
        let text = "[[accounts]]\nid = \"318402957716\"\nalias = \"a\"\nenv = \"dev\"\n[[accounts]]\nid = \"736250419937\"\nalias = \"a\"\nenv = \"prod\"\n";
        assert_eq!(
            error_text(text),
            "/home/a/config.toml, line 7, key `accounts[1].alias`: alias `a` is used by two \
             accounts"
        );
        assert_eq!(
            error_text("duration = \"13h\"\n"),
            "/home/a/config.toml, line 1, key `duration`: must be between 15m and 12h (the \
             AssumeRole limits)"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let text = "role = \"R\"\nregions = [\n";
        let err = error_text(text);
        assert!(err.starts_with("/home/a/config.toml, line 2"), "{err}");
    }

    #[test]
    fn missing_required_keys_name_the_table() {
        let text = "[[accounts]]\nid = \"318402957716\"\nenv = \"dev\"\n";
        let err = error_text(text);
        assert!(err.contains("missing field `alias`"), "{err}");
    }
}
