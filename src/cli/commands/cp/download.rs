//! `postern cp TARGET:REMOTE LOCAL`: a probe (kind, size, mode, SHA-256) through
//! `Postern-Command`, then one `Postern-Command` session per byte range reading it as base64,
//! decoded as it arrives and written at its offset in a temporary file beside LOCAL (0600),
//! which is hashed and renamed once complete and verified. `-` as LOCAL: one session, written
//! to stdout in order and hashed on the way (a mismatch is reported after the bytes went out).
//! Memory stays bounded: a range's bytes go to the file as they arrive. Each range carries the
//! SHA-256 the instance computed of it; a range that arrives altered is fetched again. Without
//! `Postern-Command` (no `postern setup`, or the role may not use it), every session is an
//! AWS-StartInteractiveCommand PTY instead ([`Remote::capture`]): slower, paced by the agent,
//! but framed and checked the same way.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::AsFd as _;
use std::os::unix::fs::{FileExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWrite;

use crate::cli::commands::cp::failures;
use crate::cli::commands::cp::interrupt::{Interrupt, Interrupted};
use crate::cli::commands::cp::plan::CpPlan;
use crate::cli::commands::cp::progress::{Bar, Progress};
use crate::cli::commands::cp::ranges::{self, Range};
use crate::cli::commands::cp::remote::{Ran, Remote, capture};
use crate::cli::commands::cp::resume::{self, Partial};
use crate::cli::commands::cp::script::{self, Probe, RemoteFile};
use crate::cli::commands::cp::wire::{FrameError, Framed};
use crate::report::{ErrorKind, ExpectedError};

/// Downloads `remote_path` to `local` (`None`: standard output).
pub(crate) async fn run(
    plan: &CpPlan,
    remote_path: &str,
    local: Option<&Path>,
    interrupt: Interrupt,
) -> anyhow::Result<ExitCode> {
    // Checked before any AWS call: a refusal costs nothing.
    let dest = match local {
        Some(local) => Some(destination(local, remote_path, plan.force)?),
        None => None,
    };
    let remote = Arc::new(Remote::connect(&plan.session, interrupt).await?);
    fetch_file(plan, &remote, remote_path, dest.as_deref()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Downloads the regular file `remote_path` to `dest` (`None`: standard output), checked.
pub(crate) async fn fetch_file(
    plan: &CpPlan,
    remote: &Arc<Remote>,
    remote_path: &str,
    dest: Option<&Path>,
) -> anyhow::Result<()> {
    let file = probe(remote, remote_path).await?;
    let progress = Arc::new(Progress::default());
    let _bar = Bar::start(&progress, file.size, "downloading".to_owned());
    match dest {
        None => to_stdout(remote, remote_path, &file, &progress).await,
        Some(dest) => to_file(plan, remote, remote_path, &file, dest, &progress).await,
    }
}

/// The local file to write: `local`, or the remote file's name inside it when it is a
/// directory; refused when it exists and `force` is off.
pub(crate) fn destination(local: &Path, remote_path: &str, force: bool) -> anyhow::Result<PathBuf> {
    let path = if local.is_dir() {
        let name = Path::new(remote_path)
            .file_name()
            .map_or_else(|| PathBuf::from("download"), PathBuf::from);
        local.join(name)
    } else {
        local.to_path_buf()
    };
    if path.is_dir() {
        return Err(failures::local_io(
            "write the file over the directory",
            &path,
            io::Error::from(io::ErrorKind::IsADirectory),
        )
        .into());
    }
    if !force && path.symlink_metadata().is_ok() {
        return Err(failures::local_exists(&path).into());
    }
    Ok(path)
}

/// What the instance says about `remote_path`; errors for anything but a readable file.
async fn probe(remote: &Remote, remote_path: &str) -> anyhow::Result<RemoteFile> {
    let (sink, stdout) = capture();
    let ran = remote
        .capture(&script::probe_download(remote_path), sink)
        .await?;
    let stdout = stdout();
    match script::parse_probe(&String::from_utf8_lossy(&stdout)) {
        Some(Probe::File(file)) => Ok(file),
        Some(other) => Err(failures::probe_refused(&other, remote_path, &remote.described).into()),
        None => Err(failures::unexpected_answer(
            "describe the file",
            &ran.stderr_text(),
            &remote.described,
        )
        .into()),
    }
}

async fn to_file(
    plan: &CpPlan,
    remote: &Arc<Remote>,
    remote_path: &str,
    file: &RemoteFile,
    dest: &Path,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let (partial_path, record_path) = resume::paths(&dir, &name);
    let resumed = if plan.resume {
        Partial::load(&record_path, remote_path, file)
            .filter(|_| resume::ours(&partial_path).is_some_and(|m| m.len() == file.size))
    } else {
        None
    };
    let (temp, ranges) = match &resumed {
        Some(partial) => {
            let kept = resume::open_partial(&partial_path)
                .map_err(|e| failures::local_io("open", &partial_path, e))?;
            let path = tempfile::TempPath::try_from_path(&partial_path)
                .map_err(|e| failures::local_io("open", &partial_path, e))?;
            let temp = tempfile::NamedTempFile::from_parts(kept, path);
            (temp, partial.ranges())
        }
        None => {
            // tempfile creates it 0600 in the destination's directory: the rename stays on one
            // file system, and nobody else reads a half-written copy.
            let temp = tempfile::Builder::new()
                .prefix(&format!(".{name}.postern-"))
                .tempfile_in(&dir)
                .map_err(|e| failures::local_io("create a temporary file in", &dir, e))?;
            temp.as_file()
                .set_len(file.size)
                .map_err(|e| failures::local_io("size", temp.path(), e))?;
            (temp, ranges::split(file.size, plan.sessions))
        }
    };

    let mut tasks = Vec::new();
    let mut done = Vec::new();
    for &range in &ranges {
        if resumed.as_ref().is_some_and(|p| p.has(range)) {
            done.push(range);
            progress.add(range.len);
            continue;
        }
        let out = temp
            .as_file()
            .try_clone()
            .map_err(|e| failures::local_io("open", temp.path(), e))?;
        let remote = Arc::clone(remote);
        let progress = Arc::clone(progress);
        let path = remote_path.to_owned();
        tasks.push((
            range,
            tokio::spawn(async move {
                fetch(&remote, &path, range, Target::File(out), &progress).await
            }),
        ));
    }
    let mut first_error = None;
    for (range, task) in tasks {
        let result = task
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("a range task failed: {e}")));
        match result {
            Ok(()) => done.push(range),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        if retryable(&e) && !done.is_empty() {
            keep_partial(
                temp,
                &partial_path,
                &record_path,
                Partial::new(remote_path, file, &ranges, &done),
            );
        }
        return Err(e);
    }

    let path = temp.path().to_path_buf();
    let got = tokio::task::spawn_blocking(move || hash_file(&path))
        .await?
        .map_err(|e| failures::local_io("read back", temp.path(), e))?;
    if got != file.sha256 {
        return Err(failures::mismatch(&file.sha256, &got, &remote.described).into());
    }
    let mode = if plan.preserve {
        file.mode & 0o7777
    } else {
        file.mode & 0o777 & !current_umask()
    };
    let handle = temp.as_file();
    handle
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| failures::local_io("set the mode of", temp.path(), e))?;
    if plan.preserve {
        let mtime = u64::try_from(file.mtime).unwrap_or(0);
        handle
            // The instance's clock may say anything: clamped, never an overflow.
            .set_modified(postern_formats::credentials::from_epoch_seconds(mtime))
            .map_err(|e| failures::local_io("set the modification time of", temp.path(), e))?;
    }
    let persisted = if plan.force {
        temp.persist(dest).map(drop)
    } else {
        temp.persist_noclobber(dest).map(drop)
    };
    persisted.map_err(|e| failures::local_io("rename the copy to", dest, e.error))?;
    // A record of an earlier, interrupted download of this file is obsolete now.
    let _ = std::fs::remove_file(&record_path);
    let _ = std::fs::remove_file(&partial_path);
    Ok(())
}

/// Keeps what arrived of an interrupted download for `--resume`, and says so.
fn keep_partial(temp: tempfile::NamedTempFile, partial: &Path, record: &Path, state: Partial) {
    let kept = temp
        .persist(partial)
        .map_err(|e| e.error)
        .and_then(|_| state.save(record));
    match kept {
        Ok(()) => crate::report::notice(
            "the ranges that arrived are kept: run the same command with --resume to fetch only \
             the others",
        ),
        Err(e) => tracing::warn!(error = %e, "could not keep the partial download"),
    }
}

async fn to_stdout(
    remote: &Arc<Remote>,
    remote_path: &str,
    file: &RemoteFile,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    let stdout = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let range = Range {
        offset: 0,
        len: file.size,
    };
    fetch(
        remote,
        remote_path,
        range,
        Target::Stdout(stdout, Arc::clone(&hasher)),
        progress,
    )
    .await?;
    let got = hex::encode(lock(&hasher).clone().finalize());
    if got != file.sha256 {
        return Err(failures::mismatch(&file.sha256, &got, &remote.described).into());
    }
    Ok(())
}

/// Where a range's bytes go.
#[derive(Debug)]
enum Target {
    /// At the range's offset in the file.
    File(File),
    /// In order to standard output, through the running hash.
    Stdout(File, Arc<Mutex<Sha256>>),
}

/// Fetches one range into `target`. A range whose session broke, or whose bytes arrived
/// altered (their SHA-256 is not the one the instance computed), is fetched again, up to
/// [`RANGE_ATTEMPTS`] times, when its bytes go to a file (writing them again at the same
/// offsets is harmless); standard output cannot take bytes back, so it gets one attempt.
async fn fetch(
    remote: &Remote,
    remote_path: &str,
    range: Range,
    target: Target,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    let Target::File(file) = target else {
        return fetch_once(remote, remote_path, range, target, progress).await;
    };
    let mut attempt = 1;
    loop {
        let copy = Target::File(file.try_clone()?);
        match fetch_once(remote, remote_path, range, copy, progress).await {
            Err(e) if attempt < RANGE_ATTEMPTS && (retryable(&e) || altered(&e)) => {
                tracing::info!(offset = range.offset, attempt, error = %e, "range failed; fetching it again");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether a range's failure may pass on a second try: its session broke or timed out, as
/// opposed to a refusal (no document, access denied, a file that changed).
pub(crate) fn retryable(err: &anyhow::Error) -> bool {
    !err.is::<Interrupted>()
        && err.downcast_ref::<ExpectedError>().is_none_or(|e| {
            matches!(
                e.kind(),
                ErrorKind::ConnectionLost
                    | ErrorKind::HandshakeTimeout
                    | ErrorKind::EndpointUnreachable
            )
        })
}

/// Whether a range's bytes arrived altered (its SHA-256 disagreed).
pub(crate) fn altered(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ExpectedError>()
        .is_some_and(|e| e.kind() == ErrorKind::CopyVerify)
}

async fn fetch_once(
    remote: &Remote,
    remote_path: &str,
    range: Range,
    target: Target,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    let state = Arc::new(Mutex::new(SinkState::default()));
    let sink = RangeSink {
        framed: Some(Framed::default()),
        decoded: Vec::new(),
        target,
        position: range.offset,
        end: range.offset + range.len,
        progress: Arc::clone(progress),
        state: Arc::clone(&state),
    };
    progress.session(true);
    let ran = remote
        .capture(&script::read_range(remote_path, range), Box::new(sink))
        .await;
    progress.session(false);
    let written = lock(&state).written;
    let result = check_range(remote, remote_path, range, ran, &lock(&state));
    if result.is_err() {
        progress.take_back(written);
    }
    result
}

fn check_range(
    remote: &Remote,
    remote_path: &str,
    range: Range,
    ran: anyhow::Result<Ran>,
    state: &SinkState,
) -> anyhow::Result<()> {
    let ran = ran?;
    if state.output_closed {
        return Err(OutputClosed.into());
    }
    let what = format!(
        "reading bytes {}..{} of {}",
        range.offset,
        range.offset + range.len,
        crate::term::escape(remote_path)
    );
    if let Some(err) = &state.error {
        return Err(failures::range_failed(&what, ran.status, err, &remote.described).into());
    }
    match &state.frame {
        Some(Err(FrameError::Mismatch {
            remote: theirs,
            local,
        })) => {
            return Err(failures::range_altered(&what, theirs, local, &remote.described).into());
        }
        Some(Err(err)) if ran.succeeded() => {
            return Err(failures::range_failed(
                &what,
                ran.status,
                &err.to_string(),
                &remote.described,
            )
            .into());
        }
        _ => {}
    }
    if !ran.succeeded() || state.written != range.len || !ran.stderr.is_empty() {
        let stderr = if state.written == range.len {
            ran.stderr_text()
        } else {
            format!(
                "{} bytes arrived of {}; {}",
                state.written,
                range.len,
                ran.stderr_text()
            )
        };
        return Err(failures::range_failed(&what, ran.status, &stderr, &remote.described).into());
    }
    Ok(())
}

/// What a [`RangeSink`] learnt, read once its session ended.
#[derive(Debug, Default)]
struct SinkState {
    written: u64,
    error: Option<String>,
    /// How the frame ended (set when the sink is dropped).
    frame: Option<Result<(), FrameError>>,
    /// Standard output was closed (`postern cp T:F - | head`).
    output_closed: bool,
}

/// Standard output was closed before the copy ended: exit 141 quietly, as `exec` does.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub(crate) struct OutputClosed;

/// Finds a range's frame in what the session delivers, decodes its base64 and writes the bytes
/// out at once. It never fails the session: the first error is kept for [`fetch`] and the rest
/// of the output is dropped.
#[derive(Debug)]
struct RangeSink {
    /// `None` once dropped.
    framed: Option<Framed>,
    decoded: Vec<u8>,
    target: Target,
    position: u64,
    end: u64,
    progress: Arc<Progress>,
    state: Arc<Mutex<SinkState>>,
}

impl RangeSink {
    fn take(&mut self, buf: &[u8]) -> Result<(), String> {
        self.decoded.clear();
        if let Some(framed) = &mut self.framed {
            framed
                .feed(buf, &mut self.decoded)
                .map_err(|e| e.to_string())?;
        }
        let len = self.decoded.len() as u64;
        if self.position + len > self.end {
            return Err("the remote sent more bytes than the range holds (the file grew?)".into());
        }
        match &mut self.target {
            Target::File(file) => file.write_all_at(&self.decoded, self.position),
            Target::Stdout(out, hasher) => {
                lock(hasher).update(&self.decoded);
                out.write_all(&self.decoded).inspect_err(|e| {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        lock(&self.state).output_closed = true;
                    }
                })
            }
        }
        .map_err(|e| format!("could not write the local copy: {e}"))?;
        self.position += len;
        self.progress.add(len);
        lock(&self.state).written += len;
        Ok(())
    }
}

impl AsyncWrite for RangeSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if lock(&self.state).error.is_none()
            && let Err(e) = self.take(buf)
        {
            lock(&self.state).error = Some(e);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for RangeSink {
    fn drop(&mut self) {
        let Some(framed) = self.framed.take() else {
            return;
        };
        let mut state = lock(&self.state);
        if let Err(e) = framed.decoder_finish() {
            state.error.get_or_insert(e.to_string());
        }
        state.frame = Some(framed.finish());
    }
}

/// The SHA-256 of the file at `path`, hex.
pub(crate) fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The process's umask (read by setting it and putting it back).
fn current_umask() -> u32 {
    use nix::sys::stat::{Mode, umask};
    let old = umask(Mode::from_bits_truncate(0o077));
    umask(old);
    old.bits()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another holder panicked; the data is still usable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sessions a range may take before the copy fails.
pub(crate) const RANGE_ATTEMPTS: u32 = 3;
