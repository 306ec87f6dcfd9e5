//! Narrowing, as fzf does: while the query only grows (a letter typed at the end of a term, or
//! a new term), a row the previous query did not match cannot match the new one, so it is
//! refused without being matched again. skim matches every row on every keystroke; this
//! factory wraps the picker's engines and remembers, row by row, what each query matched.
//!
//! Knowing which rows a pass saw, it also tells when a pass saw every row (see
//! [`Narrowing::on_finished`]): the picker draws the result then rather than on skim's next
//! heartbeat.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use skim::{CaseMatching, MatchEngine, MatchEngineFactory, MatchResult, SkimItem};

use crate::picker::row::{Row, Shared};

/// The picker's engine factory: `inner`'s engines, refusing at once the rows an earlier query
/// (of which the new one is a narrowing) did not match.
pub(super) struct Narrowing {
    inner: Rc<dyn MatchEngineFactory>,
    shared: Arc<Shared>,
    /// The latest query, what its engine saw, and what the queries it narrows saw.
    last: RefCell<Option<(String, Vec<Arc<Seen>>)>>,
    /// Called when an engine that saw every row is dropped.
    finished: RefCell<Option<Finished>>,
}

/// What [`Narrowing::on_finished`] calls.
type Finished = Arc<dyn Fn() + Send + Sync>;

/// What one query's engine found, row by row (by [`Row::index`]): which rows it matched, of
/// those it was asked about. A pass interrupted by the next keystroke saw fewer rows; the
/// others are matched in full, or answered by an earlier pass.
#[derive(Debug)]
struct Seen {
    /// The rows it has room for.
    rows: usize,
    checked: Vec<AtomicU64>,
    matched: Vec<AtomicU64>,
}

struct NarrowingEngine {
    inner: Box<dyn MatchEngine>,
    seen: Arc<Seen>,
    /// What the queries this one narrows saw, latest first.
    earlier: Vec<Arc<Seen>>,
    finished: Option<Finished>,
}

impl Narrowing {
    /// Wraps `inner` for the rows of `shared` (their indices).
    pub(super) fn new(inner: Rc<dyn MatchEngineFactory>, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            last: RefCell::new(None),
            finished: RefCell::new(None),
        }
    }

    /// Has `finished` called when the engine of a query is dropped after it was asked about
    /// every row there was when it was made: skim drops its engine once the pass is over and
    /// its result is handed to the screen (skim `src/matcher.rs`, `Matcher::run`: the engine
    /// lives in the work queue's closures, which `thread_pool::parallel_work_queue` drops
    /// after its merge stored the sorted matches). A pass cut short by the next keystroke
    /// (skim skips the rest of its chunks) did not see every row and calls nothing, nor does
    /// one over rows added later (they are matched without the rows already there).
    pub(super) fn on_finished(&self, finished: impl Fn() + Send + Sync + 'static) {
        *self.finished.borrow_mut() = Some(Arc::new(finished));
    }
}

impl MatchEngineFactory for Narrowing {
    fn create_engine_with_case(&self, query: &str, case: CaseMatching) -> Box<dyn MatchEngine> {
        let earlier = match self.last.borrow_mut().take() {
            Some((previous, seen)) if narrows(&previous, query) => {
                seen.into_iter().take(MAX_EARLIER).collect()
            }
            _ => Vec::new(),
        };
        let seen = Arc::new(Seen::new(self.shared.rows()));
        let mut chain = vec![Arc::clone(&seen)];
        chain.extend(earlier.iter().cloned());
        *self.last.borrow_mut() = Some((query.to_owned(), chain));
        Box::new(NarrowingEngine {
            inner: self.inner.create_engine_with_case(query, case),
            seen,
            earlier,
            finished: self.finished.borrow().clone(),
        })
    }
}

impl Seen {
    /// Room for `rows` rows (rows added later are matched in full).
    fn new(rows: usize) -> Self {
        let words = rows.div_ceil(64);
        let bits = || (0..words).map(|_| AtomicU64::new(0)).collect();
        Self {
            rows,
            checked: bits(),
            matched: bits(),
        }
    }

    /// Whether it was asked about every row it has room for.
    fn complete(&self) -> bool {
        let checked: usize = self
            .checked
            .iter()
            .map(|word| word.load(Ordering::Acquire).count_ones() as usize)
            .sum();
        checked == self.rows
    }

