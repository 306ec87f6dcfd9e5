//! An instance of the index as the picker and `postern list` take it: decoded (just listed),
//! or still in the cache file, where only the fields a row shows are read (in place, no copy)
//! until the whole instance is needed (the preview, the choice, `--json`). At 50,000 cached
//! instances, decoding every one of them took most of the time to the first screen.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::discovery::instance::{Instance, Summary};
use crate::discovery::snapshot::Snapshot;

/// What a listing reads of an instance, decoded ([`Instance`]) or maybe still in the cache
/// file ([`Indexed`]): `postern list`'s filters work on either.
pub trait Listed {
    /// The fields a row shows.
    fn summary(&self) -> Summary<'_>;
    /// The whole instance.
    fn instance(&self) -> Cow<'_, Instance>;
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
    at: u32,
}

impl Indexed {
    /// The fields a row shows.
    pub fn summary(&self) -> Summary<'_> {
        match self {
            Self::Decoded(instance) => instance.summary(),
            Self::Cached(cached) => cached.file.summary(cached.at),
        }
    }

    /// The whole instance (decoded now when it is still in the cache file).
    pub fn instance(&self) -> Cow<'_, Instance> {
        match self {
            Self::Decoded(instance) => Cow::Borrowed(instance),
            Self::Cached(cached) => Cow::Owned(cached.file.instance(cached.at)),
        }
    }

    /// The whole instance, owned.
    pub fn into_instance(self) -> Instance {
        match self {
            Self::Decoded(instance) => *instance,
            Self::Cached(cached) => cached.file.instance(cached.at),
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
    /// The instance at `at` of `file`, an offset [`Snapshot::records`] gave.
    pub(crate) fn new(file: Arc<Snapshot>, at: u32) -> Self {
        Self { file, at }
    }
}

impl fmt::Debug for CachedInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedInstance")
            .field("id", &self.file.summary(self.at).id)
            .field("at", &self.at)
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
        let at = file.records(0).unwrap()[0];
        let cached = Indexed::Cached(CachedInstance::new(file, at));
        let decoded = Indexed::from(instance.clone());
        assert_eq!(cached.summary(), decoded.summary());
        assert!(cached.summary().is_prod() && cached.summary().is_online());
        assert_eq!(*cached.instance(), instance);
        assert_eq!(cached.into_instance(), instance);
    }
}
