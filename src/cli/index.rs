//! `postern list` and target resolution for session commands: build the instance index (cache
//! first, discovery for the rest), filter or resolve, and report unreachable scopes as warnings.

use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;

use std::io::IsTerminal as _;

use crate::aws::{self, AwsContext, AwsOptions};
use crate::cli::args::{Args, Command};
use crate::cli::plan::SSH_HOST_SUFFIX;
use crate::cli::reach::{BrokerScopes, Reach, Scopes};
use crate::discovery::{
    Cache, Index, IndexOptions, Instance, SdkSource, SingleProfile, build_index,
};
use crate::paths::cache_dir;
use crate::picker::{Frecency, Matcher, PickOutcome, TtyPicker, choose, rows_for};
use crate::report::{self, ErrorKind, ExpectedError};
use crate::target::{self, Resolution};

/// `postern list`.
#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    /// Fuzzy query over alias, env, region, Name, instance id, private IP, platform and status.
    #[arg(value_name = "QUERY")]
    pub query: Option<String>,

    /// Regions to list, comma-separated (default: --region, else the profile's region).
    #[arg(long, value_name = "REGION,…", value_delimiter = ',')]
    pub regions: Vec<String>,

    /// Only instances of this account (alias or id).
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,

    /// Only instances of this environment (dev, stg, prod).
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,

    /// Only instances with this tag value. Repeatable; all must match.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    /// One JSON object per instance instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Ignore the cache and list every region now (the cache is updated).
    #[arg(long)]
    pub refresh: bool,
}

/// A validated `postern list`.
#[derive(Clone, Debug)]
pub struct ListPlan {
    /// The identities to list with.
    pub(crate) reach: Reach,
    /// Regions to list (empty: the configured region).
    pub regions: Vec<String>,
    /// Fuzzy query.
    pub query: String,
    /// Tag filters.
    pub tags: Vec<(String, String)>,
    /// Account filter (alias or id).
    pub account: Option<String>,
    /// Environment filter.
    pub env: Option<String>,
    /// JSON lines.
    pub json: bool,
    /// `--refresh`.
    pub refresh: bool,
}

