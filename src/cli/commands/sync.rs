//! `postern accounts sync`: list the organization's accounts (Organizations ListAccounts, as the
//! source identity) and record them in the accounts file beside the configuration, so a new
//! account is reachable with no per-account setup. Accounts the configuration file lists itself
//! are left to it; the accounts file is rewritten whole, atomically, on every sync.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::aws::AwsError;
use crate::broker::guardrails;
use crate::broker::{Broker, BrokerError};
use crate::config::{self, Config, EnvClass, UNKNOWN_ENV};
use crate::report::{ErrorKind, ExpectedError};
use crate::term::colour_on;

/// `postern accounts sync`.
#[derive(clap::Args, Debug, Clone)]
pub struct SyncArgs {
    /// Role to assume in every synced account (default: the configuration's `role`).
    #[arg(long, value_name = "NAME")]
    pub role_name: Option<String>,

    /// Take each account's environment from this tag (ListTagsForResource), e.g. `environment`.
    #[arg(long, value_name = "KEY", conflicts_with = "env_from_ou")]
    pub env_from_tag: Option<String>,

    /// Take each account's environment from the name of its organizational unit (lowercased).
    #[arg(long)]
    pub env_from_ou: bool,

    /// Print what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One account as the organization describes it, with the environment postern gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SyncedAccount {
    id: String,
    alias: String,
    env: String,
    /// Where the environment came from (`tag environment`, `OU Prod`, `name`, `unknown`).
    env_origin: String,
}

