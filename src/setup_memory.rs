//! Hands back the memory only start-up needed, once a session runs (issue 22).
//!
//! Reaching a session runs most of the binary once: argument parsing, the config, the AWS
//! SDK's credential chain, signing and HTTP client, StartSession, sometimes the picker. The
//! kernel maps code 64 KiB (fault-around) or a whole page-cache folio at a time, so those
//! scattered functions leave ~16 MiB of the executable's 21 MB of code and read-only data
//! mapped, and resident, for as long as the session lasts, although a running session needs
//! only the data path; libc, libm and the loader keep another ~1.5 MiB the same way. Once the
//! first session's data channel is open, [`release`] drops every unmodified read-only file
//! mapping of this process (`MADV_DONTNEED`): the pages stay in the page cache, and whatever
//! runs next (the data path, a ResumeSession, the final TerminateSession) maps its pages again
//! with a minor fault. It also asks the allocator to return the pages start-up freed. With the
//! link-time function order (build.rs), a shell's peak RSS after its prompt is ~7 MiB rather
//! than 21.9 MiB.
//!
//! Only read-only file mappings with no private copy-on-write pages (`Anonymous: 0 kB` in
//! `/proc/self/smaps`) are dropped: their contents always equal the file's (the kernel itself
//! may evict such clean pages at any time), so dropping them cannot change a byte the program
//! sees. The relocated read-only data (RELRO, whose pages are private copies) and every
//! writable mapping are left alone.
//!
//! Start-up itself runs through distinct code in turn: the arguments and the config, the
//! target's resolution, the SDK's configuration, its clients, StartSession, the websocket.
//! [`between_steps`] drops the pages mapped so far at each boundary and returns what the step
//! freed to the system, so the process's peak RSS is the largest step's pages rather than all
//! of them together. With the function order grouping each step's code (scripts/symbol_order.py)
//! a forward against the emulator peaks at ~7-7.5 MiB instead of ~10 MiB, for ~3 ms more to a
//! ready forward (bench/compare.sh).

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Set once [`release`] ran: a session runs, start-up is over.
static RELEASED: AtomicBool = AtomicBool::new(false);
/// Drops [`between_steps`] made so far in this process.
static STEP_DROPS: AtomicUsize = AtomicUsize::new(0);
/// At most this many drops between steps per process: one session's start-up has five step
/// boundaries; exec on many instances starts many sessions, and each of their StartSessions
/// must not pay for a drop.
pub const MAX_STEP_DROPS: usize = 5;

/// Drops the read-only file pages mapped so far and returns the allocator's free pages, at a
/// boundary between two steps of start-up named `step` (the file pages on Linux only; nothing
/// once a session runs or after [`MAX_STEP_DROPS`]). The next step maps what it runs again
/// with minor faults.
#[inline(never)]
pub fn between_steps(step: &'static str) {
    if take_step_drop(&RELEASED, &STEP_DROPS) {
        drop_pages(step);
    }
}

/// Whether one more drop between steps is due, counting it in `drops`.
fn take_step_drop(released: &AtomicBool, drops: &AtomicUsize) -> bool {
    !released.load(Ordering::Acquire)
        && drops
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STEP_DROPS).then_some(n + 1)
            })
            .is_ok()
}

/// Drops, once per process, the read-only file pages mapped so far (Linux; a no-op
/// elsewhere) and returns the allocator's free pages to the system. Cheap: one read of
/// `/proc/self/smaps`, a few dozen `madvise` calls and one `mi_collect`. Never inlined:
/// scripts/symbol_order.py splits its profile where this runs.
#[inline(never)]
pub fn release() {
    static RELEASED_ONCE: Once = Once::new();
    RELEASED.store(true, Ordering::Release);
    RELEASED_ONCE.call_once(|| drop_pages("start-up"));
}

/// Drops this process's droppable file pages (Linux) and has the allocator return its free
/// pages; `what` names, for the log, whose pages they were.
fn drop_pages(what: &'static str) {
    #[cfg(target_os = "linux")]
    match linux::release_file_pages(|_| true) {
        Ok(bytes) => tracing::debug!(what, bytes, "dropped code pages"),
        Err(e) => tracing::debug!(what, error = %e, "kept code pages"),
    }
    #[cfg(not(target_os = "linux"))]
    let _ = what;
    // skim makes mimalloc the global allocator. Start-up frees most of what it allocates (the
    // argument parser's command tree, the SDK's configuration, the credential chain, the HTTP
    // client's first response); a forced collection hands the emptied pages back instead of
    // keeping them for later.
    // SAFETY: a plain call into the allocator, allowed from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// One mapping of `/proc/self/smaps` as far as [`release`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Start address.
    pub start: usize,
    /// End address (exclusive).
    pub end: usize,
    /// Permissions, as `r-xp`.
    pub perms: String,
    /// Device (`major:minor`, hexadecimal) and inode of the mapped file.
    pub file: Option<(String, u64)>,
    /// Private copy-on-write pages, in KiB (`Anonymous:`).
    pub anonymous_kib: u64,
}

