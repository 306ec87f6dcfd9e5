//! An instance of the index as the picker and `postern list` take it: decoded (just listed),
//! or still in the cache file, where only the fields a row shows are read (in place, no copy)
//! until the whole instance is needed (the preview, the choice, `--json`). At 50,000 cached
//! instances, decoding every one of them took most of the time to the first screen.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::discovery::instance::{Instance, Summary};
use crate::discovery::snapshot::{Record, Snapshot};

/// What a listing reads of an instance, decoded ([`Instance`]) or maybe still in the cache
/// file ([`Indexed`]): `postern list`'s filters work on either.
pub trait Listed {
    /// The fields a row shows.
    fn summary(&self) -> Summary<'_>;
    /// The whole instance.
    fn instance(&self) -> Cow<'_, Instance>;
    /// The instance as the cache file holds it, when it is still there.
    fn cached(&self) -> Option<&CachedInstance> {
        None
    }
}

/// One instance of the index.
#[derive(Clone, Debug)]
pub enum Indexed {
    /// Decoded: listed now, or built by a caller (boxed: a vector of mostly cached instances
    /// stays small).
    Decoded(Box<Instance>),
    /// In the cache file.
    Cached(CachedInstance),
}

/// An instance left in the cache file (checked when its scope was read).
#[derive(Clone)]
pub struct CachedInstance {
    file: Arc<Snapshot>,
    record: Record,
}

impl Indexed {
    /// The fields a row shows.
    pub fn summary(&self) -> Summary<'_> {
        match self {
            Self::Decoded(instance) => instance.summary(),
            Self::Cached(cached) => cached.file.summary(cached.record),
        }
    }

    /// The whole instance (decoded now when it is still in the cache file).
    pub fn instance(&self) -> Cow<'_, Instance> {
        match self {
            Self::Decoded(instance) => Cow::Borrowed(instance),
            Self::Cached(cached) => Cow::Owned(cached.file.instance(cached.record)),
        }
    }

    /// The whole instance, owned.
    pub fn into_instance(self) -> Instance {
        match self {
            Self::Decoded(instance) => *instance,
            Self::Cached(cached) => cached.file.instance(cached.record),
        }
    }
}

impl Listed for Indexed {
    fn summary(&self) -> Summary<'_> {
        Self::summary(self)
    }

    fn instance(&self) -> Cow<'_, Instance> {
        Self::instance(self)
    }

    fn cached(&self) -> Option<&CachedInstance> {
        match self {
            Self::Decoded(_) => None,
            Self::Cached(cached) => Some(cached),
        }
    }
}

impl Listed for Instance {
    fn summary(&self) -> Summary<'_> {
        Self::summary(self)
    }

    fn instance(&self) -> Cow<'_, Instance> {
        Cow::Borrowed(self)
    }
}

impl From<Instance> for Indexed {
    fn from(instance: Instance) -> Self {
        Self::Decoded(Box::new(instance))
    }
}

impl CachedInstance {
    /// The instance at `record` of `file`, as [`Snapshot::records`] gave it.
    pub(crate) fn new(file: Arc<Snapshot>, record: Record) -> Self {
        Self { file, record }
    }

    /// The fields a row shows.
    pub fn summary(&self) -> Summary<'_> {
        self.file.summary(self.record)
    }

    /// Its searched fields (alias, env, region, Name, id, private IP) as the file holds
    /// them, unescaped, joined by single spaces (`length` bytes: the fields' lengths and the
    /// five spaces): shared, not copied.
    pub fn searched(&self, length: usize) -> SearchedText {
        let start = self.file.row_text(self.record);
        let end = start.saturating_add(u32::try_from(length).unwrap_or(u32::MAX));
        SearchedText {
            range: start..end,
            file: Arc::clone(&self.file),
        }
    }
}

/// A slice of the cache file's checked text that keeps the file alive: what a picker row
/// searches, without a copy of its own.
#[derive(Clone)]
pub struct SearchedText {
    file: Arc<Snapshot>,
    range: std::ops::Range<u32>,
}

impl SearchedText {
    /// The text (empty if the range is not the file's).
    pub fn as_str(&self) -> &str {
        self.file
            .text()
            .get(self.range.start as usize..self.range.end as usize)
            .unwrap_or_default()
    }
}

impl fmt::Debug for SearchedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SearchedText").field(&self.as_str()).finish()
    }
}

impl fmt::Debug for CachedInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedInstance")
            .field("id", &self.file.summary(self.record).id)
            .field("record", &self.record)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::instance::Scope;

    #[test]
    fn a_cached_instance_reads_like_a_decoded_one() {
        let instance = Instance {
            id: "i-1".into(),
            name: "web-1".into(),
            env: Some("prod".into()),
            ping_status: Some("Online".into()),
            tags: [("team".to_owned(), "orders".to_owned())].into(),
            ..Instance::default()
        };
        let scope = Scope {
            account: "a".into(),
            alias: "a".into(),
            env: None,
            region: "r".into(),
        };
        let bytes = Snapshot::default().with(&[(&scope, std::slice::from_ref(&instance))], 1);
        let file = Arc::new(Snapshot::parse(bytes).unwrap());
        let record = file.records(0).unwrap()[0];
        let cached = Indexed::Cached(CachedInstance::new(file, record));
        let decoded = Indexed::from(instance.clone());
        assert_eq!(cached.summary(), decoded.summary());
        assert!(cached.summary().is_prod() && cached.summary().is_online());
        assert_eq!(*cached.instance(), instance);
        assert_eq!(cached.into_instance(), instance);
    }
}
