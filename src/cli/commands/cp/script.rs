//! The POSIX sh scripts a copy runs on the instance, and the parsing of what they print. Every
//! path goes in through [`shell_quote`]; scripts print one `postern-cp …` line so that a
//! login banner or a profile's output cannot be mistaken for an answer.

use crate::cli::commands::cp::ranges::{BLOCK, Range, wire_len};
use crate::transport::shell_quote;

/// What the instance says about a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A regular file postern can copy.
    File(RemoteFile),
    /// Nothing there.
    Missing,
    /// A directory.
    Directory,
    /// Neither file nor directory (device, socket, fifo).
    Special,
    /// There but not readable (or not writable, for an upload's directory).
    Denied,
    /// An upload's destination exists (and `--force` was not given).
    Exists,
    /// An upload's parent directory does not exist.
    NoParent,
    /// A tool the copy needs is missing (`dd`, `base64`, `head`, a SHA-256 tool).
    NoTool(String),
    /// A directory was packed into this tar file on the instance (`-r`).
    Packed(String),
    /// `-r` named a path that is not a directory: it is copied as a file.
    NotDirectory,
    /// A directory may be unpacked at the destination (`-r`).
    Clear,
    /// An upload may go ahead.
    Ready {
        /// The destination's path (inside it, when it named a directory).
        dest: String,
        /// The empty temporary file beside it.
        temp: String,
    },
}

/// A remote regular file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoteFile {
    /// Its size.
    pub(crate) size: u64,
    /// Its permission bits.
    pub(crate) mode: u32,
    /// Its modification time, seconds since the epoch.
    pub(crate) mtime: i64,
    /// Its SHA-256, hex (lowercase).
    pub(crate) sha256: String,
}

/// Probes `path` for a download: kind, size, mode, mtime and SHA-256 (`sha256sum`, else
/// `shasum -a 256`, else `openssl dgst -sha256`).
pub(crate) fn probe_download(path: &str) -> String {
    format!(
        "f={path}; {NEEDS} \
         if [ ! -e \"$f\" ]; then echo 'postern-cp missing'; exit 0; fi; \
         if [ -d \"$f\" ]; then echo 'postern-cp directory'; exit 0; fi; \
         if [ ! -f \"$f\" ]; then echo 'postern-cp special'; exit 0; fi; \
         if [ ! -r \"$f\" ]; then echo 'postern-cp denied'; exit 0; fi; \
         s=$(stat -c '%s %a %Y' -- \"$f\" 2>/dev/null || stat -f '%z %Lp %m' -- \"$f\" 2>/dev/null) \
           || {{ echo 'postern-cp denied'; exit 0; }}; \
         h=$({HASH} < \"$f\" 2>/dev/null) || {{ echo 'postern-cp denied'; exit 0; }}; \
         echo \"postern-cp file $s ${{h%% *}}\"",
        path = shell_quote(path),
    )
}

/// Reads `range` of `path` as base64 between a begin line and an end line carrying the
/// range's SHA-256 (read a second time through the hash tool: POSIX sh has no `tee >(…)`),
/// so that the client finds the data among whatever a PTY adds and checks every range on its
/// own ([`crate::cli::commands::cp::wire::Framed`]). Each frame line is printed in two halves:
/// a terminal echoing the command line cannot forge it.
pub(crate) fn read_range(path: &str, range: Range) -> String {
    format!(
        "f={path}; {NEEDS} printf '%s-%s\\n' postern-cp begin; \
         dd if=\"$f\" bs={BLOCK} skip={skip} count={count} 2>/dev/null | base64; \
         h=$(dd if=\"$f\" bs={BLOCK} skip={skip} count={count} 2>/dev/null | {HASH}); \
         printf '%s-%s %s\\n' postern-cp end \"${{h%% *}}\"",
        path = shell_quote(path),
        skip = range.first_block(),
        count = range.blocks(),
    )
}

