//! `postern cp LOCAL TARGET:REMOTE`: a preparing script (checks, an empty temporary file beside
//! REMOTE), then one AWS-StartInteractiveCommand session per byte range, its PTY in raw mode,
//! `head -c | base64 -d | dd seek= conv=notrunc` fed base64 lines as fast as the session's
//! acknowledgements allow (the agent never paces input: `datachannel.go`; the driver sends
//! what the session's window takes), then a script that compares the remote SHA-256 with the
//! local one and renames the file into place. `-` as LOCAL: standard input is spooled to a
//! private temporary file first, so that it can be striped like any file.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use tokio::sync::mpsc;

use sha2::{Digest as _, Sha256};

use crate::cli::commands::cp::download::{RANGE_ATTEMPTS, altered, hash_file, retryable};
use crate::cli::commands::cp::failures;
use crate::cli::commands::cp::interrupt::Interrupt;
use crate::cli::commands::cp::plan::CpPlan;
use crate::cli::commands::cp::progress::{Bar, Progress};
use crate::cli::commands::cp::ranges::{self, LINE_BYTES, Range};
use crate::cli::commands::cp::remote::{Remote, capture};
use crate::cli::commands::cp::script::{self, Probe};
use crate::cli::commands::cp::upload_state::{Resumable, UploadState};
use crate::cli::commands::cp::wire::encode_lines;
use crate::transport::Input;

/// Uploads `local` (`None`: standard input) to `remote_path`.
pub(crate) async fn run(
    plan: &CpPlan,
    local: Option<&Path>,
    remote_path: &str,
    interrupt: Interrupt,
) -> anyhow::Result<ExitCode> {
    let source = Source::open(local).await?;
    let remote = Arc::new(Remote::connect(&plan.session, interrupt).await?);
    send_file(plan, &remote, &source, remote_path, plan.force).await?;
    Ok(ExitCode::SUCCESS)
}

/// Uploads `source` to `remote_path` (inside it under the source's name when it is a
/// directory), checked; the remote path written. A local file's upload is recorded as it goes
/// ([`UploadState`]): `--resume` continues a recorded one.
pub(crate) async fn send_file(
    plan: &CpPlan,
    remote: &Arc<Remote>,
    source: &Source,
    remote_path: &str,
    force: bool,
) -> anyhow::Result<String> {
    let size = source.size;
    let path = source.path.clone();
    let hashing = tokio::task::spawn_blocking(move || hash_file(&path));
    let state = source.spool_free().then(|| {
        UploadState::new(
            plan.session.target.as_str(),
            remote_path,
            &source.path,
            size,
            source.mtime,
        )
    });
    let state = state.flatten().map(Arc::new);

    let resumed = match (&state, plan.resume) {
        (Some(state), true) => match state.load() {
            Some(found) => reopen(remote, &found, remote_path, force).await?,
            None => None,
        },
        (Some(state), false) => {
            // Starting afresh: an earlier interrupted upload's temporary file goes.
            if let Some(stale) = state.load() {
                remote.cleanup(&script::remove(&stale.temp)).await;
            }
            None
        }
        (None, _) => None,
    };
    let (dest, temp, ranges, done) = match resumed {
        Some(found) => (found.dest, found.temp, found.ranges, found.done),
        None => {
            let (dest, temp) = prepare(remote, source, remote_path, force).await?;
            (dest, temp, ranges::split(size, plan.sessions), Vec::new())
        }
    };
    if let Some(state) = &state {
        state.begin(&dest, &temp, &ranges, &done);
    }

    let progress = Arc::new(Progress::default());
    let bar = Bar::start(&progress, size, "uploading".to_owned());
    for range in &done {
        progress.add(range.len);
    }
    let todo: Vec<Range> = ranges
        .iter()
        .copied()
        .filter(|r| !done.contains(r))
        .collect();
    let paths = Paths {
        temp: &temp,
        dest: &dest,
    };
    let sent = send_ranges(
        remote,
        &source.path,
        &todo,
        paths,
        state.as_ref(),
        &progress,
    )
    .await;
    drop(bar);
    let result = match sent {
        Ok(()) => commit(plan, remote, source, &temp, &dest, hashing).await,
        Err(e) => Err(e),
    };
    match (&result, &state) {
        (Ok(()), Some(state)) => state.remove(),
        (Ok(()), None) => {}
        // A session lost for good: the verified ranges stay on the instance for --resume.
        (Err(e), Some(state)) if retryable(e) && state.kept() => crate::report::notice(
            "the ranges written so far are kept on the instance: run the same command with \
             --resume to send only the others",
        ),
        (Err(_), state) => {
            // A refusal, a mismatch or a signal: nothing is left behind.
            if let Some(state) = state {
                state.remove();
            }
            remote.cleanup(&script::remove(&temp)).await;
        }
    }
    result.map(|()| dest)
}

