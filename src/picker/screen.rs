//! [`SkimPicker`]: skim as a library on the terminal, full screen, prompt on top.
//!
//! skim runs its event loop on the calling thread, which must not be one of the runtime's own
//! (the caller hands the picker to `spawn_blocking`): it drives skim's futures with
//! `Handle::block_on` while the runtime's threads run the rest. Rows reach it through its item
//! channel (the rows known now) and its event channel (rows still being listed, a refresh, the
//! header line), fed by one task; Enter goes through our own action, which refuses offline
//! rows with a line in the header and keeps the picker open. skim puts the terminal in raw
//! mode, reads keys through crossterm and restores everything when it returns (its panic hook
//! too); SIGTERM or SIGHUP while it is open closes it first, then the process ends of that
//! signal.
//!
//! The preview is right of the list on a wide terminal, below it on a narrow one. skim's
//! matcher runs our engines ([`crate::picker::matcher`]) behind [`Narrowing`]: while the query
//! only grows, the rows the previous query refused are refused again without being matched,
//! and a pass that saw every row is drawn as soon as it is over ([`redraw`]).
//!
//! Keys: skim's (fzf's) bindings: Up/Down, Ctrl-N/P, Ctrl-J/K, PgUp/PgDn, Tab (multi-select
//! where allowed), Enter, Esc/Ctrl-C/Ctrl-G; ours: Ctrl-O toggles the preview, Ctrl-R
//! refreshes the index.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use skim::item::MatchedItem;
use skim::prelude::{Action, Event, SkimOptions};
use skim::tui::App;
use skim::tui::actions::ActionCallback;
use skim::{Skim, SkimItem};
use tokio::sync::mpsc;

use crate::discovery::{Indexed, Instance};
use crate::picker::frecency::Frecency;
use crate::picker::matcher;
use crate::picker::narrow::Narrowing;
use crate::picker::pick::{Feed, PickOutcome, PickRequest, Picker};
use crate::picker::row::{COLUMNS, Row, Shared};
use crate::term::escape;

/// The picker on the terminal.
#[derive(Debug, Default)]
pub struct SkimPicker;

impl Picker for SkimPicker {
    fn pick(&mut self, request: PickRequest) -> io::Result<PickOutcome> {
        let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let signalled = Arc::new(AtomicI32::new(0));
        let outcome = run(request, &handle, &signalled);
        let signal = signalled.load(Ordering::SeqCst);
        if signal != 0 {
            // skim has restored the terminal: end the way the signal would have.
            #[cfg(unix)]
            crate::term::die_of(signal);
        }
        outcome
    }
}

/// Makes skim items of instances for one picker.
#[derive(Clone)]
struct Rows {
    shared: Arc<Shared>,
}

