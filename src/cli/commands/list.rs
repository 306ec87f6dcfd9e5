//! `postern list` and the index the session commands resolve targets with: build the instance
//! index (cache first, discovery for the rest), filter or resolve, and report unreachable
//! scopes as warnings. For the picker the index can also arrive as it is listed ([`for_picker`]:
//! the cached rows at once, the rest scope by scope, Ctrl-R lists everything again).
//!
//! The table fits the terminal (the widest columns give way first); every cell came from AWS
//! and is escaped, so only our colours reach the terminal.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::aws::{self, AwsContext, AwsErrorKind, AwsOptions};
use crate::cli::reach::{BrokerScopes, Reach, Scopes};
use crate::config;
use crate::discovery::{
    Cache, DEFAULT_MAX_AGE, Index, IndexOptions, Indexed, Instance, InstanceSource, Listed,
    Progress, Scope, SdkSource, SingleProfile, SourceError, Summary, build_index,
};
use crate::paths::cache_dir;
use crate::picker::{Feed, SearchFields, fit_cell, fit_widths, rank};
use crate::report::{self, ErrorKind, ExpectedError};
use crate::term::{Colour, colour_on, escape, escape_text, paint};

/// `postern list`.
#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    /// Fuzzy query over alias, env, region, Name, instance id and private IP.
    #[arg(value_name = "QUERY")]
    pub query: Option<String>,

    /// Regions to list, comma-separated (default: --region, else the profile's region).
    #[arg(long, value_name = "REGION,…", value_delimiter = ',')]
    pub regions: Vec<String>,

    /// Only instances of this account: the global `--account`.
    #[arg(skip)]
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
        let tags = parse_tags(&args.tags)?;
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
    let (index, in_place) = load(
        &plan.reach,
        &plan.regions,
        plan.refresh,
        plan.account.as_deref(),
        true,
    )
    .await?;
    // Rows left in the cache file show without being decoded (only the matches' are, for
    // --json or --tag).
    let rows = in_place.unwrap_or_else(|| index.instances.into_iter().map(Indexed::from).collect());
    if let Some(env) = plan.env.as_deref() {
        note_unknown_env(env, &rows);
    }
    let scoped = in_scope(rows, plan.account.as_deref(), plan.env.as_deref());
    let rows = filter(&scoped, &plan.query, &plan.tags);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if plan.json {
        for row in rows {
            serde_json::to_writer(&mut out, &*row.instance())
                .context("could not write the listing")?;
            out.write_all(b"\n")
                .context("could not write the listing")?;
        }
    } else {
        // Fitted to the terminal; piped, every cell is whole.
        let width = stdout
            .is_terminal()
            .then(crate::term::window_size)
            .flatten()
            .map(|(cols, _)| usize::from(cols));
        let summaries: Vec<Summary<'_>> = rows.iter().map(|r| r.summary()).collect();
        out.write_all(render_table(&summaries, colour_on(&stdout), width).as_bytes())
            .context("could not write the listing")?;
    }
    out.flush().context("could not write the listing")?;
    // The process ends now: freeing tens of thousands of instances one by one would only
    // delay the exit (the operating system takes the memory back at once).
    std::mem::forget(scoped);
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
    Ok(load(reach, regions, refresh, account, false).await?.0)
}