    /// Whether the row at `index` matched (`None`: not asked about it).
    fn get(&self, index: usize) -> Option<bool> {
        let (word, bit) = (index / 64, 1 << (index % 64));
        let checked = self.checked.get(word)?.load(Ordering::Acquire) & bit != 0;
        checked.then(|| self.matched[word].load(Ordering::Acquire) & bit != 0)
    }

    fn record(&self, index: usize, matched: bool) {
        if index >= self.rows {
            return;
        }
        let (word, bit) = (index / 64, 1 << (index % 64));
        if matched {
            self.matched[word].fetch_or(bit, Ordering::AcqRel);
        }
        self.checked[word].fetch_or(bit, Ordering::AcqRel);
    }
}

impl MatchEngine for NarrowingEngine {
    fn match_item(&self, item: &dyn SkimItem) -> Option<MatchResult> {
        let Some(row) = item.as_any().downcast_ref::<Row>() else {
            return self.inner.match_item(item);
        };
        let index = row.index() as usize;
        let refused = self
            .earlier
            .iter()
            .find_map(|seen| seen.get(index))
            .is_some_and(|matched| !matched);
        let result = if refused {
            None
        } else {
            self.inner.match_item(item)
        };
        self.seen.record(index, result.is_some());
        result
    }
}

impl Drop for NarrowingEngine {
    fn drop(&mut self) {
        if let Some(finished) = &self.finished
            && self.seen.complete()
        {
            finished();
        }
    }
}

impl fmt::Display for NarrowingEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(Narrowing: {})", self.inner)
    }
}

/// Whether every row matching `query` matches `previous` (skim's extended syntax): `query` is
/// `previous` with more typed at its end, and that only adds terms (all of which must match)
/// or lengthens `previous`'s last term, which then matches fewer rows: a fuzzy, exact (`'`) or
/// prefix (`^`) term does; a negated one (`!`) or one anchored at its end (`$`) does not. An
/// `|` (either term), or a `\` (skim's escaped space), is never taken as narrowing.
fn narrows(previous: &str, query: &str) -> bool {
    if previous.trim().is_empty() || !query.starts_with(previous) {
        return false;
    }
    if query.contains(['|', '\\']) {
        return false;
    }
    if previous.ends_with(' ') {
        return true;
    }
    let last = previous.rsplit(' ').next().unwrap_or_default();
    !last.contains('!') && !last.ends_with('$')
}

