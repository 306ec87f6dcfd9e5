//! The index cache's file format: every scope's listing in one file that decodes fast (at
//! 50,000 instances, one JSON file per scope took most of `postern list`'s time to decode).
//!
//! Layout, integers little-endian:
//!
//! ```text
//! MAGIC  u32 version  u32 scopes
//! per scope: u32 length of the rest of the block,
//!            u64 fetched_at, str account, str alias, opt env, str region, u32 instances,
//!            u32 text length, text: each instance's row fields back to back, in the order
//!                alias env region Name id private_ip (these six joined by single spaces:
//!                the text the picker searches), then account, ping_status, platform
//!            table, per instance: 9 x u32 the row fields' lengths (u32::MAX for none),
//!                                 u32 the length of its details
//!            details, per instance: str state, opt public_ip, private_dns, vpc_id, subnet_id,
//!                                   instance_type, launch_time, agent_version,
//!                                   u32 tags (str key, str value)*
//! str: u32 length, UTF-8 bytes; opt: the same, length u32::MAX for none
//! ```
//!
//! Each scope is one length-prefixed block: a reader decodes only the scopes it needs, and a
//! writer replacing some scopes copies the other blocks as they are. What a picker or
//! `postern list` shows comes from the text and the table alone: each block's text is checked
//! as UTF-8 in one pass when the file is parsed, [`Snapshot::records`] checks the table once
//! and gives where each instance is, and [`Snapshot::summary`] slices the fields out of the
//! checked text, copying nothing. The details (preview, `--json`, `--tag`) are decoded, and
//! checked, only when [`Snapshot::instance`] is asked for one instance: a picker never reads
//! the pages holding them. Pure bytes in and out: reading and writing the file is
//! the `postern` package's job (`discovery::Cache`).

use std::collections::BTreeMap;
use std::ops::{Deref, Range};

use crate::index::instance::{Instance, Scope, Summary};

/// A parsed file: its scopes' headers and their rows' text, the instances still encoded.
#[derive(Debug, Default)]
pub struct Snapshot {
    bytes: Stored,
    /// Every block's text, one after the other, checked as UTF-8 (a block whose text is not
    /// has none here, and its instances cannot be read).
    text: String,
    blocks: Vec<Block>,
}

/// The file's bytes: read into memory, or mapped.
#[derive(Debug)]
pub enum Stored {
    /// Read (tests, a file being rewritten).
    Read(Vec<u8>),
    /// Mapped (the index a command reads).
    Mapped(memmap2::Mmap),
}

/// Why a file could not be read as a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
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
        /// Where the string starts (in the file; for a row field, in the checked text).
        at: usize,
    },
    /// A table whose lengths disagree with the text or the details they describe.
    #[error("snapshot table inconsistent at byte {at}")]
    Inconsistent {
        /// Where the table entry is.
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
    /// Its rows' text in [`Snapshot::text`], or why it is not there.
    text: Result<Range<usize>, FormatError>,
    /// Its table, in the file.
    table: Range<usize>,
    /// Its instances' details, in the file.
    details: Range<usize>,
}

/// Where one instance of a checked block is: its table entry and its details in the file,
/// its row fields in the checked text. Only [`Snapshot::records`] makes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    entry: u32,
    text: u32,
    details: u32,
}