/// [`load_index`]; with `in_place`, when every scope is fresh in the cache, its instances are
/// left in the cache file (the second value) and the index holds none.
async fn load(
    reach: &Reach,
    regions: &[String],
    refresh: bool,
    account: Option<&str>,
    in_place: bool,
) -> anyhow::Result<(Index, Option<Vec<Indexed>>)> {
    // Loaded only when something is listed: a cache holding every scope fresh is read alone.
    let context = LazyContext::new(&reach.aws);
    let scopes = scopes_to_list(reach, &context, regions, account).await?;
    let progress_tty = std::io::stderr().is_terminal();
    let progress = |p: Progress| {
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
    let lister = Lister::new(reach, context);
    // Every scope cached and fresh (the usual case): read on every core, no listing.
    let cached = Index {
        cached: scopes.len(),
        ..Index::default()
    };
    let now = SystemTime::now();
    if let (false, Some(cache)) = (refresh, lister.cache.as_ref()) {
        let file = cache.read();
        if in_place {
            let fresh = file.fresh_in_place(&scopes, now, DEFAULT_MAX_AGE);
            if let Some(listings) = fresh.into_iter().collect::<Option<Vec<_>>>() {
                return Ok((cached, Some(join(listings))));
            }
        } else {
            let fresh = file.fresh(&scopes, now, DEFAULT_MAX_AGE);
            if let Some(listings) = fresh.into_iter().collect::<Option<Vec<_>>>() {
                let instances = join(listings);
                return Ok((
                    Index {
                        instances,
                        ..cached
                    },
                    None,
                ));
            }
        }
    }
    let index = lister.list(&scopes, refresh, None, progress).await?;
    for warning in warnings(&index) {
        report::notice(&warning);
    }
    if index.failures.len() == scopes.len() && index.stale.is_empty() {
        return Err(nothing_listed(reach, &index).into());
    }
    Ok((index, None))
}

/// The index as the picker takes it: the instances a fresh cache holds now, the others as
/// they are listed, and a way to list everything again (Ctrl-R).
pub(crate) struct PickerIndex {
    /// The instances of the scopes the cache holds fresh (left in the cache file).
    pub instances: Vec<Indexed>,
    /// The other scopes' instances as they arrive; `None` when the cache held everything.
    pub feed: Option<mpsc::UnboundedReceiver<Feed>>,
    /// Lists every scope again; its feed ends with the whole index.
    pub refresh: Box<dyn Fn() -> mpsc::UnboundedReceiver<Feed> + Send>,
    /// The warnings of the listings (unreachable scopes), to print once the picker closed.
    pub warnings: Arc<Mutex<Vec<String>>>,
}

/// Starts building the index for the picker over every configured account (only `account`
/// when given): see [`PickerIndex`]. Nothing is printed while the picker may be open. The AWS
/// configuration is loaded only when a scope is missing or stale (before the picker opens, so
/// that a configuration error fails the command as before) or on Ctrl-R (in the background):
/// a picker over a fresh cache draws without it.
pub(crate) async fn for_picker(
    reach: &Reach,
    account: Option<&str>,
) -> anyhow::Result<PickerIndex> {
    let context = LazyContext::new(&reach.aws);
    let scopes = scopes_to_list(reach, &context, &[], account).await?;
    let lister = Lister::new(reach, context);
    let fresh = match &lister.cache {
        Some(cache) => cache
            .read()
            .fresh_in_place(&scopes, SystemTime::now(), DEFAULT_MAX_AGE),
        None => vec![None; scopes.len()],
    };
    let mut instances = Vec::with_capacity(fresh.iter().flatten().map(Vec::len).sum());
    let mut missing = Vec::new();
    for (scope, listing) in scopes.iter().zip(fresh) {
        match listing {
            Some(listing) => instances.extend(listing),
            None => missing.push(scope.clone()),
        }
    }
    if !missing.is_empty() {
        lister.context.get().await?;
    }
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let feed = (!missing.is_empty()).then(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        let (lister, warnings) = (lister.clone(), Arc::clone(&warnings));
        tokio::spawn(async move {
            let rows = tx.clone();
            let listed = lister
                .list(&missing, false, Some(rows), progress_to(tx.clone()))
                .await;
            let index = match listed {
                Ok(index) => index,
                Err(e) => return unlisted(&tx, missing.len(), &warnings, &e),
            };
            // Failed scopes show their stale cached listing, as `postern list` does.
            let stale: Vec<Instance> = index
                .instances
                .iter()
                .filter(|i| {
                    index
                        .stale
                        .iter()
                        .any(|s| s.account == i.account && s.region == i.region)
                })
                .cloned()
                .collect();
            if !stale.is_empty() {
                let _ = tx.send(Feed::Rows(stale));
            }
            finished(&tx, missing.len(), &index);
            record(&warnings, &index);
        });
        rx
    });
    let refresh = {
        let warnings = Arc::clone(&warnings);
        Box::new(move || {
            let (tx, rx) = mpsc::unbounded_channel();
            let (lister, scopes, warnings) =
                (lister.clone(), scopes.clone(), Arc::clone(&warnings));
            tokio::spawn(async move {
                let listed = lister
                    .list(&scopes, true, None, progress_to(tx.clone()))
                    .await;
                let index = match listed {
                    Ok(index) => index,
                    Err(e) => return unlisted(&tx, scopes.len(), &warnings, &e),
                };
                finished(&tx, scopes.len(), &index);
                record(&warnings, &index);
                let _ = tx.send(Feed::Replace(index.instances));
            });
            rx
        }) as Box<dyn Fn() -> mpsc::UnboundedReceiver<Feed> + Send>
    };
    Ok(PickerIndex {
        instances,
        feed,
        refresh,
        warnings,
    })
}