/// Earlier passes kept (a user typing faster than the rows are matched leaves passes that saw
/// few rows; older ones still know the rest). Each holds two bits per row.
const MAX_EARLIER: usize = 4;

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::discovery::Instance;
    use crate::picker::matcher::{engine_factory, rank_builder};

    /// Engines of `inner` counting the rows they are asked about.
    struct Counting {
        inner: Rc<dyn MatchEngineFactory>,
        asked: Arc<AtomicUsize>,
    }

    struct CountingEngine {
        inner: Box<dyn MatchEngine>,
        asked: Arc<AtomicUsize>,
    }

    impl MatchEngineFactory for Counting {
        fn create_engine_with_case(&self, query: &str, case: CaseMatching) -> Box<dyn MatchEngine> {
            Box::new(CountingEngine {
                inner: self.inner.create_engine_with_case(query, case),
                asked: Arc::clone(&self.asked),
            })
        }
    }

    impl MatchEngine for CountingEngine {
        fn match_item(&self, item: &dyn SkimItem) -> Option<MatchResult> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            self.inner.match_item(item)
        }
    }

    impl fmt::Display for CountingEngine {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.inner.fmt(f)
        }
    }

    fn rows(shared: &Arc<Shared>) -> Vec<Row> {
        let mut rows = Vec::new();
        for (n, alias) in ["orders-prod", "orders-dev", "web-stg", "kafka-prod"]
            .iter()
            .enumerate()
        {
            for (m, name) in [
                "orders-api-1",
                "web-frontend-2",
                "kafka-broker-3",
                "db-primary",
            ]
            .iter()
            .enumerate()
            {
                let instance = Instance {
                    id: format!("i-0{n}{m}ab"),
                    name: (*name).into(),
                    alias: (*alias).into(),
                    env: alias.rsplit('-').next().map(str::to_owned),
                    region: "eu-west-1".into(),
                    private_ip: Some(format!("10.{n}.{m}.7")),
                    ..Instance::default()
                };
                rows.push(Row::new(instance.into(), Arc::clone(shared)));
            }
        }
        rows
    }

    #[test]
    fn narrowing_changes_no_result_and_skips_the_rows_refused_before() {
        let shared = Arc::new(Shared::default());
        let rows = rows(&shared);
        let asked = Arc::new(AtomicUsize::new(0));
        let counting = Counting {
            inner: engine_factory(rank_builder()),
            asked: Arc::clone(&asked),
        };
        let narrowing = Narrowing::new(Rc::new(counting), Arc::clone(&shared));
        let plain = engine_factory(rank_builder());
        let typed = [
            "o",
            "or",
            "ord",
            "orders",
            "orders ",
            "orders p",
            "orders pr",
            "orders !",
            "orders !p",
            "orders !pr",
            "orders !pr | kafka",
            "",
            "w",
            "we",
            "web$",
            "web$1",
            "Web",
            "'web-",
            "'web-f",
            "^db",
            "^db-p",
            "10.2",
            "10.2.3",
        ];
        let mut previous: Option<(&str, usize)> = None;
        for query in typed {
            asked.store(0, Ordering::Relaxed);
            let fast = narrowing.create_engine_with_case(query, CaseMatching::Smart);
            let slow = plain.create_engine_with_case(query, CaseMatching::Smart);
            let mut matched = 0;
            for row in &rows {
                let (a, b) = (fast.match_item(row), slow.match_item(row));
                matched += usize::from(a.is_some());
                assert_eq!(a.map(|m| m.rank), b.map(|m| m.rank), "{query:?}");
            }
            // A narrowing asks only about the rows the previous query matched.
            let expected = match previous {
                Some((p, matched_before)) if narrows(p, query) => matched_before,
                _ => rows.len(),
            };
            assert_eq!(asked.load(Ordering::Relaxed), expected, "{query:?}");
            previous = Some((query, matched));
        }
    }

    #[test]
    fn only_a_query_that_can_match_fewer_rows_narrows() {
        for (previous, query) in [
            ("or", "ord"),
            ("orders", "orders "),
            ("orders ", "orders p"),
            ("orders", "orders prod"),
            ("'web", "'web-"),
            ("^web", "^web-1"),
            ("web", "web-1$"),
            ("web", "web"),
            ("orders !prod ", "orders !prod x"),
            ("Or", "OrD"),
        ] {
            assert!(narrows(previous, query), "{previous:?} -> {query:?}");
        }
        for (previous, query) in [
            ("", "o"),
            ("  ", "  o"),
            ("ord", "or"),
            ("ord", "orx"),
            ("!prod", "!produ"),
            ("orders !", "orders !p"),
            ("web$", "web$1"),
            ("web", "web | db"),
            ("web |", "web | db"),
            ("a\\", "a\\ b"),
        ] {
            assert!(!narrows(previous, query), "{previous:?} -> {query:?}");
        }
    }

    #[test]
    fn a_pass_over_every_row_says_so_when_dropped_and_a_cut_one_does_not() {
        let shared = Arc::new(Shared::default());
        let rows = rows(&shared);
        let narrowing = Narrowing::new(engine_factory(rank_builder()), Arc::clone(&shared));
        let finished = Arc::new(AtomicUsize::new(0));
        let calls = Arc::clone(&finished);
        narrowing.on_finished(move || {
            calls.fetch_add(1, Ordering::Relaxed);
        });
        let whole = narrowing.create_engine_with_case("or", CaseMatching::Smart);
        for row in &rows {
            whole.match_item(row);
        }
        assert_eq!(
            finished.load(Ordering::Relaxed),
            0,
            "called before the drop"
        );
        drop(whole);
        assert_eq!(finished.load(Ordering::Relaxed), 1);
        // Cut short by the next keystroke: half the rows.
        let cut = narrowing.create_engine_with_case("ord", CaseMatching::Smart);
        for row in &rows[..rows.len() / 2] {
            cut.match_item(row);
        }
        drop(cut);
        assert_eq!(finished.load(Ordering::Relaxed), 1);
        // Rows refused without being matched (narrowing) count as seen; a row made after the
        // engine is not waited for.
        let narrowed = narrowing.create_engine_with_case("orde", CaseMatching::Smart);
        let later = Row::new(Instance::default().into(), Arc::clone(&shared));
        for row in rows.iter().chain([&later]) {
            narrowed.match_item(row);
        }
        drop(narrowed);
        assert_eq!(finished.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn seen_answers_for_the_rows_it_was_asked_about() {
        let seen = Seen::new(100);
        seen.record(3, true);
        seen.record(70, false);
        assert_eq!(seen.get(3), Some(true));
        assert_eq!(seen.get(70), Some(false));
        assert_eq!(seen.get(5), None);
        // Rows past its room are neither recorded nor known.
        seen.record(500, true);
        assert_eq!(seen.get(500), None);
    }
}
