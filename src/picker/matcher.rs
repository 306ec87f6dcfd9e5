//! Matching, on skim's engines: skim's extended search syntax (`'exact`, `^prefix`, `suffix$`,
//! `!not`, `a | b`, space-separated terms that must all match) with its fuzzy algorithm and
//! smart case, applied to the fields a person means. Each term matches within one field (Name,
//! account alias, env, region, instance id, private IP), never through letters scattered over
//! several, so `ordprd` finds orders-api-prod and not a kafka row of a prod account; a negated
//! term (`!prod`) must hold for the whole row.
//!
//! The same engine serves the picker (through skim's matcher threads) and `postern list QUERY`
//! ([`rank`]), so both agree on what a query means.

use std::rc::Rc;
use std::sync::Arc;

use skim::fuzzy_matcher::FuzzyMatcher as _;
use skim::fuzzy_matcher::arinae::ArinaeMatcher;
use skim::item::{RankBuilder, RankCriteria};
use skim::prelude::{AndOrEngineFactory, ExactOrFuzzyEngineFactory};
use skim::{CaseMatching, MatchEngine, MatchEngineFactory, MatchRange, MatchResult, SkimItem};

use crate::discovery::{Listed, SearchedText, Summary};
use crate::picker::row::Row;
use crate::term::escape;

/// The searchable fields of one instance, escaped, joined by single spaces in one string
/// (what skim sees as the item's text, and what a negated term is checked against): shared
/// with the cache file when the instance is still there and nothing needed escaping (nearly
/// always), else one allocation per instance, however many fields.
#[derive(Clone, Debug)]
pub struct SearchFields {
    text: SearchText,
    /// Where each field starts in `text`, in bytes; the last entry is the text's length plus
    /// one (a field ends one byte, the separating space, before the next starts).
    byte_starts: [u32; SEARCH_FIELDS + 1],
    /// Where each field starts in `text`, in characters, with the same convention.
    char_starts: [u32; SEARCH_FIELDS + 1],
    /// The bytes of each field as a set ([`byte_set`]), made once per row so that each
    /// keystroke skips, without reading them, the fields lacking a term's characters.
    bytes: [u64; SEARCH_FIELDS],
}

/// Where a row's search text is.
#[derive(Clone, Debug)]
enum SearchText {
    /// Its own (escaped, or of an instance not in the cache file).
    Owned(Box<str>),
    /// The cache file's (it needed no escaping).
    Cached(SearchedText),
}

impl SearchFields {
    /// The fields of an instance: account alias, env, region, Name, instance id, private IP
    /// (the picker's first six columns, in that order).
    pub fn of(instance: &Summary<'_>) -> Self {
        Self::from_fields(Self::fields_of(instance))
    }

    /// [`Self::of`] an instance of the index, `summary` being its fields: sharing the cache
    /// file's text when the instance is still there and nothing needs escaping.
    pub fn of_listed<T: Listed + ?Sized>(instance: &T, summary: &Summary<'_>) -> Self {
        let fields = Self::fields_of(summary);
        let Some(cached) = instance.cached() else {
            return Self::from_fields(fields);
        };
        let mut byte_starts = [0; SEARCH_FIELDS + 1];
        let mut bytes = [0; SEARCH_FIELDS];
        let mut at = 0;
        for (i, field) in fields.iter().enumerate() {
            // Printable ASCII needs no escaping: the fields are the file's text as it is.
            // Anything else is escaped field by field, as `of` does.
            if !field.bytes().all(|b| matches!(b, b' '..=b'~')) {
                return Self::from_fields(fields);
            }
            byte_starts[i] = offset(at);
            bytes[i] = byte_set(field.as_bytes());
            at += field.len() + 1;
        }
        byte_starts[SEARCH_FIELDS] = offset(at);
        // The file holds these fields joined by single spaces (checked when it was read).
        let shared = cached.searched(at - 1);
        if shared.as_str().len() != at - 1 {
            return Self::from_fields(fields);
        }
        Self {
            text: SearchText::Cached(shared),
            byte_starts,
            char_starts: byte_starts,
            bytes,
        }
    }

