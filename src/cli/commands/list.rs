//! `postern list` and target resolution for session commands: build the instance index (cache
//! first, discovery for the rest), filter or resolve, and report unreachable scopes as warnings.

use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use std::io::IsTerminal as _;

use crate::aws::{self, AwsContext, AwsOptions};
use crate::cli::reach::{BrokerScopes, Reach, Scopes};
use crate::discovery::{
    Cache, Index, IndexOptions, Instance, SdkSource, SingleProfile, build_index,
};
use crate::paths::cache_dir;
use crate::picker::Matcher;
use crate::report::{self, ErrorKind, ExpectedError};

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
pub(crate) async fn load_context(aws_options: &AwsOptions) -> anyhow::Result<AwsContext> {
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

pub(crate) fn describe_reach(reach: &Reach) -> String {
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