/// The SDK configuration of the command line's identity (endpoint, region, retry settings).
pub(crate) async fn load_context(aws_options: &AwsOptions) -> anyhow::Result<AwsContext> {
    aws::load(aws_options).await.map_err(|e| {
        crate::cli::errors::aws_failure(
            e,
            "could not load the AWS configuration",
            &describe_aws(aws_options),
        )
    })
}

/// `--tag KEY=VALUE` filters as pairs.
pub(crate) fn parse_tags(raw: &[String]) -> Result<Vec<(String, String)>, ExpectedError> {
    raw.iter()
        .map(|raw| {
            raw.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    ExpectedError::new(ErrorKind::Usage, format!("`{raw}` is not KEY=VALUE"))
                        .hint("write --tag env=prod")
                })
        })
        .collect()
}

/// The instances of `account` (alias or id) and `env`, when given: what `postern list`
/// filters before its query and tags ([`filter`]).
pub(crate) fn in_scope<T: Listed>(
    instances: Vec<T>,
    account: Option<&str>,
    env: Option<&str>,
) -> Vec<T> {
    if account.is_none() && env.is_none() {
        return instances;
    }
    instances
        .into_iter()
        .filter(|i| {
            let i = i.summary();
            account.is_none_or(|a| i.alias == a || i.account == a)
                && env.is_none_or(|e| i.env.is_some_and(|own| env_matches(own, e)))
        })
        .collect()
}

/// Whether an instance of environment `own` passes the filter `--env wanted`: a bare class
/// word (`prod`, `production`, `stg`, `dev`, ...) selects its whole class, as names mean the
/// same everywhere (`--env production` finds `prod` and `prod-eu`); any other name selects
/// itself alone (case aside), so `exec --all --env prod-eu` never reaches `prod-us`.
fn env_matches(own: &str, wanted: &str) -> bool {
    let is_class_word = !wanted.trim().contains(|c: char| !c.is_ascii_alphanumeric())
        && matches!(
            config::env_class(wanted),
            config::EnvClass::Production
                | config::EnvClass::Staging
                | config::EnvClass::Development
        );
    if is_class_word {
        config::env_class(own) == config::env_class(wanted)
    } else {
        own.trim().eq_ignore_ascii_case(wanted.trim())
    }
}