    fn fields_of<'a>(instance: &Summary<'a>) -> [&'a str; SEARCH_FIELDS] {
        [
            instance.alias,
            instance.env.unwrap_or_default(),
            instance.region,
            instance.name,
            instance.id,
            instance.private_ip.unwrap_or_default(),
        ]
    }

    fn from_fields(fields: [&str; SEARCH_FIELDS]) -> Self {
        let mut text = String::with_capacity(fields.iter().map(|f| f.len() + 1).sum());
        let mut char_starts = [0; SEARCH_FIELDS + 1];
        let mut byte_starts = [0; SEARCH_FIELDS + 1];
        let mut bytes = [0; SEARCH_FIELDS];
        let mut chars = 0;
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                text.push(' ');
                chars += 1;
            }
            char_starts[i] = offset(chars);
            byte_starts[i] = offset(text.len());
            let escaped = escape(field);
            bytes[i] = byte_set(escaped.as_bytes());
            text.push_str(&escaped);
            chars += if escaped.is_ascii() {
                escaped.len()
            } else {
                escaped.chars().count()
            };
        }
        char_starts[SEARCH_FIELDS] = offset(chars + 1);
        byte_starts[SEARCH_FIELDS] = offset(text.len() + 1);
        Self {
            text: SearchText::Owned(text.into_boxed_str()),
            byte_starts,
            char_starts,
            bytes,
        }
    }

    /// The fields, escaped, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        let text = self.text();
        (0..SEARCH_FIELDS).map(move |i| {
            let start = self.byte_starts[i] as usize;
            let end = self.byte_starts[i + 1] as usize - 1;
            text.get(start..end).unwrap_or_default()
        })
    }

    /// The width of field `i` in characters.
    pub fn width(&self, i: usize) -> usize {
        (self.char_starts[i + 1] - 1 - self.char_starts[i]) as usize
    }

    /// The fields joined by single spaces.
    pub fn text(&self) -> &str {
        match &self.text {
            SearchText::Owned(text) => text,
            SearchText::Cached(shared) => shared.as_str(),
        }
    }

    /// The field holding character `index` of [`Self::text`] and the offset in it; `None` for
    /// a separating space.
    pub fn locate(&self, index: usize) -> Option<(usize, usize)> {
        let index = u32::try_from(index).ok()?;
        let field = self.char_starts[..SEARCH_FIELDS]
            .iter()
            .rposition(|&start| start <= index)?;
        let offset = index - self.char_starts[field];
        let length = self.char_starts[field + 1] - 1 - self.char_starts[field];
        (offset < length).then_some((field, offset as usize))
    }
}

impl PartialEq for SearchFields {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
            && self.byte_starts == other.byte_starts
            && self.char_starts == other.char_starts
            && self.bytes == other.bytes
    }
}

impl Eq for SearchFields {}

/// A set of the bytes of `text`, ASCII letters of either case as one: bit `b % 64` of each
/// byte, lower-cased. Bytes share bits, so a set says "maybe": a byte missing from it is
/// missing from the text.
fn byte_set(text: &[u8]) -> u64 {
    text.iter()
        .fold(0, |set, &b| set | BYTE_BITS[usize::from(b)])
}

/// Each byte's bit in a [`byte_set`], looked up rather than computed: every field of every
/// row is read through it before the picker draws.
const BYTE_BITS: [u64; 256] = {
    let mut bits = [0; 256];
    let mut b = 0;
    while b < 256 {
        bits[b] = 1 << ((b as u8).to_ascii_lowercase() & 63);
        b += 1;
    }
    bits
};

/// An offset into a row's text. Fields are tags, names and addresses from AWS (a tag value is
/// at most 256 characters), so a row's text is far below 4 GiB.
fn offset(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

impl SkimItem for SearchFields {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(Self::text(self))
    }
}

/// The engine factory for skim's matcher: skim's and/or parsing over skim's exact-or-fuzzy
/// terms, each term matched field by field.
pub(super) fn engine_factory(rank_builder: Arc<RankBuilder>) -> Rc<dyn MatchEngineFactory> {
    Rc::new(AndOrEngineFactory::new(PerField::new(rank_builder, true)))
}

/// The order skim sorts matches in (its default tiebreak), and the rank builder carrying it.
pub(super) fn rank_builder() -> Arc<RankBuilder> {
    Arc::new(RankBuilder::new(TIEBREAK.to_vec()))
}