/// Prepares an upload to `dest` (into it, as `name`, when it is a directory): checks, then
/// creates the empty temporary file `.NAME.postern-TOKEN` beside the destination and prints
/// the destination's path and the temporary file's on the lines after `postern-cp ready`.
pub(crate) fn prepare_upload(dest: &str, name: &str, token: &str, force: bool) -> String {
    let force = if force { "1" } else { "0" };
    format!(
        "d={dest}; {NEEDS} command -v head >/dev/null 2>&1 || {{ echo 'postern-cp notool head'; exit 0; }}; \
         if [ -d \"$d\" ]; then d=\"${{d%/}}/\"{name}; fi; \
         if [ -d \"$d\" ]; then echo 'postern-cp directory'; exit 0; fi; \
         if [ -e \"$d\" ] && [ ! -f \"$d\" ]; then echo 'postern-cp special'; exit 0; fi; \
         if [ -e \"$d\" ] && [ {force} != 1 ]; then echo 'postern-cp exists'; exit 0; fi; \
         p=$(dirname -- \"$d\"); n=$(basename -- \"$d\"); \
         [ -d \"$p\" ] || {{ echo 'postern-cp noparent'; exit 0; }}; \
         ( : > \"$p/.$n.postern-{token}\" ) 2>/dev/null || {{ echo 'postern-cp denied'; exit 0; }}; \
         echo 'postern-cp ready'; printf '%s\\n%s\\n' \"$d\" \"$p/.$n.postern-{token}\"",
        dest = shell_quote(dest),
        name = shell_quote(name),
    )
}

/// Writes `range` into `temp`, reading exactly its base64 lines from the PTY (raw mode first,
/// so the line discipline changes nothing), then reads the range back and prints its SHA-256
/// after `postern-cp-wrote ` ([`parse_written`]). When `dd` cannot write (a full disk), its
/// first error line follows `postern-cp-writefail ` ([`parse_write_failure`]) and the status
/// is 1.
pub(crate) fn write_range(temp: &str, range: Range) -> String {
    format!(
        "stty raw -echo 2>/dev/null; t={temp}; {NEEDS} head -c {wire} | base64 -d | \
         {{ e=$(dd of=\"$t\" bs={BLOCK} seek={seek} conv=notrunc 2>&1 >/dev/null) || \
         {{ printf '%s-%s %s\\n' postern-cp writefail \"$(printf '%s\\n' \"$e\" | head -n 1)\"; exit 1; }}; }} || exit 1; \
         h=$(dd if=\"$t\" bs={BLOCK} skip={seek} count={count} 2>/dev/null | {HASH}); \
         printf '%s-%s %s\\n' postern-cp wrote \"${{h%% *}}\"",
        wire = wire_len(range.len),
        temp = shell_quote(temp),
        seek = range.first_block(),
        count = range.blocks(),
    )
}

/// The SHA-256 of the range [`write_range`] read back, hex; `None` when it printed none.
pub(crate) fn parse_written(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(WROTE))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| is_sha256(h))
}

/// Checks that an earlier upload's temporary file `temp` is still there to resume into, and
/// that `dest` may still be written: `postern-cp ready` and the two paths as
/// [`prepare_upload`] prints them, else `postern-cp missing` (start afresh) or a refusal.
pub(crate) fn resume_upload(temp: &str, dest: &str, force: bool) -> String {
    let force = if force { "1" } else { "0" };
    format!(
        "t={temp}; d={dest}; {NEEDS} \
         if [ ! -f \"$t\" ] || [ ! -w \"$t\" ]; then echo 'postern-cp missing'; exit 0; fi; \
         if [ -d \"$d\" ]; then echo 'postern-cp directory'; exit 0; fi; \
         if [ -e \"$d\" ] && [ {force} != 1 ]; then echo 'postern-cp exists'; exit 0; fi; \
         echo 'postern-cp ready'; printf '%s\\n%s\\n' \"$d\" \"$t\"",
        temp = shell_quote(temp),
        dest = shell_quote(dest),
    )
}

