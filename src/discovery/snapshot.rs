//! The index cache's file format: every scope's listing in one file that decodes fast (at
//! 50,000 instances, one JSON file per scope took most of `postern list`'s time to decode).
//!
//! Layout, integers little-endian:
//!
//! ```text
//! MAGIC  u32 version  u32 scopes
//! per scope: u32 length of the rest of the block,
//!            u64 fetched_at, str account, str alias, opt env, str region, u32 instances,
//!            per instance: str id, name, account, alias, opt env, str region,
//!                          opt private_ip, ping_status, str platform (a row's fields first),
//!                          str state, opt public_ip, private_dns, vpc_id, subnet_id,
//!                          instance_type, launch_time, agent_version,
//!                          u32 tags (str key, str value)*
//! str: u32 length, UTF-8 bytes; opt: the same, length u32::MAX for none
//! ```
//!
//! Each scope is one length-prefixed block: a reader decodes only the scopes it needs, on
//! every core, and a writer replacing some scopes copies the other blocks as they are. A
//! picker or `postern list` need not decode instances at all: [`Snapshot::records`] checks a
//! block once and gives where each instance starts, [`Snapshot::summary`] reads the fields a
//! row shows in place, and [`Snapshot::instance`] decodes one instance when it is asked for.
//! Pure bytes in and out: reading and writing the file is [`crate::discovery::Cache`]'s job.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::discovery::instance::{Instance, Scope, Summary};

/// A decoded file: its scopes' headers, their instances still encoded.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    bytes: Vec<u8>,
    blocks: Vec<Block>,
}

/// Why a file could not be read as a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormatError {
    /// Not a snapshot at all.
    #[error("not a postern index snapshot")]
    Magic,
    /// Written by another postern version.
    #[error("snapshot format version {found}, expected {FORMAT_VERSION}")]
    Version {
        /// The file's version.
        found: u32,
    },
    /// Cut short, or a length pointing past its block.
    #[error("snapshot truncated at byte {at}")]
    Truncated {
        /// Where the missing bytes were expected.
        at: usize,
    },
    /// A string that is not UTF-8.
    #[error("snapshot string at byte {at} is not UTF-8")]
    Utf8 {
        /// Where the string starts.
        at: usize,
    },
}

/// One scope's block.
#[derive(Debug)]
struct Block {
    scope: Scope,
    fetched_at: u64,
    count: u32,
    /// The whole block, its length prefix included (what a rewrite copies).
    whole: Range<usize>,
    /// The encoded instances.
    instances: Range<usize>,
}