/// A note when no instance of the index is in environment `env` (a typo shows no rows at all,
/// which looks like an empty environment): the environments there are.
fn note_unknown_env<T: Listed>(env: &str, instances: &[T]) {
    let mut known: Vec<&str> = instances.iter().filter_map(|i| i.summary().env).collect();
    if known.iter().any(|own| env_matches(own, env)) {
        return;
    }
    known.sort_unstable();
    known.dedup();
    let known = if known.is_empty() {
        "none".to_owned()
    } else {
        known
            .iter()
            .map(|e| escape(e))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report::notice(&format!(
        "note: no instance of the index is in environment `{}` (environments: {known})",
        escape(env)
    ));
}

/// Instances matching `query` (skim's search syntax over the fields a person means, as in
/// the picker; best first) and every `tags` filter.
pub(crate) fn filter<'a, T: Listed>(
    instances: &'a [T],
    query: &str,
    tags: &[(String, String)],
) -> Vec<&'a T> {
    let kept: Vec<&T> = if tags.is_empty() {
        instances.iter().collect()
    } else {
        instances
            .iter()
            .filter(|i| {
                let instance = i.instance();
                tags.iter().all(|(k, v)| instance.tags.get(k) == Some(v))
            })
            .collect()
    };
    if query.trim().is_empty() {
        return kept;
    }
    let fields: Vec<SearchFields> = kept
        .iter()
        .map(|i| SearchFields::of_listed(*i, &i.summary()))
        .collect();
    rank(&fields, query).into_iter().map(|i| kept[i]).collect()
}

/// The table `postern list` prints: every cell escaped; with `colour`, production rows red
/// and staging rows yellow; with `width`, columns fitted into that many characters.
pub(crate) fn render_table(rows: &[Summary<'_>], colour: bool, width: Option<usize>) -> String {
    let cells: Vec<[String; COLUMNS]> = rows.iter().map(cells).collect();
    let mut natural = HEADER.map(str::len);
    for row in &cells {
        for (w, c) in natural.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let widths = match width {
        Some(width) => fit_widths(&natural, &FLOORS, GAP.len(), width, &GIVE_WAY),
        None => natural.to_vec(),
    };
    let line = |cols: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str(GAP);
            }
            s.push_str(&fit_cell(c, *w));
        }
        s.truncate(s.trim_end().len());
        s
    };
    let mut out = line(&HEADER.map(str::to_owned));
    out.push('\n');
    for (row, instance) in cells.iter().zip(rows) {
        let text = line(row);
        let paint_as = if instance.is_prod() {
            Some(Colour::Prod)
        } else if instance.is_staging() {
            Some(Colour::Staging)
        } else {
            None
        };
        match paint_as {
            Some(c) if colour => out.push_str(&paint(&text, c)),
            _ => out.push_str(&text),
        }
        out.push('\n');
    }
    out
}

/// One instance's cells, escaped.
fn cells(i: &Summary<'_>) -> [String; COLUMNS] {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            escape(s).into_owned()
        }
    };
    [
        or_dash(i.alias),
        or_dash(i.env.unwrap_or_default()),
        or_dash(i.region),
        or_dash(i.name),
        or_dash(i.id),
        or_dash(i.private_ip.unwrap_or_default()),
        or_dash(i.platform),
        or_dash(i.agent_status()),
    ]
}

/// The listings one after the other, moved into one vector sized once (`concat` would clone
/// every instance, and growing by doubling would copy them several times).
fn join<T>(listings: Vec<Vec<T>>) -> Vec<T> {
    let mut all = Vec::with_capacity(listings.iter().map(Vec::len).sum());
    for listing in listings {
        all.extend(listing);
    }
    all
}

/// The scopes to list, with a notice per account skipped; an error when none is left. The
/// AWS configuration is loaded only when a scope takes the SDK's region (no region named on
/// the command line or in the configuration).
async fn scopes_to_list(
    reach: &Reach,
    context: &LazyContext,
    regions: &[String],
    account: Option<&str>,
) -> anyhow::Result<Vec<Scope>> {
    let profile = aws::profile_in_effect(&reach.aws);
    let known = reach.scopes_before_sdk(
        profile.as_deref(),
        context.loaded.get().map(|c| c.region.as_str()),
        regions,
        account,
    );
    let Scopes { scopes, skipped } = match known {
        Some(scopes) => scopes,
        None => reach.scopes(context.get().await?, regions, account),
    };
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
    Ok(scopes)
}

