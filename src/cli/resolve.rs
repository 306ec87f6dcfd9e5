//! Target resolution: the explicit step between the plan (validated, no network) and the run.
//!
//! A session command's TARGET as given (an instance id, a Name tag, NAME@ACCOUNT-ALIAS, a
//! private IP or DNS name, or nothing at all on a terminal) becomes one instance id: through
//! the index (cache first, then one refresh), or the picker. For an instance of an account the
//! configuration lists, the account's guardrails are checked and the session gets the account
//! role's credentials and the instance's region. A bare instance id with no configured account
//! costs no AWS call.

use std::time::SystemTime;

use anyhow::Context as _;

use crate::cli::commands::exec_many::ExecManyPlan;
use crate::cli::commands::forward::ForwardPlan;
use crate::cli::commands::list::{self, describe_reach, load_context, load_index};
use crate::cli::common::{CommonArgs, Target};
use crate::cli::errors::broker_failure;
use crate::cli::plan::{Plan, TargetSlot};
use crate::cli::reach::Reach;
use crate::discovery::target::{self, Resolution};
use crate::discovery::{Cache, Indexed, Instance};
use crate::paths::cache_dir;
use crate::picker::{Frecency, PickOutcome, PickRequest, RowContext, SkimPicker, choose};
use crate::report::{ErrorKind, ExpectedError};

/// Resolves `plan`'s session target (commands without one pass through unchanged).
pub(crate) async fn resolve(mut plan: Plan, common: &CommonArgs) -> anyhow::Result<Plan> {
    // `postern exec` without TARGET on a terminal: the picker takes several rows (Tab).
    if let Plan::Exec(exec) = &plan
        && exec.session.target.as_str().is_empty()
        && !common.select_one
        && crate::term::interactive()
    {
        return resolve_picked_exec(plan, common).await;
    }
    let Some(slot) = plan.target_slot() else {
        return Ok(plan);
    };
    let raw = slot.target.clone();
    let is_id = target::is_instance_id(&raw);
    if raw.is_empty() && !crate::term::interactive() {
        return Err(Target::missing().into());
    }
    let reach = Reach::new(common)?;
    let account = common.account.as_deref();
    let Some(broker) = &reach.broker else {
        if let Some(account) = account {
            return Err(ExpectedError::new(
                ErrorKind::Config,
                format!("--account {account}: the configuration lists no accounts"),
            )
            .hint("list the account in the configuration file (see `postern accounts sync`)")
            .into());
        }
        if is_id {
            check_target(slot.target)?;
            return Ok(plan);
        }
        let chosen = choose_instance(&reach, &raw, None, common).await?;
        bind(slot, &reach, &chosen).await?;
        return Ok(plan);
    };
    // `--account`: a configured account whose source-identity guardrail passes, checked before
    // any listing that would skip it; its id.
    let account_id = match account {
        None => None,
        Some(account) => {
            let Some(entry) = broker.config().account(account) else {
                return Err(ExpectedError::new(
                    ErrorKind::Usage,
                    format!("--account {account} is not a configured account"),
                )
                .hint("name an account alias or id from `postern accounts`")
                .into());
            };
            let id = entry.id.as_str().to_owned();
            check_source(broker, account)?;
            Some(id)
        }
    };
    // NAME@ALIAS names its account as surely: a source identity that may not reach it is
    // refused as such (241), not reported as a name nothing matches (the listing skips it).
    if account.is_none()
        && !is_id
        && let Some((_, alias)) = raw.rsplit_once('@')
        && broker.config().account(alias).is_some()
    {
        check_source(broker, alias)?;
    }
    let chosen = if is_id {
        match (find_cached(&reach, &raw, account).await?, account_id) {
            (Some(instance), _) => instance,
            // The user named the account: open the id there, with that account's role.
            (None, Some(account_id)) => {
                return bind_in_account(slot, &reach, &account_id)
                    .await
                    .map(|()| plan);
            }
            // Fail closed: never fall back to the command line's identity, which would skip the
            // account's guardrails (a prod instance opened without confirmation).
            (None, None) => return Err(unplaced(&raw, &reach).into()),
        }
    } else {
        choose_instance(&reach, &raw, account, common).await?
    };
    bind(slot, &reach, &chosen).await?;
    Ok(plan)
}

