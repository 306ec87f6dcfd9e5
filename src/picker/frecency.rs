//! Frecency: recently and often chosen targets float to the top of the picker. One small JSON
//! file (`frecency.json` in the cache directory) maps instance ids to a use count and the last
//! use; the score halves every week of disuse.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The frecency file (`frecency.json` in the cache directory).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Frecency {
    entries: HashMap<String, Use>,
    #[serde(skip)]
    path: Option<PathBuf>,
    /// The uses recorded since loading, replayed onto the file's current content on save.
    #[serde(skip)]
    recorded: Vec<(String, SystemTime)>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Use {
    count: u32,
    last: u64,
}

impl Frecency {
    /// Loads `dir/frecency.json`; a missing or corrupt file is empty.
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(FILE_NAME);
        // Trusted only while private: someone else's file must not reorder the picker.
        let mut frecency: Self = crate::private_file::read_private(&path)
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        frecency.path = Some(path);
        frecency
    }

    /// Records a use of `id` at `now`, keeping the most recent entries only.
    pub fn record(&mut self, id: &str, now: SystemTime) {
        self.recorded.push((id.to_owned(), now));
        self.apply(id, now);
    }

    fn apply(&mut self, id: &str, now: SystemTime) {
        let entry = self.entries.entry(id.to_owned()).or_default();
        entry.count = entry.count.saturating_add(1);
        entry.last = seconds(now);
        if self.entries.len() > MAX_ENTRIES {
            let mut by_age: Vec<(u64, String)> = self
                .entries
                .iter()
                .map(|(k, v)| (v.last, k.clone()))
                .collect();
            by_age.sort();
            for (_, id) in by_age.into_iter().take(self.entries.len() - MAX_ENTRIES) {
                self.entries.remove(&id);
            }
        }
    }

    /// Writes the uses recorded since loading into the file, atomically and under its lock:
    /// they are replayed onto what the file holds now, so another postern that picked in the
    /// meantime loses nothing.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        crate::private_file::update_private(path, |current| {
            let mut merged: Self = current
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default();
            for (id, when) in &self.recorded {
                merged.apply(id, *when);
            }
            // Serialising a map of numbers cannot fail.
            serde_json::to_vec(&merged).unwrap_or_default()
        })
    }

    /// The frecency of `id` at `now` (0 when never used).
    pub fn score(&self, id: &str, now: SystemTime) -> f64 {
        self.entries.get(id).map_or(0.0, |u| {
            let weeks = seconds(now).saturating_sub(u.last) as f64 / WEEK;
            f64::from(u.count) * 0.5f64.powf(weeks)
        })
    }

    /// Sorts `items` by decreasing frecency of `id(item)`, keeping the order of equals.
    ///
    /// Each item is scored once, and only the few ever used move: at 50,000 instances a
    /// comparison sort scored each one about 16 times and moved them all.
    pub fn sort<T>(&self, items: &mut [T], id: impl Fn(&T) -> &str, now: SystemTime) {
        if self.entries.is_empty() {
            return;
        }
        let mut used: Vec<(f64, usize)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let score = self.score(id(item), now);
                (score > 0.0).then_some((score, i))
            })
            .collect();
        if used.is_empty() {
            return;
        }
        used.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        // `order[k]`: where the item that belongs at `k` is now; the used ones first, then
        // the others in their order.
        let mut moved = vec![false; items.len()];
        let mut order: Vec<usize> = Vec::with_capacity(items.len());
        for &(_, i) in &used {
            moved[i] = true;
            order.push(i);
        }
        order.extend((0..items.len()).filter(|&i| !moved[i]));
        // Applied cycle by cycle with swaps: position `k` is done once `order[k] == k`.
        for start in 0..items.len() {
            let mut k = start;
            while order[k] != k {
                let from = order[k];
                order[k] = k;
                if from == start {
                    break;
                }
                items.swap(k, from);
                k = from;
            }
        }
    }
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

const WEEK: f64 = 7.0 * 24.0 * 3600.0;
const MAX_ENTRIES: usize = 500;

/// The file in the cache directory.
const FILE_NAME: &str = "frecency.json";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sorting_matches_a_stable_sort_by_score() {
        let now = UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        let mut frecency = Frecency::default();
        for (id, days_ago) in [("c", 1), ("a", 30), ("c", 2), ("e", 1), ("g", 30)] {
            frecency.record(id, now - Duration::from_secs(days_ago * 86_400));
        }
        let ids = ["a", "b", "c", "d", "e", "f", "g", "h"];
        for rotation in 0..ids.len() {
            let mut items: Vec<&str> = ids.to_vec();
            items.rotate_left(rotation);
            let mut expected = items.clone();
            expected.sort_by(|a, b| frecency.score(b, now).total_cmp(&frecency.score(a, now)));
            frecency.sort(&mut items, |s| s, now);
            assert_eq!(items, expected, "rotation {rotation}");
        }
    }

    #[test]
    fn recent_and_frequent_targets_sort_first_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        let mut frecency = Frecency::load(dir.path());
        frecency.record("i-old", now - Duration::from_secs(30 * 86_400));
        frecency.record("i-old", now - Duration::from_secs(30 * 86_400));
        frecency.record("i-new", now);
        frecency.save().unwrap();
        let frecency = Frecency::load(dir.path());
        let mut ids = vec!["i-never", "i-old", "i-new"];
        frecency.sort(&mut ids, |s| s, now);
        assert_eq!(ids, ["i-new", "i-old", "i-never"]);
        assert!(frecency.score("i-old", now) < 1.0);
    }

    #[test]
    fn a_corrupt_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"[").unwrap();
        assert_eq!(
            Frecency::load(dir.path()).score("i-1", SystemTime::now()),
            0.0
        );
    }

    #[test]
    fn two_pickers_saving_at_once_lose_no_use() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let mut first = Frecency::load(dir.path());
        let mut second = Frecency::load(dir.path());
        first.record("i-a", now);
        second.record("i-b", now);
        second.record("i-a", now);
        first.save().unwrap();
        second.save().unwrap();
        let merged = Frecency::load(dir.path());
        assert_eq!(merged.entries["i-a"].count, 2);
        assert_eq!(merged.entries["i-b"].count, 1);
    }
}