impl Mapping {
    /// Whether dropping this mapping's pages cannot change what the process reads: readable,
    /// not writable, private, and without a private copy of any page.
    pub fn is_droppable(&self) -> bool {
        let bytes = self.perms.as_bytes();
        bytes.len() == 4
            && bytes[0] == b'r'
            && bytes[1] == b'-'
            && bytes[3] == b'p'
            && self.anonymous_kib == 0
    }
}

/// Parses the text of `/proc/self/smaps` into its mappings; lines it does not know are skipped.
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        if let Some(mapping) = parse_header(line) {
            mappings.push(mapping);
        } else if let (Some(rest), Some(last)) =
            (line.strip_prefix("Anonymous:"), mappings.last_mut())
        {
            // An unreadable figure counts as "has private pages": never drop on doubt.
            last.anonymous_kib = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(u64::MAX);
        }
    }
    mappings
}

/// A mapping's header line: `start-end perms offset dev inode [path]`.
fn parse_header(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    if perms.len() != 4 {
        return None;
    }
    let _offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let dev = fields.next()?;
    if !dev.contains(':') {
        return None;
    }
    let inode: u64 = fields.next()?.parse().ok()?;
    Some(Mapping {
        start,
        end,
        perms: perms.to_owned(),
        file: (inode != 0).then(|| (dev.to_owned(), inode)),
        // Until the mapping's own `Anonymous:` line says otherwise.
        anonymous_kib: u64::MAX,
    })
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{Mapping, parse_smaps};

    /// Drops this process's droppable file mappings that `wanted` picks; returns the bytes of
    /// address space advised. Mappings of no file (the heap, stacks, `[vdso]`) are never
    /// touched.
    pub(super) fn release_file_pages(wanted: impl Fn(&Mapping) -> bool) -> std::io::Result<usize> {
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        let mut advised = 0;
        for mapping in parse_smaps(&smaps) {
            if mapping.file.is_none() || !mapping.is_droppable() || !wanted(&mapping) {
                continue;
            }
            let len = mapping.end - mapping.start;
            // SAFETY: the range is one whole mapping of this process, read-only and private,
            // with no copy-on-write page (checked above): its contents equal the file's, and
            // MADV_DONTNEED only makes later reads fault them in again from the page cache.
            let rc = unsafe {
                libc::madvise(mapping.start as *mut libc::c_void, len, libc::MADV_DONTNEED)
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            advised += len;
        }
        Ok(advised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_between_steps_stop_at_the_limit_and_once_a_session_runs() {
        let released = AtomicBool::new(false);
        let drops = AtomicUsize::new(0);
        let taken = (0..MAX_STEP_DROPS + 3)
            .filter(|_| take_step_drop(&released, &drops))
            .count();
        assert_eq!(taken, MAX_STEP_DROPS);

        let drops = AtomicUsize::new(0);
        assert!(take_step_drop(&released, &drops));
        released.store(true, Ordering::Release);
        assert!(!take_step_drop(&released, &drops));
        assert_eq!(drops.load(Ordering::Acquire), 1);
    }

    /// The `major:minor` text `/proc/*/maps` shows for device number `dev`.
    fn device_text(dev: u64) -> String {
        // glibc's gnu_dev_major/minor encoding (sys/sysmacros.h), as the kernel prints it.
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        format!("{major:02x}:{minor:02x}")
    }

    const SMAPS: &str = "\
55d0a0000000-55d0a0b00000 r--p 00000000 fe:00 1141516                    /usr/bin/postern
Size:              11264 kB
Rss:                3284 kB
Anonymous:             0 kB
55d0a0b00000-55d0a2000000 r-xp 00b00000 fe:00 1141516                    /usr/bin/postern
Size:              21504 kB
Anonymous:             0 kB
55d0a2000000-55d0a2140000 r--p 02000000 fe:00 1141516                    /usr/bin/postern
Anonymous:          1268 kB
55d0a2140000-55d0a2190000 rw-p 02140000 fe:00 1141516                    /usr/bin/postern
Anonymous:           280 kB
7f0000000000-7f0040000000 rw-p 00000000 00:00 0
Anonymous:          1744 kB
7f0050000000-7f0050001000 r--p 00000000 fe:00 77                         /usr/lib/libc.so.6
Anonymous:             0 kB
";

    #[test]
    fn only_unmodified_read_only_mappings_are_droppable() {
        let mappings = parse_smaps(SMAPS);
        assert_eq!(mappings.len(), 6);
        let droppable: Vec<&str> = mappings
            .iter()
            .filter(|m| m.is_droppable())
            .map(|m| m.perms.as_str())
            .collect();
        // rodata and text; not the relocated read-only data, the data or the heap.
        assert_eq!(droppable, ["r--p", "r-xp", "r--p"]);
        assert_eq!(mappings[0].file, Some(("fe:00".to_owned(), 1_141_516)));
        assert_eq!(mappings[2].anonymous_kib, 1268);
        assert_eq!(mappings[4].file, None);
        assert!(!mappings[2].is_droppable());
        assert!(!mappings[3].is_droppable());
    }

    #[test]
    fn a_mapping_without_a_readable_anonymous_figure_is_kept() {
        let mappings = parse_smaps(
            "00400000-00500000 r-xp 00000000 08:01 12 /bin/x\nAnonymous: lots\n\
             00500000-00600000 r--p 00100000 08:01 12 /bin/x\n",
        );
        assert_eq!(mappings.len(), 2);
        assert!(mappings.iter().all(|m| !m.is_droppable()));
    }

    #[test]
    fn device_numbers_print_as_the_kernel_prints_them() {
        assert_eq!(device_text(0xfe00), "fe:00");
        assert_eq!(device_text(0x0801), "08:01");
        // A major above 255 and a minor above 255 (the split encoding).
        assert_eq!(device_text((0x103 << 8) | 0x05 | (0x1 << 20)), "103:105");
    }

    /// A private mapping of the first `len` bytes of a file, made by a test.
    #[cfg(target_os = "linux")]
    struct TestMapping {
        addr: *mut u8,
        len: usize,
    }

    #[cfg(target_os = "linux")]
    impl TestMapping {
        fn new(file: &std::fs::File, len: usize, writable: bool) -> Self {
            use std::os::fd::AsRawFd;
            let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
            // SAFETY: a fresh private mapping of a file the test owns; unmapped on drop.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                )
            };
            assert_ne!(addr, libc::MAP_FAILED);
            Self {
                addr: addr.cast(),
                len,
            }
        }

        fn bytes(&self) -> &[u8] {
            // SAFETY: the mapping lives as long as `self` and is readable.
            unsafe { std::slice::from_raw_parts(self.addr, self.len) }
        }

        fn sum(&self) -> u64 {
            self.bytes().iter().map(|&b| u64::from(b)).sum()
        }

        /// This mapping's `Rss:` in KiB, from /proc/self/smaps.
        fn rss_kib(&self) -> u64 {
            let text = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let mut ours = false;
            for line in text.lines() {
                if let Some(m) = parse_header(line) {
                    ours = m.start == self.addr as usize;
                } else if let (true, Some(rest)) = (ours, line.strip_prefix("Rss:")) {
                    return rest.trim().trim_end_matches("kB").trim().parse().unwrap();
                }
            }
            panic!("mapping not found in /proc/self/smaps");
        }
    }

    #[cfg(target_os = "linux")]
    impl Drop for TestMapping {
        fn drop(&mut self) {
            // SAFETY: unmaps exactly the mapping `new` made.
            unsafe { libc::munmap(self.addr.cast(), self.len) };
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_drops_unmodified_read_only_pages_and_keeps_private_copies() {
        const LEN: usize = 256 * 4096;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages");
        let content: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let expected: u64 = content.iter().map(|&b| u64::from(b)).sum();

        let clean = TestMapping::new(&file, LEN, false);
        assert_eq!(clean.sum(), expected);
        // A private copy: written, then made read-only (as the loader leaves RELRO).
        let copied = TestMapping::new(&file, LEN, true);
        // SAFETY: the mapping is writable and LEN bytes long.
        unsafe { *copied.addr.add(4096) = 0xAB };
        // SAFETY: the mapping `copied` made.
        assert_eq!(
            unsafe { libc::mprotect(copied.addr.cast(), LEN, libc::PROT_READ) },
            0
        );
        assert_eq!(copied.sum(), expected - u64::from(content[4096]) + 0xAB);
        assert!(
            clean.rss_kib() >= 512,
            "touched pages are resident: {}",
            clean.rss_kib()
        );

        let ours = file_id(&file.metadata().unwrap());
        let advised = linux::release_file_pages(|m| m.file.as_ref() == Some(&ours)).unwrap();
        assert_eq!(advised, LEN, "only the clean mapping is advised");
        assert_eq!(clean.rss_kib(), 0, "the clean mapping's pages are dropped");
        assert!(copied.rss_kib() > 0, "the private copy's pages stay");
        // The program reads the same bytes as before from either mapping.
        assert_eq!(clean.sum(), expected);
        assert_eq!(copied.bytes()[4096], 0xAB);
    }

    /// The `(device, inode)` smaps shows for a file.
    #[cfg(target_os = "linux")]
    fn file_id(metadata: &std::fs::Metadata) -> (String, u64) {
        use std::os::unix::fs::MetadataExt;
        (device_text(metadata.dev()), metadata.ino())
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_every_file_mapping_keeps_the_program_working() {
        let exe = file_id(&std::fs::metadata("/proc/self/exe").unwrap());
        let before = parse_smaps(&std::fs::read_to_string("/proc/self/smaps").unwrap());
        let libraries = before
            .iter()
            .filter(|m| m.file.is_some() && m.file != Some(exe.clone()) && m.is_droppable())
            .count();
        assert!(libraries > 0, "the test binary maps libc read-only");
        let advised = linux::release_file_pages(|_| true).unwrap();
        assert!(advised > 0, "the test binary has read-only mappings");
        let sum: u64 = (1..=1000u64).map(|n| n * n).sum();
        assert_eq!(sum, 333_833_500);
        assert!(format!("{:?}", parse_smaps(SMAPS)).contains("r-xp"));
    }
}
