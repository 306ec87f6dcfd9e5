//! One line of the picker: an instance's columns (escaped), its colours, and what skim needs
//! from it (the text matched, the line drawn, the preview).
//!
//! Columns: account alias, env, region, Name, instance id, private IP, platform, agent status,
//! fitted to the list's width (the widest give way first). Production rows are red, staging
//! rows yellow, offline rows dim (they are shown, and refused when chosen).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use skim::{DisplayContext, ItemPreview, Matches, PreviewContext, SkimItem};

use crate::discovery::{Indexed, Instance, Summary};
use crate::picker::columns::{fit_cell, fit_widths};
use crate::picker::matcher::SearchFields;
use crate::picker::preview;
use crate::term::escape;

/// What the picker knows beyond the instances: each account's role, and when each instance
/// was last connected to (from the session history).
#[derive(Clone, Debug, Default)]
pub struct RowContext {
    /// Role name per account id (the configuration's, for accounts it lists).
    pub roles: HashMap<String, String>,
    /// The last session per instance id: its start time (RFC 3339) and kind (`shell`, ...).
    pub last_sessions: HashMap<String, (String, String)>,
}

/// The natural width of each column over every row made so far (rows arriving later can
/// widen them), shared by all rows of one picker.
#[derive(Debug, Default)]
pub struct Columns {
    natural: [AtomicUsize; COLUMNS],
}

/// What every row of one picker shares: the columns' widths, the context of the preview, and
/// how many rows were made (each has its index).
#[derive(Debug, Default)]
pub struct Shared {
    /// The columns' natural widths.
    pub columns: Columns,
    /// Roles and last sessions, for the preview.
    pub context: RowContext,
    made: AtomicU32,
}

impl Shared {
    /// The rows' shared state for `context`.
    pub fn new(context: RowContext) -> Self {
        Self {
            context,
            ..Self::default()
        }
    }

    /// Indices for `count` more rows: the first of them.
    pub fn reserve(&self, count: usize) -> u32 {
        self.made
            .fetch_add(u32::try_from(count).unwrap_or(u32::MAX), Ordering::Relaxed)
    }

    /// How many rows were made so far.
    pub fn rows(&self) -> usize {
        self.made.load(Ordering::Relaxed) as usize
    }
}

/// One instance as the picker shows it.
#[derive(Debug)]
pub struct Row {
    instance: Indexed,
    search: SearchFields,
    /// Its place among the picker's rows, in the order they were made.
    index: u32,
    /// Its agent is online.
    online: bool,
    /// Its environment's colour.
    colour: Option<Color>,
    shared: Arc<Shared>,
}

impl Row {
    /// The row for `instance`, widening the columns to fit it.
    pub fn new(instance: Indexed, shared: Arc<Shared>) -> Self {
        let index = shared.reserve(1);
        let (row, widths) = Self::measured(instance, shared, index);
        row.shared.columns.widen(&widths);
        row
    }

    /// The row for `instance` at `index` (from [`Shared::reserve`]) and the natural width of
    /// each of its cells, leaving the columns as they are (a batch widens them once: see
    /// [`Columns::widen`]).
    pub(super) fn measured(
        instance: Indexed,
        shared: Arc<Shared>,
        index: u32,
    ) -> (Self, [usize; COLUMNS]) {
        let summary = instance.summary();
        let search = SearchFields::of_listed(&instance, &summary);
        let mut widths = [0; COLUMNS];
        let rest = [escape(summary.platform), escape(summary.agent_status())];
        let searched = COLUMNS - rest.len();
        for (i, w) in widths.iter_mut().enumerate() {
            *w = if i < searched {
                search.width(i)
            } else {
                width_of(&rest[i - searched])
            };
        }
        let online = summary.is_online();
        let colour = if summary.is_prod() {
            Some(Color::Red)
        } else if summary.is_staging() {
            Some(Color::Yellow)
        } else {
            None
        };
        let row = Self {
            instance,
            search,
            index,
            online,
            colour,
            shared,
        };
        (row, widths)
    }