/// Every scope failed: an error of the kind they share (every one without credentials, every
/// endpoint out of reach, ...), so that the exit code says what a single call's would.
fn nothing_listed(reach: &Reach, index: &Index) -> ExpectedError {
    let kinds: Vec<AwsErrorKind> = index.failures.iter().map(|f| f.error.kind).collect();
    let shared = kinds
        .first()
        .copied()
        .filter(|first| kinds.iter().all(|k| k == first));
    let (kind, hint) = match shared {
        Some(AwsErrorKind::Credentials) => (
            ErrorKind::AwsConfig,
            "check the credentials: refresh them (e.g. `aws sso login`), or pick another \
             --profile or --source",
        ),
        Some(AwsErrorKind::Unreachable) => (
            ErrorKind::EndpointUnreachable,
            "check the network, --endpoint-url and AWS_ENDPOINT_URL, and any proxy \
             (HTTPS_PROXY, NO_PROXY)",
        ),
        Some(AwsErrorKind::AccessDenied) => (
            ErrorKind::AccessDenied,
            "listing needs ec2:DescribeInstances and ssm:DescribeInstanceInformation in each \
             account and region",
        ),
        Some(AwsErrorKind::Configuration) => (
            ErrorKind::Config,
            "check the accounts, roles and source identity of the configuration (`postern \
             accounts`)",
        ),
        _ => (ErrorKind::AwsRequest, "check the credentials and region"),
    };
    ExpectedError::new(kind, "could not list instances in any account or region")
        .target(describe_reach(reach))
        .hint(format!(
            "{hint}; the warnings above give each scope's reason"
        ))
}

/// A warning line per scope that failed (escaped: the message came from AWS).
fn warnings(index: &Index) -> Vec<String> {
    index
        .failures
        .iter()
        .map(|failure| {
            let error = &failure.error;
            let stale = if index.stale.contains(&error.scope) {
                " (showing its cached listing)"
            } else {
                ""
            };
            let request = error
                .request_id
                .as_deref()
                .map(|id| format!(" (request id {})", escape(id)))
                .unwrap_or_default();
            // A multi-line cause (the SDK's "no credentials found in chain. Attempted:" and
            // one line per provider) stays on its lines.
            format!(
                "warning: {}{request}{stale}",
                escape_text(&error.to_string())
            )
        })
        .collect()
}

fn record(into: &Mutex<Vec<String>>, index: &Index) {
    into.lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(warnings(index));
}

/// Progress as the picker's feed carries it.
fn progress_to(tx: mpsc::UnboundedSender<Feed>) -> impl FnMut(Progress) + Send {
    move |p: Progress| {
        let _ = tx.send(Feed::Progress {
            done: p.done,
            total: p.total,
            failed: 0,
        });
    }
}

/// A background listing that could not start (the AWS configuration did not load): every
/// scope failed, and the reason is a warning for when the picker has closed.
fn unlisted(
    tx: &mpsc::UnboundedSender<Feed>,
    scopes: usize,
    warnings: &Mutex<Vec<String>>,
    error: &anyhow::Error,
) {
    let _ = tx.send(Feed::Progress {
        done: scopes,
        total: scopes,
        failed: scopes,
    });
    warnings
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("warning: {}", escape(&format!("{error:#}"))));
}

/// The last progress of a listing: how many of its scopes failed.
fn finished(tx: &mpsc::UnboundedSender<Feed>, scopes: usize, index: &Index) {
    let _ = tx.send(Feed::Progress {
        done: scopes,
        total: scopes,
        failed: index.failures.len(),
    });
}

/// Lists scopes with the command line's identity or the broker's roles; cheap to clone into
/// background listings.
#[derive(Clone)]
struct Lister {
    broker: Option<Arc<crate::broker::Broker>>,
    context: LazyContext,
    cache: Option<Cache>,
}

/// The command line's SDK configuration, loaded on first use and then shared: reading a fresh
/// cache needs none of it (loading it costs the CA bundle, the shared config files and the
/// region chain before anything could be shown).
#[derive(Clone)]
struct LazyContext {
    options: AwsOptions,
    loaded: Arc<tokio::sync::OnceCell<AwsContext>>,
}