/// Indices of `items` matching `query`, best first (ties keep the input order); every index,
/// in order, for an empty query.
pub fn rank(items: &[SearchFields], query: &str) -> Vec<usize> {
    if query.trim().is_empty() {
        return (0..items.len()).collect();
    }
    // The engine factory holds an `Rc`: each thread builds its own engine.
    let matches = |start: usize, part: &[SearchFields]| {
        let engine =
            engine_factory(rank_builder()).create_engine_with_case(query, CaseMatching::Smart);
        part.iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let result = engine.match_item(item)?;
                Some((result.rank.sort_key(TIEBREAK), start + i))
            })
            .collect::<Vec<_>>()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut matched: Vec<([i32; 5], usize)> = if threads < 2 || items.len() < PARALLEL_RANK {
        matches(0, items)
    } else {
        let chunk = items.len().div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = items
                .chunks(chunk)
                .enumerate()
                .map(|(n, part)| s.spawn(move || matches(n * chunk, part)))
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    matched.sort_unstable();
    matched.into_iter().map(|(_, i)| i).collect()
}

/// One term of a query, matched field by field.
struct PerField {
    terms: ExactOrFuzzyEngineFactory,
    rank_builder: Arc<RankBuilder>,
    /// Match fuzzy terms through [`Fuzzy`] (off only to test it).
    direct: bool,
    /// Skip fields that cannot match before asking skim's engine (off only to test it).
    prefilter: bool,
    /// Reuse results for account and region fields ([`FieldEngine::memo`]).
    memo: bool,
}

impl PerField {
    fn new(rank_builder: Arc<RankBuilder>, direct: bool) -> Self {
        Self {
            terms: ExactOrFuzzyEngineFactory::builder()
                .fuzzy_algorithm(skim::FuzzyAlgorithm::default())
                .rank_builder(Arc::clone(&rank_builder))
                .build(),
            rank_builder,
            direct,
            prefilter: true,
            memo: true,
        }
    }
}

impl MatchEngineFactory for PerField {
    fn create_engine_with_case(&self, term: &str, case: CaseMatching) -> Box<dyn MatchEngine> {
        // The empty query (skim opens with it) matches every row as a whole: skim's engine,
        // asked once per row rather than once per field.
        if term.trim().is_empty() {
            return self.terms.create_engine_with_case(term, case);
        }
        // skim's syntax: an optional `'` (exact), then `!` negates.
        let bare = term.strip_prefix('\'').unwrap_or(term);
        let negated = bare.starts_with('!');
        let bare = bare.strip_prefix('^').unwrap_or(bare);
        let bare = bare.strip_suffix('$').unwrap_or(bare);
        let prefilter = self.prefilter && bare.is_ascii() && !negated;
        let needle = prefilter.then(|| bare.to_ascii_lowercase().into_bytes());
        // A term without `'`, `!`, `^` or `$` is fuzzy (skim `src/engine/factory.rs`,
        // `ExactOrFuzzyEngineFactory::create_engine_with_case`).
        let fuzzy = self.direct
            && !term.is_empty()
            && !term.starts_with(['\'', '!', '^'])
            && !term.ends_with('$');
        Box::new(FieldEngine {
            inner: self.terms.create_engine_with_case(term, case),
            fuzzy: fuzzy.then(|| Fuzzy {
                // As skim's fuzzy engine builds it by default: no typos, first match.
                matcher: ArinaeMatcher::new(case, false, false),
                pattern: term.to_owned(),
                rank_builder: Arc::clone(&self.rank_builder),
            }),
            whole_row: negated,
            needle_bytes: needle.as_deref().map_or(0, byte_set),
            needle,
            id: NEXT_ENGINE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            memo: self.memo,
        })
    }
}

struct FieldEngine {
    inner: Box<dyn MatchEngine>,
    /// A fuzzy term, matched on skim's algorithm directly.
    fuzzy: Option<Fuzzy>,
    /// A negated term: it must hold for the row as a whole.
    whole_row: bool,
    /// The term's characters (ASCII, lower case): a field lacking them in order cannot match,
    /// fuzzy or exact, so skim's engine is not asked (most fields, for most queries).
    needle: Option<Vec<u8>>,
    /// The needle's bytes as a set ([`byte_set`]; empty without a needle): a field whose set
    /// lacks one of them is skipped without being read.
    needle_bytes: u64,
    /// Tells this engine's results in [`LAST_MATCHED`] from another engine's.
    id: u64,
    /// Reuse the result of an account or region field equal to the last one matched
    /// ([`LAST_MATCHED`]; off only to test it).
    memo: bool,
}

