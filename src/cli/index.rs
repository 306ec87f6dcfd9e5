//! `postern list` and target resolution for session commands: build the instance index (cache
//! first, discovery for the rest), filter or resolve, and report unreachable scopes as warnings.

use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::aws::{self, AwsOptions};
use crate::cli::args::{Args, Command, CommonArgs};
use crate::discovery::{
    Cache, Index, IndexOptions, Instance, Scope, SdkSource, SingleProfile, build_index, cache_dir,
};
use crate::picker::{History, Matcher, PickOutcome, TtyPicker, choose, rows_for};
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
    /// AWS configuration choices.
    pub aws: AwsOptions,
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
    pub fn new(aws: AwsOptions, args: ListArgs) -> Result<Self, ExpectedError> {
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
            aws,
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
    let index = load_index(&plan.aws, &plan.regions, plan.refresh).await?;
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
        out.write_all(render_table(&rows).as_bytes())
            .context("could not write the listing")?;
    }
    out.flush().context("could not write the listing")?;
    Ok(ExitCode::SUCCESS)
}

/// Rewrites a session command's TARGET that is not an instance id into the instance id it
/// resolves to (and `--region` into the instance's region). An instance id is left alone: no
/// discovery call is made for it.
pub(crate) fn resolve_targets(mut args: Args) -> anyhow::Result<Args> {
    if args.command.is_none() && interactive() {
        return pick_shell(args);
    }
    let target = match &mut args.command {
        Some(Command::Shell(shell)) => &mut shell.target,
        Some(Command::Exec(exec)) => &mut exec.target,
        Some(Command::Forward(forward)) => &mut forward.target,
        _ => return Ok(args),
    };
    if target::is_instance_id(target) {
        return Ok(args);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let aws = options(&args.common);
    let chosen = runtime.block_on(resolve(&aws, target))?;
    remember(&chosen.id);
    *target = chosen.id;
    args.common.region = Some(chosen.region);
    Ok(args)
}

/// Bare `postern` on a terminal: pick an instance from the whole index and open a shell on it.
fn pick_shell(args: Args) -> anyhow::Result<Args> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let aws = options(&args.common);
    let index = runtime.block_on(load_index(&aws, &[], false))?;
    let chosen = pick(&index.instances, "")?;
    remember(&chosen.id);
    let mut shell = <Args as clap::Parser>::try_parse_from(["postern", "shell", &chosen.id])
        .context("could not build the shell command")?;
    shell.common = args.common;
    shell.common.region = Some(chosen.region);
    Ok(shell)
}

/// Opens the terminal picker over `instances`; cancelling is an error (nothing to open).
fn pick(instances: &[Instance], query: &str) -> anyhow::Result<Instance> {
    let mut instances = instances.to_vec();
    if let Some(dir) = cache_dir() {
        History::load(&dir).sort(&mut instances, |i| &i.id, SystemTime::now());
    }
    let rows = rows_for(&instances);
    match choose(&mut TtyPicker, &rows, query, false).context("the instance picker failed")? {
        PickOutcome::Chosen(i) => Ok(instances[i].clone()),
        PickOutcome::Cancelled => Err(ExpectedError::new(ErrorKind::Usage, "no instance chosen")
            .hint("online instances can be opened; `postern list` shows every instance")
            .into()),
    }
}

/// Records a chosen target in the frecency history (best effort).
fn remember(id: &str) {
    if let Some(dir) = cache_dir() {
        let mut history = History::load(&dir);
        history.record(id, SystemTime::now());
        if let Err(e) = history.save() {
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
pub(crate) async fn resolve(aws: &AwsOptions, raw: &str) -> anyhow::Result<Instance> {
    for refresh in [false, true] {
        let index = load_index(aws, &[], refresh).await?;
        match target::resolve(raw, &index.instances) {
            Resolution::Found(instance) => return Ok(instance.clone()),
            Resolution::Ambiguous(candidates) => {
                if interactive() {
                    let candidates: Vec<Instance> = candidates.into_iter().cloned().collect();
                    return pick(&candidates, "");
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
    .target(describe_aws(aws))
    .hint(
        "give an instance id, a Name tag, NAME@ACCOUNT-ALIAS, a private IP or DNS name; \
         `postern list QUERY` shows what the index holds",
    )
    .into())
}

/// Builds the index for the single profile (`--profile` or the default chain) over `regions`
/// (empty: the configured region), printing a warning line per unreachable region.
pub(crate) async fn load_index(
    aws_options: &AwsOptions,
    regions: &[String],
    refresh: bool,
) -> anyhow::Result<Index> {
    let context = aws::load(aws_options).await.map_err(|e| {
        ExpectedError::new(ErrorKind::AwsConfig, "could not load the AWS configuration")
            .target(describe_aws(aws_options))
            .source(e)
    })?;
    let regions = if regions.is_empty() {
        vec![context.region.clone()]
    } else {
        regions.to_vec()
    };
    let label = profile_label(
        context.profile.as_deref(),
        aws_options.endpoint_url.as_deref(),
    );
    let scopes: Vec<Scope> = regions
        .iter()
        .map(|region| Scope {
            account: label.clone(),
            alias: context
                .profile
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            env: None,
            region: region.clone(),
        })
        .collect();
    let cache = cache_dir().map(Cache::new);
    let source = Arc::new(SdkSource::new(SingleProfile::new(context.sdk.clone())));
    let options = IndexOptions {
        refresh,
        ..IndexOptions::default()
    };
    let progress_tty = crate::term::is_terminal(std::io::stderr().as_raw_fd());
    let index = build_index(source, &scopes, cache.as_ref(), options, |p| {
        if progress_tty && p.total > 1 {
            eprint!(
                "\rpostern: listed {}/{} scopes, {} instances",
                p.done, p.total, p.instances
            );
            if p.done == p.total {
                eprintln!();
            }
        }
    })
    .await;
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
            "could not list instances in any region",
        )
        .target(describe_aws(aws_options))
        .hint("check the credentials and region; the warnings above give each region's reason")
        .into());
    }
    Ok(index)
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

/// The table `postern list` prints.
pub(crate) fn render_table(rows: &[&Instance]) -> String {
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
    for row in &cells {
        out.push_str(&line(row));
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

fn options(common: &CommonArgs) -> AwsOptions {
    AwsOptions {
        profile: common.profile.clone(),
        region: common.region.clone(),
        endpoint_url: common.endpoint_url.clone(),
    }
}

/// The cache key of the single-profile identity: the profile name, plus a digest of the
/// endpoint when one is set (the emulator and AWS must not share a listing).
fn profile_label(profile: Option<&str>, endpoint: Option<&str>) -> String {
    let profile = profile.unwrap_or("default");
    match endpoint {
        Some(endpoint) => {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(endpoint.as_bytes());
            format!("profile-{profile}-{}", &hex::encode(digest)[..12])
        }
        None => format!("profile-{profile}"),
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
        let table = render_table(&refs);
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

    #[test]
    fn cache_key_separates_endpoints() {
        assert_eq!(profile_label(None, None), "profile-default");
        let a = profile_label(Some("p"), Some("http://127.0.0.1:1"));
        let b = profile_label(Some("p"), Some("http://127.0.0.1:2"));
        assert_ne!(a, b);
        assert!(a.starts_with("profile-p-"));
    }
}