impl ListPlan {
    /// Validates `postern list` arguments.
    pub(crate) fn new(reach: Reach, args: ListArgs) -> Result<Self, ExpectedError> {
        let tags = args
            .tags
            .iter()
            .map(|raw| {
                raw.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| {
                        ExpectedError::new(ErrorKind::Usage, format!("`{raw}` is not KEY=VALUE"))
                            .hint("write --tag env=prod")
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            reach,
            regions: args.regions,
            query: args.query.unwrap_or_default(),
            tags,
            account: args.account,
            env: args.env,
            json: args.json,
            refresh: args.refresh,
        })
    }
}

/// Runs `postern list`.
pub(crate) async fn list(plan: &ListPlan) -> anyhow::Result<ExitCode> {
    let index = load_index(
        &plan.reach,
        &plan.regions,
        plan.refresh,
        plan.account.as_deref(),
    )
    .await?;
    let scoped: Vec<Instance> = index
        .instances
        .into_iter()
        .filter(|i| {
            plan.account
                .as_deref()
                .is_none_or(|a| i.alias == a || i.account == a)
                && plan
                    .env
                    .as_deref()
                    .is_none_or(|e| i.env.as_deref() == Some(e))
        })
        .collect();
    let rows = filter(&scoped, &plan.query, &plan.tags);
    let mut out = std::io::stdout().lock();
    if plan.json {
        for row in rows {
            serde_json::to_writer(&mut out, row).context("could not write the listing")?;
            out.write_all(b"\n")
                .context("could not write the listing")?;
        }
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        out.write_all(render_table(&rows, colour).as_bytes())
            .context("could not write the listing")?;
    }
    out.flush().context("could not write the listing")?;
    Ok(ExitCode::SUCCESS)
}

/// Rewrites a session command's TARGET that is not an instance id into the instance id it
/// resolves to (and `--region` into the instance's region), and, for an instance of an account
/// the configuration lists, checks that account's guardrails and gives the command its role's
/// credentials. A bare instance id costs no AWS call outside the broker; with it, the cached
/// index tells its account.
pub(crate) async fn resolve_targets(mut args: Args) -> anyhow::Result<Args> {
    if args.command.is_none() && interactive() {
        let reach = Reach::new(&args.common)?;
        return pick_shell(args, &reach).await;
    }
    let Some((raw, reason)) = session_target(&args) else {
        return Ok(args);
    };
    let is_id = target::is_instance_id(&raw);
    let reach = Reach::new(&args.common)?;
    if is_id && reach.broker.is_none() {
        return Ok(args);
    }
    let chosen = if raw.is_empty() {
        if !interactive() {
            // The plan reports the missing TARGET.
            return Ok(args);
        }
        let index = load_index(&reach, &[], false, None).await?;
        let query = args.common.query.clone().unwrap_or_default();
        let select_one = args.common.select_one;
        let chosen = tokio::task::block_in_place(|| pick(&index.instances, &query, select_one))?;
        remember(&chosen.id);
        chosen
    } else if is_id {
        match find_cached(&reach, &raw).await? {
            Some(instance) => instance,
            None => return Ok(args),
        }
    } else {
        let chosen = resolve(&reach, &raw).await?;
        remember(&chosen.id);
        chosen
    };
    bind(&mut args, &reach, &chosen, reason.as_deref()).await?;
    Ok(args)
}

/// Points the session command at `chosen`: its id, its region and, for an instance of a
/// configured account, its role's credentials once the account's guardrails passed.
async fn bind(
    args: &mut Args,
    reach: &Reach,
    chosen: &Instance,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    set_target(args, &chosen.id);
    args.common.region = Some(chosen.region.clone());
    args.common.credentials = reach
        .session_credentials(&chosen.account, reason)
        .await
        .map_err(|refused| {
            crate::cli::broker::broker_failure(
                refused.error,
                &format!("could not open a session on {}", describe_instance(chosen)),
                &refused.target,
            )
        })?;
    Ok(())
}

/// The TARGET (without the `.postern` suffix of ssh names, without ssh's `USER@`; empty when
/// left out) and `--reason` of a session command.
fn session_target(args: &Args) -> Option<(String, Option<String>)> {
    let given = |target: &Option<String>| target.as_deref().unwrap_or_default().to_owned();
    let (target, reason) = match &args.command {
        Some(Command::Shell(shell)) => (given(&shell.target), &shell.session.reason),
        Some(Command::Exec(exec)) => (given(&exec.target), &exec.session.reason),
        Some(Command::Forward(forward)) => (given(&forward.target), &forward.connect.reason),
        Some(Command::SshProxy(proxy)) => (proxy.target.clone(), &proxy.connect.reason),
        Some(Command::Ssh(ssh)) => (ssh_host(&ssh.destination).1.to_owned(), &ssh.reason),
        _ => return None,
    };
    let target = target.strip_suffix(SSH_HOST_SUFFIX).unwrap_or(&target);
    Some((target.to_owned(), reason.clone()))
}

/// Replaces the session command's TARGET with the instance id it resolved to.
fn set_target(args: &mut Args, id: &str) {
    match &mut args.command {
        Some(Command::Shell(shell)) => shell.target = Some(id.to_owned()),
        Some(Command::Exec(exec)) => exec.target = Some(id.to_owned()),
        Some(Command::Forward(forward)) => forward.target = Some(id.to_owned()),
        Some(Command::SshProxy(proxy)) => id.clone_into(&mut proxy.target),
        Some(Command::Ssh(ssh)) => {
            ssh.destination = match ssh_host(&ssh.destination).0 {
                Some(user) => format!("{user}@{id}"),
                None => id.to_owned(),
            };
        }
        _ => {}
    }
}

/// `USER@HOST` split at the last `@`.
fn ssh_host(destination: &str) -> (Option<&str>, &str) {
    match destination.rsplit_once('@') {
        Some((user, host)) if !user.is_empty() => (Some(user), host),
        _ => (None, destination),
    }
}

/// "web-1 (i-0123…, account acme-dev, eu-west-1)".
fn describe_instance(instance: &Instance) -> String {
    let name = if instance.name.is_empty() {
        instance.id.clone()
    } else {
        format!("{} ({})", instance.name, instance.id)
    };
    format!("{name}, account {}, {}", instance.alias, instance.region)
}

/// Bare `postern` on a terminal: pick an instance from the whole index and open a shell on it.
async fn pick_shell(args: Args, reach: &Reach) -> anyhow::Result<Args> {
    let index = load_index(reach, &[], false, None).await?;
    let query = args.common.query.clone().unwrap_or_default();
    let select_one = args.common.select_one;
    let chosen = tokio::task::block_in_place(|| pick(&index.instances, &query, select_one))?;
    remember(&chosen.id);
    let mut shell = <Args as clap::Parser>::try_parse_from(["postern", "shell", &chosen.id])
        .context("could not build the shell command")?;
    shell.common = args.common;
    bind(&mut shell, reach, &chosen, None).await?;
    Ok(shell)
}

/// The instance `id` as some cached listing knows it (any age: ids do not move), else as a
/// refreshed index knows it; `None` when no configured account has it.
async fn find_cached(reach: &Reach, id: &str) -> anyhow::Result<Option<Instance>> {
    let context = load_context(&reach.aws).await?;
    let scopes = reach.scopes(&context, &[], None);
    if let Some(cache) = cache_dir().map(Cache::new) {
        for scope in &scopes.scopes {
            if let Some(found) = cache
                .load(scope)
                .and_then(|entry| entry.instances.into_iter().find(|i| i.id == id))
            {
                return Ok(Some(found));
            }
        }
    }
    let index = load_index(reach, &[], true, None).await?;
    Ok(index.instances.into_iter().find(|i| i.id == id))
}

/// Opens the terminal picker over `instances` (with `select_one`, the only online match of
/// `query` is taken without it); cancelling is an error (nothing to open).
fn pick(instances: &[Instance], query: &str, select_one: bool) -> anyhow::Result<Instance> {
    let mut instances = instances.to_vec();
    if let Some(dir) = cache_dir() {
        Frecency::load(&dir).sort(&mut instances, |i| &i.id, SystemTime::now());
    }
    let rows = rows_for(&instances);
    match choose(&mut TtyPicker, &rows, query, select_one).context("the instance picker failed")? {
        PickOutcome::Chosen(i) => Ok(instances[i].clone()),
        PickOutcome::Cancelled => Err(ExpectedError::new(ErrorKind::Usage, "no instance chosen")
            .hint("online instances can be opened; `postern list` shows every instance")
            .into()),
    }
}

/// Records a chosen target in the frecency file (best effort).
fn remember(id: &str) {
    if let Some(dir) = cache_dir() {
        let mut frecency = Frecency::load(&dir);
        frecency.record(id, SystemTime::now());
        if let Err(e) = frecency.save() {
            tracing::debug!(error = %e, "could not write the target history");
        }
    }
}

/// Whether the picker can run: stdin and stderr are terminals.
fn interactive() -> bool {
    crate::term::is_terminal(std::io::stdin().as_raw_fd())
        && crate::term::is_terminal(std::io::stderr().as_raw_fd())
}

/// Resolves `raw` through the index: from the cache first, then once more after a refresh when
/// the cache does not know it.
pub(crate) async fn resolve(reach: &Reach, raw: &str) -> anyhow::Result<Instance> {
    for refresh in [false, true] {
        let index = load_index(reach, &[], refresh, None).await?;
        match target::resolve(raw, &index.instances) {
            Resolution::Found(instance) => return Ok(instance.clone()),
            Resolution::Ambiguous(candidates) => {
                if interactive() {
                    let candidates: Vec<Instance> = candidates.into_iter().cloned().collect();
                    return tokio::task::block_in_place(|| pick(&candidates, "", false));
                }
                let hint = "name one of them by instance id or as NAME@ACCOUNT-ALIAS";
                return Err(ExpectedError::new(
                    ErrorKind::TargetUnresolved,
                    format!(
                        "`{raw}` matches {} instances:\n{}",
                        candidates.len(),
                        target::describe_candidates(&candidates)
                    ),
                )
                .hint(hint)
                .into());
            }
            Resolution::NotFound => {}
        }
    }
    Err(ExpectedError::new(
        ErrorKind::TargetUnresolved,
        format!("no instance matches `{raw}`"),
    )
    .target(describe_reach(reach))
    .hint(
        "give an instance id, a Name tag, NAME@ACCOUNT-ALIAS, a private IP or DNS name; \
         `postern list QUERY` shows what the index holds",
    )
    .into())
}

/// Builds the index over `regions` (empty: each account's or the configured ones): every
/// configured account through the role broker (only `account` when given), else the single
/// profile; prints a warning line per unreachable scope.
pub(crate) async fn load_index(
    reach: &Reach,
    regions: &[String],
    refresh: bool,
    account: Option<&str>,
) -> anyhow::Result<Index> {
    let context = load_context(&reach.aws).await?;
    let Scopes { scopes, skipped } = reach.scopes(&context, regions, account);
    for (alias, why) in &skipped {
        report::notice(&format!("note: skipping account {alias}: {why}"));
    }
    if scopes.is_empty() {
        return Err(ExpectedError::new(ErrorKind::Config, "no account to list")
            .target(describe_reach(reach))
            .hint(match account {
                Some(a) => format!("`{a}` is no alias or id of `postern accounts`"),
                None => "add [[accounts]] to the configuration, or use another --source".to_owned(),
            })
            .into());
    }
    let cache = cache_dir().map(Cache::new);
    let options = IndexOptions {
        refresh,
        ..IndexOptions::default()
    };
    let progress_tty = crate::term::is_terminal(std::io::stderr().as_raw_fd());
    let progress = |p: crate::discovery::Progress| {
        if progress_tty && p.total > 1 {
            eprint!(
                "\rpostern: listed {}/{} scopes, {} instances",
                p.done, p.total, p.instances
            );
            if p.done == p.total {
                eprintln!();
            }
        }
    };
    let index = match &reach.broker {
        Some(broker) => {
            let configs = BrokerScopes::new(Arc::clone(broker), context.sdk.clone());
            let source = Arc::new(SdkSource::new(configs));
            build_index(source, &scopes, cache.as_ref(), options, progress).await
        }
        None => {
            let source = Arc::new(SdkSource::new(SingleProfile::new(context.sdk.clone())));
            build_index(source, &scopes, cache.as_ref(), options, progress).await
        }
    };
    for failure in &index.failures {
        let error = &failure.error;
        let stale = if index.stale.contains(&error.scope) {
            " (showing its cached listing)"
        } else {
            ""
        };
        let request = error
            .request_id
            .as_deref()
            .map(|id| format!(" (request id {id})"))
            .unwrap_or_default();
        report::notice(&format!("warning: {error}{request}{stale}"));
    }
    if index.failures.len() == scopes.len() && index.stale.is_empty() {
        return Err(ExpectedError::new(
            ErrorKind::AwsRequest,
            "could not list instances in any account or region",
        )
        .target(describe_reach(reach))
        .hint("check the credentials and region; the warnings above give each scope's reason")
        .into());
    }
    Ok(index)
}

/// The SDK configuration of the command line's identity (endpoint, region, retry settings).
async fn load_context(aws_options: &AwsOptions) -> anyhow::Result<AwsContext> {
    aws::load(aws_options).await.map_err(|e| {
        ExpectedError::new(ErrorKind::AwsConfig, "could not load the AWS configuration")
            .target(describe_aws(aws_options))
            .source(e)
            .into()
    })
}

/// Instances matching the fuzzy `query` (best first) and every `tags` filter.
pub(crate) fn filter<'a>(
    instances: &'a [Instance],
    query: &str,
    tags: &[(String, String)],
) -> Vec<&'a Instance> {
    let kept: Vec<&Instance> = instances
        .iter()
        .filter(|i| tags.iter().all(|(k, v)| i.tags.get(k) == Some(v)))
        .collect();
    let matcher = Matcher::new(query);
    if matcher.is_empty() {
        return kept;
    }
    let texts: Vec<String> = kept.iter().map(|i| search_text(i)).collect();
    matcher.rank(&texts).into_iter().map(|i| kept[i]).collect()
}