/// A fuzzy term on skim's algorithm, called as skim's fuzzy engine calls it (skim
/// `src/engine/fuzzy.rs`, `FuzzyEngine::match_item`: `fuzzy_indices`, the rank from the
/// score and the first and last letters) on the field in place: the engine takes an owned
/// item, so each field was copied first, and it copies the letters' positions once more.
/// (skim's `fuzzy_match_range`, which skips the positions, scores scattered letters
/// differently: it is not used.)
///
/// The positions are computed for every matching field, not only for the rows skim draws:
/// the rank's tiebreak (the first matched letter, [`TIEBREAK`]) needs the alignment's
/// traceback, which skim's score-only `fuzzy_match` skips (same scores: see the tests), and
/// skipping it saves little: over the fields of a generated 50,000-instance fleet,
/// `fuzzy_match` took 94-96% of `fuzzy_indices`' instructions (callgrind), the dynamic
/// programming both share being the cost.
struct Fuzzy {
    matcher: ArinaeMatcher,
    pattern: String,
    rank_builder: Arc<RankBuilder>,
}

impl Fuzzy {
    fn match_field(&self, field: &str) -> Option<MatchResult> {
        if field.is_empty() {
            return None;
        }
        let (score, letters) = self.matcher.fuzzy_indices(field, &self.pattern)?;
        let begin = letters.first().copied().unwrap_or(0);
        let end = letters.last().map_or(0, |&last| last + 1);
        let score = i32::try_from(score).unwrap_or(i32::MAX);
        Some(MatchResult {
            rank: self.rank_builder.build_rank(score, begin, end, field),
            matched_range: if letters.is_empty() {
                MatchRange::CharRange(0, 0)
            } else {
                MatchRange::Chars(letters)
            },
        })
    }
}

impl FieldEngine {
    /// The match of the term in field `i` of a row, `field`.
    fn match_field(&self, i: usize, field: &str) -> Option<MatchResult> {
        if self.memo && i < SCOPE_FIELDS {
            return LAST_MATCHED.with_borrow_mut(|last| {
                let last = &mut last[i];
                if last.engine != self.id || *last.text != *field {
                    last.result = self.match_new(field);
                    last.engine = self.id;
                    last.text.clear();
                    last.text.push_str(field);
                }
                last.result.clone()
            });
        }
        self.match_new(field)
    }

    /// [`Self::match_field`], matched.
    fn match_new(&self, field: &str) -> Option<MatchResult> {
        if !self.may_match(field) {
            return None;
        }
        match &self.fuzzy {
            Some(fuzzy) => fuzzy.match_field(field),
            // skim's engines take an owned item: the field is copied into this thread's
            // buffer (no allocation once it has grown).
            None => FIELD.with_borrow_mut(|buffer| {
                buffer.clear();
                buffer.push_str(field);
                self.inner.match_item(&*buffer)
            }),
        }
    }

    fn may_match(&self, field: &str) -> bool {
        let Some(needle) = &self.needle else {
            return true;
        };
        let mut wanted = needle.as_slice();
        for &byte in field.as_bytes() {
            match wanted.split_first() {
                Some((&b, rest)) if b == byte.to_ascii_lowercase() => wanted = rest,
                Some(_) => {}
                None => break,
            }
        }
        wanted.is_empty()
    }
}

impl MatchEngine for FieldEngine {
    fn match_item(&self, item: &dyn SkimItem) -> Option<MatchResult> {
        let any = item.as_any();
        let fields = match any.downcast_ref::<Row>() {
            Some(row) => row.search(),
            None => match any.downcast_ref::<SearchFields>() {
                Some(fields) => fields,
                // Not one of ours: skim's own behaviour.
                None => return self.inner.match_item(item),
            },
        };
        if self.whole_row {
            return self.inner.match_item(item);
        }
        // A row whose whole text lacks the term's characters has no field with them (most
        // rows, for most queries): its byte sets first, then one pass instead of one per field.
        let row_bytes = fields.bytes.iter().fold(0, |all, set| all | set);
        if self.needle_bytes & !row_bytes != 0 || !self.may_match(fields.text()) {
            return None;
        }
        let mut best: Option<MatchResult> = None;
        for (i, field) in fields.fields().enumerate() {
            if self.needle_bytes & !fields.bytes[i] != 0 {
                continue;
            }
            if let Some(found) = self.match_field(i, field)
                && best
                    .as_ref()
                    .is_none_or(|b| found.rank.score > b.rank.score)
            {
                best = Some(shift(
                    found,
                    fields.char_starts[i] as usize,
                    fields.byte_starts[i] as usize,
                ));
            }
        }
        best
    }
}