/// Checks `temp`'s SHA-256 against `sha256`; when it matches, applies `mode` and `mtime`
/// (`-p`) and renames it to `dest`, printing `postern-cp done`; else removes it and prints
/// `postern-cp mismatch HASH`.
pub(crate) fn commit_upload(
    temp: &str,
    dest: &str,
    sha256: &str,
    keep: Option<(u32, &str)>,
) -> String {
    let keep = keep.map_or(String::new(), |(mode, stamp)| {
        format!("chmod {mode:o} \"$t\" && TZ=UTC0 touch -t {stamp} \"$t\" && ")
    });
    format!(
        "t={temp}; d={dest}; {NEEDS} h=$({HASH} < \"$t\"); h=${{h%% *}}; \
         if [ \"$h\" = {sha256} ]; then {keep}mv -f -- \"$t\" \"$d\" && echo 'postern-cp done'; \
         else rm -f -- \"$t\"; echo \"postern-cp mismatch $h\"; fi",
        temp = shell_quote(temp),
        dest = shell_quote(dest),
    )
}

/// Removes an upload's temporary file (after a failure).
pub(crate) fn remove(temp: &str) -> String {
    format!("rm -f -- {}", shell_quote(temp))
}

/// Packs the directory `path` into a new tar file in the instance's temporary directory and
/// prints its path after `postern-cp packed` (`-r` downloads); `postern-cp notdir` for a file.
pub(crate) fn pack_tree(path: &str) -> String {
    format!(
        "f={path}; {NEEDS} {TAR} \
         if [ ! -e \"$f\" ]; then echo 'postern-cp missing'; exit 0; fi; \
         if [ ! -d \"$f\" ]; then echo 'postern-cp notdir'; exit 0; fi; \
         t=$(mktemp \"${{TMPDIR:-/tmp}}/postern-cp.XXXXXX\") || {{ echo 'postern-cp denied'; exit 0; }}; \
         if tar -C \"$(dirname -- \"$f\")\" -cf \"$t\" -- \"$(basename -- \"$f\")\" 2>/dev/null; \
         then echo 'postern-cp packed'; printf '%s\\n' \"$t\"; \
         else rm -f -- \"$t\"; echo 'postern-cp denied'; fi",
        path = shell_quote(path),
    )
}

/// Checks that the directory `name` can be created at `dest` (inside it when it is a
/// directory); with `tar` (a tar file on the instance holding `name`), unpacks it there,
/// removes the tar file and prints `postern-cp done`. An existing destination is refused:
/// directories are never merged or replaced.
pub(crate) fn unpack_tree(dest: &str, name: &str, tar: Option<&str>, preserve: bool) -> String {
    let flags = if preserve { "-xpf" } else { "-xf" };
    let unpack = match tar {
        None => "echo 'postern-cp clear'".to_owned(),
        Some(tar) => format!(
            "a={tar}; w=$(mktemp -d \"$p/.postern-cp.XXXXXX\") || {{ rm -f -- \"$a\"; echo 'postern-cp denied'; exit 0; }}; \
             if tar -C \"$w\" {flags} \"$a\" 2>/dev/null && mv -- \"$w\"/{name} \"$d\"; \
             then rmdir -- \"$w\"; rm -f -- \"$a\"; echo 'postern-cp done'; \
             else rm -rf -- \"$w\"; rm -f -- \"$a\"; echo 'postern-cp denied'; fi",
            tar = shell_quote(tar),
            name = shell_quote(name),
        ),
    };
    format!(
        "d={dest}; {TAR} if [ -d \"$d\" ]; then d=\"${{d%/}}/\"{name}; fi; \
         if [ -e \"$d\" ]; then echo 'postern-cp exists'; exit 0; fi; \
         p=$(dirname -- \"$d\"); [ -d \"$p\" ] || {{ echo 'postern-cp noparent'; exit 0; }}; \
         {unpack}",
        dest = shell_quote(dest),
        name = shell_quote(name),
    )
}

/// The error `dd` reported when [`write_range`] could not write; `None` when it did not fail so.
pub(crate) fn parse_write_failure(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|l| l.strip_prefix(WRITE_FAILED))
        .map(|e| e.trim().to_owned())
}