/// The table `postern list` prints; with `colour`, production rows are red.
pub(crate) fn render_table(rows: &[&Instance], colour: bool) -> String {
    let header = [
        "ACCOUNT",
        "ENV",
        "REGION",
        "NAME",
        "INSTANCE",
        "PRIVATE IP",
        "PLATFORM",
        "AGENT",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|i| {
            [
                i.alias.clone(),
                i.env.clone().unwrap_or_else(|| "-".into()),
                i.region.clone(),
                if i.name.is_empty() {
                    "-".into()
                } else {
                    i.name.clone()
                },
                i.id.clone(),
                i.private_ip.clone().unwrap_or_else(|| "-".into()),
                if i.platform.is_empty() {
                    "-".into()
                } else {
                    i.platform.clone()
                },
                i.agent_status().to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            if i + 1 == cols.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:w$}  "));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(&header.map(str::to_owned));
    for (row, instance) in cells.iter().zip(rows) {
        let text = line(row);
        if colour && instance.is_prod() {
            out.push_str(&format!(
                "{PROD_COLOUR}{}{RESET}\n",
                text.trim_end_matches('\n')
            ));
        } else {
            out.push_str(&text);
        }
    }
    out
}

fn search_text(i: &Instance) -> String {
    format!(
        "{} {} {} {} {} {} {} {}",
        i.alias,
        i.env.as_deref().unwrap_or(""),
        i.region,
        i.name,
        i.id,
        i.private_ip.as_deref().unwrap_or(""),
        i.platform,
        i.agent_status()
    )
}

fn describe_reach(reach: &Reach) -> String {
    match &reach.broker {
        Some(broker) => {
            let path = broker
                .config()
                .path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let mut text = format!("the accounts of {path}");
            if let Some(endpoint) = &reach.aws.endpoint_url {
                text.push_str(&format!(", endpoint {endpoint}"));
            }
            text
        }
        None => describe_aws(&reach.aws),
    }
}

fn describe_aws(aws: &AwsOptions) -> String {
    let mut parts = vec![format!(
        "profile {}",
        aws.profile.as_deref().unwrap_or("default")
    )];
    if let Some(region) = &aws.region {
        parts.push(format!("region {region}"));
    }
    if let Some(endpoint) = &aws.endpoint_url {
        parts.push(format!("endpoint {endpoint}"));
    }
    parts.join(", ")
}

/// Production rows: red, as the guardrails paint production accounts.
const PROD_COLOUR: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, name: &str, env: &str) -> Instance {
        let mut tags = std::collections::BTreeMap::new();
        tags.insert("env".to_owned(), env.to_owned());
        Instance {
            id: id.into(),
            name: name.into(),
            alias: "default".into(),
            region: "eu-west-1".into(),
            tags,
            ping_status: Some("Online".into()),
            ..Instance::default()
        }
    }

    #[test]
    fn filters_by_tag_and_ranks_by_query() {
        let rows = vec![
            instance("i-1", "api-1", "prod"),
            instance("i-2", "web-1", "prod"),
            instance("i-3", "web-2", "dev"),
        ];
        let tags = vec![("env".to_owned(), "prod".to_owned())];
        let ids: Vec<_> = filter(&rows, "web", &tags)
            .iter()
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(ids, ["i-2"]);
        assert_eq!(filter(&rows, "", &[]).len(), 3);
    }

    #[test]
    fn table_has_a_header_and_aligned_columns() {
        let rows = [instance("i-1", "api-1", "prod")];
        let refs: Vec<_> = rows.iter().collect();
        let table = render_table(&refs, false);
        let lines: Vec<_> = table.lines().collect();
        assert!(
            lines[0].starts_with("ACCOUNT  ENV  REGION     NAME   INSTANCE"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("default  -    eu-west-1  api-1  i-1"),
            "{table}"
        );
        assert!(lines[1].ends_with("Online"));
    }
}