/// Creates the upload's temporary file beside the destination: (destination, temporary file).
async fn prepare(
    remote: &Remote,
    source: &Source,
    remote_path: &str,
    force: bool,
) -> anyhow::Result<(String, String)> {
    let token = hex::encode(rand::random::<[u8; 8]>());
    let (sink, stdout) = capture();
    let ran = remote
        .capture(
            &script::prepare_upload(remote_path, &source.name, &token, force),
            sink,
        )
        .await?;
    match script::parse_probe(&String::from_utf8_lossy(&stdout())) {
        Some(Probe::Ready { dest, temp }) => Ok((dest, temp)),
        Some(other) => Err(failures::probe_refused(&other, remote_path, &remote.described).into()),
        None => Err(failures::unexpected_answer(
            "prepare the upload",
            &ran.stderr_text(),
            &remote.described,
        )
        .into()),
    }
}

/// Checks that a recorded upload's temporary file is still on the instance; `None` (start
/// afresh) when it is gone.
async fn reopen(
    remote: &Remote,
    found: &Resumable,
    remote_path: &str,
    force: bool,
) -> anyhow::Result<Option<Resumable>> {
    let (sink, stdout) = capture();
    let ran = remote
        .capture(
            &script::resume_upload(&found.temp, &found.dest, force),
            sink,
        )
        .await?;
    match script::parse_probe(&String::from_utf8_lossy(&stdout())) {
        Some(Probe::Ready { .. }) => {
            tracing::info!(
                kept = found.done.len(),
                of = found.ranges.len(),
                "resuming the upload: sending only the ranges not yet verified"
            );
            Ok(Some(found.clone()))
        }
        Some(Probe::Missing) => {
            tracing::info!("the interrupted upload's temporary file is gone: starting afresh");
            Ok(None)
        }
        Some(other) => Err(failures::probe_refused(&other, remote_path, &remote.described).into()),
        None => Err(failures::unexpected_answer(
            "resume the upload",
            &ran.stderr_text(),
            &remote.described,
        )
        .into()),
    }
}

/// The remote temporary file ranges go to, and the destination errors name.
#[derive(Clone, Copy, Debug)]
struct Paths<'a> {
    temp: &'a str,
    dest: &'a str,
}

/// The file to send: the local file, or standard input spooled to a private temporary file.
#[derive(Debug)]
pub(crate) struct Source {
    path: PathBuf,
    name: String,
    size: u64,
    mode: Option<u32>,
    mtime: Option<u64>,
    /// Keeps the spooled copy of standard input until the upload is done.
    _spool: Option<tempfile::NamedTempFile>,
}

impl Source {
    /// A spooled file sent as `name` (the spool is kept until the source is dropped).
    pub(crate) fn spooled(spool: tempfile::NamedTempFile, name: String) -> io::Result<Self> {
        let size = spool.as_file().metadata()?.len();
        Ok(Self {
            path: spool.path().to_path_buf(),
            name,
            size,
            mode: None,
            mtime: None,
            _spool: Some(spool),
        })
    }

    /// Whether this is a file of the user's (not a spool postern made): only those uploads can
    /// be resumed.
    fn spool_free(&self) -> bool {
        self._spool.is_none()
    }