impl Snapshot {
    /// Reads the header, every scope's header, and checks every block's text; instances are
    /// decoded on demand.
    pub fn parse(bytes: impl Into<Stored>) -> Result<Self, FormatError> {
        let bytes = bytes.into();
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
        let mut text = String::new();
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
            let text_length = b.u32()?;
            let text_at = b.at;
            let raw = b.take(text_length as usize)?;
            let table_length = (instances as usize)
                .checked_mul(ENTRY)
                .ok_or(FormatError::Truncated { at: b.at })?;
            let table_at = b.at;
            b.take(table_length)?;
            let block_text = match std::str::from_utf8(raw) {
                Ok(checked) => {
                    let at = text.len();
                    text.push_str(checked);
                    Ok(at..text.len())
                }
                Err(e) => Err(FormatError::Utf8 {
                    at: text_at + e.valid_up_to(),
                }),
            };
            blocks.push(Block {
                scope,
                fetched_at,
                count: instances,
                whole: start..end,
                text: block_text,
                table: table_at..table_at + table_length,
                details: b.at..end,
            });
            r.at = end;
        }
        if u32::try_from(text.len()).is_err() {
            return Err(FormatError::Truncated { at: bytes.len() });
        }
        Ok(Self {
            bytes,
            text,
            blocks,
        })
    }

    /// The scopes it holds and when each was listed (seconds since the Unix epoch).
    pub fn scopes(&self) -> impl Iterator<Item = (&Scope, u64)> {
        self.blocks.iter().map(|b| (&b.scope, b.fetched_at))
    }

    /// Where `scope`'s block is, if the file holds it.
    pub fn position(&self, scope: &Scope) -> Option<usize> {
        self.blocks.iter().position(|b| b.scope == *scope)
    }

    /// The instances of the block at `position`, every one decoded and checked.
    pub fn instances(&self, position: usize) -> Result<Vec<Instance>, FormatError> {
        self.records(position)?
            .into_iter()
            .map(|record| self.decode(record))
            .collect()
    }

    /// Where each instance of the block at `position` is, its table entry checked against
    /// the block's text (each field within it, on character boundaries, the searched fields
    /// separated by spaces) and details (within the block), so that [`Self::summary`] of
    /// these records cannot fail. The details themselves are checked when decoded.
    pub fn records(&self, position: usize) -> Result<Vec<Record>, FormatError> {
        let block = &self.blocks[position];
        let text = block.text.clone()?;
        let mut table = Reader::new(&self.bytes, block.table.clone());
        let mut out = Vec::with_capacity(block.count.min(MAX_PREALLOCATED) as usize);
        let (mut at_text, mut at_details) = (text.start, block.details.start);
        let inconsistent = |at| FormatError::Inconsistent { at };
        for _ in 0..block.count {
            let entry = table.at;
            let mut end = at_text;
            for (field, optional) in OPTIONAL.iter().enumerate() {
                let length = match table.u32()? {
                    NONE if *optional => 0,
                    length => length as usize,
                };
                end = end
                    .checked_add(length)
                    .filter(|&end| end <= text.end && self.text.is_char_boundary(end))
                    .ok_or(inconsistent(entry))?;
                if field < SEARCHED - 1 {
                    if self.text.as_bytes().get(end) != Some(&b' ') {
                        return Err(inconsistent(entry));
                    }
                    end += 1;
                }
            }
            let details = at_details
                .checked_add(table.u32()? as usize)
                .filter(|&end| end <= block.details.end)
                .ok_or(inconsistent(entry))?;
            // Blocks lie within the file, and a file or text above 4 GiB is refused by `parse`.
            let offset = |at: usize| u32::try_from(at).map_err(|_| inconsistent(entry));
            out.push(Record {
                entry: offset(entry)?,
                text: offset(at_text)?,
                details: offset(at_details)?,
            });
            (at_text, at_details) = (end, details);
        }
        if at_text != text.end || at_details != block.details.end {
            return Err(inconsistent(table.at));
        }
        Ok(out)
    }

    /// The fields a row shows of the instance at `record`, sliced out of the checked text;
    /// empty fields for a record [`Self::records`] did not give. Inline: a picker calls it for
    /// every row from the `postern` crate (without it, `postern list` over 50,000 cached rows
    /// ran 0.6% more instructions than when this file was in that crate).
    #[inline]
    pub fn summary(&self, record: Record) -> Summary<'_> {
        self.row_fields(record).unwrap_or_default().0
    }

    /// Where the row fields of the instance at `record` start in [`Self::text`]: the searched
    /// ones first, joined by single spaces, as the file holds them (unescaped).
    #[inline]
    pub fn row_text(&self, record: Record) -> u32 {
        record.text
    }

    /// Every block's checked text (see [`Self::row_text`]).
    #[inline]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The instance at `record`, decoded. Its details are checked now: when they are corrupt,
    /// the instance has its row's fields alone (a warning is logged), so that a damaged cache
    /// shows fewer details, never wrong ones.
    pub fn instance(&self, record: Record) -> Instance {
        self.decode(record).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring an instance's corrupt cached details");
            let (summary, _) = self.row_fields(record).unwrap_or_default();
            summary.into_instance()
        })
    }

    /// The instance at `record`, its details checked.
    fn decode(&self, record: Record) -> Result<Instance, FormatError> {
        let at = record.entry as usize;
        let (summary, details) = self
            .row_fields(record)
            .ok_or(FormatError::Inconsistent { at })?;
        let start = record.details as usize;
        let end = start
            .checked_add(details as usize)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(FormatError::Truncated { at: start })?;
        let mut r = Reader::new(&self.bytes, start..end);
        let instance = r.details(summary)?;
        if r.at != end {
            return Err(FormatError::Inconsistent { at });
        }
        Ok(instance)
    }

    /// The row fields of the instance at `record` and the length of its details.
    fn row_fields(&self, record: Record) -> Option<(Summary<'_>, u32)> {
        let mut table = Reader::new(&self.bytes, record.entry as usize..self.bytes.len());
        let mut at = record.text as usize;
        let mut fields: [Option<&str>; ROW_FIELDS] = [None; ROW_FIELDS];
        for (i, field) in fields.iter_mut().enumerate() {
            let length = table.u32().ok()?;
            let gap = usize::from(i < SEARCHED - 1);
            if length == NONE {
                at += gap;
                continue;
            }
            let end = at.checked_add(length as usize)?;
            *field = Some(self.text.get(at..end)?);
            at = end + gap;
        }
        let details = table.u32().ok()?;
        let [
            alias,
            env,
            region,
            name,
            id,
            private_ip,
            account,
            ping_status,
            platform,
        ] = fields;
        let summary = Summary {
            id: id.unwrap_or_default(),
            name: name.unwrap_or_default(),
            account: account.unwrap_or_default(),
            alias: alias.unwrap_or_default(),
            env,
            region: region.unwrap_or_default(),
            private_ip,
            ping_status,
            platform: platform.unwrap_or_default(),
        };
        Some((summary, details))
    }

    /// A new file: `replaced`'s listings (taken at `fetched_at`), then every other block of
    /// this one as it is.
    pub fn with(&self, replaced: &[(&Scope, &[Instance])], fetched_at: u64) -> Vec<u8> {
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
            put_instances(&mut out, instances);
            let length = len32(out.len() - start - 4);
            out[start..start + 4].copy_from_slice(&length.to_le_bytes());
        }
        for block in kept {
            out.extend_from_slice(&self.bytes[block.whole.clone()]);
        }
        out
    }
}

