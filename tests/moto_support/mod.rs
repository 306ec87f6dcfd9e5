//! Support for the `moto_*` tests: a moto server (an AWS implementation we did not write) on a
//! loopback port, bounded in time, stopped on drop; SDK configurations pointed at it with fake
//! static credentials; and a scratch home for running the real `postern` binary against it
//! without touching the real `~/.aws`, `~/.config` or `~/.cache`.
//!
//! `scripts/test` installs moto in a venv and exports `POSTERN_TEST_MOTO_SERVER`. A missing moto is
//! a test failure that says how to install it, never a silent skip.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each moto test binary uses a different part of the support module"
)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The fake access key every test signs with (moto accepts any).
pub const ACCESS_KEY: &str = "AKIDMOTOTEST";
/// Its fake secret.
pub const SECRET_KEY: &str = "moto-test-secret";
/// The account moto acts in for credentials it did not issue.
pub const MOTO_ACCOUNT: &str = "123456789012";

/// A running moto server, stopped (with its watchdog) on drop.
pub struct Moto {
    child: Child,
    endpoint: String,
    log: Arc<Mutex<VecDeque<String>>>,
    _home: tempfile::TempDir,
}

impl Moto {
    /// Starts moto on a free loopback port and waits (bounded) until it listens. Retries with
    /// another port when the chosen one was taken between picking and binding.
    pub fn start() -> Self {
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
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// SDK configuration for `region` with the fake static credentials, retries off (every
    /// error reaches the test as moto sent it).
    pub fn sdk(&self, region: &str) -> SdkConfig {
        self.sdk_with(
            region,
            Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "moto-tests"),
        )
    }

    /// SDK configuration for `region` with `credentials`.
    pub fn sdk_with(&self, region: &str, credentials: Credentials) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .endpoint_url(&self.endpoint)
            .retry_config(RetryConfig::disabled())
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build()
    }

    /// The last lines moto logged (requests, tracebacks), for assertion messages.
    pub fn log(&self) -> String {
        join_log(&self.log)
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
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto announced port {port} but does not accept connections; its log:\n{}",
                moto.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(moto)
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // The group is the one `process_group(0)` made for the watchdog and moto: ours alone.
        let group = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"));
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A scratch home for the `postern` binary: HOME, XDG dirs, the postern configuration and
/// cache, and empty AWS config files, all in a temporary directory.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// A home with `config` as its postern configuration, if any.
    pub fn new(config: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some(config) = config {
            std::fs::write(dir.path().join("config.toml"), config).expect("write config");
        }
        Self { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The postern cache directory (`POSTERN_CACHE_DIR`).
    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// `postern ARGS --endpoint-url MOTO --region REGION` with the fake static credentials
    /// in the environment and nothing else of the caller's environment.
    pub fn postern(&self, moto: &Moto, region: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_postern"));
        command
            .args(args)
            .args(["--endpoint-url", moto.endpoint(), "--region", region])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("xdg-config"))
            .env("XDG_CACHE_HOME", self.path().join("xdg-cache"))
            .env("POSTERN_CACHE_DIR", self.cache())
            .env("AWS_CONFIG_FILE", self.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.path().join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        // Without a configuration the default path (under XDG_CONFIG_HOME) is simply absent; a
        // POSTERN_CONFIG naming a missing file would be an error.
        let config = self.path().join("config.toml");
        if config.exists() {
            command.env("POSTERN_CONFIG", config);
        }
        command
    }
}

/// The moto server executable: `POSTERN_TEST_MOTO_SERVER` (`scripts/test` creates the venv
/// and sets it). Panics with install instructions when there is none.
pub fn executable() -> PathBuf {
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

/// A port the kernel just handed out on loopback. moto cannot listen on port 0, so the
/// listener is dropped and moto binds the port; [`Moto::start`] retries if someone else did.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

fn join_log(log: &Mutex<VecDeque<String>>) -> String {
    let lines = log.lock().expect("log lock");
    lines.iter().cloned().collect::<Vec<_>>().join("\n")
}

const ENV_VAR: &str = "POSTERN_TEST_MOTO_SERVER";
const INSTALL: &str = "run the tests with `scripts/test` (it makes a pinned moto venv in its \
cache directory and exports POSTERN_TEST_MOTO_SERVER), or by hand:\n  python3 -m venv VENV\n  \
VENV/bin/pip install 'moto[server]==5.2.5'\n  export POSTERN_TEST_MOTO_SERVER=VENV/bin/moto_server";
/// The watchdog stops moto after this long, whatever happens to the test.
const LIFETIME: Duration = Duration::from_secs(300);
/// moto takes one to two seconds to import and bind; a loaded machine may need more.
const STARTUP: Duration = Duration::from_secs(60);
const START_ATTEMPTS: usize = 5;
const LOG_LINES: usize = 200;
