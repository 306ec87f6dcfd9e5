//! A pseudo-terminal with a child process as its session leader: the master side is an
//! `AsyncFd`, the child gets the slave as stdin/stdout/stderr and controlling terminal
//! (`setsid` + `TIOCSCTTY`), as the agent's `pty.Start` does (agent `shell_unix.go`).
//!
//! Unix only. Dropping the [`Pty`] hangs up and kills the child's process group.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::signal::{Signal, killpg};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use postern_protocol::SizeData;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};

/// The master side of a PTY.
#[derive(Debug)]
pub(crate) struct Pty {
    master: AsyncFd<OwnedFd>,
}

/// The child running on a PTY, leader of its own session.
#[derive(Debug)]
pub(crate) struct PtyChild {
    child: Child,
    group: Option<Pid>,
}

impl Pty {
    /// Runs `program args` on a new PTY of `size` with `TERM=xterm-256color` and `env`.
    pub(crate) fn spawn(
        program: &Path,
        args: &[&str],
        size: SizeData,
        env: &[(String, String)],
    ) -> io::Result<(Self, PtyChild)> {
        // O_CLOEXEC from the start: no other child may inherit either side, or the master would
        // never see the slave close.
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let slave_path = ptsname_r(&master)?;
        let slave_fd = nix::fcntl::open(
            slave_path.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        // SAFETY: `open` just returned this descriptor and nothing else owns it.
        let slave = unsafe { OwnedFd::from_raw_fd(slave_fd) };
        // SAFETY: PtyMaster owned its descriptor; into_raw_fd hands that ownership over.
        let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
        set_size_fd(master.as_raw_fd(), size)?;
        let flags = OFlag::from_bits_truncate(fcntl(master.as_raw_fd(), FcntlArg::F_GETFL)?);
        fcntl(
            master.as_raw_fd(),
            FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK),
        )?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env("TERM", TERM)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave))
            .kill_on_drop(true);
        // SAFETY: the closure calls only async-signal-safe functions (setsid, ioctl).
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        let group = child.id().map(|id| Pid::from_raw(id as i32));
        // SAFETY: `master` is an OwnedFd, open until the AsyncFd drops it, and always returns the
        // same descriptor.
        let master = unsafe { AsyncFd::register(master) }.map_err(io::Error::from)?;
        Ok((Self { master }, PtyChild { child, group }))
    }

    /// Reads output; `Ok(0)` once the child side is gone (Linux reports EIO then).
    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| nix::unistd::read(fd.as_raw_fd(), buf).map_err(io::Error::from))
            {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(err)) if err.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => {}
            }
        }
    }

    /// Writes all of `data` (terminal input), waiting while the terminal takes none (as the
    /// agent's blocking write does).
    pub(crate) async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        let mut stalled = 0u32;
        while !data.is_empty() {
            if stalled > 1 {
                // A master whose line discipline has no room (nobody reads the terminal any
                // more) can report writable and refuse every write at once: without a pause
                // this loop would spin and starve every other session on the runtime.
                tokio::time::sleep(STALLED_WRITE_PAUSE).await;
            }
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd, data).map_err(io::Error::from)) {
                Ok(Ok(0)) | Err(_) => stalled += 1,
                Ok(Ok(n)) => {
                    data = &data[n..];
                    stalled = 0;
                }
                Ok(Err(err)) => return Err(err),
            }
        }
        Ok(())
    }

    /// Sets the window size (cols/rows truncated to 16 bits, as the agent does).
    pub(crate) fn resize(&self, size: SizeData) -> io::Result<()> {
        set_size_fd(self.master.get_ref().as_raw_fd(), size)
    }
}

impl PtyChild {
    /// Waits for the child and returns its exit code (-1 when killed by a signal).
    pub(crate) async fn wait(&mut self) -> io::Result<i32> {
        let status = self.child.wait().await?;
        self.group = None;
        Ok(status.code().unwrap_or(-1))
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        if let Some(group) = self.group {
            // The shell's whole session goes, as when the agent closes the PTY; it may be gone.
            let _ = killpg(group, Signal::SIGHUP);
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

fn set_size_fd(fd: i32, size: SizeData) -> io::Result<()> {
    let winsize = libc::winsize {
        ws_row: size.rows as u16,
        ws_col: size.cols as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &winsize) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How long [`Pty::write_all`] waits when the terminal keeps taking nothing.
const STALLED_WRITE_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);
/// The agent sets this for every PTY (agent `shell_unix.go` `termEnvVariable`).
const TERM: &str = "xterm-256color";