impl Snapshot {
    /// Reads the header and every scope's header of `bytes`; instances are decoded on demand.
    pub(crate) fn parse(bytes: Vec<u8>) -> Result<Self, FormatError> {
        if !bytes.starts_with(MAGIC) {
            return Err(FormatError::Magic);
        }
        if u32::try_from(bytes.len()).is_err() {
            return Err(FormatError::Truncated { at: bytes.len() });
        }
        let mut r = Reader::new(&bytes, MAGIC.len()..bytes.len());
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::Version { found: version });
        }
        let count = r.u32()?;
        let mut blocks = Vec::with_capacity(count.min(MAX_PREALLOCATED) as usize);
        for _ in 0..count {
            let start = r.at;
            let length = r.u32()? as usize;
            let end = r.at.checked_add(length).filter(|&end| end <= bytes.len());
            let end = end.ok_or(FormatError::Truncated { at: r.at })?;
            let mut b = Reader::new(&bytes, r.at..end);
            let fetched_at = b.u64()?;
            let scope = Scope {
                account: b.string()?,
                alias: b.string()?,
                env: b.optional()?,
                region: b.string()?,
            };
            let instances = b.u32()?;
            blocks.push(Block {
                scope,
                fetched_at,
                count: instances,
                whole: start..end,
                instances: b.at..end,
            });
            r.at = end;
        }
        Ok(Self { bytes, blocks })
    }

    /// The scopes it holds and when each was listed (seconds since the Unix epoch).
    pub(crate) fn scopes(&self) -> impl Iterator<Item = (&Scope, u64)> {
        self.blocks.iter().map(|b| (&b.scope, b.fetched_at))
    }

    /// Where `scope`'s block is, if the file holds it.
    pub(crate) fn position(&self, scope: &Scope) -> Option<usize> {
        self.blocks.iter().position(|b| b.scope == *scope)
    }

    /// The instances of the block at `position`.
    pub(crate) fn instances(&self, position: usize) -> Result<Vec<Instance>, FormatError> {
        let block = &self.blocks[position];
        let mut r = Reader::new(&self.bytes, block.instances.clone());
        let count = block.count.min(MAX_PREALLOCATED) as usize;
        let mut out = Vec::with_capacity(count);
        for _ in 0..block.count {
            out.push(r.instance()?);
        }
        Ok(out)
    }

    /// Where each instance of the block at `position` starts, every one of them checked
    /// (lengths within the block, strings UTF-8), so that [`Self::summary`] and
    /// [`Self::instance`] at these offsets cannot fail.
    pub(crate) fn records(&self, position: usize) -> Result<Vec<u32>, FormatError> {
        let block = &self.blocks[position];
        let mut r = Reader::new(&self.bytes, block.instances.clone());
        let mut out = Vec::with_capacity(block.count.min(MAX_PREALLOCATED) as usize);
        for _ in 0..block.count {
            // Blocks lie within the file, and a file above 4 GiB is refused by `parse`.
            out.push(u32::try_from(r.at).map_err(|_| FormatError::Truncated { at: r.at })?);
            r.skip_instance()?;
        }
        Ok(out)
    }

    /// The fields a row shows of the instance at `at`, read in place; empty fields when `at`
    /// is not an offset [`Self::records`] gave.
    pub(crate) fn summary(&self, at: u32) -> Summary<'_> {
        Reader::new(&self.bytes, at as usize..self.bytes.len())
            .summary()
            .unwrap_or_default()
    }

    /// The instance at `at`, decoded; an empty instance when `at` is not an offset
    /// [`Self::records`] gave.
    pub(crate) fn instance(&self, at: u32) -> Instance {
        Reader::new(&self.bytes, at as usize..self.bytes.len())
            .instance()
            .unwrap_or_default()
    }

    /// A new file: `replaced`'s listings (taken at `fetched_at`), then every other block of
    /// this one as it is.
    pub(crate) fn with(&self, replaced: &[(&Scope, &[Instance])], fetched_at: u64) -> Vec<u8> {
        let kept: Vec<&Block> = self
            .blocks
            .iter()
            .filter(|b| replaced.iter().all(|(scope, _)| **scope != b.scope))
            .collect();
        let mut out = Vec::with_capacity(self.bytes.len());
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, FORMAT_VERSION);
        put_u32(&mut out, len32(replaced.len() + kept.len()));
        for (scope, instances) in replaced {
            let start = out.len();
            put_u32(&mut out, 0);
            out.extend_from_slice(&fetched_at.to_le_bytes());
            put_str(&mut out, &scope.account);
            put_str(&mut out, &scope.alias);
            put_opt(&mut out, scope.env.as_deref());
            put_str(&mut out, &scope.region);
            put_u32(&mut out, len32(instances.len()));
            for instance in *instances {
                put_instance(&mut out, instance);
            }
            let length = len32(out.len() - start - 4);
            out[start..start + 4].copy_from_slice(&length.to_le_bytes());
        }
        for block in kept {
            out.extend_from_slice(&self.bytes[block.whole.clone()]);
        }
        out
    }
}