/// Refuses when the source identity may not reach configured account `account` (alias or id):
/// the guardrail's error, with its exit code.
fn check_source(broker: &crate::broker::Broker, account: &str) -> anyhow::Result<()> {
    broker
        .resolve(account)
        .and_then(|target| broker.source_for(&target))
        .map_err(|e| {
            broker_failure(
                e,
                &format!("could not open a session in account {account}"),
                &format!("account {account}"),
            )
        })
        .map(|_| ())
}

/// `postern exec` from the picker with several rows allowed: one chosen runs as ever (its
/// account's guardrails and role), several become [`ExecManyPlan`], whose run checks each
/// account's guardrails once.
async fn resolve_picked_exec(mut plan: Plan, common: &CommonArgs) -> anyhow::Result<Plan> {
    let reach = Reach::new(common)?;
    let account = common.account.as_deref();
    if let Some(account) = account
        && reach
            .broker
            .as_ref()
            .is_some_and(|b| b.config().account(account).is_none())
    {
        return Err(ExpectedError::new(
            ErrorKind::Usage,
            format!("--account {account} is not a configured account"),
        )
        .hint("name an account alias or id from `postern accounts`")
        .into());
    }
    let query = common.query.clone().unwrap_or_default();
    let mut chosen = pick(&reach, account, &query, false, true).await?;
    for instance in &chosen {
        remember(&instance.id);
    }
    if chosen.len() > 1 {
        let Plan::Exec(exec) = plan else {
            unreachable!("resolve_picked_exec is called with an exec plan");
        };
        return Ok(Plan::ExecMany(ExecManyPlan::chosen(reach, exec, chosen)));
    }
    let Some(slot) = plan.target_slot() else {
        unreachable!("an exec plan has a target");
    };
    // `pick` returns at least one instance or an error.
    let only = chosen.swap_remove(0);
    bind(slot, &reach, &only).await?;
    Ok(plan)
}

/// The instance `raw` names (the picker when empty), within `account` when given.
async fn choose_instance(
    reach: &Reach,
    raw: &str,
    account: Option<&str>,
    common: &CommonArgs,
) -> anyhow::Result<Instance> {
    let chosen = if raw.is_empty() {
        let query = common.query.clone().unwrap_or_default();
        pick(reach, account, &query, common.select_one, false)
            .await?
            .swap_remove(0)
    } else {
        find(reach, raw, account).await?
    };
    remember(&chosen.id);
    Ok(chosen)
}

/// An instance id no configured account's index holds.
fn unplaced(id: &str, reach: &Reach) -> ExpectedError {
    ExpectedError::new(
        ErrorKind::TargetUnresolved,
        format!(
            "instance {id} is not in the index of any configured account, so postern cannot \
             tell which account (and which guardrails) it belongs to"
        ),
    )
    .target(describe_reach(reach))
    .hint(
        "name its account with --account ALIAS (`postern accounts` lists them); if the \
         instance is new, `postern list --refresh` updates the index, and its warnings name \
         any account that could not be listed",
    )
}

/// Points the session at `chosen`: its id, its region and, for an instance of a configured
/// account, its role's credentials once the account's guardrails passed.
async fn bind(mut slot: TargetSlot<'_>, reach: &Reach, chosen: &Instance) -> anyhow::Result<()> {
    if let Some(platform) = slot.platform.as_deref_mut() {
        *platform = Some(chosen.platform.clone());
    }
    let credentials = reach
        .session_credentials(&chosen.account, slot.reason.as_deref())
        .await
        .map_err(|refused| {
            broker_failure(
                refused.error,
                &format!("could not open a session on {}", describe_instance(chosen)),
                &refused.target,
            )
        })?;
    chosen.id.clone_into(slot.target);
    slot.aws.region = Some(chosen.region.clone());
    finish_binding(slot, credentials, &chosen.alias)
}