/// Parses a probe's stdout; `None` when it printed no `postern-cp` line.
pub(crate) fn parse_probe(stdout: &str) -> Option<Probe> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("postern-cp "));
    let line = lines.next()?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let probe = match words.as_slice() {
        [_, "missing"] => Probe::Missing,
        [_, "directory"] => Probe::Directory,
        [_, "special"] => Probe::Special,
        [_, "denied"] => Probe::Denied,
        [_, "exists"] => Probe::Exists,
        [_, "noparent"] => Probe::NoParent,
        [_, "notool", tool] => Probe::NoTool((*tool).to_owned()),
        [_, "packed"] => Probe::Packed(lines.next()?.to_owned()),
        [_, "notdir"] => Probe::NotDirectory,
        [_, "clear"] => Probe::Clear,
        [_, "ready"] => Probe::Ready {
            dest: lines.next()?.to_owned(),
            temp: lines.next()?.to_owned(),
        },
        [_, "file", size, mode, mtime, hash] if is_sha256(hash) => Probe::File(RemoteFile {
            size: size.parse().ok()?,
            mode: u32::from_str_radix(mode, 8).ok()?,
            mtime: mtime.parse().ok()?,
            sha256: hash.to_ascii_lowercase(),
        }),
        _ => return None,
    };
    Some(probe)
}

/// The hash a commit script printed: `Ok(())` when done, `Err(hash)` on a mismatch.
pub(crate) fn parse_commit(stdout: &str) -> Option<Result<(), String>> {
    let line = stdout.lines().find(|l| l.starts_with("postern-cp "))?;
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        [_, "done"] => Some(Ok(())),
        [_, "mismatch", hash] => Some(Err((*hash).to_owned())),
        [_, "mismatch"] => Some(Err(String::new())),
        _ => None,
    }
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The tools every copy needs, checked first; sets `H` (the SHA-256 command) and `n`, so
/// scripts keep their own variables to other names (`f`, `d`, `p`, `t`, `h`).
const NEEDS: &str = "for n in dd base64; do command -v \"$n\" >/dev/null 2>&1 \
     || { echo \"postern-cp notool $n\"; exit 0; }; done; \
     if command -v sha256sum >/dev/null 2>&1; then H='sha256sum'; \
     elif command -v shasum >/dev/null 2>&1; then H='shasum -a 256'; \
     elif command -v openssl >/dev/null 2>&1; then H='openssl dgst -sha256 -r'; \
     else echo 'postern-cp notool sha256sum'; exit 0; fi;";
/// What [`write_range`] prints before the range's SHA-256 read back.
const WROTE: &str = "postern-cp-wrote ";
/// What [`write_range`] prints before `dd`'s error.
const WRITE_FAILED: &str = "postern-cp-writefail ";
/// `-r` needs tar.
const TAR: &str = "command -v tar >/dev/null 2>&1 || { echo 'postern-cp notool tar'; exit 0; };";
/// The SHA-256 command `NEEDS` chose, reading stdin.
const HASH: &str = "$H";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_file_probe() {
        let hash = "a".repeat(64);
        let out = format!("banner\npostern-cp file 12 644 1700000000 {hash}\n");
        assert_eq!(
            parse_probe(&out),
            Some(Probe::File(RemoteFile {
                size: 12,
                mode: 0o644,
                mtime: 1_700_000_000,
                sha256: hash,
            }))
        );
        assert_eq!(
            parse_probe("postern-cp notool base64\n"),
            Some(Probe::NoTool("base64".to_owned()))
        );
        assert_eq!(parse_probe("postern-cp file 1 2 3 nothex\n"), None);
        assert_eq!(parse_probe("nothing\n"), None);
    }

    #[test]
    fn parses_the_ready_line_and_the_destination() {
        assert_eq!(
            parse_probe("postern-cp ready\n/tmp/a b\n/tmp/.a b.postern-1\n"),
            Some(Probe::Ready {
                dest: "/tmp/a b".to_owned(),
                temp: "/tmp/.a b.postern-1".to_owned()
            })
        );
        assert_eq!(parse_commit("postern-cp done\n"), Some(Ok(())));
        assert_eq!(
            parse_commit("postern-cp mismatch abc\n"),
            Some(Err("abc".to_owned()))
        );
    }

    #[test]
    fn quotes_paths() {
        let script = read_range("/tmp/it's", Range { offset: 0, len: 1 });
        assert!(script.contains(r"'/tmp/it'\''s'"), "{script}");
    }
}