/// Decodes from a range of the file, failing on anything past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], range: Range<usize>) -> Self {
        Self {
            bytes,
            at: range.start,
            end: range.end,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.end);
        let end = end.ok_or(FormatError::Truncated { at: self.at })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        let mut raw = [0; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(raw))
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        let mut raw = [0; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }

    fn str_of(&mut self, length: u32) -> Result<&'a str, FormatError> {
        let at = self.at;
        std::str::from_utf8(self.take(length as usize)?).map_err(|_| FormatError::Utf8 { at })
    }

    fn string(&mut self) -> Result<String, FormatError> {
        let length = self.u32()?;
        Ok(self.str_of(length)?.to_owned())
    }

    fn optional(&mut self) -> Result<Option<String>, FormatError> {
        match self.u32()? {
            NONE => Ok(None),
            length => Ok(Some(self.str_of(length)?.to_owned())),
        }
    }

    fn str(&mut self) -> Result<&'a str, FormatError> {
        let length = self.u32()?;
        self.str_of(length)
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, FormatError> {
        match self.u32()? {
            NONE => Ok(None),
            length => self.str_of(length).map(Some),
        }
    }

    fn summary(&mut self) -> Result<Summary<'a>, FormatError> {
        Ok(Summary {
            id: self.str()?,
            name: self.str()?,
            account: self.str()?,
            alias: self.str()?,
            env: self.opt_str()?,
            region: self.str()?,
            private_ip: self.opt_str()?,
            ping_status: self.opt_str()?,
            platform: self.str()?,
        })
    }

    /// Checks one instance and moves past it.
    fn skip_instance(&mut self) -> Result<(), FormatError> {
        self.summary()?;
        self.str()?;
        for _ in 0..7 {
            self.opt_str()?;
        }
        for _ in 0..self.u32()? {
            self.str()?;
            self.str()?;
        }
        Ok(())
    }

    fn instance(&mut self) -> Result<Instance, FormatError> {
        let head = self.summary()?;
        let owned = |s: Option<&str>| s.map(str::to_owned);
        Ok(Instance {
            id: head.id.to_owned(),
            name: head.name.to_owned(),
            account: head.account.to_owned(),
            alias: head.alias.to_owned(),
            env: owned(head.env),
            region: head.region.to_owned(),
            private_ip: owned(head.private_ip),
            ping_status: owned(head.ping_status),
            platform: head.platform.to_owned(),
            state: self.string()?,
            public_ip: self.optional()?,
            private_dns: self.optional()?,
            vpc_id: self.optional()?,
            subnet_id: self.optional()?,
            instance_type: self.optional()?,
            launch_time: self.optional()?,
            agent_version: self.optional()?,
            tags: {
                let count = self.u32()?;
                let mut tags = BTreeMap::new();
                for _ in 0..count {
                    tags.insert(self.string()?, self.string()?);
                }
                tags
            },
        })
    }
}

fn put_instance(out: &mut Vec<u8>, i: &Instance) {
    put_str(out, &i.id);
    put_str(out, &i.name);
    put_str(out, &i.account);
    put_str(out, &i.alias);
    put_opt(out, i.env.as_deref());
    put_str(out, &i.region);
    put_opt(out, i.private_ip.as_deref());
    put_opt(out, i.ping_status.as_deref());
    put_str(out, &i.platform);
    put_str(out, &i.state);
    put_opt(out, i.public_ip.as_deref());
    put_opt(out, i.private_dns.as_deref());
    put_opt(out, i.vpc_id.as_deref());
    put_opt(out, i.subnet_id.as_deref());
    put_opt(out, i.instance_type.as_deref());
    put_opt(out, i.launch_time.as_deref());
    put_opt(out, i.agent_version.as_deref());
    put_u32(out, len32(i.tags.len()));
    for (key, value) in &i.tags {
        put_str(out, key);
        put_str(out, value);
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, len32(s.len()));
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => put_u32(out, NONE),
    }
}

/// A length as the format stores it. Strings from AWS are far below 4 GiB, and a block of
/// 4 GiB would be 10 million instances in one scope; past that the file is not worth keeping.
fn len32(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(NONE - 1)
}