impl std::fmt::Display for FieldEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(PerField: {})", self.inner)
    }
}

/// A match within one field, moved to that field's place in the row's text.
fn shift(mut result: MatchResult, chars: usize, bytes: usize) -> MatchResult {
    let by = i32::try_from(chars).unwrap_or(i32::MAX);
    result.rank.begin = result.rank.begin.saturating_add(by);
    result.rank.end = result.rank.end.saturating_add(by);
    result.matched_range = match result.matched_range {
        MatchRange::ByteRange(start, end) => MatchRange::ByteRange(start + bytes, end + bytes),
        MatchRange::CharRange(start, end) => MatchRange::CharRange(start + chars, end + chars),
        MatchRange::Chars(indices) => {
            MatchRange::Chars(indices.into_iter().map(|i| i + chars).collect())
        }
    };
    result
}

thread_local! {
    /// The field being matched, as skim's engines take it.
    static FIELD: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    /// Per account or region field ([`SCOPE_FIELDS`]), the last one a term was matched on in
    /// this thread and its result. Every instance of a scope (an account's region) has the
    /// same alias, env and region, and skim hands each thread a run of consecutive rows (the
    /// index lists a scope's instances together), so nearly every such field is the one
    /// before: its result is reused rather than matched again.
    static LAST_MATCHED: std::cell::RefCell<[LastMatched; SCOPE_FIELDS]> =
        std::cell::RefCell::new(std::array::from_fn(|_| LastMatched::default()));
}

/// A field's text and what [`FieldEngine`] `engine` found in it.
#[derive(Default)]
struct LastMatched {
    engine: u64,
    text: String,
    result: Option<MatchResult>,
}