/// Points the session at the instance id it names in `account` (the user said so with
/// `--account`), with the account's role once its guardrails passed; the region stays the
/// command line's.
async fn bind_in_account(slot: TargetSlot<'_>, reach: &Reach, account: &str) -> anyhow::Result<()> {
    let credentials = reach
        .session_credentials(account, slot.reason.as_deref())
        .await
        .map_err(|refused| {
            broker_failure(
                refused.error,
                &format!(
                    "could not open a session on {} in account {account}",
                    slot.target
                ),
                &refused.target,
            )
        })?;
    finish_binding(slot, credentials, account)
}

fn finish_binding(
    slot: TargetSlot<'_>,
    credentials: Option<crate::aws::CredentialsOverride>,
    account: &str,
) -> anyhow::Result<()> {
    if credentials.is_some()
        && let Some(flags) = slot.broker_flags
    {
        // The guardrails were checked here: the ProxyCommand's postern must not ask again,
        // and opens the id in the same account without looking it up.
        if !flags.iter().any(|f| f == "--yes") {
            flags.push("--yes".to_owned());
        }
        if !flags.iter().any(|f| f == "--account") {
            flags.extend(["--account".to_owned(), account.to_owned()]);
        }
    }
    if credentials.is_some()
        && let Some(resolved) = slot.account
    {
        *resolved = Some(account.to_owned());
    }
    slot.aws.credentials = credentials;
    check_target(slot.target)?;
    Ok(())
}

/// Resolves a forward's target as [`resolve`] does (index, picker, guardrails, the account's
/// role): for commands that run forwards of their own (`postern up`, the tunnel supervisor).
pub(crate) async fn resolve_forward(
    plan: ForwardPlan,
    common: &CommonArgs,
) -> anyhow::Result<ForwardPlan> {
    match resolve(Plan::Forward(plan), common).await? {
        Plan::Forward(plan) => Ok(plan),
        // `resolve` keeps the plan's kind.
        _ => unreachable!("resolution changed the kind of plan"),
    }
}