/// The file's first bytes.
const MAGIC: &[u8] = b"postern index\n";
/// The format written; files of other versions are ignored (listed again).
pub(crate) const FORMAT_VERSION: u32 = 3;
/// The length of an absent optional string.
const NONE: u32 = u32::MAX;
/// Counts from the file reserve at most this much ahead (a corrupt count cannot allocate).
const MAX_PREALLOCATED: u32 = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(account: &str, region: &str) -> Scope {
        Scope {
            account: account.into(),
            alias: format!("{account}-alias"),
            env: (account != "a").then(|| "prod".into()),
            region: region.into(),
        }
    }

    fn full() -> Instance {
        let mut tags = BTreeMap::new();
        tags.insert("Name".into(), "web-1".into());
        tags.insert("team".into(), "".into());
        Instance {
            id: "i-0123456789abcdef0".into(),
            name: "web-1 \u{1b}[2J é".into(),
            account: "111111111111".into(),
            alias: "acme-prod".into(),
            env: Some("prod".into()),
            region: "eu-west-1".into(),
            state: "running".into(),
            private_ip: Some("10.0.0.1".into()),
            public_ip: None,
            private_dns: Some("".into()),
            vpc_id: Some("vpc-1".into()),
            subnet_id: Some("subnet-1".into()),
            instance_type: Some("t3.micro".into()),
            launch_time: Some("2025-01-06T09:30:00Z".into()),
            tags,
            ping_status: Some("Online".into()),
            agent_version: None,
            platform: "Amazon Linux 2023".into(),
        }
    }

    #[test]
    fn round_trips_every_field_scope_by_scope() {
        let rows = vec![full(), Instance::default()];
        let (a, b) = (scope("a", "r1"), scope("b", "r2"));
        let bytes = Snapshot::default().with(&[(&a, &rows), (&b, &rows[..1])], 7);
        let snapshot = Snapshot::parse(bytes).unwrap();
        let scopes: Vec<_> = snapshot.scopes().collect();
        assert_eq!(scopes, [(&a, 7), (&b, 7)]);
        assert_eq!(snapshot.instances(0).unwrap(), rows);
        assert_eq!(snapshot.instances(1).unwrap(), rows[..1]);
        assert_eq!(snapshot.position(&b), Some(1));
        assert_eq!(snapshot.position(&scope("c", "r1")), None);
    }

    #[test]
    fn records_give_summaries_and_instances_in_place() {
        let rows = vec![full(), Instance::default(), full()];
        let bytes = Snapshot::default().with(&[(&scope("a", "r1"), &rows)], 7);
        let snapshot = Snapshot::parse(bytes).unwrap();
        let records = snapshot.records(0).unwrap();
        assert_eq!(records.len(), 3);
        for (&at, row) in records.iter().zip(&rows) {
            assert_eq!(snapshot.instance(at), *row);
            assert_eq!(snapshot.summary(at), row.summary());
        }
    }

    #[test]
    fn a_rewrite_replaces_some_scopes_and_copies_the_others() {
        let (a, b) = (scope("a", "r1"), scope("b", "r1"));
        let first = Snapshot::default().with(&[(&a, &[full()]), (&b, &[full()])], 1);
        let first = Snapshot::parse(first).unwrap();
        let second = Snapshot::parse(first.with(&[(&b, &[])], 2)).unwrap();
        let scopes: Vec<_> = second.scopes().collect();
        assert_eq!(scopes, [(&b, 2), (&a, 1)]);
        assert_eq!(second.instances(0).unwrap(), []);
        assert_eq!(second.instances(1).unwrap(), [full()]);
    }

    #[test]
    fn refuses_other_files_versions_and_truncation() {
        assert_eq!(
            Snapshot::parse(b"{\"version\":1}".to_vec()).unwrap_err(),
            FormatError::Magic
        );
        let mut other = MAGIC.to_vec();
        other.extend_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            Snapshot::parse(other).unwrap_err(),
            FormatError::Version { found: 1 }
        );
        let whole = Snapshot::default().with(&[(&scope("a", "r1"), &[full()])], 1);
        for cut in MAGIC.len()..whole.len() {
            let parsed = Snapshot::parse(whole[..cut].to_vec());
            let decoded = parsed.and_then(|s| s.instances(0));
            assert!(
                matches!(decoded, Err(FormatError::Truncated { .. })),
                "cut at {cut}: {decoded:?}"
            );
        }
        // A block whose count says more instances than it holds.
        let mut short = whole.clone();
        let count_at = short.len() - encoded_len(&full()) - 4;
        short[count_at..count_at + 4].copy_from_slice(&2u32.to_le_bytes());
        let snapshot = Snapshot::parse(short).unwrap();
        assert!(matches!(
            snapshot.records(0),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn refuses_a_string_that_is_not_utf8() {
        let mut bytes = Snapshot::default().with(&[(&scope("a", "r1"), &[full()])], 1);
        let at = bytes
            .windows(5)
            .position(|w| w == b"web-1")
            .expect("the name is in the file");
        bytes[at] = 0xff;
        let snapshot = Snapshot::parse(bytes).unwrap();
        assert!(matches!(
            snapshot.instances(0),
            Err(FormatError::Utf8 { .. })
        ));
        assert!(matches!(snapshot.records(0), Err(FormatError::Utf8 { .. })));
    }

    fn encoded_len(instance: &Instance) -> usize {
        let mut out = Vec::new();
        put_instance(&mut out, instance);
        out.len()
    }
}