/// Identities of [`FieldEngine`]s (0: none yet).
static NEXT_ENGINE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Items from which [`rank`] matches on every core.
const PARALLEL_RANK: usize = 4096;
/// Searchable fields per instance.
const SEARCH_FIELDS: usize = 6;
/// The first searchable fields, the same for every instance of a scope: account alias, env,
/// region.
const SCOPE_FIELDS: usize = 3;
/// skim's default tiebreak: score, then the earlier and shorter match.
const TIEBREAK: &[RankCriteria] = &[RankCriteria::Score, RankCriteria::Begin, RankCriteria::End];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Instance;

    fn instance(alias: &str, env: &str, name: &str, ip: &str) -> Instance {
        Instance {
            id: format!("i-0{:016x}", name.len() * 7919 + alias.len()),
            name: name.into(),
            alias: alias.into(),
            env: Some(env.into()),
            region: "eu-west-1".into(),
            private_ip: Some(ip.into()),
            ..Instance::default()
        }
    }

    fn fleet() -> Vec<SearchFields> {
        [
            instance("acme-prod", "prod", "kafka-prod-1", "10.0.0.1"),
            instance("acme-prod", "prod", "web-frontend-prod-1", "10.0.0.2"),
            instance("acme-stg", "stg", "orders-api-stg-1", "10.1.0.3"),
            instance("acme-prod", "prod", "orders-api-prod-1", "10.0.0.4"),
            instance("acme-dev", "dev", "orders-api-dev-1", "10.2.0.5"),
        ]
        .iter()
        .map(|i| SearchFields::of(&i.summary()))
        .collect()
    }

    #[test]
    fn a_term_matches_within_one_field_only() {
        // Across columns "ordprd" would find kafka-prod-1 (o, r, d in "prod", p in
        // "acme-prod" ...); within one field only orders-api-prod-1 has it.
        assert_eq!(rank(&fleet(), "ordprd"), [3]);
    }

    #[test]
    fn several_terms_rank_the_row_meant_first() {
        assert_eq!(rank(&fleet(), "orders prod")[0], 3);
        assert_eq!(rank(&fleet(), "orders prod").len(), 1);
    }

    #[test]
    fn skim_extended_syntax_works() {
        let fleet = fleet();
        assert_eq!(rank(&fleet, "'web-front"), [1]);
        let mut prefixed = rank(&fleet, "^orders");
        prefixed.sort_unstable();
        assert_eq!(prefixed, [2, 3, 4]);
        assert_eq!(rank(&fleet, "dev-1$"), [4]);
        let mut not_prod = rank(&fleet, "orders !prod");
        not_prod.sort_unstable();
        assert_eq!(not_prod, [2, 4]);
        let mut either = rank(&fleet, "kafka | web");
        either.sort_unstable();
        assert_eq!(either, [0, 1]);
        assert_eq!(rank(&fleet, "10.2.0.5"), [4]);
        assert_eq!(rank(&fleet, ""), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_prefilter_and_reused_results_change_no_result() {
        let fleet = fleet();
        // skim's own engines on every field: no prefilter, no results reused.
        let plain = AndOrEngineFactory::new(PerField {
            prefilter: false,
            memo: false,
            ..PerField::new(rank_builder(), false)
        });
        let queries = [
            "ORDERS",
            "Orders",
            "o-a-p",
            "'api-prod",
            "^web",
            "1$",
            "eu west",
            "10.0",
            "ordprd",
            "kafka | web",
            "orders !prod",
            "zzz",
            "Kafka-PROD",
            "i-0 ~",
            "o",
            "op",
            "ap1",
            "orders p",
            "Web",
            "",
            " ",
        ];
        for query in queries {
            let fast =
                engine_factory(rank_builder()).create_engine_with_case(query, CaseMatching::Smart);
            let slow = plain.create_engine_with_case(query, CaseMatching::Smart);
            for item in &fleet {
                let (a, b) = (fast.match_item(item), slow.match_item(item));
                let context = format!("{query:?} on {:?}", item.text());
                assert_eq!(
                    a.map(|m| (m.rank, m.matched_range)),
                    b.map(|m| (m.rank, m.matched_range)),
                    "{context}"
                );
            }
        }
    }

    #[test]
    fn the_score_only_entry_point_gives_the_same_scores() {
        // skim's `fuzzy_match` (no traceback) scores as `fuzzy_indices`, which ranks rows: a
        // score-only pass would rank by the same scores, but without the first matched letter
        // that breaks ties (see `Fuzzy`).
        let matcher = ArinaeMatcher::new(CaseMatching::Smart, false, false);
        let mut compared = 0;
        for query in [
            "o", "ord", "ORD", "ordprd", "prod", "api1", "10.0", "i-0", "eu-w", "zzz",
        ] {
            for item in fleet() {
                for field in item.fields() {
                    let indices = matcher.fuzzy_indices(field, query);
                    let score = matcher.fuzzy_match(field, query);
                    assert_eq!(score, indices.map(|(s, _)| s), "{query:?} on {field:?}");
                    compared += usize::from(score.is_some());
                }
            }
        }
        assert!(
            compared >= 40,
            "only {compared} fields matched: the test compares too little"
        );
    }

    #[test]
    fn ranks_large_inputs_on_every_core_in_the_same_order() {
        let fleet = fleet();
        let many: Vec<SearchFields> = (0..10_000)
            .map(|i| fleet[i % fleet.len()].clone())
            .collect();
        let ranked = rank(&many, "orders prod");
        assert_eq!(ranked.len(), 2_000);
        assert!(
            ranked.windows(2).all(|w| w[0] < w[1]),
            "ties keep the input order"
        );
    }

    #[test]
    fn smart_case() {
        assert_eq!(rank(&fleet(), "KAFKA"), Vec::<usize>::new());
        assert_eq!(rank(&fleet(), "kafka"), [0]);
    }

    #[test]
    fn locates_characters_of_the_text_in_their_field() {
        let fields = SearchFields::from_fields(["ab", "", "c", "dé", "", "f"]);
        assert_eq!(fields.text(), "ab  c dé  f");
        assert_eq!(fields.locate(1), Some((0, 1)));
        assert_eq!(fields.locate(2), None);
        assert_eq!(fields.locate(4), Some((2, 0)));
        assert_eq!(fields.locate(7), Some((3, 1)));
        assert_eq!(fields.locate(8), None);
        assert_eq!(fields.locate(10), Some((5, 0)));
        assert_eq!(fields.locate(11), None);
        let each: Vec<&str> = fields.fields().collect();
        assert_eq!(each, ["ab", "", "c", "dé", "", "f"]);
    }

    #[test]
    fn fields_are_escaped() {
        let mut evil = instance("a", "dev", "x\x1b]0;pwned\x07", "1");
        evil.region = "r\u{9b}".into();
        let fields = SearchFields::of(&evil.summary());
        assert!(!fields.text().contains('\x1b') && !fields.text().contains('\x07'));
        assert!(fields.text().contains("x\\x1b]0;pwned\\x07"));
    }
}