impl Default for Stored {
    fn default() -> Self {
        Self::Read(Vec::new())
    }
}

impl Deref for Stored {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Read(bytes) => bytes,
            Self::Mapped(map) => map,
        }
    }
}

impl From<Vec<u8>> for Stored {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Read(bytes)
    }
}

impl From<memmap2::Mmap> for Stored {
    fn from(map: memmap2::Mmap) -> Self {
        Self::Mapped(map)
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

    /// One instance's details, completing its row fields.
    fn details(&mut self, head: Summary<'_>) -> Result<Instance, FormatError> {
        Ok(Instance {
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
            ..head.into_instance()
        })
    }
}

/// A block's instances: their text, table and details.
fn put_instances(out: &mut Vec<u8>, instances: &[Instance]) {
    let mut text = Vec::new();
    let mut table = Vec::with_capacity(instances.len() * ENTRY);
    let mut details = Vec::new();
    for i in instances {
        let fields = [
            Some(i.alias.as_str()),
            i.env.as_deref(),
            Some(&i.region),
            Some(&i.name),
            Some(&i.id),
            i.private_ip.as_deref(),
            Some(&i.account),
            i.ping_status.as_deref(),
            Some(&i.platform),
        ];
        for (n, field) in fields.iter().enumerate() {
            text.extend_from_slice(field.unwrap_or_default().as_bytes());
            if n < SEARCHED - 1 {
                text.push(b' ');
            }
            put_u32(&mut table, field.map_or(NONE, |f| len32(f.len())));
        }
        let start = details.len();
        put_details(&mut details, i);
        put_u32(&mut table, len32(details.len() - start));
    }
    put_u32(out, len32(text.len()));
    out.extend_from_slice(&text);
    out.extend_from_slice(&table);
    out.extend_from_slice(&details);
}

fn put_details(out: &mut Vec<u8>, i: &Instance) {
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
/// 4 GiB would be 10 million instances in one scope; past that the file is not worth keeping
/// (its lengths then disagree, and the block is refused when read).
fn len32(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(NONE - 1)
}

/// The file's first bytes.
const MAGIC: &[u8] = b"postern index\n";
/// The format written; files of other versions are ignored (listed again). 4: the rows'
/// text, table and details apart (3 had each instance's fields together).
pub const FORMAT_VERSION: u32 = 4;
/// The length of an absent optional string.
const NONE: u32 = u32::MAX;
/// Counts from the file reserve at most this much ahead (a corrupt count cannot allocate).
const MAX_PREALLOCATED: u32 = 1 << 16;
/// Row fields per instance, in the text's order: alias, env, region, Name, id, private IP,
/// account, ping status, platform.
const ROW_FIELDS: usize = 9;
/// Which of them may be absent.
const OPTIONAL: [bool; ROW_FIELDS] = [false, true, false, false, false, true, false, true, false];
/// The first six are the searched fields, joined by single spaces.
const SEARCHED: usize = 6;
/// A table entry: the row fields' lengths and the details' length.
const ENTRY: usize = 4 * (ROW_FIELDS + 1);

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
            let s = row.summary();
            let searched = [
                s.alias,
                s.env.unwrap_or_default(),
                s.region,
                s.name,
                s.id,
                s.private_ip.unwrap_or_default(),
            ]
            .join(" ");
            let start = snapshot.row_text(at) as usize;
            assert_eq!(&snapshot.text()[start..start + searched.len()], searched);
        }
    }

    #[test]
    fn corrupt_details_leave_the_row_and_fail_the_full_decode() {
        let bytes = Snapshot::default().with(&[(&scope("a", "r1"), &[full()])], 7);
        let mut bytes = bytes;
        let at = bytes
            .windows(8)
            .position(|w| w == b"t3.micro")
            .expect("the instance type is in the details");
        bytes[at] = 0xff;
        let snapshot = Snapshot::parse(bytes).unwrap();
        let record = snapshot.records(0).unwrap()[0];
        assert_eq!(snapshot.summary(record), full().summary());
        assert_eq!(snapshot.instance(record), full().summary().into_instance());
        assert!(matches!(
            snapshot.instances(0),
            Err(FormatError::Utf8 { .. })
        ));
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
        // A block whose count says more instances than it holds, or whose table disagrees
        // with its text.
        let two = Snapshot::default().with(&[(&scope("a", "r1"), &[full(), full()])], 1);
        // magic, version, scopes, block length, fetched_at, "a", "a-alias", no env, "r1".
        let count_at = MAGIC.len() + 4 + 4 + 4 + 8 + (4 + 1) + (4 + 7) + 4 + (4 + 2);
        assert_eq!(two[count_at..count_at + 4], 2u32.to_le_bytes());
        let mut short = two.clone();
        short[count_at..count_at + 4].copy_from_slice(&1u32.to_le_bytes());
        let snapshot = Snapshot::parse(short).unwrap();
        assert!(matches!(
            snapshot.records(0),
            Err(FormatError::Inconsistent { .. })
        ));
        let mut long = two.clone();
        long[count_at..count_at + 4].copy_from_slice(&3u32.to_le_bytes());
        let parsed = Snapshot::parse(long).and_then(|s| s.records(0));
        assert!(parsed.is_err(), "{parsed:?}");
        let text_at = count_at + 8;
        let table_at =
            text_at + u32::from_le_bytes(two[count_at + 4..text_at].try_into().unwrap()) as usize;
        let mut wrong = two;
        wrong[table_at..table_at + 4].copy_from_slice(&10u32.to_le_bytes());
        let snapshot = Snapshot::parse(wrong).unwrap();
        assert!(matches!(
            snapshot.records(0),
            Err(FormatError::Inconsistent { .. })
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
}