/// Runs `postern accounts sync`.
pub(crate) async fn run(broker: &Broker, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let config = broker.config();
    let path = accounts_path(config)?;
    let role = args.role_name.clone().or_else(|| config.role.clone());
    let (context, identity) = broker
        .source_context()
        .await
        .map_err(|e| sync_failure(e, "source identity"))?;
    let client = aws_sdk_organizations::Client::new(&context.sdk);
    let described = format!(
        "organization of {} (source {})",
        identity.arn, identity.source
    );
    let region = context.region.clone();
    let profile = context.profile.clone();

    let mut listed = Vec::new();
    let mut pages = client.list_accounts().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(|e| AwsError::from_sdk("ListAccounts", &region, profile.as_deref(), e))
            .map_err(|e| sync_failure(BrokerError::Aws(e), &described))?;
        listed.extend(page.accounts.unwrap_or_default());
    }
    let mut synced = Vec::new();
    let mut ou_names: HashMap<String, String> = HashMap::new();
    for account in listed {
        let (Some(id), Some(name)) = (account.id, account.name) else {
            continue;
        };
        let active = account
            .status
            .as_ref()
            .is_none_or(|s| s.as_str() == "ACTIVE");
        if !active {
            tracing::info!(account = %id, "skipping an account that is not active");
            continue;
        }
        let (env, env_origin) = if let Some(key) = &args.env_from_tag {
            let tags = client
                .list_tags_for_resource()
                .resource_id(&id)
                .send()
                .await
                .map_err(|e| {
                    AwsError::from_sdk("ListTagsForResource", &region, profile.as_deref(), e)
                })
                .map_err(|e| sync_failure(BrokerError::Aws(e), &format!("account {id}")))?;
            let value = tags
                .tags
                .unwrap_or_default()
                .into_iter()
                .find(|t| t.key.eq_ignore_ascii_case(key))
                .map(|t| t.value);
            match value {
                Some(value) => (normalise_env(&value), format!("tag {key}")),
                None => guess_env(&name),
            }
        } else if args.env_from_ou {
            let parents = client
                .list_parents()
                .child_id(&id)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListParents", &region, profile.as_deref(), e))
                .map_err(|e| sync_failure(BrokerError::Aws(e), &format!("account {id}")))?;
            let ou = parents.parents.unwrap_or_default().into_iter().find(|p| {
                p.r#type
                    .as_ref()
                    .is_some_and(|t| t.as_str() == "ORGANIZATIONAL_UNIT")
            });
            match ou.and_then(|p| p.id) {
                Some(ou_id) => {
                    if !ou_names.contains_key(&ou_id) {
                        let described_ou = client
                            .describe_organizational_unit()
                            .organizational_unit_id(&ou_id)
                            .send()
                            .await
                            .map_err(|e| {
                                AwsError::from_sdk(
                                    "DescribeOrganizationalUnit",
                                    &region,
                                    profile.as_deref(),
                                    e,
                                )
                            })
                            .map_err(|e| {
                                sync_failure(BrokerError::Aws(e), &format!("OU {ou_id}"))
                            })?;
                        let name = described_ou
                            .organizational_unit
                            .and_then(|o| o.name)
                            .unwrap_or_default();
                        ou_names.insert(ou_id.clone(), name);
                    }
                    let ou_name = &ou_names[&ou_id];
                    (normalise_env(ou_name), format!("OU {ou_name}"))
                }
                None => guess_env(&name),
            }
        } else {
            guess_env(&name)
        };
        synced.push(SyncedAccount {
            alias: alias_of(&name, &id),
            id,
            env,
            env_origin,
        });
    }
    dedupe_aliases(&mut synced);

    let listed_here = configured_ids(config);
    let previous = read_previous(&path);
    let text = render(
        &synced,
        role.as_deref(),
        config.role.as_deref(),
        &identity.arn,
    );
    // Checked before writing: what we write must load.
    config::parse_accounts(&path, &text).context("the accounts file postern wrote is invalid")?;

    let colour = colour_on(&std::io::stdout());
    let mut out = format!(
        "{:<24} {:<12} {:<10} {:<16} STATUS\n",
        "ALIAS", "ACCOUNT", "ENV", "ENV FROM"
    );
    let mut unknown = 0;
    for account in &synced {
        let status = if listed_here.contains(&account.id) {
            "in config.toml (kept as configured)"
        } else if previous.contains(&account.id) {
            "synced"
        } else {
            "new"
        };
        if account.env == UNKNOWN_ENV {
            unknown += 1;
        }
        let env = config.environment(&account.env);
        let alias = guardrails::paint(
            &format!("{:<24}", account.alias),
            &account.env,
            &env,
            colour,
        );
        out.push_str(&format!(
            "{alias} {:<12} {:<10} {:<16} {status}\n",
            account.id,
            account.env,
            // "OU <name>", "tag <value>": the organization's own text.
            crate::term::escape(&account.env_origin)
        ));
    }
    let removed: Vec<&String> = previous
        .iter()
        .filter(|id| !synced.iter().any(|a| &a.id == *id))
        .collect();
    for id in &removed {
        out.push_str(&format!(
            "{id:<24} {id:<12} {:<10} {:<16} removed (no longer in the organization)\n",
            "-", "-"
        ));
    }
    if args.dry_run {
        out.push_str(&format!(
            "dry run: {} accounts would be written to {}\n",
            synced.len(),
            path.display()
        ));
    } else {
        crate::private_file::write_private(&path, text.as_bytes())
            .with_context(|| format!("could not write {}", path.display()))?;
        out.push_str(&format!(
            "{} accounts written to {} ({} new, {} removed)\n",
            synced.len(),
            path.display(),
            synced.iter().filter(|a| !previous.contains(&a.id)).count(),
            removed.len()
        ));
    }
    if role.is_none() {
        out.push_str(
            "note: no role name: pass --role-name NAME or set `role` in the configuration, or \
             no synced account is reachable\n",
        );
    }
    if unknown > 0 {
        out.push_str(&format!(
            "note: {unknown} accounts have no known environment (env \"unknown\"): sessions \
             there need the same confirmation as production until it is set; use \
             --env-from-tag KEY or --env-from-ou, or list them in the configuration file\n"
        ));
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("could not write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// The accounts file beside the configuration file (which need not exist yet).
fn accounts_path(config: &Config) -> anyhow::Result<PathBuf> {
    let config_path = config
        .path
        .clone()
        .or_else(config::default_config_path)
        .ok_or_else(|| {
            ExpectedError::new(
                ErrorKind::Config,
                "no place for the accounts file: no configuration path and no home directory",
            )
            .hint("pass --config FILE or set POSTERN_CONFIG")
        })?;
    Ok(Config::accounts_path(&config_path))
}

/// The account ids the configuration file itself lists (the loaded configuration merges in the
/// accounts file, so the file is parsed alone).
fn configured_ids(config: &Config) -> Vec<String> {
    config
        .path
        .as_deref()
        .and_then(|path| {
            let text = std::fs::read_to_string(path).ok()?;
            config::parse(path, &text).ok()
        })
        .map(|c| {
            c.accounts
                .iter()
                .map(|a| a.id.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The account ids of the current accounts file (empty when absent or unreadable).
fn read_previous(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| config::parse_accounts(path, &text).ok())
        .map(|accounts| {
            accounts
                .into_iter()
                .map(|a| a.id.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The accounts file's text.
fn render(
    accounts: &[SyncedAccount],
    role: Option<&str>,
    default_role: Option<&str>,
    source: &str,
) -> String {
    let when = humantime::format_rfc3339_seconds(SystemTime::now());
    let mut text = format!(
        "{} at {when} from Organizations ListAccounts as\n# \
         {source}. The next sync rewrites this file: change an account in config.toml\n# \
         instead (an account listed there wins over this file).\n",
        config::SYNC_HEADER
    );
    for account in accounts {
        text.push_str(&format!(
            "\n[[accounts]]\nid = {}\nalias = {}\nenv = {}\n",
            toml_string(&account.id),
            toml_string(&account.alias),
            toml_string(&account.env)
        ));
        if let Some(role) = role
            && Some(role) != default_role
        {
            text.push_str(&format!("role = {}\n", toml_string(role)));
        }
    }
    text.push('\n');
    text.push_str(&config::accounts_trailer(accounts.len()));
    text
}

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// A command-line alias from an account name: lowercase, runs of other characters as `-`.
fn alias_of(name: &str, id: &str) -> String {
    let alias = command_word(name);
    if alias.is_empty() || alias.bytes().all(|b| b.is_ascii_digit()) {
        format!("account-{id}")
    } else {
        alias
    }
}

/// `text` as a lowercase command-line word: ASCII letters and digits, every other run of
/// characters (spaces, punctuation, control characters) one `-`.
fn command_word(text: &str) -> String {
    let mut word = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        } else if !word.ends_with('-') && !word.is_empty() {
            word.push('-');
        }
    }
    word.trim_end_matches('-').to_owned()
}

/// Two accounts with the same alias get their id appended; an alias that is then still taken
/// (an account named `Acme 111111111111` beside two named `Acme`) also gets a counter, so every
/// alias in the file is unique.
fn dedupe_aliases(accounts: &mut [SyncedAccount]) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for account in accounts.iter() {
        *counts.entry(account.alias.clone()).or_default() += 1;
    }
    let mut taken: std::collections::BTreeSet<String> = counts
        .iter()
        .filter(|(_, count)| **count == 1)
        .map(|(alias, _)| alias.clone())
        .collect();
    for account in accounts.iter_mut() {
        if counts[&account.alias] == 1 {
            continue;
        }
        let base = format!("{}-{}", account.alias, account.id);
        let mut alias = base.clone();
        let mut n = 2;
        while taken.contains(&alias) {
            alias = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(alias.clone());
        account.alias = alias;
    }
}

/// An environment value from a tag or OU name, by the rule every environment name follows
/// ([`config::env_class`]): `Prod Workloads` and `live` are `prod`, `Staging` is `stg`; a value
/// of no known class is kept as a command-line word (`Data Lake` is `data-lake`: an OU name
/// may hold any ASCII, control characters included), an empty one is unknown.
fn normalise_env(raw: &str) -> String {
    match config::env_class(raw) {
        EnvClass::Production => "prod".to_owned(),
        EnvClass::Staging => "stg".to_owned(),
        EnvClass::Development => "dev".to_owned(),
        EnvClass::Unknown => UNKNOWN_ENV.to_owned(),
        EnvClass::Other => match command_word(raw) {
            word if word.is_empty() => UNKNOWN_ENV.to_owned(),
            word => word,
        },
    }
}

/// The environment an account name suggests (`acme-prod` is prod), else unknown.
fn guess_env(name: &str) -> (String, String) {
    match config::env_class(name) {
        EnvClass::Other | EnvClass::Unknown => (UNKNOWN_ENV.to_owned(), "unknown".to_owned()),
        _ => (normalise_env(name), "name".to_owned()),
    }
}

fn sync_failure(err: BrokerError, target: &str) -> anyhow::Error {
    crate::cli::errors::broker_failure(err, "could not sync the organization's accounts", target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_command_line_words() {
        assert_eq!(alias_of("Acme Prod (EU)", "111111111111"), "acme-prod-eu");
        assert_eq!(alias_of("  ", "111111111111"), "account-111111111111");
        assert_eq!(alias_of("123", "111111111111"), "account-111111111111");
    }

    #[test]
    fn names_suggest_environments() {
        assert_eq!(guess_env("acme-prod").0, "prod");
        assert_eq!(guess_env("Acme Staging").0, "stg");
        assert_eq!(guess_env("team-dev-1").0, "dev");
        assert_eq!(guess_env("production-eu").0, "prod");
        assert_eq!(guess_env("reproduce").0, UNKNOWN_ENV);
        assert_eq!(guess_env("acme-live").0, "prod");
        // Tag and OU values follow the same rule as names and the configuration.
        assert_eq!(normalise_env("Prod Workloads"), "prod");
        assert_eq!(normalise_env(" PRD "), "prod");
        assert_eq!(normalise_env("live"), "prod");
        assert_eq!(normalise_env("Staging"), "stg");
        assert_eq!(normalise_env("Research"), "research");
        assert_eq!(normalise_env("Data Lake"), "data-lake");
        // An OU name may carry control characters: never into the file or onto a terminal.
        assert_eq!(normalise_env("sand\x1b]0;x\x07box"), "sand-0-x-box");
        assert_eq!(normalise_env("\x1b\x07"), UNKNOWN_ENV);
        assert_eq!(normalise_env(""), UNKNOWN_ENV);
    }

    #[test]
    fn duplicate_aliases_get_their_ids() {
        let account = |id: &str| SyncedAccount {
            id: id.to_owned(),
            alias: "acme".to_owned(),
            env: "dev".to_owned(),
            env_origin: "name".to_owned(),
        };
        let mut accounts = vec![account("111111111111"), account("222222222222")];
        dedupe_aliases(&mut accounts);
        assert_eq!(accounts[0].alias, "acme-111111111111");
        assert_eq!(accounts[1].alias, "acme-222222222222");
        // "Acme 111111111111" already has the alias the first "Acme" would get.
        let mut accounts = vec![
            account("111111111111"),
            account("222222222222"),
            SyncedAccount {
                alias: "acme-111111111111".to_owned(),
                ..account("333333333333")
            },
        ];
        dedupe_aliases(&mut accounts);
        let aliases: Vec<&str> = accounts.iter().map(|a| a.alias.as_str()).collect();
        assert_eq!(
            aliases,
            [
                "acme-111111111111-2",
                "acme-222222222222",
                "acme-111111111111"
            ]
        );
    }

    #[test]
    fn a_truncated_or_empty_accounts_file_is_an_error_not_fewer_accounts() {
        let accounts: Vec<SyncedAccount> = ["318402957716", "736250419937"]
            .iter()
            .map(|id| SyncedAccount {
                id: (*id).to_owned(),
                alias: format!("a{id}"),
                env: "prod".to_owned(),
                env_origin: "name".to_owned(),
            })
            .collect();
        let path = Path::new("/tmp/accounts.toml");
        let text = render(&accounts, None, None, "arn:x");
        assert_eq!(config::parse_accounts(path, &text).unwrap().len(), 2);
        // Cut after the first account's table: valid TOML, one account fewer.
        let cut = &text[..text.find("\n[[accounts]]\nid = \"736250419937\"").unwrap()];
        let err = config::parse_accounts(path, cut).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        for empty in ["", "\n  \n"] {
            let err = config::parse_accounts(path, empty).unwrap_err();
            assert!(err.to_string().contains("empty"), "{err}");
        }
        // A hand-written file has no trailer to check.
        let hand = "[[accounts]]\nid = \"318402957716\"\nalias = \"d\"\nenv = \"dev\"\n";
        assert_eq!(config::parse_accounts(path, hand).unwrap().len(), 1);
    }

    #[test]
    fn rendered_file_loads_with_the_role_only_when_it_differs() {
        let accounts = vec![SyncedAccount {
            id: "318402957716".to_owned(),
            alias: "acme-dev".to_owned(),
            env: "dev".to_owned(),
            env_origin: "name".to_owned(),
        }];
        let path = Path::new("/tmp/accounts.toml");
        let text = render(&accounts, Some("Other"), Some("PosternAccess"), "arn:x");
        let parsed = config::parse_accounts(path, &text).unwrap();
        assert_eq!(parsed[0].role.as_deref(), Some("Other"));
        let text = render(
            &accounts,
            Some("PosternAccess"),
            Some("PosternAccess"),
            "arn:x",
        );
        let parsed = config::parse_accounts(path, &text).unwrap();
        assert_eq!(parsed[0].role, None);
        assert_eq!(parsed[0].alias, "acme-dev");
    }
}