impl LazyContext {
    fn new(options: &AwsOptions) -> Self {
        Self {
            options: options.clone(),
            loaded: Arc::default(),
        }
    }

    /// The configuration, loaded now if it was not yet ([`load_context`]'s errors).
    async fn get(&self) -> anyhow::Result<&AwsContext> {
        self.loaded
            .get_or_try_init(|| load_context(&self.options))
            .await
    }
}

impl Lister {
    fn new(reach: &Reach, context: LazyContext) -> Self {
        Self {
            broker: reach.broker.clone(),
            context,
            cache: cache_dir().map(Cache::new),
        }
    }

    /// The index of `scopes`; with `rows`, each scope's instances are sent there as soon as
    /// it is listed. Fails only when the AWS configuration does not load (a scope that cannot
    /// be listed is a failure in the index).
    async fn list(
        &self,
        scopes: &[Scope],
        refresh: bool,
        rows: Option<mpsc::UnboundedSender<Feed>>,
        progress: impl FnMut(Progress),
    ) -> anyhow::Result<Index> {
        let context = self.context.get().await?;
        let (sdk, ssm_endpoint) = (context.sdk.clone(), context.ssm_endpoint.clone());
        let options = IndexOptions {
            refresh,
            concurrency: discovery_concurrency()?,
            ..IndexOptions::default()
        };
        let cache = self.cache.as_ref();
        Ok(match &self.broker {
            Some(broker) => {
                let configs = BrokerScopes::new(Arc::clone(broker), sdk);
                let source = SdkSource::new(configs).with_ssm_endpoint(ssm_endpoint);
                let source = Arc::new(Tee::new(source, rows));
                build_index(source, scopes, cache, options, progress).await
            }
            None => {
                let source =
                    SdkSource::new(SingleProfile::new(sdk)).with_ssm_endpoint(ssm_endpoint);
                let source = Arc::new(Tee::new(source, rows));
                build_index(source, scopes, cache, options, progress).await
            }
        })
    }
}

/// Scopes listed at once: `POSTERN_DISCOVERY_CONCURRENCY` (1 to [`MAX_CONCURRENCY`]), else
/// [`crate::discovery::DEFAULT_CONCURRENCY`].
fn discovery_concurrency() -> Result<usize, ExpectedError> {
    let Some(value) = std::env::var_os(CONCURRENCY_VARIABLE) else {
        return Ok(crate::discovery::DEFAULT_CONCURRENCY);
    };
    value
        .to_str()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=MAX_CONCURRENCY).contains(n))
        .ok_or_else(|| {
            ExpectedError::new(
                ErrorKind::Usage,
                format!(
                    "{CONCURRENCY_VARIABLE} is {}, not a number of scopes from 1 to {MAX_CONCURRENCY}",
                    escape(&value.to_string_lossy())
                ),
            )
            .hint(format!(
                "unset it (default {}) or set it to, say, 8",
                crate::discovery::DEFAULT_CONCURRENCY
            ))
        })
}

/// The variable that sets how many scopes are listed at once.
const CONCURRENCY_VARIABLE: &str = "POSTERN_DISCOVERY_CONCURRENCY";
/// The most scopes listed at once (each holds up to two HTTP connections).
const MAX_CONCURRENCY: usize = 512;

/// A source that also sends each scope's instances to the picker as they are listed.
struct Tee<S> {
    inner: S,
    rows: Option<mpsc::UnboundedSender<Feed>>,
}

impl<S> Tee<S> {
    fn new(inner: S, rows: Option<mpsc::UnboundedSender<Feed>>) -> Self {
        Self { inner, rows }
    }
}

impl<S: InstanceSource> InstanceSource for Tee<S> {
    async fn list(&self, scope: &Scope) -> Result<Vec<Instance>, SourceError> {
        let listed = self.inner.list(scope).await?;
        if let Some(rows) = &self.rows {
            let _ = rows.send(Feed::Rows(listed.clone()));
        }
        Ok(listed)
    }
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
            if let Some(endpoint) = aws::ssm_endpoint_in_effect(reach.aws.endpoint_url.as_deref()) {
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
        aws::profile_in_effect(aws).as_deref().unwrap_or("default")
    )];
    if let Some(region) = &aws.region {
        parts.push(format!("region {region}"));
    }
    if let Some(endpoint) = aws::ssm_endpoint_in_effect(aws.endpoint_url.as_deref()) {
        parts.push(format!("endpoint {endpoint}"));
    }
    parts.join(", ")
}