impl Rows {
    /// The rows of `instances`, made on every core for a large batch (a row of the cache file
    /// shares the file's text, and copies its searchable fields only to escape them); the
    /// columns are widened once per batch, and each row gets its index.
    fn items(&self, instances: Vec<Indexed>) -> Vec<Arc<dyn SkimItem>> {
        let make = |batch: Vec<Indexed>| {
            let mut widest = [0; COLUMNS];
            let first = self.shared.reserve(batch.len());
            let rows: Vec<Arc<dyn SkimItem>> = (first..)
                .zip(batch)
                .map(|(index, i)| {
                    let (row, widths) = Row::measured(i, Arc::clone(&self.shared), index);
                    for (w, cell) in widest.iter_mut().zip(widths) {
                        *w = (*w).max(cell);
                    }
                    Arc::new(row) as Arc<dyn SkimItem>
                })
                .collect();
            self.shared.columns.widen(&widest);
            rows
        };
        let threads = cores();
        if threads < 2 || instances.len() < PARALLEL_ROWS {
            return make(instances);
        }
        // Parts moved out of the one vector (small: most instances are still in the cache file).
        let chunk = instances.len().div_ceil(threads);
        let mut parts: Vec<Vec<Indexed>> = Vec::with_capacity(threads);
        let mut rest = instances;
        while rest.len() > chunk {
            let tail = rest.split_off(chunk);
            parts.push(rest);
            rest = tail;
        }
        parts.push(rest);
        std::thread::scope(|s| {
            let parts: Vec<_> = parts
                .into_iter()
                .map(|part| s.spawn(move || make(part)))
                .collect();
            let mut rows = Vec::with_capacity(parts.len() * chunk);
            for part in parts {
                rows.extend(part.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
            rows
        })
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn run(
    request: PickRequest,
    handle: &tokio::runtime::Handle,
    signalled: &Arc<AtomicI32>,
) -> io::Result<PickOutcome> {
    let PickRequest {
        instances,
        feed,
        refresh,
        query,
        multi,
        frecency,
        context,
        ..
    } = request;
    let rows = Rows {
        shared: Arc::new(Shared::new(context)),
    };
    let streaming = feed.is_some();
    let total = instances.len();
    let (items, source) = skim::prelude::unbounded();
    items
        .send(rows.items(instances))
        .map_err(io::Error::other)?;
    drop(items);

    let (refresh_tx, refresh_rx) = mpsc::unbounded_channel();
    let options = options(
        &query,
        multi,
        &header(streaming.then_some((0, 0, 0)), total, refresh.is_some()),
        refresh_tx,
    );
    let mut skim = Skim::init(options, Some(source)).map_err(io::Error::other)?;
    // The screen first (skim supports it before `start`), so that the first pass, started
    // by `start`, can already have its result drawn at once.
    skim.init_tui().map_err(io::Error::other)?;
    let rank_builder = matcher::rank_builder();
    let engines = Narrowing::new(
        matcher::engine_factory(Arc::clone(&rank_builder)),
        Arc::clone(&rows.shared),
    );
    engines.on_finished(redraw(skim.event_sender()));
    skim.app_mut().matcher = skim::matcher::Matcher::builder(Rc::new(engines))
        .case(skim::CaseMatching::Smart)
        .rank_builder(rank_builder)
        .build();
    // skim gives its matcher two thirds of the cores (one of two): the reader is done with
    // our rows before the picker opens, so the matcher gets them all.
    skim.app_mut().matcher_pool = Arc::new(skim::thread_pool::ThreadPool::new(cores()));
    skim.start();
    // A pass over rows added while the picker is open (a cold start) is drawn on skim's
    // heartbeat, and a key typed less than 10 ms after the previous one restarts the matcher
    // on it: at skim's 120 Hz each waited up to 8 ms more. Read when `enter` starts the event
    // task (skim `src/tui/backend.rs`, `Tui::start`).
    skim.tui_mut().tick_rate = TICK_RATE;
    let feeder = handle.spawn(feed_rows(
        skim.event_sender(),
        Feeding {
            rows,
            feed,
            refresh,
            refresh_rx,
            frecency,
            shown: total,
        },
        Arc::clone(signalled),
    ));
    let result = handle.block_on(async {
        skim.enter().await?;
        skim.run().await
    });
    feeder.abort();
    let output = skim.output();
    result.map_err(io::Error::other)?;
    if output.is_abort {
        return Ok(PickOutcome::Cancelled);
    }
    let chosen = chosen(&output.selected_items);
    Ok(if chosen.is_empty() {
        PickOutcome::Cancelled
    } else {
        PickOutcome::Chosen(chosen)
    })
}

/// Draws the screen now: called when a matcher pass over every row is over. skim draws a
/// finished pass on its next heartbeat, at most once per 8 ms (skim `src/tui/app.rs`,
/// `handle_event`, `Event::Heartbeat`); an action is drawn right after it runs (same place,
/// `Event::Action`). The action marks the screen drawn, so the heartbeat does not draw it
/// again.
fn redraw(events: mpsc::Sender<Event>) -> impl Fn() + Send + Sync + 'static {
    move || {
        let drawn = ActionCallback::new_sync(|app: &mut App| {
            app.needs_render.store(false, Ordering::Relaxed);
            Ok(Vec::new())
        });
        // A full queue (skim's holds a million events) or a closed picker: the heartbeat
        // draws it, or nothing needs drawing.
        let _ = events.try_send(Event::Action(Action::Custom(drawn)));
    }
}

/// The instances of the rows skim returns: the Tab-selected ones where the request allowed
/// several (in the order skim gives them), else the highlighted one.
fn chosen(selected: &[MatchedItem]) -> Vec<Instance> {
    selected
        .iter()
        .filter_map(|m| m.item.as_ref().as_any().downcast_ref::<Row>())
        .map(|row| row.instance().into_owned())
        .collect()
}

/// skim's options: full screen, prompt on top, the query, the preview below the list (on,
/// Ctrl-O toggles), our matcher's fields, and our Enter and Ctrl-R.
fn options(
    query: &str,
    multi: bool,
    header: &str,
    refresh: mpsc::UnboundedSender<()>,
) -> SkimOptions {
    let mut options = SkimOptions::default();
    options.height = "100%".to_owned();
    options.reverse = true;
    options.multi = multi;
    options.query = (!query.is_empty()).then(|| query.to_owned());
    options.prompt = "> ".to_owned();
    options.header = Some(header.to_owned());
    options.preview = Some(String::new());
    let size = crate::term::window_size();
    let wide = size.is_some_and(|(cols, _)| cols >= WIDE);
    tracing::debug!(?size, wide, "picker layout");
    options.preview_window = if wide { PREVIEW_RIGHT } else { PREVIEW_BELOW }.into();
    options.no_hscroll = true;
    options.bind = vec!["ctrl-o:toggle-preview".to_owned()];
    let mut options = options.build();
    options.keymap.insert(
        KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE),
        vec![Action::Custom(ActionCallback::new_sync(accept_online))],
    );
    options.keymap.insert(
        KeyEvent::new(KeyCode::Char('r'), KeyModifiers::CONTROL),
        vec![Action::Custom(ActionCallback::new_sync(
            move |app: &mut App| {
                if refresh.send(()).is_ok() {
                    app.header.header = "refreshing the index…".to_owned();
                }
                Ok(Vec::new())
            },
        ))],
    );
    options
}

/// Enter: accepts the highlighted (or Tab-selected) rows when every one is online; otherwise
/// says why in the header and stays open.
fn accept_online(app: &mut App) -> Result<Vec<Event>, Box<dyn std::error::Error + Send + Sync>> {
    let chosen = app.results();
    let offline = chosen
        .iter()
        .filter_map(|m| m.item.as_ref().as_any().downcast_ref::<Row>())
        .find(|row| !row.selectable());
    if let Some(row) = offline {
        let instance = row.summary();
        let name = if instance.name.is_empty() {
            instance.id
        } else {
            instance.name
        };
        app.header.header = format!(
            "{} is {}: it cannot be opened; choose an online instance",
            escape(name),
            escape(instance.agent_status())
        );
        return Ok(Vec::new());
    }
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Event::Action(Action::Accept(None))])
}