    /// The local file `local`, or standard input (`None`) spooled.
    pub(crate) async fn open(local: Option<&Path>) -> anyhow::Result<Self> {
        let Some(local) = local else {
            let spool = tokio::task::spawn_blocking(|| -> io::Result<tempfile::NamedTempFile> {
                let mut spool = tempfile::NamedTempFile::new()?;
                io::copy(&mut io::stdin().lock(), spool.as_file_mut())?;
                Ok(spool)
            })
            .await?
            .map_err(|e| {
                failures::local_io("read standard input into", &std::env::temp_dir(), e)
            })?;
            return Ok(Self::spooled(spool, "stdin".to_owned())?);
        };
        let meta = std::fs::metadata(local).map_err(|e| failures::local_io("read", local, e))?;
        if meta.is_dir() {
            return Err(failures::local_not_file(
                local,
                "a directory",
                "add -r to copy a directory",
            )
            .into());
        }
        if !meta.is_file() {
            return Err(failures::local_not_file(
                local,
                "not a regular file",
                "use `-` and a pipe to send a stream: `producer | postern cp - TARGET:PATH`",
            )
            .into());
        }
        File::open(local).map_err(|e| failures::local_io("read", local, e))?;
        Ok(Self {
            path: local.to_path_buf(),
            name: local
                .file_name()
                .map_or_else(|| "upload".to_owned(), |n| n.to_string_lossy().into_owned()),
            size: meta.len(),
            mode: Some(meta.permissions().mode() & 0o7777),
            mtime: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            _spool: None,
        })
    }
}