    /// The instance (decoded now when it is still in the cache file).
    pub fn instance(&self) -> Cow<'_, Instance> {
        self.instance.instance()
    }

    /// The fields the row shows, unescaped.
    pub fn summary(&self) -> Summary<'_> {
        self.instance.summary()
    }

    /// Whether a session can be opened on it (its agent is online).
    pub fn selectable(&self) -> bool {
        self.online
    }

    /// What the query is matched against.
    pub fn search(&self) -> &SearchFields {
        &self.search
    }

    /// Its place among the picker's rows.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The cells, escaped, in column order: the searchable fields, then platform and agent
    /// status (escaped when asked for: only the rows drawn need them, so a row keeps no copy).
    pub fn cells(&self) -> impl Iterator<Item = Cow<'_, str>> {
        let summary = self.summary();
        let rest = [escape(summary.platform), escape(summary.agent_status())];
        self.search.fields().map(Cow::Borrowed).chain(rest)
    }

    /// The row's colour: production red, staging yellow; offline rows are dim.
    fn style(&self) -> Style {
        let mut style = Style::default();
        if let Some(colour) = self.colour {
            style = style.fg(colour);
        }
        if !self.selectable() {
            style = style.add_modifier(Modifier::DIM);
        }
        style
    }

    /// The columns laid out in `width` characters, with the characters of `highlighted`
    /// (indices into the search text) styled as matches.
    fn line(
        &self,
        width: usize,
        highlighted: &[usize],
        base: Style,
        matched: Style,
    ) -> Line<'static> {
        let widths = self.shared.columns.fit(width);
        let mut marks = vec![Vec::new(); COLUMNS];
        for &index in highlighted {
            if let Some((field, offset)) = self.search.locate(index) {
                marks[field].push(offset);
            }
        }
        let base = base.patch(self.style());
        let matched = base.patch(matched);
        let mut spans = Vec::with_capacity(COLUMNS * 3);
        for (i, (cell, width)) in self.cells().zip(&widths).enumerate() {
            if i > 0 {
                push_span(&mut spans, GAP, base);
            }
            let fitted = fit_cell(&cell, *width);
            // A cut cell ends in `…`: no highlight beyond what is shown.
            let shown = if fitted.chars().count() > cell.chars().count() {
                cell.chars().count()
            } else {
                width.saturating_sub(usize::from(cell.chars().count() > *width))
            };
            push_highlighted(&mut spans, &fitted, &marks[i], shown, base, matched);
        }
        Line::from(spans)
    }
}

impl Columns {
    /// Widens the columns to fit cells of `widths` (the widest of a batch: one atomic update
    /// per column and batch, not per row).
    pub fn widen(&self, widths: &[usize; COLUMNS]) {
        for (natural, &w) in self.natural.iter().zip(widths) {
            natural.fetch_max(w, Ordering::Relaxed);
        }
    }

    /// The widths of the columns fitted into `width` characters.
    pub fn fit(&self, width: usize) -> Vec<usize> {
        let natural: Vec<usize> = self
            .natural
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect();
        fit_widths(&natural, &FLOORS, GAP.len(), width, &GIVE_WAY)
    }
}

impl SkimItem for Row {
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.search.text())
    }

    fn display(&self, context: DisplayContext) -> Line<'_> {
        let highlighted: Vec<usize> = match &context.matches {
            Matches::None => Vec::new(),
            Matches::CharIndices(indices) => indices.to_vec(),
            Matches::CharRange(start, end) => (*start..*end).collect(),
            Matches::ByteRange(start, end) => {
                let text = self.search.text();
                let first = text.get(..*start).map_or(0, |t| t.chars().count());
                let count = text.get(*start..*end).map_or(0, |t| t.chars().count());
                (first..first + count).collect()
            }
        };
        self.line(
            context.container_width,
            &highlighted,
            context.base_style,
            context.matched_style,
        )
    }

    fn preview(&self, _context: PreviewContext) -> ItemPreview {
        ItemPreview::AnsiText(preview::render(&self.instance(), &self.shared.context))
    }

    fn output(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.instance.summary().id)
    }
}

/// The width of `cell` in characters.
fn width_of(cell: &str) -> usize {
    if cell.is_ascii() {
        cell.len()
    } else {
        cell.chars().count()
    }
}

/// Pushes `cell` as spans, the characters at `marks` (within the first `shown`) in `matched`.
fn push_highlighted(
    spans: &mut Vec<Span<'static>>,
    cell: &str,
    marks: &[usize],
    shown: usize,
    base: Style,
    matched: Style,
) {
    if marks.is_empty() {
        push_span(spans, cell, base);
        return;
    }
    let mut run = String::new();
    let mut run_matched = false;
    for (i, c) in cell.chars().enumerate() {
        let is_match = i < shown && marks.contains(&i);
        if is_match != run_matched && !run.is_empty() {
            let style = if run_matched { matched } else { base };
            push_span(spans, &run, style);
            run.clear();
        }
        run_matched = is_match;
        run.push(c);
    }
    if !run.is_empty() {
        push_span(spans, &run, if run_matched { matched } else { base });
    }
}

