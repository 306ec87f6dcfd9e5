//! The [`Picker`] trait and what every picker shares: the request (rows known now, rows still
//! arriving, how to refresh), the outcome, and [`choose`], which takes the only online match
//! of `--query` with `--select-1` and never lets an offline instance through.

use std::io;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::discovery::{Indexed, Instance};
use crate::picker::frecency::Frecency;
use crate::picker::matcher::{SearchFields, rank};
use crate::picker::row::RowContext;

/// Shows instances and lets the user choose. [`crate::picker::SkimPicker`] draws on the
/// terminal; tests use a scripted picker, so the logic around it needs no TTY.
pub trait Picker {
    /// Shows `request`'s instances (and those its feed delivers) until the user chooses online
    /// instances or cancels.
    fn pick(&mut self, request: PickRequest) -> io::Result<PickOutcome>;
}

/// What to pick from.
#[derive(Default)]
pub struct PickRequest {
    /// The instances known now (from the cache, or the whole index).
    pub instances: Vec<Indexed>,
    /// Instances still being listed (a cold start), and the progress of that listing.
    pub feed: Option<UnboundedReceiver<Feed>>,
    /// Starts a refresh of the index in the background (Ctrl-R); its feed ends with
    /// [`Feed::Replace`].
    pub refresh: Option<Box<dyn Fn() -> UnboundedReceiver<Feed> + Send>>,
    /// The query the picker opens with (`--query`).
    pub query: String,
    /// `--select-1`: the only online match of the query is chosen without showing the picker.
    pub select_one: bool,
    /// Whether several instances may be chosen (Tab), for commands that take several targets.
    pub multi: bool,
    /// Orders the rows when the query is empty (most recently and often chosen first).
    pub frecency: Option<Frecency>,
    /// Roles and the last sessions, for the preview.
    pub context: RowContext,
}

/// What a listing in progress tells the picker.
#[derive(Clone, Debug, PartialEq)]
pub enum Feed {
    /// Instances of one more scope.
    Rows(Vec<Instance>),
    /// The whole index, listed again: it replaces every row.
    Replace(Vec<Instance>),
    /// Scopes listed so far, out of how many, and how many of them failed.
    Progress {
        /// Scopes finished.
        done: usize,
        /// Scopes in the listing.
        total: usize,
        /// Scopes that could not be listed (their warnings are printed after the picker).
        failed: usize,
    },
}

/// What the user decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PickOutcome {
    /// The chosen instances (one unless the request allowed several), all online.
    Chosen(Vec<Instance>),
    /// Esc, Ctrl-C or Ctrl-G.
    Cancelled,
}

/// Orders the request's rows, takes the only online match with `select_one`, else asks
/// `picker`. A picker answering with an offline instance is refused (cancelled).
pub fn choose(picker: &mut dyn Picker, mut request: PickRequest) -> io::Result<PickOutcome> {
    if let Some(frecency) = &request.frecency {
        frecency.sort(
            &mut request.instances,
            |i| i.summary().id,
            std::time::SystemTime::now(),
        );
    }
    if request.select_one && !request.query.trim().is_empty() {
        let fields: Vec<SearchFields> = request
            .instances
            .iter()
            .map(|i| SearchFields::of_listed(i, &i.summary()))
            .collect();
        let mut online = rank(&fields, &request.query)
            .into_iter()
            .filter(|&i| request.instances[i].summary().is_online());
        if let (Some(only), None) = (online.next(), online.next()) {
            return Ok(PickOutcome::Chosen(vec![
                request.instances.swap_remove(only).into_instance(),
            ]));
        }
    }
    let multi = request.multi;
    Ok(match picker.pick(request)? {
        PickOutcome::Chosen(chosen)
            if !chosen.is_empty()
                && (multi || chosen.len() == 1)
                && chosen.iter().all(Instance::is_online) =>
        {
            PickOutcome::Chosen(chosen)
        }
        _ => PickOutcome::Cancelled,
    })
}

#[cfg(test)]
/// A picker that chooses the `nth` row matching the request's query, best first (or the rows
/// at `several`), and records what it was opened with.
#[derive(Debug, Default)]
pub(crate) struct ScriptedPicker {
    /// Which match to choose; `None` cancels.
    pub nth: Option<usize>,
    /// Several matches to choose (multi-select).
    pub several: Vec<usize>,
    /// The queries the picker was opened with, and the ids it showed, in order.
    pub opened: Vec<(String, Vec<String>)>,
}