/// Sends `ranges` of `path` into the remote temporary file, one session each, all at once;
/// each range verified is noted in `state`.
async fn send_ranges(
    remote: &Arc<Remote>,
    path: &Path,
    ranges: &[Range],
    paths: Paths<'_>,
    state: Option<&Arc<UploadState>>,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for &range in ranges {
        let remote = Arc::clone(remote);
        let progress = Arc::clone(progress);
        let path = path.to_path_buf();
        let temp = paths.temp.to_owned();
        let dest = paths.dest.to_owned();
        let state = state.cloned();
        tasks.push(tokio::spawn(async move {
            let paths = Paths {
                temp: &temp,
                dest: &dest,
            };
            send_range(&remote, &path, range, paths, &progress).await?;
            if let Some(state) = state {
                state.verified(range);
            }
            Ok(())
        }));
    }
    let mut first_error = None;
    for task in tasks {
        let result = task
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("a range task failed: {e}")));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Sends one range; a range whose session broke, or that reads back altered, is sent again
/// (up to [`RANGE_ATTEMPTS`] sessions): writing the same bytes at the same offsets is
/// harmless.
async fn send_range(
    remote: &Remote,
    path: &Path,
    range: Range,
    paths: Paths<'_>,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    let mut attempt = 1;
    loop {
        match send_range_once(remote, path, range, paths, progress).await {
            Err(e) if attempt < RANGE_ATTEMPTS && (retryable(&e) || altered(&e)) => {
                tracing::info!(offset = range.offset, attempt, error = %e, "range failed; sending it again");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Sends one range into the remote temporary file and checks the SHA-256 the instance reads
/// back against the bytes sent.
async fn send_range_once(
    remote: &Remote,
    path: &Path,
    range: Range,
    paths: Paths<'_>,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    let (tx, input) = mpsc::channel(INPUT_QUEUE);
    let file = File::open(path).map_err(|e| failures::local_io("read", path, e))?;
    let sent = Arc::new(Progress::default());
    let counter = Arc::clone(&sent);
    let total = Arc::clone(progress);
    let reader = std::thread::Builder::new()
        .name("postern-cp-read".to_owned())
        .spawn(move || produce(file, range, &tx, &[&counter, &total]))
        .map_err(|e| failures::local_io("start a reader for", path, e))?;
    let (sink, output) = capture();
    progress.session(true);
    let ran = remote
        .interactive(&script::write_range(paths.temp, range), input, sink)
        .await;
    progress.session(false);
    let output = String::from_utf8_lossy(&output()).into_owned();
    let what = || {
        format!(
            "writing bytes {}..{} of {}",
            range.offset,
            range.offset + range.len,
            crate::term::escape(paths.temp)
        )
    };
    let result = match ran {
        Ok(ran) if ran.succeeded() => {
            // The reader has queued every line once the remote read them all.
            let local = reader.join().ok().flatten();
            match (script::parse_written(&output), local) {
                (Some(theirs), Some(ours)) if theirs == ours => Ok(()),
                (Some(theirs), Some(ours)) => {
                    Err(failures::range_altered(&what(), &theirs, &ours, &remote.described).into())
                }
                _ => Err(failures::range_failed(
                    &what(),
                    ran.status,
                    "the range was not read back",
                    &remote.described,
                )
                .into()),
            }
        }
        Ok(_) if let Some(error) = script::parse_write_failure(&output) => {
            Err(failures::remote_write(paths.dest, &error, &remote.described).into())
        }
        Ok(ran) => {
            Err(
                failures::range_failed(&what(), ran.status, &ran.stderr_text(), &remote.described)
                    .into(),
            )
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        progress.take_back(sent.done());
    }
    result
}

/// Reads `range` of `file` and queues it as base64 lines; the range's SHA-256 (hex) once all of
/// it was queued. A read error ends the input early (the remote `head -c` then waits: the
/// session fails on the user's interrupt, and the error is logged).
fn produce(
    mut file: File,
    range: Range,
    tx: &mpsc::Sender<Input>,
    counters: &[&Progress],
) -> Option<String> {
    let chunk = usize::try_from(LINE_BYTES).unwrap_or(57) * LINES_PER_READ;
    let mut buf = vec![0u8; chunk];
    let mut hasher = Sha256::new();
    if let Err(e) = file.seek(SeekFrom::Start(range.offset)) {
        let _ = tx.blocking_send(Input::Failed(e));
        return None;
    }
    let mut left = range.len;
    while left > 0 {
        let want = usize::try_from(left.min(chunk as u64)).unwrap_or(chunk);
        if let Err(e) = file.read_exact(&mut buf[..want]) {
            tracing::warn!(error = %e, "reading the local file failed");
            let _ = tx.blocking_send(Input::Failed(e));
            return None;
        }
        hasher.update(&buf[..want]);
        if tx
            .blocking_send(Input::Data(encode_lines(&buf[..want])))
            .is_err()
        {
            return None;
        }
        for counter in counters {
            counter.add(want as u64);
        }
        left -= want as u64;
    }
    Some(hex::encode(hasher.finalize()))
}

/// Checks the remote copy against the local SHA-256 and renames it into place.
async fn commit(
    plan: &CpPlan,
    remote: &Remote,
    source: &Source,
    temp: &str,
    dest: &str,
    hashing: tokio::task::JoinHandle<io::Result<String>>,
) -> anyhow::Result<()> {
    let local_hash = hashing
        .await?
        .map_err(|e| failures::local_io("read", &source.path, e))?;
    let stamp = if plan.preserve {
        source.mtime.map(touch_stamp)
    } else {
        None
    };
    let keep = match (plan.preserve, source.mode, stamp.as_deref()) {
        (true, Some(mode), Some(stamp)) => Some((mode, stamp)),
        _ => None,
    };
    let (sink, stdout) = capture();
    let ran = remote
        .capture(&script::commit_upload(temp, dest, &local_hash, keep), sink)
        .await?;
    match script::parse_commit(&String::from_utf8_lossy(&stdout())) {
        Some(Ok(())) => Ok(()),
        Some(Err(got)) => Err(failures::mismatch(&local_hash, &got, &remote.described).into()),
        None => Err(failures::unexpected_answer(
            "check and rename the upload",
            &ran.stderr_text(),
            &remote.described,
        )
        .into()),
    }
}

/// `touch -t`'s `CCYYMMDDhhmm.SS` for `secs` since the epoch, in UTC (the script sets TZ).
/// A time past year 9999 (a clock set wrong) is clamped to its last second.
fn touch_stamp(secs: u64) -> String {
    let time = postern_formats::credentials::from_epoch_seconds(secs);
    // `2024-01-02T03:04:05Z`
    let text = humantime::format_rfc3339_seconds(time).to_string();
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    format!("{}.{}", &digits[..12], &digits[12..14])
}

/// Reads queued per range between the reader thread and the session.
const INPUT_QUEUE: usize = 4;
/// Base64 lines per read: 57 KiB of file, 77 KiB on the wire.
const LINES_PER_READ: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_stamps_are_utc() {
        assert_eq!(touch_stamp(0), "197001010000.00");
        assert_eq!(touch_stamp(1_700_000_000), "202311142213.20");
        assert_eq!(touch_stamp(u64::MAX), "999912312359.59");
    }
}
