//! Fuzzy matching: a query's characters must appear in order in the candidate (case-insensitive
//! unless the query has an upper-case letter, as in fzf's smart case); consecutive characters
//! and matches at word starts score higher, gaps cost a little.

/// A compiled query. Space-separated words must all match (in any order).
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    words: Vec<Vec<char>>,
    case_sensitive: bool,
}

impl Matcher {
    /// Compiles `query`; an empty query matches everything with score 0.
    pub fn new(query: &str) -> Self {
        Self {
            words: query
                .split_whitespace()
                .map(|w| w.chars().collect())
                .collect(),
            case_sensitive: query.chars().any(char::is_uppercase),
        }
    }

    /// Whether the query is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The score of `text` (higher is better), `None` when it does not match.
    pub fn score(&self, text: &str) -> Option<i64> {
        if self.words.is_empty() {
            return Some(0);
        }
        let chars: Vec<char> = if self.case_sensitive {
            text.chars().collect()
        } else {
            text.chars().flat_map(char::to_lowercase).collect()
        };
        let mut total = 0;
        for word in &self.words {
            total += score_word(word, &chars, self.case_sensitive)?;
        }
        Some(total)
    }

    /// Indices of `texts` that match, best first (ties keep the input order).
    pub fn rank<S: AsRef<str>>(&self, texts: &[S]) -> Vec<usize> {
        let mut scored: Vec<(i64, usize)> = texts
            .iter()
            .enumerate()
            .filter_map(|(i, text)| self.score(text.as_ref()).map(|s| (s, i)))
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, i)| i).collect()
    }
}

/// Greedy leftmost match, then a backward pass that tightens it (fzf v1).
fn score_word(word: &[char], text: &[char], case_sensitive: bool) -> Option<i64> {
    let lower = |c: char| {
        if case_sensitive {
            c
        } else {
            c.to_lowercase().next().unwrap_or(c)
        }
    };
    let mut best: Option<i64> = None;
    // Try each start position of the first character; keep the best tightened match.
    let first = lower(*word.first()?);
    for start in text
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == first)
        .map(|(i, _)| i)
        .take(MAX_STARTS)
    {
        let mut qi = 0;
        let mut end = None;
        for (ti, &c) in text.iter().enumerate().skip(start) {
            if c == lower(word[qi]) {
                qi += 1;
                if qi == word.len() {
                    end = Some(ti);
                    break;
                }
            }
        }
        let Some(end) = end else { break };
        // Backward pass from the end to find the shortest window.
        let mut qi = word.len();
        let mut begin = end;
        for ti in (start..=end).rev() {
            if text[ti] == lower(word[qi - 1]) {
                qi -= 1;
                if qi == 0 {
                    begin = ti;
                    break;
                }
            }
        }
        let score = window_score(word, text, begin, end, &lower);
        best = Some(best.map_or(score, |b| b.max(score)));
    }
    best
}

fn window_score(
    word: &[char],
    text: &[char],
    begin: usize,
    end: usize,
    lower: &impl Fn(char) -> char,
) -> i64 {
    let mut score = 0;
    let mut qi = 0;
    let mut previous: Option<usize> = None;
    for (ti, &c) in text.iter().enumerate().take(end + 1).skip(begin) {
        if qi < word.len() && c == lower(word[qi]) {
            score += SCORE_MATCH;
            if ti == 0 || !text[ti - 1].is_alphanumeric() {
                score += BONUS_BOUNDARY;
            }
            if let Some(p) = previous {
                if p + 1 == ti {
                    score += BONUS_CONSECUTIVE;
                } else {
                    score -= PENALTY_GAP_START + PENALTY_GAP * (ti - p - 2) as i64;
                }
            }
            previous = Some(ti);
            qi += 1;
        }
    }
    // Earlier matches rank slightly higher.
    score - (begin as i64).min(MAX_POSITION_PENALTY)
}

const SCORE_MATCH: i64 = 16;
const BONUS_BOUNDARY: i64 = 10;
const BONUS_CONSECUTIVE: i64 = 8;
const PENALTY_GAP_START: i64 = 3;
const PENALTY_GAP: i64 = 1;
const MAX_POSITION_PENALTY: i64 = 15;
/// Start positions tried per word: bounds the cost on long candidates.
const MAX_STARTS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_characters_in_order_only() {
        let m = Matcher::new("wbp");
        assert!(m.score("web-prod-1").is_some());
        assert!(m.score("pbw").is_none());
    }

    #[test]
    fn is_smart_case() {
        assert!(Matcher::new("web").score("WEB-1").is_some());
        assert!(Matcher::new("Web").score("web-1").is_none());
        assert!(Matcher::new("Web").score("Web-1").is_some());
    }

    #[test]
    fn prefers_consecutive_and_word_start_matches() {
        let m = Matcher::new("api");
        let tight = m.score("api-prod").unwrap();
        let loose = m.score("a-p-i-prod").unwrap();
        let inner = m.score("xxapixx").unwrap();
        assert!(tight > loose, "{tight} {loose}");
        assert!(tight > inner, "{tight} {inner}");
    }

    #[test]
    fn every_word_must_match() {
        let m = Matcher::new("web prod");
        assert!(m.score("web-1 acme-prod").is_some());
        assert!(m.score("web-1 acme-dev").is_none());
    }

    #[test]
    fn ranks_best_first_and_keeps_ties_in_order() {
        let items = ["db-1", "web-1", "web-2", "w-e-b"];
        let m = Matcher::new("web");
        let ranked = m.rank(&items);
        assert_eq!(ranked, [1, 2, 3]);
        assert_eq!(Matcher::new("").rank(&items), [0, 1, 2, 3]);
    }
}
