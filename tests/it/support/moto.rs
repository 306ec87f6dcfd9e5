//! A moto server (an AWS implementation we did not write) on a loopback port, bounded in time,
//! stopped on drop, with SDK configurations pointed at it and fake static credentials.
//!
//! `scripts/test` installs moto in a venv and exports `POSTERN_TEST_MOTO_SERVER`. A missing moto
//! is a test failure that says how to install it, never a silent skip.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_types::SdkConfig;
use nix::sys::signal::Signal;

use super::aws::{sdk_config, static_credentials};
use super::home::Home;
use super::net::free_port;
use super::poll::try_poll;
use super::process::{exit_within, killpg};

/// The fake access key every test signs with (moto accepts any).
pub(crate) const ACCESS_KEY: &str = "AKIDMOTOTEST";
/// Its fake secret.
pub(crate) const SECRET_KEY: &str = "moto-test-secret";
/// The account moto acts in for credentials it did not issue.
pub(crate) const MOTO_ACCOUNT: &str = "123456789012";

/// A running moto server, stopped (with its watchdog) on drop.
pub(crate) struct Moto {
    child: Child,
    endpoint: String,
    log: Arc<Mutex<VecDeque<String>>>,
    _home: tempfile::TempDir,
}

impl Moto {
    /// Starts moto on a free loopback port and waits (bounded) until it listens. Retries with
    /// another port when the chosen one was taken between picking and binding.
    pub(crate) fn start() -> Self {
        let program = executable();
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&program) {
                Ok(moto) => return moto,
                Err(Collision(log)) => last_log = log,
            }
        }
        panic!(
            "moto found no free loopback port in {START_ATTEMPTS} attempts; its log:\n{last_log}"
        );
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// SDK configuration for `region` with the fake static credentials.
    pub(crate) fn sdk(&self, region: &str) -> SdkConfig {
        self.sdk_with(region, static_credentials(ACCESS_KEY, SECRET_KEY))
    }

    /// SDK configuration for `region` with `credentials`.
    pub(crate) fn sdk_with(&self, region: &str, credentials: Credentials) -> SdkConfig {
        sdk_config(&self.endpoint, region, credentials)
    }

    /// `postern ARGS --region REGION` against moto (`AWS_ENDPOINT_URL`) living in `home`, with the fake
    /// static credentials.
    pub(crate) fn postern(&self, home: &Home, region: &str, args: &[&str]) -> Command {
        let mut command = home.command();
        command
            .args(args)
            .args(["--region", region])
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        command
    }

    /// The last lines moto logged (requests, tracebacks), for assertion messages.
    pub(crate) fn log(&self) -> String {
        let lines = self.log.lock().expect("log lock");
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn try_start(program: &Path) -> Result<Self, Collision> {
        let port = free_port();
        let home = tempfile::tempdir().expect("temp dir for moto");
        // `timeout` is the watchdog: moto stops after LIFETIME even if this process dies
        // without running Drop. Its own process group lets Drop stop both at once.
        let mut child = Command::new("timeout")
            .args(["--kill-after=5", &format!("{}", LIFETIME.as_secs())])
            .arg(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {} under timeout: {e}", program.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let banner = format!("Running on http://127.0.0.1:{port}");
        let lines = Arc::clone(&log);
        // Drains moto's stderr for its whole life (a full pipe would block it), remembering
        // the last lines; werkzeug prints the banner only once the port is bound.
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains(&banner)
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(true);
                }
                let mut kept = lines.lock().expect("log lock");
                if kept.len() == LOG_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
            if let Some(tx) = ready {
                let _ = tx.send(false);
            }
        });
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
            _home: home,
        };
        match ready_rx.recv_timeout(STARTUP) {
            Ok(true) => {}
            Ok(false) => {
                let log = moto.log();
                moto.stop();
                if log.contains("in use") {
                    return Err(Collision(log));
                }
                panic!("moto exited before listening on port {port}; its log:\n{log}");
            }
            Err(_) => {
                moto.stop();
                panic!(
                    "moto did not listen on port {port} within {STARTUP:?}; its log:\n{}",
                    moto.log()
                );
            }
        }
        let accepts = try_poll(STARTUP, || TcpStream::connect(("127.0.0.1", port)).ok());
        assert!(
            accepts.is_some(),
            "moto announced port {port} but does not accept connections; its log:\n{}",
            moto.log()
        );
        Ok(moto)
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // The group is the one `process_group(0)` made for the watchdog and moto: ours alone.
        let group = self.child.id();
        let _ = killpg(group, Signal::SIGTERM);
        if exit_within(&mut self.child, STOP_GRACE).is_none() {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The moto server executable: `POSTERN_TEST_MOTO_SERVER` (`scripts/test` creates the venv
/// and sets it). Panics with install instructions when there is none.
fn executable() -> PathBuf {
    let Some(path) = std::env::var_os(ENV_VAR).filter(|p| !p.is_empty()) else {
        panic!("moto is not installed: {ENV_VAR} is unset.\n{INSTALL}");
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{ENV_VAR}={} is not a file.\n{INSTALL}",
        path.display()
    );
    path
}

/// The chosen port was taken before moto could bind it; the log says so.
struct Collision(String);

const ENV_VAR: &str = "POSTERN_TEST_MOTO_SERVER";
const INSTALL: &str = "run the tests with `scripts/test` (it makes a pinned moto venv in its \
cache directory and exports POSTERN_TEST_MOTO_SERVER), or by hand:\n  python3 -m venv VENV\n  \
VENV/bin/pip install 'moto[server]==5.2.5'\n  export POSTERN_TEST_MOTO_SERVER=VENV/bin/moto_server";
/// The watchdog stops moto after this long, whatever happens to the test.
const LIFETIME: Duration = Duration::from_secs(300);
/// moto takes one to two seconds to import and bind; a loaded machine may need more.
const STARTUP: Duration = Duration::from_secs(60);
/// How long moto may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);
const START_ATTEMPTS: usize = 5;
const LOG_LINES: usize = 200;