const COLUMNS: usize = 8;
const HEADER: [&str; COLUMNS] = [
    "ACCOUNT",
    "ENV",
    "REGION",
    "NAME",
    "INSTANCE",
    "PRIVATE IP",
    "PLATFORM",
    "AGENT",
];
/// What each column keeps on a narrow terminal.
const FLOORS: [usize; COLUMNS] = [8, 3, 9, 12, 20, 10, 8, 6];
/// The order columns give way in: platform, agent status, alias, private IP, region, env, and
/// Name last; the instance id never.
const GIVE_WAY: [usize; 7] = [6, 7, 0, 5, 2, 1, 3];
const GAP: &str = "  ";

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
        let rows: Vec<Indexed> = vec![
            instance("i-1", "api-1", "prod").into(),
            instance("i-2", "web-1", "prod").into(),
            instance("i-3", "web-2", "dev").into(),
        ];
        let tags = vec![("env".to_owned(), "prod".to_owned())];
        let ids: Vec<_> = filter(&rows, "web", &tags)
            .iter()
            .map(|i| i.summary().id)
            .collect();
        assert_eq!(ids, ["i-2"]);
        assert_eq!(filter(&rows, "", &[]).len(), 3);
    }

    #[test]
    fn table_has_a_header_and_aligned_columns() {
        let row = instance("i-1", "api-1", "prod");
        let table = render_table(&[row.summary()], false, None);
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
    fn columns_fit_the_terminal_and_cells_are_escaped() {
        let mut rows = [
            instance(
                "i-0123456789abcdef0",
                "a-name-much-too-long-for-a-narrow-terminal",
                "prod",
            ),
            instance("i-0123456789abcdef1", "evil\x1b[2J\x07", "dev"),
        ];
        rows[0].platform = "Amazon Linux 2023.6.20250107".into();
        let refs: Vec<_> = rows.iter().map(Instance::summary).collect();
        let table = render_table(&refs, false, Some(100));
        for line in table.lines() {
            assert!(line.chars().count() <= 100, "{line:?}");
        }
        assert!(table.contains("i-0123456789abcdef0"), "{table}");
        assert!(table.contains('…'), "{table}");
        assert!(table.contains("evil\\x1b[2J\\x07"), "{table}");
        assert!(!table.contains('\x1b') && !table.contains('\x07'));
        // Piped: whole cells, one line per instance.
        let whole = render_table(&refs, false, None);
        assert!(whole.contains("a-name-much-too-long-for-a-narrow-terminal"));
        assert_eq!(whole.lines().count(), 3);
    }

    #[test]
    fn a_class_word_selects_its_class_and_any_other_name_itself() {
        assert!(env_matches("prod-eu", "production"));
        assert!(env_matches("live", "prod"));
        assert!(env_matches("prod", "PROD"));
        assert!(!env_matches("stg", "prod"));
        // A name that is not a bare class word: itself alone.
        assert!(env_matches("prod-eu", "Prod-EU"));
        assert!(!env_matches("prod-us", "prod-eu"));
        assert!(!env_matches("prod", "prod-eu"));
        assert!(env_matches("qa", "qa"));
        assert!(!env_matches("dev", "qa"));
    }

    #[test]
    fn colours_prod_rows_only_when_asked() {
        let rows = [instance("i-1", "api-1", "prod")];
        let mut prod = rows[0].clone();
        prod.env = Some("prod".into());
        let refs = vec![prod.summary()];
        assert!(render_table(&refs, true, None).contains('\x1b'));
        assert!(!render_table(&refs, false, None).contains('\x1b'));
    }
}