/// Appends `text` in `style`, to the last span when it has that style: skim and ratatui
/// handle a line span by span (copies, widths, horizontal scrolling), so a row drawn as a
/// few runs of one style costs less to draw than one of a span or more per column.
fn push_span(spans: &mut Vec<Span<'static>>, text: &str, style: Style) {
    match spans.last_mut() {
        Some(last) if last.style == style => last.content.to_mut().push_str(text),
        _ => spans.push(Span::styled(text.to_owned(), style)),
    }
}

/// Columns: alias, env, region, Name, instance id, private IP, platform, agent status.
pub(super) const COLUMNS: usize = 8;
/// What each column keeps when the terminal is narrow.
const FLOORS: [usize; COLUMNS] = [8, 3, 9, 12, 20, 8, 6, 7];
/// The order columns give way in: platform, agent status, alias, private IP, region, env, and
/// Name last; the instance id never.
const GIVE_WAY: [usize; 7] = [6, 7, 0, 5, 2, 1, 3];
const GAP: &str = "  ";

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str, env: &str, online: bool) -> Instance {
        Instance {
            id: "i-0123456789abcdef0".into(),
            name: name.into(),
            alias: format!("acme-{env}"),
            env: Some(env.into()),
            region: "eu-west-1".into(),
            private_ip: Some("10.0.0.1".into()),
            platform: "Amazon Linux".into(),
            ping_status: Some(if online { "Online" } else { "ConnectionLost" }.into()),
            ..Instance::default()
        }
    }

    fn plain(line: &Line<'_>) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    fn row(instance: Instance) -> Row {
        Row::new(instance.into(), Arc::default())
    }

    #[test]
    fn draws_every_column_in_order() {
        let row = row(instance("web-1", "dev", true));
        let line = plain(&row.line(200, &[], Style::default(), Style::default()));
        assert_eq!(
            line,
            "acme-dev  dev  eu-west-1  web-1  i-0123456789abcdef0  10.0.0.1  Amazon Linux  Online"
        );
    }

    #[test]
    fn columns_fit_the_width_platform_giving_way_before_names() {
        let long = Row::new(
            instance("a-very-long-name-that-does-not-fit-anywhere", "dev", true).into(),
            Arc::default(),
        );
        let line = plain(&long.line(90, &[], Style::default(), Style::default()));
        assert!(line.chars().count() <= 90, "{line}");
        assert!(line.contains("  Amazo…  "), "{line}");
        assert!(line.contains("  a-very-long-name…  "), "{line}");
        assert!(line.contains("i-0123456789abcdef0"), "{line}");
    }

    #[test]
    fn prod_is_red_staging_yellow_offline_dim() {
        assert_eq!(
            row(instance("p", "prod", true)).style().fg,
            Some(Color::Red)
        );
        assert_eq!(
            row(instance("s", "stg", true)).style().fg,
            Some(Color::Yellow)
        );
        let offline = row(instance("o", "dev", false));
        assert!(offline.style().add_modifier.contains(Modifier::DIM));
        assert!(!offline.selectable());
    }

    #[test]
    fn matches_are_highlighted_in_their_column() {
        let row = row(instance("web-1", "dev", true));
        // "web" is characters 0..3 of the Name, which starts after "acme-dev dev eu-west-1 ".
        let start = "acme-dev dev eu-west-1 ".len();
        let matched = Style::default().add_modifier(Modifier::BOLD);
        let line = row.line(
            200,
            &[start, start + 1, start + 2],
            Style::default(),
            matched,
        );
        let bold: String = line
            .spans
            .iter()
            .filter(|s| s.style.add_modifier.contains(Modifier::BOLD))
            .map(|s| s.content.as_ref())
            .collect();
        assert_eq!(bold, "web");
    }

    #[test]
    fn a_row_is_as_many_spans_as_runs_of_one_style() {
        let row = row(instance("web-1", "dev", true));
        let unmarked = row.line(200, &[], Style::default(), Style::default());
        assert_eq!(unmarked.spans.len(), 1, "{unmarked:?}");
        let start = "acme-dev dev eu-west-1 ".len();
        let matched = Style::default().add_modifier(Modifier::BOLD);
        let marked = row.line(
            200,
            &[start, start + 1, start + 2],
            Style::default(),
            matched,
        );
        let runs: Vec<&str> = marked.spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(runs.len(), 3, "{runs:?}");
        assert_eq!(runs[1], "web");
    }

    #[test]
    fn control_characters_never_reach_the_line() {
        let mut evil = instance("x\x1b[2J\x07", "dev", true);
        evil.platform = "Linux\u{9b}31m".into();
        let line = plain(&row(evil).line(200, &[], Style::default(), Style::default()));
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert!(line.contains("x\\x1b[2J\\x07"), "{line}");
    }
}