#[cfg(test)]
impl Picker for ScriptedPicker {
    fn pick(&mut self, request: PickRequest) -> io::Result<PickOutcome> {
        let fields: Vec<SearchFields> = request
            .instances
            .iter()
            .map(|i| SearchFields::of_listed(i, &i.summary()))
            .collect();
        let ranked = rank(&fields, &request.query);
        self.opened.push((
            request.query.clone(),
            request
                .instances
                .iter()
                .map(|i| i.summary().id.to_owned())
                .collect(),
        ));
        let pick = |n: usize| {
            ranked
                .get(n)
                .map(|&i| request.instances[i].instance().into_owned())
        };
        if !self.several.is_empty() {
            return Ok(PickOutcome::Chosen(
                self.several.iter().filter_map(|&n| pick(n)).collect(),
            ));
        }
        Ok(match self.nth.and_then(pick) {
            Some(instance) => PickOutcome::Chosen(vec![instance]),
            None => PickOutcome::Cancelled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, name: &str, online: bool) -> Instance {
        Instance {
            id: id.into(),
            name: name.into(),
            alias: "acme-dev".into(),
            env: Some("dev".into()),
            region: "eu-west-1".into(),
            ping_status: Some(if online { "Online" } else { "ConnectionLost" }.into()),
            ..Instance::default()
        }
    }

    fn request(query: &str, select_one: bool) -> PickRequest {
        PickRequest {
            instances: vec![
                instance("i-01", "web-1", true).into(),
                instance("i-02", "web-2", false).into(),
                instance("i-03", "db-1", true).into(),
            ],
            query: query.into(),
            select_one,
            ..PickRequest::default()
        }
    }

    fn ids(outcome: PickOutcome) -> Vec<String> {
        match outcome {
            PickOutcome::Chosen(chosen) => chosen.into_iter().map(|i| i.id).collect(),
            PickOutcome::Cancelled => Vec::new(),
        }
    }

    #[test]
    fn select_one_takes_the_only_online_match_without_the_picker() {
        let mut picker = ScriptedPicker::default();
        // web-2 matches too, but it is offline.
        let outcome = choose(&mut picker, request("web", true)).unwrap();
        assert_eq!(ids(outcome), ["i-01"]);
        assert!(picker.opened.is_empty());
    }

    #[test]
    fn several_matches_open_the_picker_with_the_query() {
        let mut picker = ScriptedPicker {
            nth: Some(0),
            ..ScriptedPicker::default()
        };
        // Two online matches: --select-1 cannot decide, the picker does.
        let outcome = choose(&mut picker, request("db | web-1", true)).unwrap();
        let chosen = ids(outcome);
        assert!(chosen == ["i-01"] || chosen == ["i-03"], "{chosen:?}");
        assert_eq!(picker.opened[0].0, "db | web-1");
    }

    #[test]
    fn an_offline_choice_or_a_cancel_is_cancelled() {
        let mut cancel = ScriptedPicker::default();
        assert_eq!(
            choose(&mut cancel, request("", false)).unwrap(),
            PickOutcome::Cancelled
        );
        let mut offline = ScriptedPicker {
            nth: Some(0),
            ..ScriptedPicker::default()
        };
        assert_eq!(
            choose(&mut offline, request("web-2", false)).unwrap(),
            PickOutcome::Cancelled
        );
    }

    #[test]
    fn several_rows_only_when_the_command_takes_several() {
        let mut picker = ScriptedPicker {
            several: vec![0, 2],
            ..ScriptedPicker::default()
        };
        assert_eq!(
            choose(&mut picker, request("", false)).unwrap(),
            PickOutcome::Cancelled
        );
        let multi = PickRequest {
            multi: true,
            ..request("", false)
        };
        let mut picker = ScriptedPicker {
            several: vec![0, 2],
            ..ScriptedPicker::default()
        };
        assert_eq!(ids(choose(&mut picker, multi).unwrap()), ["i-01", "i-03"]);
    }

    #[test]
    fn rows_open_in_frecency_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut frecency = Frecency::load(dir.path());
        frecency.record("i-03", std::time::SystemTime::now());
        let mut picker = ScriptedPicker::default();
        let request = PickRequest {
            frecency: Some(frecency),
            ..request("", false)
        };
        choose(&mut picker, request).unwrap();
        assert_eq!(picker.opened[0].1, ["i-03", "i-01", "i-02"]);
    }
}