/// Checks that the resolved `target` is an instance id (and normalises its case).
fn check_target(target: &mut String) -> Result<(), ExpectedError> {
    let checked = Target::parse(target)?;
    checked.as_str().clone_into(target);
    Ok(())
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

/// The instance `id` as some cached listing knows it (any age: ids do not move), else as a
/// refreshed index knows it; `None` when no configured account has it.
async fn find_cached(
    reach: &Reach,
    id: &str,
    account: Option<&str>,
) -> anyhow::Result<Option<Instance>> {
    let context = load_context(&reach.aws).await?;
    let scopes = reach.scopes(&context, &[], account);
    if let Some(cache) = cache_dir().map(Cache::new) {
        let found = cache
            .read()
            .entries(&scopes.scopes)
            .into_iter()
            .flatten()
            .find_map(|entry| entry.instances.into_iter().find(|i| i.id == id));
        if found.is_some() {
            return Ok(found);
        }
    }
    let index = load_index(reach, &[], true, account).await?;
    Ok(index.instances.into_iter().find(|i| i.id == id))
}

/// Opens the picker over the index of every configured account (only `account` when given)
/// with `query` typed in: the rows a fresh cache holds at once, the others as they are listed,
/// Ctrl-R lists everything again. With `select_one` the whole index is listed first and the
/// only online match of `query` is taken without the picker; with `multi` several rows may be
/// chosen (Tab). Cancelling is an error (nothing to open); otherwise at least one instance.
async fn pick(
    reach: &Reach,
    account: Option<&str>,
    query: &str,
    select_one: bool,
    multi: bool,
) -> anyhow::Result<Vec<Instance>> {
    let mut request = PickRequest {
        query: query.to_owned(),
        select_one,
        multi,
        ..picker_request(reach)
    };
    let mut warnings = None;
    if select_one {
        let index = load_index(reach, &[], false, account).await?;
        request.instances = index.instances.into_iter().map(Indexed::from).collect();
    } else {
        let index = list::for_picker(reach, account).await?;
        request.instances = index.instances;
        request.feed = index.feed;
        request.refresh = Some(index.refresh);
        warnings = Some(index.warnings);
    }
    // Off the runtime's threads: skim blocks its thread while the listing goes on.
    let outcome = match tokio::task::spawn_blocking(move || choose(&mut SkimPicker, request)).await
    {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(std::io::Error::other(e)),
    };
    // The picker has closed: the listings' warnings can reach the screen now.
    for warning in warnings
        .iter()
        .flat_map(|w| std::mem::take(&mut *w.lock().unwrap_or_else(|p| p.into_inner())))
    {
        crate::report::notice(&warning);
    }
    picked_all(outcome)
}

/// Opens the picker over the instances an ambiguous TARGET names.
fn pick_among(reach: &Reach, candidates: Vec<Instance>) -> anyhow::Result<Instance> {
    let request = PickRequest {
        instances: candidates.into_iter().map(Indexed::from).collect(),
        ..picker_request(reach)
    };
    picked(choose(&mut SkimPicker, request))
}

/// What every picker is opened with: frecency ordering, each account's role and the last
/// session per instance for the preview.
fn picker_request(reach: &Reach) -> PickRequest {
    let mut context = RowContext::default();
    if let Some(broker) = &reach.broker {
        let config = broker.config();
        for account in &config.accounts {
            if let Some(role) = config.role_for(account) {
                context
                    .roles
                    .insert(account.id.as_str().to_owned(), role.to_owned());
            }
        }
    }
    if let Some(path) = crate::audit_trail::default_path()
        && let Ok((records, _)) = crate::audit_trail::read_last(&path, HISTORY_FOR_PREVIEW)
    {
        for record in records {
            context
                .last_sessions
                .insert(record.target, (record.time, record.kind));
        }
    }
    PickRequest {
        frecency: cache_dir().map(|dir| Frecency::load(&dir)),
        context,
        ..PickRequest::default()
    }
}

/// The chosen instance, or the error of a cancelled picker.
fn picked(outcome: std::io::Result<PickOutcome>) -> anyhow::Result<Instance> {
    picked_all(outcome).map(|mut chosen| chosen.swap_remove(0))
}

/// The chosen instances (at least one), or the error of a cancelled picker.
fn picked_all(outcome: std::io::Result<PickOutcome>) -> anyhow::Result<Vec<Instance>> {
    match outcome.context("the instance picker failed")? {
        PickOutcome::Chosen(chosen) if !chosen.is_empty() => Ok(chosen),
        _ => Err(ExpectedError::new(ErrorKind::Usage, "no instance chosen")
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
            tracing::debug!(error = %e, "could not write the frecency file");
        }
    }
}

/// Session records read for the preview's "last used" line.
const HISTORY_FOR_PREVIEW: usize = 10_000;

/// Finds `raw` through the index: from the cache first, then once more after a refresh when
/// the cache does not know it.
async fn find(reach: &Reach, raw: &str, account: Option<&str>) -> anyhow::Result<Instance> {
    for refresh in [false, true] {
        let index = load_index(reach, &[], refresh, account).await?;
        match target::resolve(raw, &index.instances) {
            Resolution::Found(instance) => return Ok(instance.clone()),
            Resolution::Ambiguous(candidates) => {
                if crate::term::interactive() {
                    let candidates: Vec<Instance> = candidates.into_iter().cloned().collect();
                    return pick_among(reach, candidates);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str) -> Result<String, ExpectedError> {
        let mut target = raw.to_owned();
        check_target(&mut target)?;
        Ok(target)
    }

    #[test]
    fn a_resolved_target_is_an_instance_id() {
        assert_eq!(check("i-0123456789ABCDEF0").unwrap(), "i-0123456789abcdef0");
        assert_eq!(
            check("mi-0123456789abcdef0").unwrap(),
            "mi-0123456789abcdef0"
        );
        let err = check("web-1").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        assert_eq!(err.to_string(), "`web-1` is not an instance id");
    }
}