/// The feeder's state.
struct Feeding {
    rows: Rows,
    feed: Option<mpsc::UnboundedReceiver<Feed>>,
    refresh: Option<Box<dyn Fn() -> mpsc::UnboundedReceiver<Feed> + Send>>,
    refresh_rx: mpsc::UnboundedReceiver<()>,
    frecency: Option<Frecency>,
    shown: usize,
}

/// Moves what the listing delivers into skim (rows, the progress line), starts a refresh on
/// Ctrl-R, and closes skim on SIGTERM or SIGHUP. Ends when skim's event channel closes.
async fn feed_rows(events: mpsc::Sender<Event>, mut state: Feeding, signalled: Arc<AtomicI32>) {
    let can_refresh = state.refresh.is_some();
    let mut progress = None;
    // One listener for the whole picker: a signal between two turns of the loop is not lost.
    let terminated = terminated();
    tokio::pin!(terminated);
    loop {
        let next = async {
            match &mut state.feed {
                Some(feed) => feed.recv().await,
                None => std::future::pending().await,
            }
        };
        let sent = tokio::select! {
            signal = &mut terminated => {
                signalled.store(signal, Ordering::SeqCst);
                // Nothing more to feed: skim closes, then the process ends of the signal.
                let _ = events.send(Event::Action(Action::Abort)).await;
                return;
            }
            Some(()) = state.refresh_rx.recv() => {
                if let Some(refresh) = &state.refresh {
                    state.feed = Some(refresh());
                    progress = Some((0, 0, 0));
                }
                Ok(())
            }
            message = next => match message {
                Some(Feed::Rows(mut instances)) => {
                    sort(&state.frecency, &mut instances);
                    state.shown += instances.len();
                    let instances = instances.into_iter().map(Indexed::from).collect();
                    append(&events, state.rows.items(instances), false).await
                }
                Some(Feed::Replace(mut instances)) => {
                    sort(&state.frecency, &mut instances);
                    state.shown = instances.len();
                    let instances = instances.into_iter().map(Indexed::from).collect();
                    append(&events, state.rows.items(instances), true).await
                }
                Some(Feed::Progress { done, total, failed }) => {
                    progress = Some((done, total, failed));
                    Ok(())
                }
                None => {
                    state.feed = None;
                    progress = progress.filter(|&(_, _, failed)| failed > 0).map(|(d, t, f)| (d, t.max(d), f));
                    Ok(())
                }
            },
        };
        if sent.is_err() {
            return;
        }
        let line = header(progress, state.shown, can_refresh);
        let set_header = ActionCallback::new_sync(move |app: &mut App| {
            app.header.header.clone_from(&line);
            Ok(Vec::new())
        });
        if events
            .send(Event::Action(Action::Custom(set_header)))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Adds `items` to skim's (after clearing its rows, with `replace`), then makes sure they
/// are matched: skim restarts its matcher for new items only when it is idle, and once its
/// own reader is done nothing retries later, so a busy matcher gets a restart queued for the
/// next heartbeat.
async fn append(
    events: &mpsc::Sender<Event>,
    items: Vec<Arc<dyn SkimItem>>,
    replace: bool,
) -> Result<(), mpsc::error::SendError<Event>> {
    if replace {
        events.send(Event::ClearItems).await?;
    }
    events.send(Event::AppendItems(items)).await?;
    let rematch = ActionCallback::new_sync(|app: &mut App| {
        if app.matcher_control.stopped() {
            app.restart_matcher(false);
        } else {
            app.pending_matcher_restart = true;
        }
        Ok(Vec::new())
    });
    events.send(Event::Action(Action::Custom(rematch))).await
}

/// Waits for SIGTERM or SIGHUP (never, off Unix); the signal's number.
async fn terminated() -> i32 {
    #[cfg(unix)]
    return crate::term::termination().await;
    #[cfg(not(unix))]
    std::future::pending().await
}

fn sort(frecency: &Option<Frecency>, instances: &mut [Instance]) {
    if let Some(frecency) = frecency {
        frecency.sort(instances, |i| &i.id, std::time::SystemTime::now());
    }
}

/// The one header line: the keys, and the listing's progress while it runs (or its failures).
fn header(progress: Option<(usize, usize, usize)>, shown: usize, can_refresh: bool) -> String {
    let keys = if can_refresh {
        "enter open · ctrl-o preview · ctrl-r refresh · esc cancel"
    } else {
        "enter open · ctrl-o preview · esc cancel"
    };
    match progress {
        Some((done, total, failed)) if done < total || total == 0 => {
            let failed = if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            };
            format!("listing… {done}/{total} scopes{failed}, {shown} instances · {keys}")
        }
        Some((_, _, failed)) if failed > 0 => {
            format!("{failed} scopes could not be listed (warnings after exit) · {keys}")
        }
        _ => keys.to_owned(),
    }
}

/// Batches from which rows are made on every core.
const PARALLEL_ROWS: usize = 4096;
/// On a wide terminal the preview sits right of the list (every row of a screenful stays
/// visible); on a narrower one below it, so the rows keep the full width for their columns.
const PREVIEW_RIGHT: &str = "right:35%";
const PREVIEW_BELOW: &str = "down:45%";
/// Columns from which the preview goes to the right.
const WIDE: u16 = 150;
/// skim's heartbeat, per second: what is left to it (see `run`) waits at most about 4 ms
/// (skim's own 120 Hz left up to 8 ms); idle, the picker wakes this often to check for work.
const TICK_RATE: f64 = 240.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_shows_progress_then_failures_then_only_the_keys() {
        assert!(
            header(Some((3, 12, 0)), 40, true).starts_with("listing… 3/12 scopes, 40 instances")
        );
        assert!(header(Some((12, 12, 2)), 40, true).starts_with("2 scopes could not be listed"));
        assert_eq!(
            header(Some((12, 12, 0)), 40, false),
            "enter open · ctrl-o preview · esc cancel"
        );
        assert!(header(None, 4, true).contains("ctrl-r refresh"));
    }

    fn instance(id: &str, online: bool) -> Indexed {
        Indexed::from(Instance {
            id: id.into(),
            name: format!("web-{id}"),
            ping_status: Some(if online { "Online" } else { "ConnectionLost" }.into()),
            ..Instance::default()
        })
    }

    /// skim's App with our options (several rows allowed) showing `instances`.
    fn app_showing(instances: Vec<Indexed>) -> App {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut app = App::from_options(options("", true, "h", tx), Arc::default(), String::new());
        let rows = Rows {
            shared: Arc::default(),
        };
        let ranks = skim::item::RankBuilder::default();
        let mut matched: Vec<MatchedItem> = rows
            .items(instances)
            .into_iter()
            .map(|item| MatchedItem::new(item, skim::Rank::default(), None, &ranks))
            .collect();
        app.item_list.append(&mut matched);
        app
    }

    #[test]
    fn tab_selected_rows_are_all_returned() {
        let mut app = app_showing(vec![
            instance("i-1", true),
            instance("i-2", true),
            instance("i-3", true),
        ]);
        app.item_list.toggle_at(0);
        app.item_list.toggle_at(2);
        let accepted = accept_online(&mut app).unwrap();
        assert!(matches!(
            accepted.as_slice(),
            [Event::Action(Action::Accept(None))]
        ));
        let mut ids: Vec<String> = chosen(&app.results()).into_iter().map(|i| i.id).collect();
        ids.sort();
        assert_eq!(ids, ["i-1", "i-3"]);
    }

    #[test]
    fn a_tab_selected_offline_row_refuses_the_whole_choice() {
        let mut app = app_showing(vec![instance("i-1", true), instance("i-2", false)]);
        app.item_list.toggle_at(0);
        app.item_list.toggle_at(1);
        assert!(accept_online(&mut app).unwrap().is_empty());
        assert!(
            app.header.header.contains("web-i-2 is ConnectionLost"),
            "{}",
            app.header.header
        );
    }

    #[test]
    fn options_open_full_screen_with_the_query_and_our_keys() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let options = options("web", true, "h", tx);
        assert_eq!(options.query.as_deref(), Some("web"));
        assert!(options.multi);
        assert!(!options.preview_window.hidden);
        for key in [
            KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE),
            KeyEvent::new(KeyCode::Char('r'), KeyModifiers::CONTROL),
            KeyEvent::new(KeyCode::Char('o'), KeyModifiers::CONTROL),
            KeyEvent::new(KeyCode::Down, KeyModifiers::NONE),
            KeyEvent::new(KeyCode::Char('j'), KeyModifiers::CONTROL),
        ] {
            assert!(options.keymap.contains_key(&key), "{key:?}");
        }
    }
}
